#!/usr/bin/env bash
# Builds the release set into dist/: .deb packages for amd64, arm64 and armhf (cargo-deb),
# static musl tarballs for x86_64 and aarch64 (the binary, man page, completions, README,
# CHANGELOG, LICENSE), and SHA256SUMS. Installs what it needs when missing: the rustup
# targets, Debian's cross compilers (ring and zstd compile C), musl-tools, cargo-deb.
#   scripts/release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
debs=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
musl=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
rustup target add "${debs[@]}" "${musl[@]}" >/dev/null
. scripts/lib.sh
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
need musl-gcc musl-tools
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --quiet

rm -rf dist && mkdir -p dist
cargo run --quiet --example gen_docs -- target/docs >/dev/null
for target in "${debs[@]}"; do
    echo "== $target (.deb)" >&2
    cargo build --release --quiet --target "$target"
    # The release profile strips already; the host's strip cannot read a foreign binary.
    cargo deb --no-build --no-strip --quiet --target "$target" --output dist/ >/dev/null
done
for target in "${musl[@]}"; do
    echo "== $target (static tarball)" >&2
    cargo build --release --quiet --target "$target"
    name="onepoll-$version-${target%%-*}-linux-musl"
    stage="target/stage/$name"
    rm -rf "$stage" && mkdir -p "$stage"
    cp "target/$target/release/onepoll" target/docs/onepoll.1 README.md CHANGELOG.md LICENSE "$stage/"
    cp -r target/docs/completions "$stage/"
    tar -C target/stage -czf "dist/$name.tar.gz" --owner=0 --group=0 "$name"
done
(cd dist && sha256sum -- * > SHA256SUMS)
echo "dist/:" >&2
ls -l dist >&2
