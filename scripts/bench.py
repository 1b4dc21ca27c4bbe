#!/usr/bin/env python3
"""Benchmark onepoll's engines against nginx, lighttpd and h2o, on loopback only.

The server is pinned to core 0 and wrk to core 1 (taskset). For each server it measures
requests/s and p99 latency on a 128-byte file with keep-alive at 1, 10, 100 and 1000
connections, with `Connection: close`, and pipelined x16; MB/s on a 10 MiB file; server CPU
time per request, user and system apart (utime and stime from /proc before and after: user
time is the server's own code, system time the kernel's work for it); syscalls per request (strace -c
over a fixed number of requests); RSS idle and with idle keep-alive connections held open.
Every wrk run must see only 2xx responses, no socket errors, and at least the file's bytes per
response, or the run is marked invalid.

Writes results/bench-<stamp>.json, results/latest.json, results/latest.md and, with gnuplot,
results/rps.svg and results/memory.svg. Run it through scripts/bench.sh.
"""

import argparse
import datetime
import gzip
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "scripts" / "bench"
RESULTS = REPO / "results"
ONEPOLL = REPO / "target" / "release" / "onepoll"
# The same code linked statically against musl (bench.sh builds it when rustup has the target):
# no shared libc to map, which is most of the idle RSS on a small machine.
ONEPOLL_MUSL = REPO / "target" / "x86_64-unknown-linux-musl" / "release" / "onepoll"
SMALL_BYTES = 128
BIG_BYTES = 10 * 1024 * 1024
SERVER_CPU, CLIENT_CPU = "0", "1"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def command_name(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Server:
    """A server under test: its processes, their CPU time and memory."""

    def __init__(self, name, command, port, run_dir, cpus=SERVER_CPU, env=None):
        self.name, self.port, self.run_dir = name, port, run_dir
        self.scheme = "http"
        self.process = subprocess.Popen(
            ["taskset", "-c", cpus] + command,
            stdout=subprocess.DEVNULL,
            stderr=open(run_dir / f"{name}.stderr", "w"),
            env=dict(os.environ, RUST_LOG="warn", **(env or {})),
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not start; see {run_dir / (name + '.stderr')}")

    def pids(self):
        pids = [self.process.pid]
        for pid in pids:
            pids.extend(children(pid))
        return pids

    def workers(self):
        """Where requests are served: the server's own processes without children (nginx's
        worker), not a helper it started (h2o's backtrace annotator, a perl script)."""
        name = command_name(self.process.pid)
        leaves = [pid for pid in self.pids() if not children(pid) and command_name(pid) == name]
        return leaves or [self.process.pid]

    def cpu_seconds(self):
        """(user, system) CPU seconds of every process of the server so far: the live ones',
        plus, in the main process's `cutime`/`cstime`, those of the children it has reaped
        (a process-per-connection server's children come and go during a run)."""
        user = system = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a child that exited meanwhile: its time is in cutime once reaped
                continue
            user, system = user + int(fields[11]), system + int(fields[12])
            if pid == self.process.pid:
                user, system = user + int(fields[13]), system + int(fields[14])
        tick = os.sysconf("SC_CLK_TCK")
        return user / tick, system / tick

    def summed_kib(self, proc_file, field):
        """A `field:` line (in kB) of /proc/<pid>/<proc_file>, summed over the server's
        processes; a child that exited meanwhile counts for nothing."""
        total = 0
        for pid in self.pids():
            try:
                text = Path(f"/proc/{pid}/{proc_file}").read_text()
            except OSError:
                continue
            total += sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(field + ":"))
        return total

    def rss_kib(self):
        return self.summed_kib("status", "VmRSS")

    def pss_kib(self):
        """Proportional set size: pages shared by several processes (a forked child's copy of
        its parent's) count once in all, not once per process."""
        return self.summed_kib("smaps_rollup", "Pss")

    def stop(self):
        # Every process of the server by PID (nginx's worker would outlive a killed master).
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


def start(name, root, run_dir, baseline=None, tls=None, template=None, extra=()):
    """Starts `name` on a free port; with `tls` (certificate and key files) it serves HTTPS;
    a peer from `scripts/bench/<template>.conf.template` when given."""
    port = free_port()
    if name.startswith("onepoll"):
        engine = name.split(":", 1)[1]
        binary = {"onepoll-musl": ONEPOLL_MUSL, "onepoll-baseline": baseline}.get(name.split(":", 1)[0], ONEPOLL)
        listen = ["--port", str(port)] if not tls else \
            ["--listen-tls", f"127.0.0.1:{port}", "--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        command = [str(binary), str(root)] + listen + ["--engine", engine,
                   "--idle-timeout", "120", "--max-conns", "20000", "--access-log", "off"] + list(extra)
    else:
        template = (BENCH / f"{template or name + ('-tls' if tls else '')}.conf.template").read_text()
        config = template.replace("@ROOT@", str(root)).replace("@PORT@", str(port)).replace("@RUN@", str(run_dir))
        if tls:
            config = config.replace("@CERT@", str(tls[0])).replace("@KEY@", str(tls[1]))
        path = run_dir / f"{name}.conf"
        path.write_text(config)
        command = {
            "nginx": ["nginx", "-c", str(path), "-p", str(run_dir)],
            "lighttpd": ["lighttpd", "-D", "-f", str(path)],
            "h2o": ["h2o", "-c", str(path)],
            "caddy": ["caddy", "run", "--adapter", "caddyfile", "--config", str(path)],
        }[name]
    # Caddy: one core for the Go scheduler, and its data/config directories (certificate storage,
    # autosave) inside the run directory instead of $HOME.
    env = {"GOMAXPROCS": "1", "XDG_DATA_HOME": str(run_dir), "XDG_CONFIG_HOME": str(run_dir)} if name == "caddy" else None
    server = Server(name, command, port, run_dir, env=env)
    server.scheme = "https" if tls else "http"
    time.sleep(0.2)
    return server


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk(server, path, connections, seconds, headers=(), script=None, env=None):
    command = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for header in headers:
        command += ["-H", header]
    if script:
        command += ["-s", str(BENCH / script)]
    command.append(f"{server.scheme}://127.0.0.1:{server.port}{path}")
    user_before, system_before = server.cpu_seconds()
    stolen_before = cpu_ticks(SERVER_CPU)
    out = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, **(env or {}))).stdout
    stolen_after = cpu_ticks(SERVER_CPU)
    user_after, system_after = server.cpu_seconds()
    user, system = user_after - user_before, system_after - system_before
    cpu = user + system
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    read = re.search(r"requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    bytes_read = float(read.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[read.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1)) if re.search(r"requests in ([\d.]+)s", out) else seconds
    result = {
        "connections": connections,
        "requests": requests,
        "rps": round(requests / elapsed, 1),
        "p99_ms": round(float(p99.group(1)) * UNITS[p99.group(2)], 3) if p99 else None,
        "mb_per_s": round(bytes_read / elapsed / 1e6, 1),
        "cpu_us_per_request": round(cpu / requests * 1e6, 2) if requests else None,
        "user_us_per_request": round(user / requests * 1e6, 3) if requests else None,
        "system_us_per_request": round(system / requests * 1e6, 3) if requests else None,
        "user_seconds": round(user, 3),
        "system_seconds": round(system, 3),
        # The share of the server core's time the hypervisor gave to someone else.
        "steal_share": round((stolen_after[1] - stolen_before[1]) / max(1, stolen_after[0] - stolen_before[0]), 4),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "bytes_per_response": round(bytes_read / requests, 1) if requests else 0,
    }
    result["valid"] = bool(requests) and result["non_2xx"] == 0 and result["socket_errors"] == 0
    return result


def step(message):
    print(f"   {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def syscalls_per_request(server, requests, pipeline, seconds):
    out = server.run_dir / f"strace-{server.name}-{pipeline}.txt"
    tids = [int(tid) for pid in server.workers() for tid in os.listdir(f"/proc/{pid}/task")]
    attach = sum((["-p", str(tid)] for tid in tids), [])
    strace = subprocess.Popen(["strace", "-f", "-c", "-o", str(out)] + attach, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    step(f"strace, pipeline {pipeline}")
    env = {"BENCH_REQUESTS": str(requests), "BENCH_PIPELINE": str(pipeline)}
    # wrk always runs its full duration; requests.lua stops sending after `requests` responses.
    run = wrk(server, "/small.txt", 10 if server.name != "onepoll:serial" else 1, seconds, script="requests.lua", env=env)
    time.sleep(0.3)
    strace.send_signal(signal.SIGINT)
    strace.wait()
    # strace writes no file at all when every thread it was to attach to exited first (a
    # process per connection): no number then either.
    text = out.read_text() if out.exists() else ""
    total = [line for line in text.splitlines() if line.strip().endswith("total")]
    calls = int(total[-1].split()[3]) if total else 0
    # No calls at all means strace saw nothing (it attached too late or lost its summary): no
    # number rather than a false zero.
    return round(calls / run["requests"], 2) if run["requests"] and calls else None


def hold_idle_connections(server, count):
    """Opens `count` keep-alive connections that each completed one request, and holds them."""
    held = []
    request = b"GET /small.txt HTTP/1.1\r\nHost: bench\r\n\r\n"
    tls = None
    if server.scheme == "https":
        import ssl
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        if tls:
            conn = tls.wrap_socket(conn, server_hostname="localhost")
        held.append(conn)
        conn.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < SMALL_BYTES:
            chunk = conn.recv(4096)
            if not chunk:
                raise RuntimeError("closed")
            received += chunk
    return held


def memory(server, counts):
    """{count: RSS} and {count: PSS} in KiB with `count` idle clients held."""
    rss, pss = {}, {}
    for count in counts:
        try:
            held = hold_idle_connections(server, count)
        except OSError as error:  # a thread pool serves only as many clients as it has workers
            step(f"{count} idle connections not served ({error}); memory curve stops here")
            break
        time.sleep(0.2)
        rss[count], pss[count] = server.rss_kib(), server.pss_kib()
        for conn in held:
            conn.close()
        time.sleep(0.2)
    return rss, pss


def idle_memory(server, quick, result, what="connections"):
    """RSS (and PSS) with 0, 10, 100 (and 1000) idle keep-alive clients, on the fresh process,
    before load grows any pool: what each idle client costs."""
    step(f"memory with idle {what}")
    rss, pss = memory(server, [0, 10, 100] if quick else [0, 10, 100, 1000])
    result["rss_kib_by_idle_connections"], result["pss_kib_by_idle_connections"] = rss, pss


def measure(name, root, run_dir, quick, baseline=None):
    serial = name == "onepoll:serial"
    seconds = 1 if quick else 5
    levels = [1] if serial else ([100] if quick else [1, 10, 100, 1000])
    server = start(name, root, run_dir, baseline)
    result = {"server": name}
    try:
        result["idle_rss_kib"] = server.rss_kib()
        if not serial:
            idle_memory(server, quick, result)
        step("wrk runs")
        # The runs whose CPU split the goal rows read last longer: the kernel charges each
        # clock tick wholly to user or system time, so a user share of ~10% is a sample of
        # ~60 ticks in 5 s (±13%), and of ~240 in 20 s (±6.5%).
        cpu_seconds = seconds if quick else 20
        result["keep_alive"] = [wrk(server, "/small.txt", c, cpu_seconds if c == 100 else seconds) for c in levels]
        c = 1 if serial else 10
        result["close"] = wrk(server, "/small.txt", c, seconds, headers=["Connection: close"])
        result["pipelined"] = wrk(server, "/small.txt", c, cpu_seconds, script="requests.lua", env={"BENCH_PIPELINE": "16"})
        result["big_file"] = wrk(server, "/big.bin", 1 if serial else 4, seconds)
        requests = 2000 if quick else 20000
        strace_seconds = seconds if quick else seconds + 1
        result["syscalls_per_request"] = syscalls_per_request(server, requests, 1, strace_seconds)
        result["syscalls_per_pipelined_request"] = syscalls_per_request(server, requests, 16, strace_seconds)
    finally:
        server.stop()
    return result


def certificate(run_dir):
    """A self-signed ECDSA P-256 certificate for every server of an --https run."""
    cert, key = run_dir / "cert.pem", run_dir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o644)  # h2o and nginx workers run as nobody
    return cert, key


def measure_https(name, root, run_dir, quick, tls):
    """Over TLS: CPU per keep-alive request (c=100), per new connection with a full handshake
    (`Connection: close`, wrk resumes no session), per 10 MiB download, and memory per idle
    TLS keep-alive connection."""
    seconds = 1 if quick else 5
    serial = name == "onepoll:serial"  # one client at a time: one connection per run
    server = start(name, root, run_dir, tls=tls)
    result = {"server": name}
    try:
        result["idle_rss_kib"] = server.rss_kib()
        if not serial:
            idle_memory(server, quick, result, "TLS connections")
        step("wrk runs over TLS")
        result["keep_alive"] = wrk(server, "/small.txt", 1 if serial else 100, seconds if quick else 20)
        result["handshake"] = wrk(server, "/small.txt", 1 if serial else 10, seconds if quick else 10,
                                  headers=["Connection: close"])
        result["big_file"] = wrk(server, "/big.bin", 1 if serial else 4, seconds if quick else 10)
    finally:
        server.stop()
    return result


def markdown_https(report):
    head = ("| server | keep-alive rps | CPU µs/req | user µs/req | sys µs/req | handshakes/s "
            "| CPU µs per handshake | 10 MiB MB/s | CPU ms per 10 MiB | idle RSS (KiB) | kB per idle TLS conn (PSS) |")
    rows = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in report["results"]:
        def cell(run, key, scale=1):
            value = run.get(key)
            value = round(value * scale, 2) if value is not None and scale != 1 else value
            return f"{value}" + ("" if run["valid"] else " (invalid)")
        ka, hs, big = r["keep_alive"], r["handshake"], r["big_file"]
        rows.append("| " + " | ".join([
            r["server"], cell(ka, "rps"), cell(ka, "cpu_us_per_request"), cell(ka, "user_us_per_request"),
            cell(ka, "system_us_per_request"), cell(hs, "rps"), cell(hs, "cpu_us_per_request"),
            cell(big, "mb_per_s"), cell(big, "cpu_us_per_request", 1e-3),
            str(r["idle_rss_kib"]), str(per_idle_connection(r)),
        ]) + " |")
    return "\n".join(rows) + "\n"


def goal_row(label, ours, peer, theirs, target):
    """One goal-table line: onepoll's value against a peer's, as a ratio with its target."""
    ratio = round(ours / theirs, 2) if ours and theirs else None
    met = "yes" if ratio is not None and ratio <= target else "no"
    return f"| {label} | {ours} | {peer} {theirs} | {ratio} | ≤ {target}× | {met} |"


def goals_https(report):
    by_name = {r["server"]: r for r in report["results"]}
    ours = by_name.get("onepoll:event-loop")
    if not ours:
        return ""
    lines = ["| goal | onepoll | peer | ratio | target | met |", "|---|---|---|---|---|---|"]
    for label, key, peer, target in (("CPU µs per keep-alive request", "keep_alive", "h2o", 0.8),
                                     ("CPU µs per full handshake", "handshake", "lighttpd", 0.65),
                                     ("CPU per 10 MiB download", "big_file", "h2o", 0.85)):
        if peer not in by_name:
            continue
        a, b = ours[key]["cpu_us_per_request"], by_name[peer][key]["cpu_us_per_request"]
        lines.append(goal_row(label, a, peer, b, target))
    per_conn = per_idle_connection(ours)
    lines.append(f"| kB (PSS) per idle TLS keep-alive connection | {per_conn} | | | ≤ 4 | {'yes' if per_conn is not None and per_conn <= 4 else 'no'} |")
    if "plain_idle_rss_kib" in report:
        extra = round((ours["idle_rss_kib"] - report["plain_idle_rss_kib"]) / 1024, 2)
        lines.append(f"| idle RSS with a TLS listener, above without (MB) | {extra} | | | ≤ 1 | {'yes' if extra <= 1 else 'no'} |")
    return "\n".join(lines) + "\n"


def run_https(args, root, run_dir):
    servers = ["onepoll:event-loop"]
    if not args.quick:  # every engine over TLS too
        servers += ["onepoll:thread-pool", "onepoll:thread-per-conn", "onepoll:process-per-conn",
                    "onepoll:coroutine", "onepoll:serial"]
    servers += [name for name in ("nginx", "lighttpd", "h2o") if shutil.which(name)]
    if args.servers:
        servers = [s for s in args.servers.split(",") if s]
    tls = certificate(run_dir)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "scripts/bench.sh --https" + (" --quick" if args.quick else "") + (f" --servers {args.servers}" if args.servers else ""),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": cpu_model()},
        "results": [],
    }
    plain = start("onepoll:event-loop", root, run_dir)
    report["plain_idle_rss_kib"] = plain.rss_kib()
    plain.stop()
    for name in servers:
        print(f"== {name} (TLS)", file=sys.stderr, flush=True)
        report["results"].append(measure_https(name, root, run_dir, args.quick, tls))
    publish_https(report, "https-quick" if args.quick else "https")


def publish_https(report, stem):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    text = (f"Measured {report['date']} with `{report['command']}` on {report['machine']['cores']} cores "
            f"({report['machine']['cpu']}), server pinned to core {SERVER_CPU}, wrk to core {CLIENT_CPU}; "
            f"one self-signed ECDSA P-256 certificate for all.\n\n" + markdown_https(report) + "\n" + goals_https(report))
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


def h2_request_frames():
    """The client preface, an empty SETTINGS and `GET /small.txt` on stream 1, as raw frames:
    header fields as literals without indexing (RFC 7541 §6.2.2), so no HPACK library."""
    def frame(kind, flags, stream, payload):
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    block = b""
    for name, value in ((b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/small.txt"),
                        (b":authority", b"localhost")):
        block += b"\0" + bytes([len(name)]) + name + bytes([len(value)]) + value
    return (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b"")
            + frame(0x1, 0x5, 1, block))


def h2_settings_ack():
    return bytes([0, 0, 0, 0x4, 0x1, 0, 0, 0, 0])


def hold_idle_h2_connections(server, count):
    """Opens `count` TLS connections with ALPN h2 that each completed one request (the stream's
    END_STREAM seen, the server's SETTINGS acknowledged), and holds them."""
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    tls.set_alpn_protocols(["h2"])
    held, request = [], h2_request_frames()
    for _ in range(count):
        conn = tls.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=3),
                               server_hostname="localhost")
        if conn.selected_alpn_protocol() != "h2":
            raise RuntimeError(f"ALPN chose {conn.selected_alpn_protocol()}")
        held.append(conn)
        conn.sendall(request)
        unread, done = b"", False
        while not done:
            chunk = conn.recv(65536)
            if not chunk:
                raise RuntimeError("closed")
            unread += chunk
            while len(unread) >= 9 and len(unread) >= 9 + int.from_bytes(unread[:3], "big"):
                length, kind, flags = int.from_bytes(unread[:3], "big"), unread[3], unread[4]
                stream = int.from_bytes(unread[5:9], "big") & 0x7FFFFFFF
                if kind == 0x4 and not flags & 0x1:
                    conn.sendall(h2_settings_ack())
                if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
                    done = True
                unread = unread[9 + length:]
    return held


def h2load(server, path, clients, streams, seconds):
    """`h2load -c clients -m streams` for `seconds` over TLS (h2 by ALPN) on the client core,
    with the server's CPU time around it."""
    command = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{seconds}",
               "-T5", f"https://127.0.0.1:{server.port}{path}"]
    user_before, system_before = server.cpu_seconds()
    try:  # a server that never answers some connection would keep h2load waiting past -D
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    except subprocess.TimeoutExpired:
        out = ""  # no requests: the run is invalid
    user_after, system_after = server.cpu_seconds()
    user, system = user_after - user_before, system_after - system_before
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    finished = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s, ([\d.]+)(\w+)/s", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    protocol = re.search(r"Application protocol: (\S+)", out)
    requests = int(done.group(2)) if done else 0
    elapsed = float(finished.group(1)) * UNITS[finished.group(2)] / 1e3 if finished else seconds
    traffic = re.search(r"traffic: ([\d.]+)(\w+) \(\d+\) total", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    bytes_total = float(traffic.group(1)) * scale.get(traffic.group(2), 1) if traffic else 0
    result = {
        "clients": clients, "streams": streams, "requests": requests,
        "rps": round(requests / elapsed, 1) if elapsed else 0,
        "mb_per_s": round(bytes_total / elapsed / 1e6, 1) if elapsed else 0,
        "cpu_us_per_request": round((user + system) / requests * 1e6, 2) if requests else None,
        "user_us_per_request": round(user / requests * 1e6, 3) if requests else None,
        "system_us_per_request": round(system / requests * 1e6, 3) if requests else None,
        "protocol": protocol.group(1) if protocol else None,
        "failed": sum(int(g) for g in done.groups()[2:]) if done else None,
        "non_2xx": sum(int(g) for g in codes.groups()[1:]) if codes else None,
    }
    result["valid"] = bool(requests) and result["protocol"] == "h2" and result["failed"] == 0 and result["non_2xx"] == 0
    return result


def measure_http2(name, root, run_dir, quick, tls):
    """HTTP/2 over TLS: CPU per request for the 128-byte file at -c 100 -m 10 and -c 10 -m 100,
    CPU per 10 MiB download and MB/s (-c 4 -m 1), and memory per idle h2 connection (one
    request each, then held)."""
    seconds = 2 if quick else 10
    template = {"nginx": "nginx-h2", "lighttpd": "lighttpd-h2", "h2o": "h2o-h2", "caddy": "caddy-h2"}.get(name)
    server = start(name, root, run_dir, tls=tls, template=template)
    result = {"server": name}
    # The thread pool gives each connection a worker until it closes, a worker per core it may
    # run on by default (one, pinned to the server core): h2load's other connections would
    # wait for the whole run, so it gets only as many clients as it has workers, and no
    # idle-connection curve.
    workers = len(SERVER_CPU.split(",")) if name.endswith(":thread-pool") else None
    clients = (lambda wanted: min(wanted, workers)) if workers else (lambda wanted: wanted)
    if workers:
        result["note"] = f"-c {workers}: a worker per connection"
    try:
        result["idle_rss_kib"] = server.rss_kib()
        rss, pss = {}, {}
        if not workers:
            step("memory with idle h2 connections")
            for count in ([0, 10, 100] if quick else [0, 10, 100, 1000]):
                held = hold_idle_h2_connections(server, count)
                time.sleep(0.3)
                rss[count], pss[count] = server.rss_kib(), server.pss_kib()
                for conn in held:
                    conn.close()
                time.sleep(0.3)
        result["rss_kib_by_idle_connections"], result["pss_kib_by_idle_connections"] = rss, pss
        step("h2load runs")
        result["c100_m10"] = h2load(server, "/small.txt", clients(100), 10, seconds if quick else 20)
        result["c10_m100"] = h2load(server, "/small.txt", clients(10), 100, seconds)
        result["big_file"] = h2load(server, "/big.bin", clients(4), 1, seconds)
    finally:
        server.stop()
    return result


def markdown_http2(report):
    head = ("| server | rps c100 m10 | CPU µs/req | user µs/req | sys µs/req | rps c10 m100 | CPU µs/req "
            "| 10 MiB MB/s | CPU ms per 10 MiB | idle RSS (KiB) | kB per idle h2 conn (PSS) |")
    rows = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in report["results"]:
        def cell(run, key, scale=1):
            value = run.get(key)
            value = round(value * scale, 2) if value is not None and scale != 1 else value
            return f"{value}" + ("" if run["valid"] else " (invalid)")
        a, b, big = r["c100_m10"], r["c10_m100"], r["big_file"]
        rows.append("| " + " | ".join([
            r["server"] + (f" ({r['note']})" if r.get("note") else ""), cell(a, "rps"), cell(a, "cpu_us_per_request"),
            cell(a, "user_us_per_request"), cell(a, "system_us_per_request"), cell(b, "rps"), cell(b, "cpu_us_per_request"),
            cell(big, "mb_per_s"), cell(big, "cpu_us_per_request", 1e-3),
            str(r["idle_rss_kib"]), str(per_idle_connection(r)),
        ]) + " |")
    return "\n".join(rows) + "\n"


def goals_http2(report):
    by_name = {r["server"]: r for r in report["results"]}
    ours = by_name.get("onepoll:event-loop")
    if not ours:
        return ""
    lines = ["| goal | onepoll | peer | ratio | target | met |", "|---|---|---|---|---|---|"]
    if "h2o" in by_name:
        for label, key, target in (("CPU µs per request, -c 100 -m 10", "c100_m10", 0.8),
                                   ("CPU µs per request, -c 10 -m 100", "c10_m100", 0.8),
                                   ("CPU per 10 MiB download", "big_file", 0.85)):
            lines.append(goal_row(label, ours[key]["cpu_us_per_request"], "h2o", by_name["h2o"][key]["cpu_us_per_request"], target))
    others = {name: per_idle_connection(r) for name, r in by_name.items() if not name.startswith("onepoll")}
    others = {name: kb for name, kb in others.items() if kb is not None}
    per_conn = per_idle_connection(ours)
    if others:
        leanest = min(others, key=others.get)
        lines.append(goal_row("kB (PSS) per idle h2 connection", per_conn, leanest, others[leanest], 0.5))
    lines.append(f"| kB (PSS) per idle h2 connection | {per_conn} | | | ≤ 6 | {'yes' if per_conn is not None and per_conn <= 6 else 'no'} |")
    return "\n".join(lines) + "\n"


PAGE_ASSETS, PAGE_ASSET_BYTES, ADDED_RTT_MS = 30, 4096, 50


def page_load(root, run_dir, quick, tls):
    """What HTTP/2 gains a user: a page and its 30 small assets (4 KiB each) fetched by curl
    through scripts/bench/delay_proxy.py, which adds 50 ms to every round trip (this kernel has
    no netem), from onepoll over TLS. HTTP/1.1 as a browser does it: at most 6 connections to
    the origin, one request at a time on each; HTTP/2: one connection, every request at once.
    Each run is a first visit (new connections, full handshakes); all requests are made at once,
    as a browser's preload scanner makes them once the page's head arrives."""
    page = root / "page"
    page.mkdir(exist_ok=True)
    (page / "index.html").write_text("<!doctype html><title>page</title>\n")
    names = [f"asset{n:02}.css" for n in range(1, PAGE_ASSETS + 1)]
    for name in names:
        (page / name).write_bytes(bytes((i * 7 % 26) + 97 for i in range(PAGE_ASSET_BYTES)))
    server = start("onepoll:event-loop", root, run_dir, tls=tls)
    proxy_port = free_port()
    proxy = subprocess.Popen(["taskset", "-c", CLIENT_CPU, sys.executable, str(BENCH / "delay_proxy.py"),
                              str(proxy_port), str(server.port), str(ADDED_RTT_MS / 2)],
                             stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        assert proxy.stdout.readline().strip() == "ready"
        urls = [f"https://127.0.0.1:{proxy_port}/page/{name}" for name in ["index.html"] + names]
        for label, flags in (("HTTP/1.1, 6 connections", ["--http1.1", "--parallel-max", "6"]),
                             ("HTTP/2, 1 connection", ["--http2"])):
            times, valid, versions, connects = [], True, set(), set()
            for _ in range(3 if quick else 9):
                command = ["taskset", "-c", CLIENT_CPU, "curl", "-sk", "--parallel", *flags,
                           "-w", "%{http_code} %{http_version} %{num_connects}\n"]
                for url in urls:
                    command += ["-o", "/dev/null", url]
                started = time.monotonic()
                out = subprocess.run(command, capture_output=True, text=True).stdout
                times.append((time.monotonic() - started) * 1e3)
                answers = [line.split() for line in out.splitlines()]
                valid = valid and len(answers) == len(urls) and all(answer[0] == "200" for answer in answers)
                versions |= {answer[1] for answer in answers}
                connects.add(sum(int(answer[2]) for answer in answers))
            rows.append({"client": label, "median_ms": round(statistics.median(times)), "min_ms": round(min(times)),
                         "max_ms": round(max(times)), "runs": len(times), "http_versions": sorted(versions),
                         "connections": sorted(connects), "valid": valid})
    finally:
        proxy.kill()
        proxy.wait()
        server.stop()
    return {"assets": PAGE_ASSETS, "asset_bytes": PAGE_ASSET_BYTES, "added_rtt_ms": ADDED_RTT_MS, "rows": rows}


def markdown_page_load(page):
    lines = [f"Page load: the page and {page['assets']} assets of {page['asset_bytes']} bytes from onepoll over TLS, "
             f"curl through a relay adding {page['added_rtt_ms']} ms to each round trip "
             "(scripts/bench/delay_proxy.py), new connections each run:\n",
             "| client | median ms | min–max ms | runs | HTTP version | connections | all 200 |", "|---|---|---|---|---|---|---|"]
    for row in page["rows"]:
        lines.append(f"| {row['client']} | {row['median_ms']} | {row['min_ms']}–{row['max_ms']} | {row['runs']} | "
                     f"{', '.join(row['http_versions'])} | {', '.join(map(str, row['connections']))} | {'yes' if row['valid'] else 'NO'} |")
    h1, h2 = (row["median_ms"] for row in page["rows"])
    lines.append(f"\nHTTP/2 loads the page in {h2} ms instead of {h1} ms ({h1 / h2:.1f}× faster, "
                 f"{(h1 - h2) / page['added_rtt_ms']:.1f} round trips fewer).")
    return "\n".join(lines) + "\n"


def run_http2(args, root, run_dir):
    servers = ["onepoll:event-loop"]
    if not args.quick:  # every engine that serves concurrent clients serves h2 over TLS
        servers += ["onepoll:thread-pool", "onepoll:thread-per-conn", "onepoll:process-per-conn", "onepoll:coroutine"]
    servers += [name for name in ("h2o", "nginx", "lighttpd", "caddy") if shutil.which(name)]
    if args.servers:
        servers = [s for s in args.servers.split(",") if s]
    tls = certificate(run_dir)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "scripts/bench.sh --http2" + (" --quick" if args.quick else "") + (f" --servers {args.servers}" if args.servers else ""),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": cpu_model()},
        "results": [],
    }
    for name in servers:
        print(f"== {name} (HTTP/2)", file=sys.stderr, flush=True)
        report["results"].append(measure_http2(name, root, run_dir, args.quick, tls))
    print("== page load at +50 ms round trip, HTTP/1.1 against HTTP/2", file=sys.stderr, flush=True)
    report["page_load"] = page_load(root, run_dir, args.quick, tls)
    publish_http2(report, "http2-quick" if args.quick else "http2")


def publish_http2(report, stem):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    text = (f"Measured {report['date']} with `{report['command']}` on {report['machine']['cores']} cores "
            f"({report['machine']['cpu']}), server pinned to core {SERVER_CPU}, h2load to core {CLIENT_CPU}; "
            f"one self-signed ECDSA P-256 certificate for all, h2 chosen by ALPN.\n\n" + markdown_http2(report)
            + "\n" + goals_http2(report) + ("\n" + markdown_page_load(report["page_load"]) if "page_load" in report else ""))
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


JQUERY = Path("/usr/share/javascript/jquery/jquery.min.js")  # Debian's libjs-jquery
COMPRESSING = {"nginx": "nginx-gzip", "lighttpd": "lighttpd-deflate", "h2o": "h2o-compress"}


def fetch_head(server, path, accept):
    """(status, Content-Encoding, body bytes) of one GET with `accept` as Accept-Encoding."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", f"Accept-Encoding: {accept}",
                          "-w", "%{http_code} %{size_download} %header{content-encoding}",
                          f"http://127.0.0.1:{server.port}{path}"], capture_output=True, text=True).stdout.split()
    return int(out[0]), (out[2] if len(out) > 2 else "identity"), int(out[1])


def random_text(size, seed):
    """`size` bytes of hex digits: compressible by half, and slow to compress at high levels."""
    import random
    return random.Random(seed).randbytes(size // 2).hex().encode()


def run_compression(args, run_dir):
    """jquery.min.js (no precompressed sibling) asked for with `Accept-Encoding: br, gzip` by
    wrk -c20: server CPU per request and bytes per body, against nginx `gzip on`, lighttpd's
    mod_deflate with its disk cache and h2o `compress: ON`; then onepoll's p99 latency for a
    small file while 8 MiB files keep compressing, against the same without."""
    seconds = 2 if args.quick else 10
    root = run_dir / "root"
    shutil.copy(JQUERY, root / "jquery.min.js")
    servers = ["onepoll:event-loop"] + [name for name in COMPRESSING if shutil.which(name)]
    if args.servers:
        servers = [s for s in args.servers.split(",") if s]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "scripts/bench.sh --compression" + (" --quick" if args.quick else ""),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": cpu_model()},
        "file_bytes": JQUERY.stat().st_size,
        "results": [],
    }
    accept = "br, gzip"
    for name in servers:
        print(f"== {name} (compression)", file=sys.stderr, flush=True)
        server = start(name, root, run_dir, template=COMPRESSING.get(name))
        try:
            # The first requests pay for compressing (onepoll's child, lighttpd's cache write):
            # measured is the steady state after them.
            deadline = time.time() + 30
            while True:
                status, coding, body = fetch_head(server, "/jquery.min.js", accept)
                if coding != "identity" or time.time() > deadline:
                    break
                time.sleep(0.05)
            run = wrk(server, "/jquery.min.js", 20, seconds, headers=[f"Accept-Encoding: {accept}"])
            report["results"].append({"server": name, "status": status, "coding": coding, "body_bytes": body, "run": run})
        finally:
            server.stop()
    report["stall"] = compression_stall(root, run_dir, seconds)
    publish_compression(report, "compression-quick" if args.quick else "compression")


def compression_stall(root, run_dir, seconds):
    """p99 of keep-alive requests for a 128-byte file (wrk -c10) with nothing compressing, and
    while a helper keeps replacing an 8 MiB text file and asking for it (HEAD, br), so the
    compressor child (sharing the server's core) is busy for the whole run."""
    import threading
    import urllib.request
    big = root / "large.txt"
    versions = [random_text(8 * 1024 * 1024, seed) for seed in (1, 2)]
    big.write_bytes(versions[0])
    server = start("onepoll:event-loop", root, run_dir)
    result = {}
    try:
        result["quiet"] = wrk(server, "/small.txt", 10, seconds)
        stop, done = threading.Event(), []

        def churn():
            turn = 0
            while not stop.is_set():
                turn += 1
                (root / "large.tmp").write_bytes(versions[turn % 2])
                os.replace(root / "large.tmp", big)
                while not stop.is_set():
                    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/large.txt", method="HEAD",
                                                     headers={"Accept-Encoding": "br"})
                    with urllib.request.urlopen(request) as response:
                        if response.headers.get("Content-Encoding") == "br":
                            done.append(turn)
                            break
                    time.sleep(0.01)

        helper = threading.Thread(target=churn)
        helper.start()
        time.sleep(0.2)
        result["compressing"] = wrk(server, "/small.txt", 10, seconds)
        stop.set()
        helper.join()
        result["compressions_finished"] = len(done)
    finally:
        server.stop()
    return result


COLD_ROUNDS = 10


def run_cold_cache(args, root, run_dir):
    """What a download of a file that is not in the page cache costs everyone else: while one
    client reads a 300 MiB file at full speed, a second one asks for a small file over a
    keep-alive connection every 1 ms; the small file's latency percentiles, with the page cache
    dropped before each download (cold) and not (warm), COLD_ROUNDS rounds each, for this build and
    `--baseline` (an earlier one) in the same run."""
    import http.client
    import threading
    cold_file = root / "cold.bin"
    with open(cold_file, "wb") as out:
        for _ in range(300):
            out.write(os.urandom(1 << 20))
    names = ["onepoll:event-loop"] + (["onepoll-baseline:event-loop"] if args.baseline else [])
    report = {"command": "scripts/bench.sh --cold-cache" + (" --baseline BINARY" if args.baseline else ""),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": {"cores": os.cpu_count()}, "results": []}
    for name in names:
        server = start(name, root, run_dir, args.baseline)
        try:
            for mode in ("warm", "cold"):
                latencies, seconds = [], []
                for _ in range(COLD_ROUNDS):
                    subprocess.run(["sh", "-c", "sync"], check=True)
                    if mode == "cold":
                        Path("/proc/sys/vm/drop_caches").write_text("3\n")
                    else:
                        with open(cold_file, "rb") as warm:
                            while warm.read(1 << 22):
                                pass
                    done = threading.Event()

                    def download():
                        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                        connection.request("GET", "/cold.bin")
                        response = connection.getresponse()
                        while response.read(1 << 20):
                            pass
                        done.set()

                    probe = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                    probe.request("GET", "/small.txt")
                    probe.getresponse().read()
                    started = time.time()
                    downloader = threading.Thread(target=download)
                    downloader.start()
                    while not done.is_set():
                        sent = time.perf_counter()
                        probe.request("GET", "/small.txt")
                        probe.getresponse().read()
                        latencies.append((time.perf_counter() - sent) * 1000)
                        time.sleep(0.001)
                    downloader.join()
                    seconds.append(round(time.time() - started, 2))
                latencies.sort()
                pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)
                report["results"].append({"server": name, "mode": mode, "probes": len(latencies),
                                          "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(latencies[-1], 2),
                                          "download_s": seconds})
                print(f"   {name} {mode}: {report['results'][-1]}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cold-cache.json").write_text(json.dumps(report, indent=2))
    rows = ["| build | page cache | probes | p50 ms | p99 ms | max ms | 300 MiB download, s (each round) |",
            "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        rows.append(f"| {r['server']} | {r['mode']} | {r['probes']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} "
                    f"| {', '.join(str(x) for x in r['download_s'])} |")
    text = (f"Measured {report['date']} with `{report['command']}` on {os.cpu_count()} cores: a small file's latency "
            "(keep-alive, one request every 1 ms) while another client downloads a 300 MiB file, with the page "
            "cache dropped before each download (cold) or the file read first (warm).\n\n" + "\n".join(rows) + "\n")
    (RESULTS / "cold-cache.md").write_text(text)
    print(text)


def markdown_compression(report):
    rows = ["| server | coding sent | body bytes | req/s | CPU µs/req | user µs/req | sys µs/req | p99 ms |",
            "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        run = r["run"]
        mark = "" if run["valid"] else " (invalid)"
        rows.append(f"| {r['server']} | {r['coding']} | {r['body_bytes']} | {run['rps']}{mark} | {run['cpu_us_per_request']} "
                    f"| {run['user_us_per_request']} | {run['system_us_per_request']} | {run['p99_ms']} |")
    by_name = {r["server"]: r for r in report["results"]}
    ours, peer = by_name.get("onepoll:event-loop"), by_name.get("lighttpd")
    goals_text = ""
    if ours and peer:
        goals_text = "\n".join([
            "| goal | onepoll | peer | ratio | target | met |", "|---|---|---|---|---|---|",
            goal_row("CPU µs per compressed request", ours["run"]["cpu_us_per_request"], "lighttpd",
                     peer["run"]["cpu_us_per_request"], 0.9),
            goal_row("body bytes", ours["body_bytes"], "lighttpd", peer["body_bytes"], 0.95),
        ]) + "\n"
    stall = report.get("stall")
    stall_text = ""
    if stall:
        stall_text = (
            "\n| onepoll, 128-byte file, wrk -c10 | req/s | p99 ms | valid |\n|---|---|---|---|\n"
            f"| nothing compressing | {stall['quiet']['rps']} | {stall['quiet']['p99_ms']} | {stall['quiet']['valid']} |\n"
            f"| 8 MiB files compressing all along ({stall['compressions_finished']} finished) "
            f"| {stall['compressing']['rps']} | {stall['compressing']['p99_ms']} | {stall['compressing']['valid']} |\n")
    return "\n".join(rows) + "\n\n" + goals_text + stall_text


def publish_compression(report, stem):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    text = (f"Measured {report['date']} with `{report['command']}` on {report['machine']['cores']} cores "
            f"({report['machine']['cpu']}), server pinned to core {SERVER_CPU} (its compressor child too), "
            f"wrk -c20 to core {CLIENT_CPU}; jquery.min.js ({report['file_bytes']} bytes, no precompressed "
            f"sibling) with `Accept-Encoding: br, gzip`, after the first responses (steady state).\n\n"
            + markdown_compression(report))
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


def run_auth(args, root, run_dir):
    """CPU per keep-alive request (wrk -c100, 128-byte file, every request with the same
    `Authorization`) with --auth-file against without, alternating, two runs each."""
    seconds = 2 if args.quick else 10
    users = run_dir / "htpasswd"
    subprocess.run(["htpasswd", "-cbB", str(users), "alice", "secret"], check=True, capture_output=True)
    import base64
    header = "Authorization: Basic " + base64.b64encode(b"alice:secret").decode()
    runs = []
    for round_ in range(1 if args.quick else 2):
        for label, extra in (("auth off", []), ("auth on", ["--auth-file", str(users)])):
            print(f"== onepoll:event-loop {label} (round {round_ + 1})", file=sys.stderr, flush=True)
            server = start("onepoll:event-loop", root, run_dir, extra=extra)
            try:
                wrk(server, "/small.txt", 1, 1, headers=[header])  # the one bcrypt verification
                runs.append({"label": label, "run": wrk(server, "/small.txt", 100, seconds, headers=[header])})
            finally:
                server.stop()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["| onepoll, keep-alive c=100 | req/s | CPU µs/req | user µs/req | sys µs/req | valid |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        run = r["run"]
        lines.append(f"| {r['label']} | {run['rps']} | {run['cpu_us_per_request']} | {run['user_us_per_request']} "
                     f"| {run['system_us_per_request']} | {run['valid']} |")
    text = (f"Measured {date} with `scripts/bench.sh --auth{' --quick' if args.quick else ''}` on {os.cpu_count()} cores "
            f"({cpu_model()}), server pinned to core {SERVER_CPU}, wrk to core {CLIENT_CPU}; every request carries "
            f"the same `Authorization: Basic` (bcrypt cost 5, verified once, then remembered).\n\n" + "\n".join(lines) + "\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("auth-quick.md" if args.quick else "auth.md")).write_text(text)
    print(text)


def run_user_time(args, root, run_dir):
    """User CPU per request of onepoll against h2o and lighttpd, in alternating rounds: every
    server is started once, then each round measures each of them in turn (the order rotates)
    with keep-alive wrk -c100 and pipelined (c=10, 16 deep) runs. The kernel charges a whole
    clock tick to user or system time, and the machine drifts over minutes, so one run of each
    is a noisy sample; the goal rows read the median of the per-round ratios."""
    rounds, seconds = (2, 3) if args.quick else (args.rounds, args.round_seconds)
    names = ["onepoll:event-loop"] + (["onepoll-baseline:event-loop"] if args.baseline else [])
    names += [name for name in ("h2o", "lighttpd") if shutil.which(name)]
    servers = {}
    try:
        for name in names:
            servers[name] = start(name, root, run_dir, args.baseline)
            wrk(servers[name], "/small.txt", 100, 1)  # warm: the cache, the first connections
        table = []
        for round_ in range(rounds):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                print(f"   {time.strftime('%H:%M:%S')} round {round_ + 1}: {name}", file=sys.stderr, flush=True)
                keep_alive = wrk(servers[name], "/small.txt", 100, seconds)
                pipelined = wrk(servers[name], "/small.txt", 10, seconds, script="requests.lua",
                                env={"BENCH_PIPELINE": "16"})
                table.append({"round": round_ + 1, "server": name, "keep_alive": keep_alive, "pipelined": pipelined})
    finally:
        for server in servers.values():
            server.stop()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = ("scripts/bench.sh --user-time" + (" --quick" if args.quick else f" --rounds {rounds} --round-seconds {seconds}")
               + (" --baseline BINARY" if args.baseline else ""))
    hz = kernel_hz()
    report = {"date": date, "command": command, "rounds": rounds, "seconds": seconds, "kernel_hz": hz, "runs": table}
    RESULTS.mkdir(exist_ok=True)
    stem = "user-time-quick" if args.quick else "user-time"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=1))
    lines = ["| round | server | keep-alive req/s | user µs/req | sys µs/req | pipelined req/s | user µs/req pipelined "
             "| sys µs/req pipelined | steal % | valid |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        ka, pl = r["keep_alive"], r["pipelined"]
        steal = max(ka["steal_share"], pl["steal_share"]) * 100
        lines.append(f"| {r['round']} | {r['server']} | {ka['rps']} | {ka['user_us_per_request']} | {ka['system_us_per_request']} "
                     f"| {pl['rps']} | {pl['user_us_per_request']} | {pl['system_us_per_request']} | {steal:.1f} "
                     f"| {ka['valid'] and pl['valid']} |")
    # A round in which the hypervisor took more than 2% of the server core from any run.
    disturbed = {r["round"] for r in table if max(r["keep_alive"]["steal_share"], r["pipelined"]["steal_share"]) > 0.02}
    goals = ["| goal, onepoll / h2o | per-round ratios | median | all rounds pooled (95% interval) "
             "| rounds without steal pooled | target | met |", "|---|---|---|---|---|---|---|---|"]
    for label, key in (("user µs per keep-alive request (c=100)", "keep_alive"),
                       ("user µs per pipelined request", "pipelined")):
        ratios = []
        for round_ in range(1, rounds + 1):
            by_name = {r["server"]: r[key]["user_us_per_request"] for r in table if r["round"] == round_}
            if by_name.get("onepoll:event-loop") and by_name.get("h2o"):
                ratios.append(round(by_name["onepoll:event-loop"] / by_name["h2o"], 2))
        median = round(statistics.median(ratios), 3) if ratios else None
        pooled = pooled_user_ratio([r[key] for r in table if r["server"] == "onepoll:event-loop"],
                                   [r[key] for r in table if r["server"] == "h2o"], hz)
        calm = pooled_user_ratio([r[key] for r in table if r["server"] == "onepoll:event-loop" and r["round"] not in disturbed],
                                 [r[key] for r in table if r["server"] == "h2o" and r["round"] not in disturbed], hz)
        met = "yes" if pooled and pooled[2] <= 0.6 else "no"
        interval = lambda p: f"{p[0]:.3f} ({p[1]:.3f}–{p[2]:.3f})" if p else "–"
        calm_text = f"{interval(calm)}, {rounds - len(disturbed)} of {rounds}"
        goals.append(f"| {label} | {', '.join(map(str, ratios))} | {median} | {interval(pooled)} | {calm_text} "
                     f"| ≤ 0.6× | {met} |")
    text = (f"Measured {date} with `{command}` on {os.cpu_count()} cores ({cpu_model()}), servers pinned to core "
            f"{SERVER_CPU}, wrk to core {CLIENT_CPU}; {rounds} rounds of {seconds}-second runs, every server started "
            f"once and measured in turn, the order rotating; 128-byte file, access log off. The kernel "
            f"charges each {1000 // hz} ms clock tick ({hz} Hz) wholly to user or to system time, so user time is "
            f"a count of ticks: the pooled ratio is all rounds' user time over all their requests, and its 95% "
            f"interval is that counting's alone (binomial, in quadrature for the two servers); the goal is met "
            f"when the whole interval of all rounds is within the target. Steal is the share of the server "
            f"core the hypervisor gave elsewhere during a run (/proc/stat); rounds where a run lost more than 2% "
            f"are pooled apart as well.\n\n"
            + "\n".join(goals) + "\n\n" + "\n".join(lines) + "\n")
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


def cpu_ticks(cpu):
    """(all ticks, stolen ticks) of one CPU so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            ticks = [int(value) for value in fields[1:]]
            return sum(ticks[:8]), ticks[7]  # guest time is already inside user time
    return 0, 0


def kernel_hz():
    """The kernel's clock tick rate (CONFIG_HZ), which CPU time is accounted in; 100 (the
    fewest ticks, the widest intervals) when the kernel's config cannot be read."""
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")):
        try:
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        except OSError:
            continue
        found = re.search(r"^CONFIG_HZ=(\d+)$", text, re.MULTILINE)
        if found:
            return int(found.group(1))
    return 100


def pooled_user_ratio(ours, theirs, hz):
    """(ratio, low, high): user seconds per request over all `ours` runs against all `theirs`,
    with a 95% interval from tick counting: a run of n ticks of which a fraction p fell in user
    mode has a relative error of sqrt((1 - p) / (n p))."""
    def pooled(runs):
        user = sum(r["user_seconds"] for r in runs)
        busy = user + sum(r["system_seconds"] for r in runs)
        requests = sum(r["requests"] for r in runs)
        if not user or not requests:
            return None
        ticks, share = busy * hz, user / busy
        return user / requests, math.sqrt((1 - share) / (ticks * share))
    a, b = pooled(ours), pooled(theirs)
    if not a or not b:
        return None
    ratio, error = a[0] / b[0], math.hypot(a[1], b[1])
    return ratio, ratio * (1 - 1.96 * error), ratio * (1 + 1.96 * error)


def per_idle_connection(result):
    """kB per idle keep-alive connection: the slope from 10 to the most connections held, so
    the code and library pages that serving the first request touches are not counted. From
    PSS where measured: RSS counts a forked child's shared pages once per child."""
    measured = result.get("pss_kib_by_idle_connections") or result.get("rss_kib_by_idle_connections")
    points = {int(c): v for c, v in (measured or {}).items()}
    counts = sorted(c for c in points if c >= 10)
    if len(counts) < 2:
        return None
    low, high = counts[0], counts[-1]
    return round((points[high] - points[low]) * 1024 / (high - low) / 1000, 2)


def markdown(report):
    rows = []
    head = ("| server | rps c=1 | rps c=10 | rps c=100 | rps c=1000 | p99 c=100 (ms) | close rps | pipelined rps "
            "| 10 MiB MB/s | CPU µs/req | user µs/req | sys µs/req | CPU µs/req pipelined | user µs/req pipelined "
            "| sys µs/req pipelined | syscalls/req | syscalls/req pipelined "
            "| idle RSS (KiB) | kB per idle conn (PSS) |")
    rows.append(head)
    rows.append("|" + "---|" * head.count("|")[:-1] if False else "|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    for r in report["results"]:
        by_c = {k["connections"]: k for k in r["keep_alive"]}
        def cell(run, key):
            if not run:
                return "n/a"
            value = run.get(key)
            return ("%s" % value) + ("" if run["valid"] else " (invalid)")
        ka100 = by_c.get(100) or by_c.get(1)
        rows.append("| " + " | ".join([
            r["server"],
            cell(by_c.get(1), "rps"), cell(by_c.get(10), "rps"), cell(by_c.get(100), "rps"), cell(by_c.get(1000), "rps"),
            cell(by_c.get(100), "p99_ms"),
            cell(r["close"], "rps"), cell(r["pipelined"], "rps"), cell(r["big_file"], "mb_per_s"),
            cell(ka100, "cpu_us_per_request"), cell(ka100, "user_us_per_request"), cell(ka100, "system_us_per_request"),
            cell(r["pipelined"], "cpu_us_per_request"), cell(r["pipelined"], "user_us_per_request"),
            cell(r["pipelined"], "system_us_per_request"),
            str(r["syscalls_per_request"]), str(r["syscalls_per_pipelined_request"]),
            str(r["idle_rss_kib"]), str(per_idle_connection(r)),
        ]) + " |")
    return "\n".join(rows) + "\n"


def markdown_engines(report):
    """Every server at every keep-alive concurrency: throughput, CPU per request, and memory
    with 1000 idle clients (PSS, so a forked child's shared pages count once)."""
    levels = [1, 10, 100, 1000]
    head = ("| server | " + " | ".join(f"rps c={c}" for c in levels) + " | "
            + " | ".join(f"CPU µs/req c={c}" for c in levels) + " | MB with 1000 idle clients (PSS) |")
    rows = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in report["results"]:
        by_c = {k["connections"]: k for k in r["keep_alive"]}
        def cell(c, key):
            run = by_c.get(c)
            if not run:
                return "n/a"
            return f"{run[key]}" + ("" if run["valid"] else " (invalid)")
        pss = {int(c): v for c, v in (r.get("pss_kib_by_idle_connections") or {}).items()}
        idle = f"{pss[1000] / 1024:.1f}" if 1000 in pss else "n/a"
        rows.append("| " + " | ".join([r["server"]] + [cell(c, "rps") for c in levels]
                                      + [cell(c, "cpu_us_per_request") for c in levels] + [idle]) + " |")
    return "\n".join(rows) + "\n"


def goals(report):
    by_name = {r["server"]: r for r in report["results"]}
    ours, anchor = by_name.get("onepoll:event-loop"), by_name.get("lighttpd")
    if not ours:
        return ""
    def cpu(r, key):
        run = r[key] if key != "keep_alive" else ({k["connections"]: k for k in r[key]}.get(100) or r[key][-1])
        return run["cpu_us_per_request"]
    lines = ["| goal | onepoll | peer | ratio | target | met |", "|---|---|---|---|---|---|"]
    def ratio_row(label, key, target):
        if not anchor:
            return
        lines.append(goal_row(label, cpu(ours, key), "lighttpd", cpu(anchor, key), target))
    ratio_row("CPU µs per keep-alive request", "keep_alive", 0.6)
    ratio_row("CPU µs per pipelined request", "pipelined", 0.35)
    ratio_row("CPU µs per 10 MiB download", "big_file", 0.9)
    def abs_row(label, value, target):
        lines.append(f"| {label} | {value} | | | ≤ {target} | {'yes' if value is not None and value <= target else 'no'} |")
    if h2o := by_name.get("h2o"):
        for label, key in (("user µs per keep-alive request (c=100)", "keep_alive"), ("user µs per pipelined request", "pipelined")):
            def user(r):
                run = r[key] if key != "keep_alive" else ({k["connections"]: k for k in r[key]}.get(100) or r[key][-1])
                return run["user_us_per_request"]
            lines.append(goal_row(f"{label}, against h2o", user(ours), "h2o", user(h2o), 0.6))
    abs_row("syscalls per keep-alive request", ours["syscalls_per_request"], 2)
    abs_row("syscalls per pipelined request", ours["syscalls_per_pipelined_request"], 0.3)
    abs_row("kB (PSS) per idle keep-alive connection", per_idle_connection(ours), 0.5)
    abs_row("idle RSS (MB)", round(ours["idle_rss_kib"] / 1024, 2), 1.5)
    if musl := by_name.get("onepoll-musl:event-loop"):
        abs_row("idle RSS, static musl build (MB)", round(musl["idle_rss_kib"] / 1024, 2), 1.5)
    return "\n".join(lines) + "\n"


def plot(report):
    if not shutil.which("gnuplot"):
        return
    data_dir = Path(tempfile.mkdtemp(prefix="onepoll-plot-"))
    rps_lines, mem_lines = [], []
    for r in report["results"]:
        safe = r["server"].replace(":", "-")
        points = [(k["connections"], k["rps"]) for k in r["keep_alive"] if k["valid"]]
        if len(points) > 1:
            (data_dir / f"{safe}.rps").write_text("".join(f"{c} {v}\n" for c, v in points))
            rps_lines.append(f"'{data_dir}/{safe}.rps' with linespoints title '{r['server']}'")
        mem = r.get("rss_kib_by_idle_connections") or {}
        if len(mem) > 1:
            (data_dir / f"{safe}.mem").write_text("".join(f"{max(int(c), 1)} {v / 1024}\n" for c, v in sorted(mem.items(), key=lambda kv: int(kv[0]))))
            mem_lines.append(f"'{data_dir}/{safe}.mem' with linespoints title '{r['server']}'")
    common = "set terminal svg size 800,480 dynamic background rgb 'white'; set logscale x; set key left top; set grid;"
    if rps_lines:
        subprocess.run(["gnuplot", "-e", common + f"set output '{RESULTS}/rps.svg'; set xlabel 'keep-alive connections';"
                        f" set ylabel 'requests/s (128 B file)'; plot " + ", ".join(rps_lines)], check=False)
    if mem_lines:
        subprocess.run(["gnuplot", "-e", common + f"set output '{RESULTS}/memory.svg'; set xlabel 'idle keep-alive connections (0 drawn at 1)';"
                        f" set ylabel 'server RSS (MiB)'; plot " + ", ".join(mem_lines)], check=False)


def workers_scaling(root, run_dir, seconds=5):
    """`--workers 1` against `--workers 2`, each on both cores with wrk (2 threads) sharing them:
    on a 2-core machine the load generator competes with the second worker, so this shows what
    a second process buys when nothing is pinned, not a clean 2x."""
    rows = []
    for workers in (1, 2):
        port = free_port()
        command = [str(ONEPOLL), str(root), "--port", str(port), "--workers", str(workers),
                   "--idle-timeout", "120", "--access-log", "off"]
        server = Server(f"onepoll --workers {workers}", command, port, run_dir, cpus="0,1")
        try:
            time.sleep(0.5)
            row = {"workers": workers}
            for label, path, connections in (("keep_alive", "/small.txt", 100), ("big_file", "/big.bin", 4)):
                out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
                                      f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
                requests = int(re.search(r"(\d+) requests in", out).group(1))
                elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out) or re.search(r"Socket errors", out)
                row[label] = {"rps": round(requests / elapsed, 1), "valid": requests > 0 and not bad}
                if label == "big_file":
                    row[label]["mb_per_s"] = round(requests * BIG_BYTES / elapsed / 1e6, 1)
            rows.append(row)
        finally:
            server.stop()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one concurrency level, 1-second runs, 5 servers")
    parser.add_argument("--servers", default="", help="comma-separated subset, e.g. onepoll:event-loop,lighttpd")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the table and plots from an earlier run")
    parser.add_argument("--workers-scaling", action="store_true", help="only compare --workers 1 and 2 (unpinned)")
    parser.add_argument("--https", action="store_true", help="only the HTTPS rows (results/https.md)")
    parser.add_argument("--http2", action="store_true", help="only the HTTP/2 rows, h2load over TLS (results/http2.md)")
    parser.add_argument("--auth", action="store_true", help="only CPU per request with --auth-file against without")
    parser.add_argument("--user-time", action="store_true",
                        help="only user CPU per request against h2o and lighttpd, alternating rounds (results/user-time.md)")
    parser.add_argument("--rounds", type=int, default=6, help="--user-time: rounds (default 6)")
    parser.add_argument("--round-seconds", type=int, default=15,
                        help="--user-time: seconds of each run in a round (default 15)")
    parser.add_argument("--cold-cache", action="store_true",
                        help="a small file's latency beside a 300 MiB download, page cache dropped (results/cold-cache.md)")
    parser.add_argument("--compression", action="store_true",
                        help="only the compression rows and the stall check (results/compression.md)")
    parser.add_argument("--baseline", metavar="BINARY",
                        help="also measure this onepoll build (e.g. an earlier commit's) as onepoll-baseline:event-loop, "
                             "so before and after come from one run")
    args = parser.parse_args()
    if args.render:
        report = json.loads(Path(args.render).read_text())
        quick = "--quick" in report["command"]
        if "--https" in report["command"]:
            publish_https(report, "https-quick" if quick else "https")
        elif "--http2" in report["command"]:
            publish_http2(report, "http2-quick" if quick else "http2")
        elif "--compression" in report["command"]:
            publish_compression(report, "compression-quick" if quick else "compression")
        else:
            publish(report, "quick" if quick else "latest")
        return
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 held connections and more
    servers = ["onepoll:event-loop", "onepoll:thread-pool"]
    if not args.quick:  # --quick keeps to the default engine, one blocking engine and the anchors
        servers += ["onepoll:thread-per-conn", "onepoll:process-per-conn", "onepoll:coroutine", "onepoll:serial"]
    if ONEPOLL_MUSL.exists():
        servers.append("onepoll-musl:event-loop")
    servers += [name for name in ("nginx", "lighttpd", "h2o") if shutil.which(name)]
    if args.servers:
        servers = [s for s in args.servers.split(",") if s]
    if args.baseline:
        servers.insert(1, "onepoll-baseline:event-loop")
    run_dir = Path(tempfile.mkdtemp(prefix="onepoll-bench-"))
    run_dir.chmod(0o755)  # nginx's worker runs as nobody and must reach the root
    root = run_dir / "root"
    root.mkdir()
    (root / "small.txt").write_bytes(bytes((i % 26) + 97 for i in range(SMALL_BYTES)))
    (root / "big.bin").write_bytes(os.urandom(BIG_BYTES))
    # The modes that measure one thing each, apart from the full table.
    single_modes = ((args.user_time, lambda: run_user_time(args, root, run_dir)),
                    (args.auth, lambda: run_auth(args, root, run_dir)),
                    (args.compression, lambda: run_compression(args, run_dir)),
                    (args.https, lambda: run_https(args, root, run_dir)),
                    (args.http2, lambda: run_http2(args, root, run_dir)),
                    (args.cold_cache, lambda: run_cold_cache(args, root, run_dir)))
    for chosen, run in single_modes:
        if chosen:
            run()
            shutil.rmtree(run_dir, ignore_errors=True)
            return
    if args.workers_scaling:
        rows = workers_scaling(root, run_dir)
        lines = ["| workers | keep-alive req/s (c=100) | 10 MiB MB/s (c=4) | all responses 200 |", "|---|---|---|---|"]
        for row in rows:
            valid = row["keep_alive"]["valid"] and row["big_file"]["valid"]
            lines.append(f"| {row['workers']} | {row['keep_alive']['rps']} | {row['big_file']['mb_per_s']} | {'yes' if valid else 'NO'} |")
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        text = (f"Measured {date} with `scripts/bench.sh --workers-scaling` on {os.cpu_count()} cores "
                f"({cpu_model()}), server and wrk -t2 sharing all cores.\n\n" + "\n".join(lines) + "\n")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "workers.md").write_text(text)
        print(text)
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "scripts/bench.sh" + (" --quick" if args.quick else "") + (f" --servers {args.servers}" if args.servers else "")
                   + (f" --baseline {args.baseline}" if args.baseline else ""),
        "machine": {"cores": os.cpu_count(), "kernel": platform.release(), "cpu": cpu_model()},
        "results": [],
    }
    for name in servers:
        print(f"== {name}", file=sys.stderr, flush=True)
        report["results"].append(measure(name, root, run_dir, args.quick, args.baseline))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(report, indent=2))
    publish(report, "quick" if args.quick else "latest")
    shutil.rmtree(run_dir, ignore_errors=True)


def publish(report, stem):
    """results/<stem>.json and .md, and for full runs the plots the README shows."""
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    summary = (f"Measured {report['date']} with `{report['command']}` on {report['machine']['cores']} cores "
               f"({report['machine']['cpu']}), server pinned to core 0, wrk to core 1.\n\n{table}\n"
               f"Engines and peers by keep-alive concurrency:\n\n{markdown_engines(report)}\n{goals(report)}")
    (RESULTS / f"{stem}.md").write_text(summary)
    if stem == "latest":
        plot(report)
    print(summary)


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
