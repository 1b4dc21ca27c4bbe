#!/usr/bin/env bash
# Watch onepoll's event loop at work: runs it under `strace -f` with a readable syscall filter
# and drives it through five scenes, printing each trace with every line labelled, followed by
# the RUST_LOG=debug lines of the same scene (`conn=<token> fd=<fd>` is the socket in the trace):
#   1. one keep-alive connection, two requests (curl)
#   2. 16 pipelined requests in one write (bash's /dev/tcp: curl no longer pipelines)
#   3. a 10 MiB download (curl)
#   4. an idle keep-alive connection closed by --idle-timeout 1
#   5. the same request as scene 1 on --engine thread-per-conn, for contrast
# Installs strace and curl when missing. Loopback only, about 10 s, stops what it starts by PID.
#   scripts/strace.sh            all scenes
#   scripts/strace.sh 3          one scene
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need strace
need curl
cargo build --release --quiet
run=$(mktemp -d)
cp -r www "$run/root"
head -c $((10 * 1024 * 1024)) /dev/zero > "$run/root/big.bin"
trap 'rm -rf "$run"' EXIT

syscalls=epoll_wait,epoll_ctl,accept4,read,recvfrom,writev,sendmsg,sendfile,write,close,openat,statx,readlink,inotify_add_watch,shutdown,clone3,futex
label() { # one trace line -> why it is there
    case "$1" in
        *epoll_wait*EINTR*) echo "a signal interrupted the wait: the loop simply waits again" ;;
        *epoll_wait*u64=18446744073709551615*) echo "the signal pipe's token is ready: a signal (SIGTERM) arrived" ;;
        *epoll_wait*", 0)"*) echo "after yielding (512 KiB sent): collect events without sleeping" ;;
        *epoll_wait*) echo "sleep until a socket is ready or the nearest timer (the timeout, ms) is due" ;;
        *accept4*unfinished*) echo "a blocking accept: this thread sleeps here until the next client" ;;
        *accept4*EAGAIN*) echo "listen queue empty: stop accepting (edge-triggered: drain until EAGAIN)" ;;
        *accept4*) echo "a new client (event loop: non-blocking; its slab key becomes its token)" ;;
        *epoll_ctl*EPOLL_CTL_ADD*) echo "register the client for READABLE, edge-triggered" ;;
        *epoll_ctl*EPOLLOUT*) echo "socket buffer full: arm WRITABLE until the output drains" ;;
        *epoll_ctl*EPOLL_CTL_MOD*) echo "output drained: back to READABLE only" ;;
        *epoll_ctl*EPOLL_CTL_DEL*) echo "shutting down: stop watching the listener" ;;
        *recvfrom*MSG_DONTWAIT*) echo "signal-hook's self-pipe: which signal it was" ;;
        *recvfrom*EAGAIN*) echo "nothing more to read (here: unread input drained before close)" ;;
        *recvfrom*"= 0"*) echo "EOF: the client closed its side" ;;
        *recvfrom*) echo "the request(s); a short read proves the edge-triggered socket drained" ;;
        *read\(*"= 0"*) echo "end of the file" ;;
        *read\(*) echo "read a small file into the cache (inotify watches its directory first)" ;;
        *sendmsg*MSG_MORE*) echo "response head with MSG_MORE: it leaves in one packet with the body" ;;
        *writev*) echo "response head and body in one call (small bodies come from the cache)" ;;
        *sendfile*EAGAIN*) echo "socket buffer full: wait for WRITABLE" ;;
        *sendfile*) echo "file body, copied by the kernel, at most 256 KiB per call" ;;
        *readlink*) echo "resolve the path, symlink by symlink: it must stay inside the root" ;;
        *inotify_add_watch*) echo "watch the directory before caching a file from it" ;;
        *statx*.br*|*statx*.gz*) echo "a precompressed sibling to send instead?" ;;
        *statx*|*openat*) echo "open the file and trust only the metadata of what was opened" ;;
        *shutdown*) echo "no more responses: FIN first" ;;
        *close*) echo "close the descriptor" ;;
        *clone3*) echo "a new thread for this connection (thread-per-conn)" ;;
        *futex*) echo "thread synchronisation" ;;
        *) echo "" ;;
    esac
}

# Prints labelled lines. A long download repeats sendfile and the yield's epoll_wait: after
# the first dozen such lines the rest are counted, not printed.
print_labelled() {
    local line bulk=0 hidden=0
    while IFS= read -r line; do
        case "$line" in
            sendfile*|*"epoll_wait("*", 0)"*)
                bulk=$((bulk + 1))
                if [ "$bulk" -gt 12 ]; then hidden=$((hidden + 1)); continue; fi ;;
            *)
                if [ "$hidden" -gt 0 ]; then
                    printf '  %-96s  # %d more lines of the same sendfile / epoll_wait pattern\n' "..." "$hidden"
                    hidden=0
                fi ;;
        esac
        printf '  %-96.96s  # %s\n' "$line" "$(label "$line")"
    done
    if [ "$hidden" -gt 0 ]; then
        printf '  %-96s  # %d more lines of the same sendfile / epoll_wait pattern\n' "..." "$hidden"
    fi
}

scene() { # number, title, driver function, onepoll arguments...
    local number=$1 title=$2 driver=$3
    shift 3
    if [ -n "${only:-}" ] && [ "$only" != "$number" ]; then return; fi
    local port trace="$run/trace-$number" log="$run/log-$number"
    port=$(free_port)
    RUST_LOG=debug strace -f -qq -s 48 -e trace="$syscalls" -e signal=none -o "$trace" \
        ./target/release/onepoll "$run/root" --port "$port" --access-log off "$@" 2>"$log" &
    local strace_pid=$!
    wait_for_line "$log" "listening on" || { kill "$strace_pid"; return 1; }
    local mark
    mark=$(wc -l <"$trace")
    "$driver" "$port"
    sleep 0.3
    local server_pid
    server_pid=$(pgrep -P "$strace_pid" -x onepoll || true)
    [ -n "$server_pid" ] && kill -TERM "$server_pid"
    wait "$strace_pid" || true
    echo
    echo "== $number. $title"
    echo "   (onepoll $* ; strace -f -e trace=$syscalls)"
    tail -n +"$((mark + 1))" "$trace" | grep -v -e 'write(2,' -e '+++ exited' -e 'resumed>' | sed 's/^[0-9]* *//' |
        print_labelled
    echo "   -- the same scene in the log (RUST_LOG=debug):"
    grep -e ' conn=' -e 'shutting down' "$log" | sed 's/^\[[^]]*\] */     /' | head -n 20
}

keep_alive() { curl -s -o /dev/null -o /dev/null "http://127.0.0.1:$1/" "http://127.0.0.1:$1/style.css"; }
pipelined() {
    local requests="" i
    for i in $(seq 15); do requests+="GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"; done
    requests+="GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf "$requests" >&3
    cat <&3 >/dev/null
    exec 3<&-
}
download() { curl -s -o /dev/null "http://127.0.0.1:$1/big.bin"; }
idle() {
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n' >&3
    sleep 1.5 # longer than --idle-timeout 1: the server closes, cat sees EOF
    timeout 2 cat <&3 >/dev/null || true
    exec 3<&-
}

only=${1:-}
scene 1 "one keep-alive connection, two requests" keep_alive
scene 2 "16 pipelined requests in one write" pipelined
scene 3 "a 10 MiB download" download
scene 4 "an idle keep-alive connection meets --idle-timeout 1" idle --idle-timeout 1
scene 5 "scene 1 again, on --engine thread-per-conn" keep_alive --engine thread-per-conn
