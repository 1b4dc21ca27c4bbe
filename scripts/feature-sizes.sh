#!/usr/bin/env bash
# What the optional features cost the default engine: the release binary's size, and the event
# loop's idle RSS and thread count, for the default build (coroutine, compression, acme), the
# default without `acme` (the built-in ACME client: rcgen, serde_json, src/acme/), and none.
#   scripts/feature-sizes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cargo build --release --quiet
cargo build --release --quiet --no-default-features --features coroutine,compression --target-dir target/no-acme
cargo build --release --quiet --no-default-features --target-dir target/no-default-features
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
printf 'hello\n' > "$root/hello.txt"
echo "| build | binary (bytes) | idle RSS (KiB), 3 starts | RSS after one request (KiB) | threads |"
echo "|---|---|---|---|---|"
for build in default:target/release/onepoll without-acme:target/no-acme/release/onepoll \
    no-default-features:target/no-default-features/release/onepoll; do
    name=${build%%:*} binary=${build#*:}
    idle=() after=() threads=
    for _ in 1 2 3; do
        log=$(mktemp)
        "$binary" "$root" --port 0 --access-log off 2>"$log" &
        pid=$!
        wait_for_line "$log" "listening on" || { kill "$pid"; exit 1; }
        port=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f3)
        idle+=("$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)")
        curl -s -o /dev/null "http://127.0.0.1:$port/hello.txt"
        after+=("$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)")
        threads=$(ls /proc/$pid/task | wc -l)
        kill "$pid"; wait "$pid" 2>/dev/null || true
        rm -f "$log"
    done
    echo "| $name | $(stat -c %s "$binary") | ${idle[*]} | ${after[*]} | $threads |"
done
