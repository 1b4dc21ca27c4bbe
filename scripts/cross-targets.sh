#!/usr/bin/env bash
# onepoll beyond Linux, checked from Linux (CI runs it): `cargo check --all-targets` for
# x86_64-apple-darwin and aarch64-apple-darwin, and clippy with -D warnings for
# x86_64-unknown-freebsd. Nothing is linked or run: it proves the Linux-only pieces are gated
# (src/files/changes.rs, src/sys.rs) and the rest builds. ring and zstd compile C even for a
# check; with no macOS SDK here, scripts/zig-cc compiles it with zig (pip's `ziglang`), which
# brings macOS's headers. Installs the rustup targets and ziglang when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd >/dev/null 2>&1
if ! python3 -c 'import ziglang' 2>/dev/null; then
    python3 -m pip install --quiet --break-system-packages ziglang 2>/dev/null \
        || python3 -m pip install --quiet ziglang
fi
export CC_x86_64_apple_darwin="$PWD/scripts/zig-cc" CC_aarch64_apple_darwin="$PWD/scripts/zig-cc"
for target in x86_64-apple-darwin aarch64-apple-darwin; do
    echo "cargo check --all-targets --target $target" >&2
    cargo check --quiet --all-targets --target "$target"
done
echo "cargo clippy --all-targets --target x86_64-unknown-freebsd -- -D warnings" >&2
cargo clippy --quiet --all-targets --target x86_64-unknown-freebsd -- -D warnings
echo "cross-targets: macOS (x86_64, aarch64) and FreeBSD check clean" >&2
