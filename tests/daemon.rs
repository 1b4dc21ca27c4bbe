//! onepoll as a long-running service: several listeners, systemd socket activation and
//! readiness, worker processes under a supervisor, privilege drop, chroot and a pid file.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, HELLO, IO_TIMEOUT, Server, Site, before_exec, get, logged, tool};

/// The PIDs of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().map(|pid| pid.parse().unwrap()).collect()
}

fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

/// Waits until `condition` holds, failing the test after `IO_TIMEOUT`.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: u32, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|line| line.strip_prefix(field)).unwrap().trim().to_owned()
}

#[test]
fn serves_every_listen_address_ipv4_and_ipv6() {
    let site = Site::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
    command.arg(site.root()).args(["--listen", "127.0.0.1:0", "--listen", "[::1]:0"]);
    let server = Server::spawn(command, "info");
    let v6_line = server.wait_for_log(&format!("{}://[::1]:", logged::READY));
    let v6: SocketAddr = v6_line.split("http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    let mut client = Client::connect(v6);
    client.send(&get("/hello.txt"));
    assert_eq!(client.response(false).body_text(), HELLO);
    assert_eq!(thread_count(server.pid()), 1, "two listeners, still one thread");
}

/// Starts onepoll with `sockets` the way systemd does (sd_listen_fds(3)), each named `http`.
/// systemd's own `systemd-socket-activate` drives the same start in
/// scripts/socket-activation-check.sh.
fn activated(site: &Site, sockets: &[OwnedFd], extra: &[&str]) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
    command.arg(site.root()).args(extra).env("RUST_LOG", "info");
    let named: Vec<(&dyn AsFd, &str)> = sockets.iter().map(|socket| (socket as &dyn AsFd, "http")).collect();
    before_exec::activate(&mut command, &named);
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start onepoll")
}

/// A listening TCP socket on a free loopback port, as a service manager would bind it.
fn tcp_socket() -> (OwnedFd, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener.into(), addr)
}

fn ask_with_retry(addr: &str) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if let Ok(stream) = TcpStream::connect(addr) {
            let mut client = Client::from_stream(stream);
            client.send(&get("/hello.txt"));
            return client.response(false).body_text();
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn socket_activation_serves_the_inherited_listeners() {
    let site = Site::new();
    let (sockets, addrs): (Vec<OwnedFd>, Vec<String>) = [tcp_socket(), tcp_socket()].into_iter().unzip();
    let mut child = activated(&site, &sockets, &["--port", "1"]); // --port is ignored when activated
    drop(sockets); // onepoll has its copies
    for addr in &addrs {
        assert_eq!(ask_with_retry(addr), HELLO);
    }
    assert_eq!(thread_count(child.id()), 1);
    child.kill().unwrap();
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    child.wait().unwrap();
    assert!(log.contains("using 2 listening sockets passed by the service manager"), "{log}");
    assert!(!log.contains(":1/"), "{log}");
}

#[test]
fn socket_activation_with_workers_shares_the_sockets() {
    let site = Site::new();
    let (socket, addr) = tcp_socket();
    let mut child = activated(&site, &[socket], &["--workers", "2"]);
    for _ in 0..20 {
        assert_eq!(ask_with_retry(&addr), HELLO);
    }
    assert_eq!(children(child.id()).len(), 2);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn tells_systemd_when_ready_and_when_stopping(engine: &str) {
    let site = Site::new();
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let envs = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    let mut server = Server::start_with_env(&site.root(), &["--engine", engine], &envs);
    let mut message = [0u8; 256];
    let n = notify.recv(&mut message).expect("READY=1");
    assert_eq!(&message[..n], b"READY=1\n");
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    server.signal("TERM");
    let n = notify.recv(&mut message).expect("STOPPING=1");
    assert_eq!(&message[..n], b"STOPPING=1\n");
    assert_eq!(server.wait_exit(IO_TIMEOUT), Some(0));
}

#[test]
fn workers_are_single_threaded_processes_restarted_when_they_die() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &["--workers", "2"], "info");
    eventually("two workers", || children(server.pid()).len() == 2);
    let workers = children(server.pid());
    for &worker in &workers {
        assert_eq!(thread_count(worker), 1, "worker {worker}");
    }
    for _ in 0..20 {
        assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    }
    // Each worker's log lines carry its index.
    server.wait_for_log(&format!("] worker=1 {}", logged::READY));
    common::send_signal(workers[0], "KILL");
    server.wait_for_log("worker 0 died (signal 9); restarting it");
    eventually("a replacement worker", || {
        let now = children(server.pid());
        now.len() == 2 && !now.contains(&workers[0])
    });
    // Served throughout: connections meant for the dead worker waited in its queue.
    for _ in 0..20 {
        assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    }
}

#[test]
fn workers_exit_when_the_supervisor_is_killed() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &["--workers", "2"], "info");
    eventually("two workers", || children(server.pid()).len() == 2);
    let workers = children(server.pid());
    drop(server); // SIGKILL: no chance to stop its workers itself
    eventually("the workers to exit", || {
        workers.iter().all(|worker| {
            let stat = fs::read_to_string(format!("/proc/{worker}/stat")).unwrap_or_default();
            stat.is_empty() || stat.rsplit(')').next().unwrap().trim_start().starts_with('Z')
        })
    });
}

#[test]
fn sigterm_drains_every_worker_then_the_supervisor_exits_zero() {
    let site = Site::new().with_big_file();
    let mut server = Server::start_with(&site.root(), &["--workers", "2", "--grace-period", "20"], "info");
    eventually("two workers", || children(server.pid()).len() == 2);
    let workers = children(server.pid());
    let mut download = server.connect();
    download.send(&get("/big.bin"));
    let mut got = download.stream.read(&mut [0u8; 4096]).unwrap();
    server.signal("TERM");
    server.wait_for_log(&format!("{} 2 workers", logged::STOPPING_WORKERS));
    eventually("the listeners to close", || TcpStream::connect(server.addr).is_err());
    got += download.read_slowly_to_end(Duration::from_millis(1));
    assert!(got > common::BIG_LEN, "the whole download arrived: {got}");
    assert_eq!(server.wait_exit(IO_TIMEOUT), Some(0));
    for worker in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{worker}")).exists(),
            "worker {worker} outlived the supervisor"
        );
    }
}

fn running_as_root() -> bool {
    status_field(std::process::id(), "Uid:").split_whitespace().next() == Some("0")
}

/// A site the unprivileged `nobody` can read.
fn world_readable_site() -> Site {
    let site = Site::new();
    fs::set_permissions(site.root(), fs::Permissions::from_mode(0o755)).unwrap();
    site
}

#[test]
fn drops_root_to_the_given_user_or_refuses_to_start() {
    let site = world_readable_site();
    if !running_as_root() {
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--port", "0", "--user", "nobody"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot drop privileges"));
        return;
    }
    let server = Server::start_with(&site.root(), &["--user", "nobody"], "info");
    assert_eq!(status_field(server.pid(), "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(server.pid(), "Gid:"), "65534\t65534\t65534\t65534");
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    let missing_user = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .arg(site.root())
        .args(["--port", "0", "--user", "no-such-user-here"])
        .output()
        .unwrap();
    assert_eq!(missing_user.status.code(), Some(1));
}

#[test]
fn chroot_confines_the_process_to_the_site() {
    let site = world_readable_site();
    if !running_as_root() {
        // chroot(2) needs root: without it the start fails with one line and exit 1.
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg("/")
            .args(["--port", "0", "--chroot"])
            .arg(site.root())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        eprintln!("not root: checked the chroot refusal only (CI runs as root and checks the chroot)");
        return;
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
    command.arg("/").args(["--port", "0", "--chroot"]).arg(site.root()).args(["--user", "nobody"]);
    let server = Server::spawn(command, "info");
    let root_link = fs::read_link(format!("/proc/{}/root", server.pid())).unwrap();
    assert_eq!(root_link, fs::canonicalize(site.root()).unwrap());
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    assert_eq!(server.exchange(&get("/link-outside.txt")).status, 404, "outside the chroot: gone");
}

#[test]
fn the_pid_file_holds_the_pid_while_running() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onepoll.pid");
    let mut server = Server::start_with(&site.root(), &["--pidfile", path.to_str().unwrap()], "info");
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", server.pid()));
    server.signal("TERM");
    assert_eq!(server.wait_exit(IO_TIMEOUT), Some(0));
    assert!(!path.exists(), "pid file left behind");
}

#[test]
fn sighup_reaches_the_workers_access_logs() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let server =
        Server::start_with(&site.root(), &["--workers", "2", "--access-log", log.to_str().unwrap()], "info");
    eventually("two workers", || children(server.pid()).len() == 2);
    assert_eq!(server.exchange(&get("/hello.txt")).status, 200);
    eventually("the first line", || fs::read_to_string(&log).unwrap_or_default().contains("/hello.txt"));
    fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    server.signal("HUP");
    eventually("both workers to reopen", || {
        server.log_lines().iter().filter(|line| line.contains(logged::LOG_REOPENED)).count() == 2
    });
    for _ in 0..10 {
        assert_eq!(server.exchange(&get("/missing")).status, 404);
    }
    eventually("ten lines in the new file", || {
        BufReader::new(fs::File::open(&log).unwrap()).lines().count() == 10
    });
}

/// `GET path` with `Connection: close` over a Unix socket; the whole response as text.
fn ask_unix(path: &std::path::Path, target: &str) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!("GET {target} HTTP/1.1\r\nHost: u\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serves_a_unix_socket_next_to_tcp() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("onepoll.sock");
    let unix = format!("unix:{}", socket.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
    command.arg(site.root()).args(["--listen", "127.0.0.1:0", "--listen", &unix]);
    let server = Server::spawn(command, "info");
    server.wait_for_log(&format!("listening on {unix} serving"));
    let response = ask_unix(&socket, "/hello.txt");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n") && response.ends_with(HELLO), "{response}");
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    // A Unix peer has no address: the access line says "-".
    let line = server.wait_for_log("\"GET /hello.txt HTTP/1.1\" 200 13 \"-\"");
    assert!(server.log_lines().iter().any(|l| l.starts_with("- - - [")), "{line}");
    let curl = tool("curl", "curl")
        .args(["-s", "--unix-socket", socket.to_str().unwrap(), "http://localhost/hello.txt"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), HELLO);
    assert_eq!(thread_count(server.pid()), 1);
}

#[test]
fn unix_sockets_are_refused_where_they_cannot_work() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    for extra in [&["--workers", "2"][..], &["--engine", "thread-pool"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--listen", &unix])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("onepoll: ") && (stderr.contains("unix") || stderr.contains("TCP")),
            "{stderr}"
        );
    }
}

#[test]
fn socket_activation_passes_a_unix_socket_too() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let mut child = activated(&site, &[UnixListener::bind(&socket).unwrap().into()], &[]);
    let response = ask_unix(&socket, "/hello.txt");
    assert!(response.ends_with(HELLO), "{response}");
    child.kill().unwrap();
    child.wait().unwrap();
}

// The engines that stop gracefully tell the service manager so.
engine_tests!(@each tells_systemd_when_ready_and_when_stopping: event_loop, process_per_conn);
