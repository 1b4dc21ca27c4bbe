#!/usr/bin/env bash
# Builds onepoll for the small machines people run it on (64-bit Raspberry Pi OS / arm64
# VPS: aarch64; 32-bit Raspberry Pi OS: armv7) and a static musl x86_64 binary, prints their
# sizes, and smoke-tests the ARM builds under qemu-user on loopback: a page, a range, and a
# graceful SIGTERM. Installs the rustup targets and Debian's cross linkers and qemu-user if
# missing. Bounded (about 2 minutes, mostly compiling); stops what it starts, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl)
rustup target add "${targets[@]}" >/dev/null
. scripts/lib.sh
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
need qemu-aarch64 qemu-user
need musl-gcc musl-tools # ring's C for the musl target
need curl
cargo build --release --quiet
printf '%-32s %10s\n' target "bytes"
printf '%-32s %10s\n' "x86_64-unknown-linux-gnu" "$(stat -c %s target/release/onepoll)"
for target in "${targets[@]}"; do
    cargo build --release --quiet --target "$target"
    printf '%-32s %10s\n' "$target" "$(stat -c %s "target/$target/release/onepoll")"
done
port=$(free_port)
for run in "aarch64-unknown-linux-gnu qemu-aarch64 /usr/aarch64-linux-gnu" \
           "armv7-unknown-linux-gnueabihf qemu-arm /usr/arm-linux-gnueabihf"; do
    set -- $run
    "$2" -L "$3" "target/$1/release/onepoll" www --port "$port" --access-log off 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    page=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
    range=$(curl -s -o /dev/null -w '%{http_code}' -r 0-9 "http://127.0.0.1:$port/pattern.png")
    kill -TERM "$pid"
    status=0; wait "$pid" || status=$?
    echo "$1 under $2: GET / -> $page, Range -> $range, exit after SIGTERM -> $status"
    [ "$page" = 200 ] && [ "$range" = 206 ] && [ "$status" = 0 ]
done
