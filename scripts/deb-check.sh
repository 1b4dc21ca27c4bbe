#!/usr/bin/env bash
# The amd64 .deb end to end, on this machine (needs root; CI runs it): builds it, lintian must
# report no error, installs it with dpkg -i, runs `onepoll --version`, reads the man page,
# serves the default root on a free port and fetches the page, then removes and purges the
# package and checks that nothing is left behind: a snapshot of /etc, /usr and /var before the
# install and after the purge must be the same, except dpkg's own records and caches.
# Where systemd is not PID 1 (a container, CI) nothing may have been started by the package.
# Bounded (a release build, then seconds); stops the server it starts by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deb-check: needs root (dpkg -i)" >&2; exit 1; }
. scripts/lib.sh
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb --quiet
need lintian
need curl
if dpkg -s onepoll >/dev/null 2>&1; then
    echo "deb-check: a onepoll package is already installed; refusing to touch it" >&2
    exit 1
fi
cargo build --release --quiet
cargo run --quiet --example gen_docs -- target/docs >/dev/null
deb=$(cargo deb --no-build --quiet 2>/dev/null | tail -1)
[ -f "$deb" ] || deb=$(ls -t target/debian/onepoll_*_amd64.deb | head -1)
echo "package: $deb ($(stat -c %s "$deb") bytes)"
lint=$(lintian "$deb" 2>&1 | grep -v "running with root privileges" || true)
echo "lintian: ${lint:-clean}"
if echo "$lint" | grep -q '^E:'; then echo "deb-check: lintian reports errors" >&2; exit 1; fi

snapshot() { # every path under /etc, /usr and /var but dpkg's records and caches
    find /etc /usr /var -xdev 2>/dev/null \
        | grep -vE '^/var/(lib/dpkg|cache|log|lib/apt|tmp|lib/man-db|lib/lintian)(/|$)' | sort
}
run=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    dpkg -s onepoll >/dev/null 2>&1 && dpkg --purge onepoll >/dev/null 2>&1 || true
    rm -rf "$run"
}
trap cleanup EXIT
snapshot >"$run/before"

dpkg -i "$deb" >/dev/null
echo "installed: $(onepoll --version)"
[ "$(command -v onepoll)" = /usr/bin/onepoll ]
[ -f /var/www/onepoll/index.html ] || { echo "no default page" >&2; exit 1; }
[ -f /etc/default/onepoll ] && grep -q '^ONEPOLL_ROOT=/var/www/onepoll$' /etc/default/onepoll
grep -q -- '--config /etc/onepoll/onepoll.toml' /lib/systemd/system/onepoll.service
# The shipped file, every line a comment, checks as the service would read it.
(set -a; . /etc/default/onepoll; set +a; exec onepoll --config /etc/onepoll/onepoll.toml --check-config) >"$run/check.txt"
grep -q '^configuration ok$' "$run/check.txt"
page=$(zcat /usr/share/man/man1/onepoll.1.gz)
grep -q '^\.SH "EXIT STATUS"' <<<"$page"
[ -f /usr/share/bash-completion/completions/onepoll ] && [ -f /usr/share/zsh/vendor-completions/_onepoll ]
installed_running() { # a process of the installed binary (others, from target/, may be a test's)
    local pid
    for pid in $(pgrep -x onepoll); do
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/onepoll ] && return 0
    done
    return 1
}
if [ ! -d /run/systemd/system ] && installed_running; then
    echo "deb-check: something started onepoll where systemd does not run" >&2
    exit 1
fi
# The settings file as the service would read it, on a free port instead of the socket unit.
(set -a; . /etc/default/onepoll; set +a; exec onepoll --config /etc/onepoll/onepoll.toml --port 0 --access-log off) 2>"$run/server.log" &
server_pid=$!
wait_for_line "$run/server.log" "listening on"
url=$(grep -o 'http://[^/]*/' "$run/server.log" | head -1)
body=$(curl --silent --fail "$url")
grep -q "onepoll works" <<<"$body"
echo "served: $url from /var/www/onepoll"
kill "$server_pid"; wait "$server_pid" || true; server_pid=""

dpkg --remove onepoll >/dev/null
[ ! -e /usr/bin/onepoll ] && [ -f /etc/default/onepoll ] && [ -f /etc/onepoll/onepoll.toml ] # conffiles stay until purge
[ ! -e /var/www/onepoll ] # its unchanged default page went with it
dpkg --purge onepoll >/dev/null
snapshot >"$run/after"
if ! diff "$run/before" "$run/after"; then
    echo "deb-check: the purge left the paths above behind" >&2
    exit 1
fi
echo "removed and purged: nothing left behind"
