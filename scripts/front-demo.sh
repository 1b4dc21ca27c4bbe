#!/usr/bin/env bash
# When one machine is not enough: a standard front (HAProxy, from Debian's packages) balancing
# three onepoll instances on loopback, with active health checks. The demo sends traffic,
# kills one instance mid-run, shows HAProxy mark it DOWN and keep every request answered,
# restarts it and shows it come back UP. Bounded (about 15 s), loopback only, and it stops
# every process it started, by PID.
#   scripts/front-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need haproxy
need curl
cargo build --release --quiet
run=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

front=$(free_port)
ports=($(free_port) $(free_port) $(free_port))
start_backend() { # index
    ./target/release/onepoll www --port "${ports[$1]}" --access-log off \
        --header "X-Backend: onepoll-$1" 2>"$run/backend-$1.log" &
    backend_pids[$1]=$!
    pids+=($!)
}
declare -a backend_pids
for i in 0 1 2; do start_backend "$i"; done

cat > "$run/haproxy.cfg" <<CFG
global
    log stderr format short local0 notice
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    # A failed attempt is retried on another instance: clients never see the dead one.
    retries 2
    option redispatch
backend onepolls
    balance roundrobin
    option httpchk
    http-check send meth HEAD uri /
    http-check expect status 200
    default-server check inter 300ms fall 2 rise 2
$(for i in 0 1 2; do echo "    server onepoll-$i 127.0.0.1:${ports[$i]}"; done)
frontend web
    bind 127.0.0.1:$front
    default_backend onepolls
    stats enable
    stats uri /haproxy-stats
CFG
haproxy -f "$run/haproxy.cfg" -db 2>"$run/haproxy.log" &
pids+=($!)
sleep 1

tally() { # requests
    local ok=0 other=0 seen=""
    for _ in $(seq "$1"); do
        line=$(curl -s -o /dev/null -w '%{http_code} %header{x-backend}' "http://127.0.0.1:$front/" || echo "000 -")
        [ "${line%% *}" = 200 ] && ok=$((ok + 1)) || other=$((other + 1))
        seen="$seen ${line#* }"
    done
    echo "  $1 requests: $ok answered 200, $other failed; served by:$(echo $seen | tr ' ' '\n' | sort | uniq -c | awk '{printf " %s×%s", $2, $1}')"
}
status() { curl -s "http://127.0.0.1:$front/haproxy-stats;csv" | awk -F, '$1=="onepolls" && $2 ~ /^onepoll/ {printf " %s=%s", $2, $18}'; echo; }

echo "HAProxy on 127.0.0.1:$front balancing onepoll on ports ${ports[*]}"
echo "1. all three up:$(status)"
tally 30
echo "2. killing onepoll-1 (pid ${backend_pids[1]})"
kill "${backend_pids[1]}"
tally 30
sleep 1
echo "   health checks after 1 s:$(status)"
tally 30
echo "3. restarting onepoll-1"
start_backend 1
sleep 1.5
echo "   health checks after 1.5 s:$(status)"
tally 30
