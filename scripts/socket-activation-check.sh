#!/usr/bin/env bash
# onepoll started by systemd's own socket activator, `systemd-socket-activate` (Debian's
# systemd package, installed when missing, with openssl for a test certificate): it binds the
# sockets, waits for the first connection, then execs onepoll with them as descriptors 3, 4, …
# and LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES set. tests/daemon.rs and tests/https.rs start
# onepoll the same way from the test itself (so `cargo test` needs no systemd); this script
# proves the real activator agrees. Checked, each by curl:
#   two TCP sockets served, --port ignored, one thread; --workers 2 sharing one socket; a Unix
#   socket; plain and HTTPS sockets told apart by --fdname=http:https.
# Loopback only, bounded (curl --max-time, about 5 s here after the build), stops what it
# started by PID.
#   scripts/socket-activation-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need systemd-socket-activate systemd
need openssl
cargo build --quiet
onepoll=$PWD/target/debug/onepoll
run=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$run"
}
trap cleanup EXIT
mkdir "$run/www"
printf 'hello, world\n' >"$run/www/hello.txt"
fail() { echo "FAILED: $*" >&2; for log in "$run"/*.log; do echo "--- $log" >&2; cat "$log" >&2; done; exit 1; }

# A loopback port nothing listens on now (systemd-socket-activate takes no port 0).
free_port() {
    local port
    while :; do
        port=$(shuf -i 20000-60000 -n 1)
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# activate NAME SOCKET_COUNT ACTIVATOR_ARGS... -- ONEPOLL_ARGS...: starts the activator in the
# background (its PID becomes onepoll's at the exec) and waits until it listens.
activate() {
    local name=$1 count=$2 args=()
    shift 2
    while [ "$1" != "--" ]; do args+=("$1"); shift; done
    shift
    RUST_LOG=info systemd-socket-activate "${args[@]}" "$onepoll" "$run/www" "$@" \
        >/dev/null 2>"$run/$name.log" &
    pids+=($!)
    activated=$!
    for _ in $(seq 100); do
        [ "$(grep -c '^Listening on' "$run/$name.log")" -ge "$count" ] && return
        kill -0 "$activated" 2>/dev/null || fail "$name: the activator exited"
        sleep 0.05
    done
    fail "$name: the activator did not listen"
}
fetch() { curl --silent --show-error --max-time 10 "$@"; }
expect_hello() { # what, curl arguments...
    local what=$1 body
    shift
    body=$(fetch "$@") || fail "$what: curl failed"
    [ "$body" = "hello, world" ] || fail "$what: got '$body'"
}

a=$(free_port) b=$(free_port)
activate two 2 -l "127.0.0.1:$a" -l "127.0.0.1:$b" -- --port 1
expect_hello "first socket" "http://127.0.0.1:$a/hello.txt"
expect_hello "second socket" "http://127.0.0.1:$b/hello.txt"
grep -q "using 2 listening sockets passed by the service manager" "$run/two.log" || fail "no inherited sockets"
! grep -q ":1/" "$run/two.log" || fail "--port was not ignored"
threads=$(ls "/proc/$activated/task" | wc -l)
[ "$threads" = 1 ] || fail "$threads threads"
echo "ok: two TCP sockets from systemd-socket-activate, --port ignored, 1 thread"

c=$(free_port)
activate workers 1 -l "127.0.0.1:$c" -- --workers 2
for _ in $(seq 20); do expect_hello "workers" "http://127.0.0.1:$c/hello.txt"; done
workers=$(wc -w <"/proc/$activated/task/$activated/children")
[ "$workers" = 2 ] || fail "$workers workers"
echo "ok: --workers 2 share one activated socket (20 requests)"

activate unix 1 -l "$run/onepoll.sock" --
expect_hello "unix socket" --unix-socket "$run/onepoll.sock" "http://localhost/hello.txt"
echo "ok: an activated Unix socket"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
d=$(free_port) e=$(free_port)
activate https 2 -l "127.0.0.1:$d" -l "127.0.0.1:$e" --fdname=http:https -- \
    --tls-cert "$run/cert.pem" --tls-key "$run/key.pem"
expect_hello "the http socket" "http://127.0.0.1:$d/hello.txt"
expect_hello "the https socket" --cacert "$run/cert.pem" --resolve "localhost:$e:127.0.0.1" \
    "https://localhost:$e/hello.txt"
echo "ok: sockets named http and https (--fdname) served as such"
echo "socket activation by $(systemd-socket-activate --version | head -1): all checks passed"
