#!/usr/bin/env bash
# HTTP/2 conformance: the httpwg suite (httpwg-cli from crates.io, the h2spec cases rewritten
# in Rust by the loona project; h2spec itself is Go and not packaged here) against onepoll's
# prior-knowledge HTTP/2 on a loopback port, once per engine that serves concurrent clients.
# Installs httpwg-cli (pinned, --locked) into target/tools when missing. Every case must pass
# except those in EXPECTED_FAILURES, each listed with its reason in README ("HTTP/2"). Loopback
# only, bounded (about a second per engine after the build), stops each server it started by PID.
#   scripts/h2-conformance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

HTTPWG_VERSION=0.2.5
tools="$PWD/target/tools"
httpwg="$tools/bin/httpwg"
if [ ! -x "$httpwg" ]; then
    echo "installing httpwg-cli $HTTPWG_VERSION (cargo install)" >&2
    cargo install --quiet --locked httpwg-cli --version "$HTTPWG_VERSION" --root "$tools"
fi
cargo build --release --quiet

# A static file server answers POST with 405; this case expects an application that takes it.
EXPECTED_FAILURES=(
    "RFC 9113 :: 8. expressing http semantics in http2 :: sends headers frame with te trailers"
)

run=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$run"; }
trap cleanup EXIT

failed=0
for engine in event-loop thread-per-conn thread-pool process-per-conn coroutine; do
    ./target/release/onepoll www --port 0 --engine "$engine" --access-log off 2>"$run/server.log" &
    server_pid=$!
    wait_for_line "$run/server.log" "listening on"
    addr=$(grep -o 'http://[^/]*/' "$run/server.log" | head -1 | sed 's|http://||; s|/$||')
    # buffet (httpwg's runtime) preallocates its buffers; a few MiB are plenty for this suite.
    BUFFET_NUM_BUFS=1024 RUST_LOG=error timeout 120 "$httpwg" -v -a "$addr" >"$run/httpwg.log" 2>&1 || true
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    clean() { sed 's/\x1b\[[0-9;]*m//g' "$run/httpwg.log"; }
    summary=$(clean | grep -o 'Passed [0-9]*/[0-9]* tests' || true)
    [ -n "$summary" ] || { echo "$engine: httpwg did not finish:" >&2; clean | tail -20 >&2; exit 1; }
    echo "$engine: $summary"
    # A case that panics prints neither verdict: failed = ran and did not pass.
    clean | sed -n 's/^🔷 Running test: //p' | sort >"$run/ran"
    clean | sed -n 's/^✅ Test passed: //p' | sort >"$run/passed"
    while IFS= read -r case; do
        expected=0
        for known in "${EXPECTED_FAILURES[@]}"; do [ "$case" = "$known" ] && expected=1; done
        if ((expected)); then
            echo "  expected failure: $case"
        else
            echo "  FAILED: $case" >&2
            failed=1
        fi
    done < <(comm -23 "$run/ran" "$run/passed")
done
exit "$failed"
