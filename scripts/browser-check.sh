#!/usr/bin/env bash
# A real browser against onepoll: serves www/ and loads it in headless Chromium (Debian's
# package, installed when missing). The page checks itself (www/app.js): stylesheet applied,
# both images decoded, a JavaScript module imported, a WebAssembly module compiled while it
# streamed (needs application/wasm), a Range request answered 206 with the right bytes, and
# every resource's Content-Type. It writes the outcome into its DOM and title; this script
# reads them from --dump-dom, saves a screenshot to results/browser.png, shows the requests the
# browser made (the access log), and exits non-zero if any check failed. Loopback only,
# bounded (about 10 s after the install), stops the server it started by PID.
#   scripts/browser-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need chromium
cargo build --release --quiet
run=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$run"; }
trap cleanup EXIT

./target/release/onepoll www --port 0 >"$run/access.log" 2>"$run/server.log" &
server_pid=$!
wait_for_line "$run/server.log" "listening on"
url=$(grep -o 'http://[^/]*/' "$run/server.log" | head -1)
[ -n "$url" ] || { cat "$run/server.log"; exit 1; }

browse() { # a fresh profile each time: nothing comes from an earlier run's cache
    local profile
    profile=$(mktemp -d -p "$run")
    timeout 60 chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-dev-shm-usage --user-data-dir="$profile" \
        --virtual-time-budget=5000 "$@" "$url" 2>>"$run/chromium.log"
}
# A page whose checks have not reported yet (Chromium's first start on a cold machine can
# spend the virtual-time budget before the page's fetches finish, or dump nothing) is loaded
# again, up to three times; a check that reported "fail" fails at once.
dom=""
for attempt in 1 2 3; do
    dom=$(browse --dump-dom) || true
    echo "$dom" | grep -q 'data-checks=' && break
    echo "attempt $attempt: the page had not reported its checks (title: $(echo "$dom" | grep -o '<title>[^<]*' | sed 's/<title>//'))" >&2
    tail -5 "$run/chromium.log" >&2 || true
done
mkdir -p results
browse --screenshot="$PWD/results/browser.png" --window-size=1000,900 >/dev/null || echo "no screenshot (Chromium exited non-zero)" >&2

echo "$(chromium --version) loaded $url"
echo "$dom" | { grep -o '<li class="[a-z]*" data-check="[a-z]*">[^<]*' || true; } | sed 's/<li [^>]*>/  /'
echo "title: $(echo "$dom" | grep -o '<title>[^<]*' | sed 's/<title>//')"
echo "requests the browser made (access log):"
sed 's/^/  /' "$run/access.log"
echo "screenshot: results/browser.png"
echo "$dom" | grep -q 'data-checks="passed"' || {
    echo "FAILED: not every check passed; Chromium's log ends:" >&2
    tail -20 "$run/chromium.log" >&2
    exit 1
}
! echo "$dom" | grep -q 'data-check="fail"'
