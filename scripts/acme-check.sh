#!/usr/bin/env bash
# ACME end to end on loopback, against Debian's pebble (Let's Encrypt's test CA), which
# validates against onepoll's own ports:
#   1. TLS-ALPN-01 with Debian's dehydrated (`--alpn DIR`, onepoll's --tls-acme-dir) and only an
#      HTTPS port: no port 80, no webroot. Issued, installed on SIGHUP, renewed, with a client
#      loop meanwhile that never fails.
#   2. The built-in client (--acme-domain), with pebble rejecting 20% of nonces (badNonce):
#      first issuance over TLS-ALPN-01 from a placeholder; renewal by the third-of-lifetime rule
#      (pebble issues 45-second certificates here) without a restart and no failed request; a
#      restart that reuses the stored account and certificate; HTTP-01; a CA that is down
#      (WARN, backoff, the old certificate kept); --workers; EAB with pebble's example keys;
#      a certificate per [[site]].
#   scripts/acme-check.sh
# Installs pebble, dehydrated, curl and openssl from Debian's packages when missing (needs
# root). Everything listens on 127.0.0.1; every process it starts is stopped by PID at exit.
set -Eeuo pipefail
[ -n "${ACME_CHECK_TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."

. scripts/lib.sh
for tool in pebble dehydrated curl openssl python3; do need "$tool"; done
cargo build --release --quiet

run=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${ACME_CHECK_KEEP:-}" ] && echo "kept $run" || rm -rf "$run"
}
trap cleanup EXIT
trap 'echo "FAILED: line $LINENO: $BASH_COMMAND" >&2' ERR
step() { echo "== $(date -u +%H:%M:%S) $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# start_pebble NAME ACME_PORT MGMT_PORT HTTP_PORT TLS_PORT 'EXTRA_JSON' [VAR=VALUE ...]: pebble
# validating against those ports, its API certificate from a throwaway CA in $run/NAME (rustls
# refuses a self-signed server certificate); waits until its directory answers and leaves its
# root in $run/NAME/root.pem and its pid in $pebble.
start_pebble() {
    local name=$1 acme=$2 mgmt=$3 http=$4 tls=$5 extra=$6
    shift 6
    mkdir -p "$run/$name"
    ca_signed_certificate "$run/$name" DNS:localhost,IP:127.0.0.1
    cat >"$run/$name/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$acme", "managementListenAddress": "127.0.0.1:$mgmt",
 "certificate": "$run/$name/cert.pem", "privateKey": "$run/$name/key.pem",
 "httpPort": $http, "tlsPort": $tls, "ocspResponderURL": "" $extra}}
EOF
    env PEBBLE_VA_NOSLEEP=1 "$@" pebble -config "$run/$name/pebble.json" >"$run/$name/pebble.log" 2>&1 &
    pebble=$!
    pids+=("$pebble")
    for _ in $(seq 100); do curl -s --cacert "$run/$name/ca.pem" "https://127.0.0.1:$acme/dir" >/dev/null && break; sleep 0.1; done
    curl -s --cacert "$run/$name/ca.pem" "https://127.0.0.1:$mgmt/roots/0" >"$run/$name/root.pem"
}

https_port=$(free_port); acme_port=$(free_port); mgmt_port=$(free_port)
mkdir -p "$run/www" "$run/tls" "$run/alpn" "$run/pebble" "$run/dehydrated"
echo '<!DOCTYPE html><title>acme check</title><p>served by onepoll' >"$run/www/index.html"

# The serial number of the certificate served to `localhost`.
served_serial() {
    openssl s_client -connect "127.0.0.1:$https_port" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -serial
}

step "pebble on 127.0.0.1:$acme_port, validating TLS-ALPN-01 on port $https_port"
# Nonce rejections off: dehydrated does not retry badNonce (RFC 8555 §6.5 says a client should).
# No reuse of valid authorizations: the renewal is validated again.
start_pebble pebble "$acme_port" "$mgmt_port" 1 "$https_port" "" PEBBLE_AUTHZREUSE=0 PEBBLE_WFE_NONCEREJECT=0
cp "$run/pebble/root.pem" "$run/pebble-root.pem"

step "onepoll: HTTPS only, on 127.0.0.1:$https_port, --tls-acme-dir $run/alpn"
self_signed_certificate "$run/tls" DNS:localhost
./target/release/onepoll "$run/www" --listen-tls "127.0.0.1:$https_port" \
    --tls-cert "$run/tls/cert.pem" --tls-key "$run/tls/key.pem" --tls-acme-dir "$run/alpn" \
    >"$run/access.log" 2>"$run/onepoll.log" &
onepoll=$!
pids+=("$onepoll")
wait_for_line "$run/onepoll.log" "listening on https://"

step "a client fetches / over HTTPS in a loop until the end"
touch "$run/keep-fetching"
(
    while [ -f "$run/keep-fetching" ]; do
        curl -sk -o /dev/null -w '%{http_code}\n' --resolve "localhost:$https_port:127.0.0.1" \
            "https://localhost:$https_port/" || echo failed
    done >"$run/fetches"
) &
fetcher=$!
pids+=("$fetcher")
bootstrap=$(served_serial)
echo "   served: $bootstrap (the bootstrap certificate)"

# dehydrated: pebble as its CA (curl trusts pebble's API certificate by CURL_CA_BUNDLE), its
# challenge certificates in onepoll's --tls-acme-dir, a deploy hook that installs the pair and
# sends SIGHUP.
cat >"$run/dehydrated.conf" <<EOF
CA="https://127.0.0.1:$acme_port/dir"
CHALLENGETYPE="tls-alpn-01"
ALPNCERTDIR="$run/alpn"
BASEDIR="$run/dehydrated"
HOOK="$run/hook"
CONTACT_EMAIL="check@example.com"
KEY_ALGO="prime256v1"
EOF
cat >"$run/hook" <<EOF
#!/bin/sh
# dehydrated calls this for every step; only a deployed certificate concerns onepoll.
# deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP
[ "\$1" = deploy_cert ] || exit 0
cp "\$3" "$run/tls/key.pem.new" && mv "$run/tls/key.pem.new" "$run/tls/key.pem"
cp "\$5" "$run/tls/cert.pem.new" && mv "$run/tls/cert.pem.new" "$run/tls/cert.pem"
kill -HUP $onepoll
EOF
chmod +x "$run/hook"
export CURL_CA_BUNDLE="$run/pebble/ca.pem"
dehydrated_run() { dehydrated --config "$run/dehydrated.conf" "$@" 2>&1 | sed 's/^/   dehydrated: /'; }
reloads() { grep -c 'certificates reloaded' "$run/onepoll.log" || true; }

step "dehydrated --register, then --cron --domain localhost (TLS-ALPN-01 through onepoll's port)"
dehydrated_run --register --accept-terms
dehydrated_run --cron --domain localhost
for _ in $(seq 100); do [ "$(reloads)" -ge 1 ] && break; sleep 0.05; done
[ "$(reloads)" -ge 1 ] || fail "onepoll did not reload after deploy_cert"
issued=$(served_serial)
echo "   served: $issued"
[ "$issued" != "$bootstrap" ] || fail "the issued certificate is not served"
grep -E "TLS-ALPN-01 validation for localhost: presenting" "$run/onepoll.log" | head -1 | sed 's/^/   onepoll: /'
curl -sS --fail -o /dev/null --cacert "$run/pebble-root.pem" --resolve "localhost:$https_port:127.0.0.1" \
    "https://localhost:$https_port/" || fail "the served certificate does not chain to pebble's root"
echo "   curl --cacert <pebble's root> https://localhost:$https_port/: verified"

step "dehydrated --cron --force: the renewal, installed without a restart"
dehydrated_run --cron --domain localhost --force | grep -vE "^   dehydrated:  \+ (Checking|Signing|Requesting|Done|Creating)" || true
for _ in $(seq 100); do [ "$(reloads)" -ge 2 ] && break; sleep 0.05; done
renewed=$(served_serial)
echo "   served: $renewed"
[ "$renewed" != "$issued" ] || fail "the renewed certificate is not served"
validations=$(grep -c "TLS-ALPN-01 validation for localhost: presenting" "$run/onepoll.log" || true)
[ "$validations" -ge 2 ] || fail "the renewal was not validated through onepoll"
ls "$run/alpn" | grep -q . && fail "challenge certificates left behind: $(ls "$run/alpn")"

rm "$run/keep-fetching"
wait "$fetcher" || true
total=$(wc -l <"$run/fetches")
good=$(grep -cx 200 "$run/fetches" || true)
echo "== TLS-ALPN-01 handshakes answered by onepoll: $validations (pebble validates from several perspectives)"
echo "== fetches meanwhile: $total, answered 200: $good"
[ "$total" -gt 0 ] && [ "$good" -eq "$total" ] || fail "a request failed during issuance or renewal"
kill -0 "$onepoll" || fail "onepoll is gone"
echo "== onepoll: pid $onepoll throughout; its warnings and errors:"
grep -E "WARN|ERROR" "$run/onepoll.log" | sed 's/^/   /' || echo "   none"
echo "== TLS-ALPN-01 with dehydrated: passed"
kill "$onepoll" "$pebble"

# --- 2. The built-in client -------------------------------------------------------------------
unset CURL_CA_BUNDLE
http_port=$(free_port); https_port=$(free_port); acme_port=$(free_port); mgmt_port=$(free_port)
step "pebble on 127.0.0.1:$acme_port: 45-second certificates, badNonce on 20% of requests (5% by default)"
start_pebble ca "$acme_port" "$mgmt_port" "$http_port" "$https_port" ', "certificateValidityPeriod": 45' \
    PEBBLE_AUTHZREUSE=0 PEBBLE_WFE_NONCEREJECT=20
ca_pebble=$pebble
acme_flags=(--acme-domain localhost --acme-email check@example.com --acme-directory "https://127.0.0.1:$acme_port/dir"
    --acme-ca-roots "$run/ca/ca.pem")
# onepoll_acme LOG STATE_DIR [FLAGS...]: onepoll with the built-in client; its pid in $onepoll.
onepoll_acme() {
    local log=$1 state=$2
    shift 2
    RUST_LOG=info,onepoll::acme::order=debug ./target/release/onepoll "$run/www" --listen "127.0.0.1:$http_port" --listen-tls "127.0.0.1:$https_port" \
        --state-dir "$state" "${acme_flags[@]}" "$@" >"${log%.log}.access" 2>"$log" &
    onepoll=$!
    pids+=("$onepoll")
    wait_for_line "$log" "listening on https://"
}
installs() { grep -c 'acme: new certificate installed; certificates reloaded' "$1" || true; }
wait_installs() { # LOG COUNT SECONDS
    for _ in $(seq $(( $3 * 10 ))); do [ "$(installs "$1")" -ge "$2" ] && return 0; sleep 0.1; done
    fail "$(installs "$1") installs in $1 after $3 s, expected $2:$(echo; cat "$1")"
}
verified() {
    curl -sS --fail -o /dev/null --cacert "$run/ca/root.pem" --resolve "localhost:$https_port:127.0.0.1" \
        "https://localhost:$https_port/" || fail "the served certificate does not chain to pebble's root"
}
show() { grep -E "acme|TLS-ALPN|placeholder|WARN|ERROR" "$1" | grep -v DEBUG | sed -E 's/^\[[^ ]+ /   [/' | head -${2:-40}; }

step "2a. first start, no certificate yet: TLS-ALPN-01 (the default)"
onepoll_acme "$run/builtin.log" "$run/state"
placeholder=$(served_serial)
wait_installs "$run/builtin.log" 1 30
issued=$(served_serial)
[ "$issued" != "$placeholder" ] || fail "the issued certificate is not served"
verified
show "$run/builtin.log"
echo "   served: $placeholder (placeholder), then $issued, verified against pebble's root"

step "2b. renewal by the third-of-lifetime rule, no restart; a client loop meanwhile"
touch "$run/keep-fetching"
(
    while [ -f "$run/keep-fetching" ]; do
        curl -sk -o /dev/null -w '%{http_code}\n' --resolve "localhost:$https_port:127.0.0.1" \
            "https://localhost:$https_port/" || echo failed
    done >"$run/fetches-builtin"
) &
fetcher=$!
pids+=("$fetcher")
wait_installs "$run/builtin.log" 2 60
renewed=$(served_serial)
rm "$run/keep-fetching"
wait "$fetcher" || true
[ "$renewed" != "$issued" ] || fail "the renewed certificate is not served"
verified
total=$(wc -l <"$run/fetches-builtin"); good=$(grep -cx 200 "$run/fetches-builtin" || true)
echo "   served: $renewed; fetches meanwhile: $total, answered 200: $good"
[ "$total" -gt 0 ] && [ "$good" -eq "$total" ] || fail "a request failed during the renewal"
grep -E "third of its lifetime|installed" "$run/builtin.log" | tail -3 | sed -E 's/^\[[^ ]+ /   [/'
nonce_retries=$(grep -c "badNonce from" "$run/builtin.log" || true)
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

step "2c. restart on the same state directory: the stored account and certificate"
stored=$(openssl x509 -noout -serial -in "$run/state/certificates/localhost/fullchain.pem")
onepoll_acme "$run/restart.log" "$run/state"
at_start=$(served_serial)
echo "   stored: $stored; served at start: $at_start"
[ "$at_start" = "$stored" ] || fail "the restart does not serve the stored certificate"
grep -q "new account key\|placeholder" "$run/restart.log" && fail "the restart made a new account or a placeholder"
ls -l "$run/state/acme/"account-*.key "$run/state/certificates/localhost/key.pem" | awk '{print "   " $1, $NF}'
helper=$(grep -o 'acme: helper [0-9]*' "$run/restart.log" | grep -o '[0-9]*$')
memory() { echo "$(awk '/^VmRSS/ {print $2}' /proc/$1/status) kB RSS, $(awk '/^Pss:/ {print $2}' /proc/$1/smaps_rollup) kB PSS"; }
echo "   idle: the loop $(memory "$onepoll"); the helper, asleep until the renewal, $(memory "$helper")"
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

step "2d. HTTP-01 on the plain port, from a fresh state directory: issued, then renewed"
onepoll_acme "$run/http01.log" "$run/state-http01" --acme-challenge http-01
wait_installs "$run/http01.log" 1 30
verified
first=$(served_serial)
wait_installs "$run/http01.log" 2 60
verified
[ "$(served_serial)" != "$first" ] || fail "the HTTP-01 renewal is not served"
show "$run/http01.log" 20
echo "   served: $first, then $(served_serial) after the renewal; pebble fetched the challenge:" \
    "$(grep -c '"GET /.well-known/acme-challenge/' "$run/http01.access" || true) times"
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

step "2e. --workers 2: one helper under the supervisor, every worker reloads the new certificate"
onepoll_acme "$run/workers.log" "$run/state-workers" --workers 2
for _ in $(seq 300); do grep -q "every worker reloads" "$run/workers.log" && break; sleep 0.1; done
grep -q "every worker reloads" "$run/workers.log" || fail "the supervisor did not reload the workers"
for _ in $(seq 100); do [ "$(grep -c 'certificates reloaded' "$run/workers.log")" -ge 2 ] && break; sleep 0.1; done
issued=$(openssl x509 -noout -serial -in "$run/state-workers/certificates/localhost/fullchain.pem")
serials=$(for _ in $(seq 12); do served_serial; done | sort | uniq -c)
echo "   12 handshakes (SO_REUSEPORT spreads them over both workers) got: $serials"
[ "$(echo "$serials" | wc -l)" = 1 ] && echo "$serials" | grep -q "$issued" || fail "a worker still serves another certificate"
echo "   helpers: $(grep -c 'acme: helper' "$run/workers.log"); workers reloaded: $(grep -c 'certificates reloaded' "$run/workers.log")"
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

step "2f. the CA is down: WARN per attempt, the placeholder (or the old certificate) kept"
kill "$ca_pebble"; wait "$ca_pebble" 2>/dev/null || true
onepoll_acme "$run/down.log" "$run/state-down"
wait_for_line "$run/down.log" "attempt 1 failed" 10
before=$(served_serial)
curl -sk -o /dev/null -w '   HTTPS meanwhile: %{http_code}\n' --resolve "localhost:$https_port:127.0.0.1" "https://localhost:$https_port/"
show "$run/down.log" 8
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true
onepoll_acme "$run/down-renewal.log" "$run/state"
wait_for_line "$run/down-renewal.log" "attempt 1 failed" 60
kept=$(served_serial)
[ "$kept" = "$(openssl x509 -noout -serial -in "$run/state/certificates/localhost/fullchain.pem")" ] ||
    fail "the stored certificate was not kept while the CA is down"
grep "attempt 1 failed" "$run/down-renewal.log" | sed -E 's/^\[[^ ]+ /   [/'
echo "   served while the CA is down: $kept (the stored certificate)"
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

step "2g. EAB: a CA that requires it, with pebble's example key"
start_pebble eab "$acme_port" "$mgmt_port" "$http_port" "$https_port" ', "externalAccountBindingRequired": true,
 "externalAccountMACKeys": {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}'
acme_flags=(--acme-domain localhost --acme-directory "https://127.0.0.1:$acme_port/dir" --acme-ca-roots "$run/eab/ca.pem")
onepoll_acme "$run/no-eab.log" "$run/state-no-eab"
wait_for_line "$run/no-eab.log" "attempt 1 failed" 10
grep "attempt 1 failed" "$run/no-eab.log" | sed -E 's/^\[[^ ]+ /   without EAB: [/'
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true
onepoll_acme "$run/eab.log" "$run/state-eab" --acme-eab-kid kid-1 \
    --acme-eab-hmac-key zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W
wait_installs "$run/eab.log" 1 30
curl -sS --fail -o /dev/null --cacert "$run/eab/root.pem" --resolve "localhost:$https_port:127.0.0.1" \
    "https://localhost:$https_port/" || fail "the EAB certificate does not chain to pebble's root"
echo "   with --acme-eab-kid kid-1: issued and verified"
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

step "2h. two [[site]] tables, each with acme = {...}: a certificate per site, chosen by SNI"
# pebble's validator cannot resolve www.localhost (no DNS here), so this CA validates nothing:
# what is checked is a certificate per site, each for its site's names.
kill "$pebble"; wait "$pebble" 2>/dev/null || true
start_pebble sites "$acme_port" "$mgmt_port" "$http_port" "$https_port" "" PEBBLE_VA_ALWAYS_VALID=1
mkdir -p "$run/www-two"; echo two >"$run/www-two/index.html"
cat >"$run/sites.toml" <<EOF
state_dir = "$run/state-sites"
listen = ["127.0.0.1:$http_port"]
listen_tls = ["127.0.0.1:$https_port"]
acme = { email = "check@example.com", directory = "https://127.0.0.1:$acme_port/dir", ca_roots = "$run/sites/ca.pem" }
[[site]]
names = ["localhost"]
root = "$run/www"
acme = {}
[[site]]
names = ["www.localhost", "two.localhost"]
root = "$run/www-two"
acme = { challenge = "http-01" }
EOF
RUST_LOG=info ./target/release/onepoll --config "$run/sites.toml" >/dev/null 2>"$run/sites.log" &
onepoll=$!
pids+=("$onepoll")
wait_installs "$run/sites.log" 2 30
for name in localhost www.localhost two.localhost; do
    names=$(openssl s_client -connect "127.0.0.1:$https_port" -servername "$name" </dev/null 2>/dev/null |
        openssl x509 -noout -ext subjectAltName | tail -1 | tr -d ' ')
    echo "   SNI $name: $names"
    case "$name" in
        localhost) [ "$names" = "DNS:localhost" ] ;;
        *) [ "$names" = "DNS:www.localhost,DNS:two.localhost" ] ;;
    esac || fail "SNI $name got $names"
done
kill "$onepoll"; wait "$onepoll" 2>/dev/null || true

echo "== badNonce answers from pebble during 2a and 2b: $nonce_retries, each retried with the fresh nonce"
echo "== the built-in client: passed"
