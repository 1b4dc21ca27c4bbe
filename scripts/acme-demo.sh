#!/usr/bin/env bash
# Certificates from ACME, end to end, on loopback: Debian's pebble (Let's Encrypt's test ACME
# server) and lego obtain a certificate for `localhost` with HTTP-01 through onepoll's webroot,
# onepoll picks it up on SIGHUP, then lego renews it with a --renew-hook that installs it and
# sends SIGHUP again. All along, a client loop fetches a page over HTTPS and plain HTTP; the
# script checks that the served certificate chains to pebble's root, that it changed at each
# step, that onepoll was never restarted, and that no request failed.
#   scripts/acme-demo.sh
# Installs pebble, lego, curl and openssl from Debian's packages when missing (needs root).
# Everything listens on 127.0.0.1 only; every process it starts is stopped by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
for tool in pebble lego curl openssl python3; do need "$tool"; done
cargo build --release --quiet

run=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$run"
}
trap cleanup EXIT

http_port=$(free_port); https_port=$(free_port); acme_port=$(free_port); mgmt_port=$(free_port)
step() { echo "== $(date -u +%H:%M:%S) $*"; }
served_serial() {
    openssl s_client -connect "127.0.0.1:$https_port" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -serial
}

mkdir -p "$run/www/.well-known/acme-challenge" "$run/tls" "$run/lego"
echo '<!DOCTYPE html><title>acme demo</title><p>served by onepoll' >"$run/www/index.html"

step "a bootstrap self-signed certificate, so onepoll can start its HTTPS listener"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$run/tls/key.pem" -out "$run/tls/cert.pem" 2>/dev/null

step "onepoll: http://127.0.0.1:$http_port (redirects to HTTPS, except ACME challenges), https://127.0.0.1:$https_port"
./target/release/onepoll "$run/www" --listen "127.0.0.1:$http_port" --listen-tls "127.0.0.1:$https_port" \
    --tls-cert "$run/tls/cert.pem" --tls-key "$run/tls/key.pem" --https-redirect \
    >"$run/access.log" 2>"$run/onepoll.log" &
onepoll=$!
pids+=("$onepoll")
wait_for_line "$run/onepoll.log" "listening on https://"

step "pebble on 127.0.0.1:$acme_port, validating HTTP-01 on port $http_port"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$run/pebble-key.pem" \
    -out "$run/pebble-cert.pem" 2>/dev/null
cat >"$run/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$mgmt_port",
 "certificate": "$run/pebble-cert.pem", "privateKey": "$run/pebble-key.pem",
 "httpPort": $http_port, "tlsPort": $https_port, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF
PEBBLE_VA_NOSLEEP=1 pebble -config "$run/pebble.json" >"$run/pebble.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -sk "https://127.0.0.1:$acme_port/dir" >/dev/null && break; sleep 0.1; done

step "a client fetches / over HTTPS and plain HTTP in a loop until the end"
touch "$run/keep-fetching"
(
    while [ -f "$run/keep-fetching" ]; do
        curl -sk -o /dev/null -w '%{http_code}\n' --resolve "localhost:$https_port:127.0.0.1" \
            "https://localhost:$https_port/" || echo failed
        curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$http_port/" || echo failed
    done >"$run/fetches"
) &
fetcher=$!
pids+=("$fetcher")
before=$(served_serial)
echo "   served before: $before (the bootstrap certificate)"

export LEGO_CA_CERTIFICATES="$run/pebble-cert.pem"
lego_args=(--accept-tos --server "https://127.0.0.1:$acme_port/dir" --email demo@example.com
    --domains localhost --http --http.webroot "$run/www" --path "$run/lego")
# The deploy hook: install the issued pair where onepoll reads it, then SIGHUP.
cat >"$run/install-hook" <<EOF
#!/bin/sh
set -e
cp "$run/lego/certificates/localhost.crt" "$run/tls/cert.pem"
cp "$run/lego/certificates/localhost.key" "$run/tls/key.pem"
kill -HUP $onepoll
EOF
chmod +x "$run/install-hook"
install_hook="$run/install-hook"

step "lego run: HTTP-01 through onepoll's webroot"
lego "${lego_args[@]}" run 2>&1 | sed 's/^/   lego: /' | grep -E "Obtaining|validation|Server responded|authz|Certificate" || true
test -s "$run/lego/certificates/localhost.crt" || { echo "FAILED: no certificate issued" >&2; cat "$run/pebble.log" >&2; exit 1; }
step "install and SIGHUP (what a deploy hook does)"
"$install_hook"
for _ in $(seq 100); do [ "$(grep -c 'certificates reloaded' "$run/onepoll.log")" -ge 1 ] && break; sleep 0.05; done
issued=$(served_serial)
echo "   served now:    $issued"

curl -sk "https://127.0.0.1:$mgmt_port/roots/0" >"$run/pebble-root.pem"
check_chain() {
    curl -sS --fail -o /dev/null --cacert "$run/pebble-root.pem" --resolve "localhost:$https_port:127.0.0.1" \
        "https://localhost:$https_port/" && echo "   curl --cacert <pebble's root> https://localhost:$https_port/: verified"
}
check_chain

step "lego renew with a --renew-hook that installs the new certificate and sends SIGHUP"
lego "${lego_args[@]}" renew --days 100000 --no-random-sleep --renew-hook "$install_hook" 2>&1 |
    sed 's/^/   lego: /' | grep -E "renew|Obtaining|Server responded|hook|error" || true
for _ in $(seq 200); do [ "$(grep -c 'certificates reloaded' "$run/onepoll.log")" -ge 2 ] && break; sleep 0.05; done
renewed=$(served_serial)
echo "   served now:    $renewed"
check_chain

rm "$run/keep-fetching"
wait "$fetcher" || true
total=$(wc -l <"$run/fetches")
good=$(grep -cE '^(200|308)$' "$run/fetches" || true)
echo "== fetches during the demo: $total, answered 200 (HTTPS) or 308 (plain HTTP): $good"
echo "== onepoll: pid $onepoll throughout; its log:"
sed 's/^/   /' "$run/onepoll.log"
echo "== challenge requests in the access log:"
grep "acme-challenge" "$run/access.log" | sed 's/^/   /' | head -5

fail() { echo "FAILED: $*" >&2; exit 1; }
kill -0 "$onepoll" 2>/dev/null || fail "onepoll is not running"
[ "$before" != "$issued" ] || fail "the issued certificate was not served"
[ "$issued" != "$renewed" ] || fail "the renewed certificate was not served"
[ "$total" -gt 0 ] && [ "$good" -eq "$total" ] || fail "$((total - good)) of $total fetches failed"
grep -q "acme-challenge" "$run/access.log" || fail "no challenge was fetched through onepoll"
echo "OK: issued, installed, renewed and reloaded with no restart and no failed request"
