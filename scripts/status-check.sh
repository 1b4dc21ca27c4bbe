#!/usr/bin/env bash
# The status listener's reports, read by the tools that read them in production:
#   /metrics by Prometheus' own `promtool check metrics` (Debian's prometheus package,
#     installed when missing), which lints names, HELP and TYPE lines and the text format;
#   /status by the parsing rule of nginx's stub_status exporters (the nginx-prometheus-exporter
#     and collectd's nginx plugin read these three lines with these fields).
# After a site served some 200s and a 404, with a 30-day certificate on an HTTPS listener. Loopback only, bounded
# (curl --max-time), about a second after the build; stops what it started by PID.
#   scripts/status-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need promtool prometheus
need openssl
cargo build --quiet
run=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$run"
}
trap cleanup EXIT

# With HTTPS too, so the certificate's expiry is among the samples promtool reads.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
    -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
./target/debug/onepoll www --port 0 --listen-tls 127.0.0.1:0 --tls-cert "$run/cert.pem" --tls-key "$run/key.pem" \
    --status-listen 127.0.0.1:0 --access-log off 2>"$run/server.log" &
pid=$!
wait_for_line "$run/server.log" 'status on http://'
site=$(grep -oE 'listening on http://[^/]+' "$run/server.log" | head -1 | sed 's|listening on ||')
status=$(grep -oE 'status on http://[^/]+' "$run/server.log" | head -1 | sed 's|status on ||')
for path in / /index.html /missing /style.css; do
    curl -s --max-time 5 -o /dev/null "$site$path"
done

curl -s --max-time 5 "$status/metrics" >"$run/metrics.txt"
promtool check metrics <"$run/metrics.txt"
expiry=$(awk '/^onepoll_certificate_expiry_seconds/ {print $2}' "$run/metrics.txt")
# A 30-day certificate: between 29 and 30 days left.
[ "$expiry" -gt $((29 * 86400)) ] && [ "$expiry" -le $((30 * 86400)) ] ||
    { echo "FAILED: certificate expiry $expiry s, not about 30 days" >&2; exit 1; }
echo "promtool check metrics: clean ($(grep -vc '^#' "$run/metrics.txt") samples)"

curl -s --max-time 5 "$status/status" >"$run/status.txt"
# The exporters' rule: "Active connections: N", then a header line, then accepts handled
# requests, then "Reading: N Writing: N Waiting: N".
grep -qE '^Active connections: [0-9]+ $' <(sed -n 1p "$run/status.txt")
grep -qxF 'server accepts handled requests' <(sed -n 2p "$run/status.txt")
grep -qE '^ [0-9]+ [0-9]+ [0-9]+ $' <(sed -n 3p "$run/status.txt")
grep -qE '^Reading: [0-9]+ Writing: [0-9]+ Waiting: [0-9]+ $' <(sed -n 4p "$run/status.txt")
requests=$(sed -n 3p "$run/status.txt" | awk '{print $3}')
[ "$requests" -ge 4 ] || { echo "FAILED: stub_status counts $requests requests, not 4 or more" >&2; exit 1; }
echo "stub_status: in nginx's layout, $requests requests counted"

# With --workers 2: the supervisor's sum of both workers' reports, through promtool too.
kill "$pid"; wait "$pid" 2>/dev/null || true
./target/debug/onepoll www --port 0 --workers 2 --status-listen 127.0.0.1:0 --access-log off 2>"$run/workers.log" &
pid=$!
wait_for_line "$run/workers.log" 'status on http://'
site=$(grep -oE 'listening on http://[^/ ]+' "$run/workers.log" | head -1 | sed 's|listening on ||')
status=$(grep -oE 'status on http://[^/]+' "$run/workers.log" | head -1 | sed 's|status on ||')
for _ in $(seq 20); do curl -s --max-time 5 -o /dev/null "$site/"; done
curl -s --max-time 5 "$status/metrics" >"$run/summed.txt"
promtool check metrics <"$run/summed.txt"
summed=$(awk '/^onepoll_requests_total\{class="2xx"\}/ {print $2}' "$run/summed.txt")
[ "$summed" -eq 20 ] || { echo "FAILED: the workers' sum says $summed requests, not 20" >&2; exit 1; }
echo "--workers 2: promtool clean, 20 requests summed over the workers"
