#!/usr/bin/env bash
# Benchmarks onepoll's engines against nginx, lighttpd and h2o on loopback.
#   scripts/bench.sh            full run (about 5 minutes)
#   scripts/bench.sh --quick    about a minute (event loop, thread pool, nginx, lighttpd, h2o)
#   scripts/bench.sh --servers onepoll:event-loop,lighttpd
#   scripts/bench.sh --baseline OLD_BINARY   also measures an earlier build, in the same run
#   scripts/bench.sh --https    HTTPS rows only (onepoll, nginx, lighttpd, h2o; results/https.md)
#   scripts/bench.sh --http2    HTTP/2 over TLS with h2load against h2o, nginx, lighttpd and Caddy (results/http2.md)
#   scripts/bench.sh --compression   compressed jquery.min.js and the stall check (results/compression.md)
#   scripts/bench.sh --cold-cache [--baseline OLD]  a small file beside a cold 300 MiB download (results/cold-cache.md)
#   scripts/bench.sh --auth     CPU per request with --auth-file against without (results/auth.md)
#   scripts/bench.sh --user-time [--rounds 6 --round-seconds 15]  user CPU per request against h2o,
#                               alternating rounds, pooled with its tick-counting interval (results/user-time.md)
# Installs wrk, strace, gnuplot, nginx, lighttpd and h2o from Debian's packages when missing
# (needs root), builds the release binary, and writes results/ (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
for tool in wrk strace nginx lighttpd h2o caddy curl openssl; do need "$tool"; done
need gnuplot gnuplot-nox
need taskset util-linux
need htpasswd apache2-utils
need h2load nghttp2-client
# HTTPS rows (--https): lighttpd's TLS module is a package of its own.
[ -e /usr/lib/lighttpd/mod_openssl.so ] || need_package lighttpd-mod-openssl
# --compression: a real minified bundle with no sibling, Debian's jquery.min.js.
[ -e /usr/share/javascript/jquery/jquery.min.js ] || need_package libjs-jquery
cargo build --release --quiet
# A static musl build too (the small-machine option), when rustup has or can fetch the target.
musl=x86_64-unknown-linux-musl
if command -v rustup >/dev/null 2>&1 && { rustup target list --installed | grep -qx "$musl" || rustup target add "$musl" >/dev/null 2>&1; }; then
    # ring compiles C for the target: musl-gcc (see .cargo/config.toml).
    need musl-gcc musl-tools
    cargo build --release --quiet --target "$musl"
else
    echo "no $musl target: skipping onepoll-musl" >&2
fi
exec python3 scripts/bench.py "$@"
