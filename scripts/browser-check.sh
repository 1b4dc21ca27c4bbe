#!/usr/bin/env bash
# A real browser against onepoll: serves www/ and loads it in headless Chromium (Debian's
# package, installed when missing). The page checks itself (www/app.js): stylesheet applied,
# both images decoded, a JavaScript module imported, a WebAssembly module compiled while it
# streamed (needs application/wasm), a Range request answered 206 with the right bytes, and
# every resource's Content-Type, and the protocol every resource came over (nextHopProtocol:
# "h2" over HTTPS, where ALPN picks HTTP/2; "http/1.1" over plain HTTP). The page is loaded
# over both, from one server with a plain and a TLS listener (a throwaway ECDSA P-256
# certificate made with openssl, which Chromium is told to accept). It writes the outcome into
# its DOM and title; this script reads them from --dump-dom, saves a screenshot of the HTTPS
# load to results/browser.png, shows the requests the browser made (the access log), and exits
# non-zero if any check failed. Loopback only, bounded (about 20 s after the install), stops
# the server it started by PID.
#   scripts/browser-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need chromium
need openssl
cargo build --release --quiet
run=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$run"; }
trap cleanup EXIT

self_signed_certificate "$run" IP:127.0.0.1
./target/release/onepoll www --listen 127.0.0.1:0 --listen-tls 127.0.0.1:0 \
    --tls-cert "$run/cert.pem" --tls-key "$run/key.pem" >"$run/access.log" 2>"$run/server.log" &
server_pid=$!
wait_for_line "$run/server.log" "listening on https"
wait_for_line "$run/server.log" "listening on http:"
plain_url=$(grep -o 'http://[^/]*/' "$run/server.log" | head -1)
tls_url=$(grep -o 'https://[^/]*/' "$run/server.log" | head -1)
[ -n "$plain_url" ] && [ -n "$tls_url" ] || { cat "$run/server.log"; exit 1; }

browse() { # URL ARGS...: a fresh profile each time, so nothing comes from an earlier load's cache
    local url=$1 profile
    shift
    profile=$(mktemp -d -p "$run")
    timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-dev-shm-usage --user-data-dir="$profile" \
        --ignore-certificate-errors --virtual-time-budget=5000 "$@" "$url" 2>>"$run/chromium.log"
}

failed=0
for url in "$plain_url" "$tls_url"; do
    # A page whose checks have not reported yet (Chromium's first start on a cold machine can
    # spend the virtual-time budget before the page's fetches finish, or dump nothing) is
    # loaded again, up to three times; a check that reported "fail" fails at once.
    dom=""
    for attempt in 1 2 3; do
        dom=$(browse "$url" --dump-dom) || true
        echo "$dom" | grep -q 'data-checks=' && break
        echo "attempt $attempt: the page had not reported its checks (title: $(echo "$dom" | grep -o '<title>[^<]*' | sed 's/<title>//'))" >&2
        tail -5 "$run/chromium.log" >&2 || true
    done
    echo "$(chromium --version) loaded $url"
    echo "$dom" | { grep -o '<li class="[a-z]*" data-check="[a-z]*">[^<]*' || true; } | sed 's/<li [^>]*>/  /'
    echo "title: $(echo "$dom" | grep -o '<title>[^<]*' | sed 's/<title>//')"
    if ! echo "$dom" | grep -q 'data-checks="passed"' || echo "$dom" | grep -q 'data-check="fail"'; then
        echo "FAILED: not every check passed over $url" >&2
        failed=1
    fi
done
mkdir -p results
browse "$tls_url" --screenshot="$PWD/results/browser.png" --window-size=1000,900 >/dev/null ||
    echo "no screenshot (Chromium exited non-zero)" >&2
echo "requests the browser made (access log):"
sed 's/^/  /' "$run/access.log"
echo "screenshot: results/browser.png"
if ((failed)); then
    echo "Chromium's log ends:" >&2
    tail -20 "$run/chromium.log" >&2
    exit 1
fi
