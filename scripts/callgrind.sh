#!/usr/bin/env bash
# User-space instructions per keep-alive request, counted by callgrind: the measure of the hot
# path that does not depend on the machine's mood (user CPU time does; see README, Benchmarks).
#   scripts/callgrind.sh            20,000 keep-alive requests, wrk -c10, a 128-byte file
#   scripts/callgrind.sh 16         the same, pipelined 16 deep
#   N=50000 scripts/callgrind.sh    more requests
# Builds an unstripped release binary (target/prof), runs it under valgrind (installed from
# Debian's package when missing) on a free loopback port, and leaves the profile in
# target/prof/callgrind.out for `callgrind_annotate --inclusive=yes target/prof/callgrind.out`.
# The count is for the whole program, start-up included (a few hundred thousand instructions).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pipeline=${1:-1}
requests=${N:-20000}
for tool in valgrind wrk curl; do need "$tool"; done
CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --quiet --target-dir target/prof
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
head -c 128 /dev/zero | tr '\0' 'a' >"$root/small.txt"
port=$(free_port)
out=target/prof/callgrind.out
valgrind --tool=callgrind --callgrind-out-file="$out" target/prof/release/onepoll "$root" \
    --port "$port" --access-log off --idle-timeout 120 >/dev/null 2>"$root/valgrind.log" &
server=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/small.txt" && break
    sleep 0.2
done
result=$(BENCH_REQUESTS=$requests BENCH_PIPELINE=$pipeline \
    wrk -t1 -c10 -d10s -s scripts/bench/requests.lua "http://127.0.0.1:$port/small.txt")
kill -INT "$server"
wait "$server" || true
answered=$(echo "$result" | grep -o "[0-9]* requests in" | cut -d' ' -f1)
total=$(grep -E "^(summary|totals):" "$out" | head -1 | awk '{print $2}')
echo "requests $answered, instructions $total, per request $((total / answered)) (pipeline $pipeline)"
