#!/usr/bin/env bash
# Two layering rules, each printing the offending lines and failing if any:
# 1. The protocol core (src/http/ semantics, src/http1/ and src/http2/ wire formats) stays sans-I/O: no sockets,
#    files, clock, logging or printing.
# 2. HTTP meaning does not lean on one wire format: src/http/'s own code (its tests may use the
#    HTTP/1.1 parser to build requests) never names crate::http1, so a second protocol's codec
#    sits beside http1 without touching src/http/.
set -euo pipefail
cd "$(dirname "$0")/.."
failed=0

forbidden='std::(fs|net|io|process|thread)|\bmio\b|\bslab\b|\blog::|\b(trace|debug|info|warn|error)!|print!|println!|eprintln!|dbg!|::now\(\)|TcpStream|UdpSocket|libc::'
if grep -rnE "$forbidden" src/http/ src/http1/ src/http2/; then
    echo "check-layering: src/http/, src/http1/ and src/http2/ must not do I/O (lines above)" >&2
    failed=1
fi

# Each file up to its `mod tests`, comments dropped; properties.rs is test-only.
for file in src/http/*.rs; do
    [[ $(basename "$file") == properties.rs ]] && continue
    awk -v file="$file" '/^mod tests/ { exit } !/^\s*\/\// && /http1/ { print file ":" FNR ": " $0; found = 1 }
        END { exit found }' "$file" || failed=1
done
if ((failed)); then
    echo "check-layering: a rule above is broken (src/http/ must not depend on src/http1/)" >&2
    exit 1
fi
echo "check-layering: src/http/, src/http1/ and src/http2/ are sans-I/O; src/http/ names no wire format"
