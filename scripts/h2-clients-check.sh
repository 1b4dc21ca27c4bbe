#!/usr/bin/env bash
# HTTP/2 with the nghttp2 project's clients (Debian's nghttp2-client, installed when missing),
# beside the curl tests of `cargo test`: nghttp loads the demo page with its assets (-a) over
# TLS (h2 by ALPN) and over plain HTTP (prior knowledge), every resource must be 200 and none
# may be left unanswered; h2load sends 20,000 requests (-c 10 -m 20) both ways, and a 10 MiB
# file 20 times, and every one must succeed. Loopback only, a few seconds, stops the server it
# started by PID.
#   scripts/h2-clients-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need nghttp nghttp2-client
need h2load nghttp2-client
need openssl
cargo build --release --quiet

run=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$run"; }
trap cleanup EXIT

self_signed_certificate "$run" DNS:localhost,IP:127.0.0.1
mkdir "$run/root"
cp -r www/. "$run/root/"
head -c $((10 << 20)) /dev/urandom >"$run/root/big.bin"
./target/release/onepoll "$run/root" --listen 127.0.0.1:0 --listen-tls 127.0.0.1:0 \
    --tls-cert "$run/cert.pem" --tls-key "$run/key.pem" --access-log off 2>"$run/server.log" &
server_pid=$!
wait_for_line "$run/server.log" "listening on"
plain=$(grep -o 'http://[^/ ]*/' "$run/server.log" | head -1)
tls=$(grep -o 'https://[^/ ]*/' "$run/server.log" | head -1)
[ -n "$plain" ] && [ -n "$tls" ] || { echo "no listening line:" >&2; cat "$run/server.log" >&2; exit 1; }

failed=0
check() { # what, then the command; its output is kept for the verdict
    local what=$1
    shift
    if "$@" >"$run/out" 2>&1; then :; else echo "FAILED ($?): $what" >&2; tail -20 "$run/out" >&2; failed=1; return 1; fi
}

for base in "$tls" "$plain"; do
    # nghttp -a: the page, then the stylesheet, scripts and images it links, on one connection.
    if check "nghttp -a $base" nghttp -ans "$base"; then
        rows=$(awk '/^id +responseEnd/ {on=1; next} on && NF >= 6' "$run/out")
        total=$(printf '%s\n' "$rows" | grep -c . || true)
        ok=$(printf '%s\n' "$rows" | awk '$5 == 200' | grep -c . || true)
        if [ "$total" -lt 5 ] || [ "$ok" != "$total" ]; then
            echo "FAILED: nghttp -a $base: $ok of $total resources 200" >&2
            printf '%s\n' "$rows" >&2
            failed=1
        else
            echo "nghttp -a $base: $ok of $total resources 200"
        fi
    fi
    for load in "/index.html 20000 10 20" "/big.bin 20 4 1"; do
        read -r path count clients streams <<<"$load"
        if check "h2load $base$path" h2load -n "$count" -c "$clients" -m "$streams" "$base${path#/}"; then
            line=$(grep '^requests:' "$run/out")
            codes=$(grep '^status codes:' "$run/out")
            if [[ "$line" == *"$count succeeded, 0 failed, 0 errored, 0 timeout"* ]] && [[ "$codes" == "status codes: $count 2xx,"* ]] &&
                grep -q "^Application protocol: h2" "$run/out"; then
                echo "h2load $base${path#/} -c $clients -m $streams: $line"
            else
                echo "FAILED: h2load $base${path#/}: $line" >&2
                failed=1
            fi
        fi
    done
done
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
exit "$failed"
