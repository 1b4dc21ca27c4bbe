#!/usr/bin/env bash
# The protocol core in src/http/ must stay sans-I/O: no sockets, files, clock, logging or
# printing. This greps for the ways in; it prints each offending line and fails if any.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='std::(fs|net|io|process|thread)|\bmio\b|\bslab\b|\blog::|\b(trace|debug|info|warn|error)!|print!|println!|eprintln!|dbg!|::now\(\)|TcpStream|UdpSocket|libc::'
if grep -rnE "$forbidden" src/http/; then
    echo "check-layering: src/http/ must not do I/O (lines above)" >&2
    exit 1
fi
echo "check-layering: src/http/ is sans-I/O"
