#!/usr/bin/env bash
# ACME end to end on loopback, against Debian's pebble (Let's Encrypt's test CA), which
# validates against onepoll's own ports:
#   1. TLS-ALPN-01 with Debian's dehydrated (`--alpn DIR`, onepoll's --tls-acme-dir) and only an
#      HTTPS port: no port 80, no webroot. Issued, installed on SIGHUP, renewed, with a client
#      loop meanwhile that never fails.
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

https_port=$(free_port); acme_port=$(free_port); mgmt_port=$(free_port)
mkdir -p "$run/www" "$run/tls" "$run/alpn" "$run/pebble" "$run/dehydrated"
echo '<!DOCTYPE html><title>acme check</title><p>served by onepoll' >"$run/www/index.html"

# The serial number of the certificate served to `localhost`.
served_serial() {
    openssl s_client -connect "127.0.0.1:$https_port" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -serial
}

step "pebble on 127.0.0.1:$acme_port, validating TLS-ALPN-01 on port $https_port"
self_signed_certificate "$run/pebble" DNS:localhost,IP:127.0.0.1
cat >"$run/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$mgmt_port",
 "certificate": "$run/pebble/cert.pem", "privateKey": "$run/pebble/key.pem",
 "httpPort": 1, "tlsPort": $https_port, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF
# Nonce rejections off: dehydrated does not retry badNonce (RFC 8555 §6.5 says a client should).
# No reuse of valid authorizations: the renewal is validated again.
PEBBLE_AUTHZREUSE=0 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_VA_NOSLEEP=1 pebble -config "$run/pebble.json" >"$run/pebble.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -s --cacert "$run/pebble/cert.pem" "https://127.0.0.1:$acme_port/dir" >/dev/null && break; sleep 0.1; done
curl -s --cacert "$run/pebble/cert.pem" "https://127.0.0.1:$mgmt_port/roots/0" >"$run/pebble-root.pem"

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
export CURL_CA_BUNDLE="$run/pebble/cert.pem"
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
