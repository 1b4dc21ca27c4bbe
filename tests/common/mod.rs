//! The harness every integration test uses: start the real `onepoll` binary on port 0 against a
//! temporary root, talk to it over raw sockets, and kill it (by PID, via `Child`) on drop.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod before_exec;
pub mod tls;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of the large fixture file (20 MiB).
pub const BIG_LEN: usize = 20 * 1024 * 1024;
/// How long any single read in a test may wait before the test fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Every stdout (access) and stderr (log) line so far, collected by two threads so the
    /// pipes never fill.
    log: Arc<Mutex<Vec<String>>>,
    /// Those two threads: they end when the process has exited and its pipes are read.
    readers: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts onepoll serving `root` on 127.0.0.1 with a port the OS picks.
    pub fn start(root: &Path) -> Server {
        Server::start_with(root, &[], "debug")
    }

    /// Starts onepoll with `--engine engine` (a CLI name such as `thread-pool`).
    pub fn start_engine(root: &Path, engine: &str) -> Server {
        Server::start_with(root, &["--engine", engine], "debug")
    }

    pub fn start_with(root: &Path, extra_args: &[&str], log_level: &str) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
        command.arg(root).args(["--addr", "127.0.0.1", "--port", "0"]).args(extra_args);
        Server::spawn(command, log_level)
    }

    /// Starts onepoll with at most `max_fds` open descriptors (as `ulimit -n` would).
    pub fn start_with_fd_limit(root: &Path, max_fds: libc::rlim_t, extra_args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
        command.arg(root).args(["--addr", "127.0.0.1", "--port", "0"]).args(extra_args);
        before_exec::limit_descriptors(&mut command, max_fds);
        Server::spawn(command, "debug")
    }

    /// Starts `command` (onepoll) and waits for its address.
    pub fn spawn(mut command: Command, log_level: &str) -> Server {
        let mut child = command
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start onepoll");
        let (addr_tx, addr_rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_sink = Arc::clone(&log);
        // Access lines (stdout) join the log lines (stderr) in one list, in arrival order.
        let stdout = child.stdout.take().unwrap();
        let access_sink = Arc::clone(&log);
        let access_reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                access_sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // The first listener's address, `http://` or (a TLS-only server) `https://`.
                if let Some(rest) = line.split(logged::READY).nth(1) {
                    let rest = rest.trim_start_matches("s://").trim_start_matches("://");
                    let addr = rest.split('/').next().unwrap().to_owned();
                    let _ = addr_tx.send(addr);
                }
                log_sink.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("onepoll did not report its address; log: {:?}", log.lock().unwrap()));
        Server { child, addr: addr.parse().unwrap(), log, readers: vec![access_reader, log_reader] }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends `request` on a fresh connection and returns the one response.
    pub fn exchange(&self, request: &[u8]) -> Response {
        let mut client = self.connect();
        client.send(request);
        client.response(request.starts_with(b"HEAD"))
    }

    /// `args` plus environment variables `envs`.
    pub fn start_with_env(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
        command.arg(root).args(["--addr", "127.0.0.1", "--port", "0"]).args(args).envs(envs.iter().copied());
        Server::spawn(command, "info")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Stops the server (SIGTERM, exit 0 expected) and returns every line it ever wrote: once
    /// its pipes are read to the end nothing more can arrive, so an absent line is absent.
    pub fn stop_and_collect(&mut self) -> Vec<String> {
        self.signal("TERM");
        assert_eq!(self.wait_exit(IO_TIMEOUT), Some(0), "no clean exit after SIGTERM");
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        self.log_lines()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|line| line.contains(needle)) {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line with {needle:?}; log: {:?}", self.log_lines());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the access line of `request_line` (`GET /x HTTP/1.1`) with `status`, and
    /// returns the body bytes it reports.
    pub fn wait_for_access(&self, request_line: &str, status: u16) -> u64 {
        let line = self.wait_for_log(&format!("\"{request_line}\" {status} "));
        let after = line.split(&format!("\" {status} ")).nth(1).unwrap();
        after.split(' ').next().unwrap().parse().unwrap()
    }

    /// Waits until exactly `count` log lines contain `needle` (access lines trail responses).
    pub fn wait_for_log_count(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let seen = self.log_lines().iter().filter(|line| line.contains(needle)).count();
            if seen == count {
                return;
            }
            assert!(
                seen < count && Instant::now() < deadline,
                "{seen} lines with {needle:?}, expected {count}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` (e.g. "TERM") to the server's own PID.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits up to `limit` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A memory figure of the server process in KiB from `/proc/<pid>/status`, e.g. `VmRSS`
    /// or `VmHWM` (the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// The server's own memory in KiB (heap, stacks: anonymous pages) as a proportional set
    /// size, summed over it and its children: a page a forked child still shares with its
    /// parent counts once in all. File pages are left out: the binary's are shared with every
    /// other server the tests run at the same time, so their share moves with those.
    pub fn proportional_kib(&self) -> u64 {
        let pss = |pid: u32| -> Option<u64> {
            let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            rollup
                .lines()
                .find_map(|line| line.strip_prefix("Pss_Anon:")?.trim().trim_end_matches(" kB").parse().ok())
        };
        let own = pss(self.pid()).expect("no Pss_Anon in /proc smaps_rollup (Linux 5.4 or later)");
        own + self.child_pids().into_iter().filter_map(pss).sum::<u64>()
    }

    /// The server's child processes (a process-per-connection server's clients).
    pub fn child_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children.split_whitespace().map(|pid| pid.parse().unwrap()).collect()
    }

    /// CPU time (user + system) the server has used so far, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // Fields 14 and 15 of proc(5), counted from the state field (3) here.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A panic caught by the engine keeps the server up, but it is still a bug.
        if !thread::panicking() {
            let panics: Vec<String> =
                self.log_lines().into_iter().filter(|line| line.contains(logged::PANICKED)).collect();
            assert!(panics.is_empty(), "the server panicked: {panics:?}");
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection with its own read buffer, so responses can be read one at a time;
/// over TCP, or over anything else that reads and writes (a TLS client session).
pub struct Client<S = TcpStream> {
    pub stream: S,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client { stream, buffer: Vec::new() }
    }

    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

impl<S: Read + Write> Client<S> {
    /// A client on a stream already set up (its timeouts included).
    pub fn over(stream: S) -> Client<S> {
        Client { stream, buffer: Vec::new() }
    }

    /// Reads until the server closes, 256 KiB at a time with `pause` between reads (a slow
    /// client); returns how many bytes came.
    pub fn read_slowly_to_end(&mut self, pause: Duration) -> usize {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = self.stream.read(&mut chunk).expect("read until the server closes");
            if n == 0 {
                return total;
            }
            total += n;
            thread::sleep(pause);
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send request");
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof) => {
                    return 0;
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads one response; `head_request` says the body is absent whatever Content-Length says.
    pub fn response(&mut self, head_request: bool) -> Response {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(head_len) =
                parsed.parse(&self.buffer).expect("a valid response head")
            {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let length: Option<usize> = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().expect("numeric Content-Length"));
                let body_len = match (head_request, status) {
                    (true, _) | (_, 304) => 0,
                    _ => length.expect("every response with a body has Content-Length"),
                };
                while self.buffer.len() < head_len + body_len {
                    assert!(self.fill() > 0, "connection closed mid-body");
                }
                let body = self.buffer[head_len..head_len + body_len].to_vec();
                self.buffer.drain(..head_len + body_len);
                return Response { status, headers, body };
            }
            assert!(
                self.fill() > 0,
                "connection closed before a response; got {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
        }
    }

    /// Waits (up to the read timeout) until the server closes; returns how long that took.
    pub fn time_until_closed(&mut self) -> Duration {
        let started = Instant::now();
        while self.fill() > 0 {}
        started.elapsed()
    }

    /// Asserts the server closes the connection without sending anything more.
    pub fn expect_closed(&mut self) {
        assert_eq!(self.fill(), 0, "expected close, got {:?}", String::from_utf8_lossy(&self.buffer));
        assert!(self.buffer.is_empty(), "unexpected bytes {:?}", String::from_utf8_lossy(&self.buffer));
    }

    /// Everything until the server closes.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buffer)
    }
}

/// A document root with one of each kind of thing the server must handle.
pub struct Site {
    pub dir: tempfile::TempDir,
    /// A directory outside the root holding `secret.txt`, for symlink-escape tests.
    pub outside: tempfile::TempDir,
}

pub const HELLO: &str = "hello, world\n";
pub const INDEX: &str = "<!DOCTYPE html><title>home</title>\n";
pub const SUB_INDEX: &str = "<!DOCTYPE html><title>sub</title>\n";

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("index.html"), INDEX).unwrap();
        fs::write(root.join("hello.txt"), HELLO).unwrap();
        fs::write(root.join("style.css"), "body { color: red }\n").unwrap();
        fs::write(root.join("app.js"), "console.log(1);\n").unwrap();
        fs::write(root.join("space name.txt"), "spaced\n").unwrap();
        fs::write(root.join("%2e%2e"), "literal percent name\n").unwrap();
        fs::write(root.join("empty.txt"), "").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/index.html"), SUB_INDEX).unwrap();
        fs::write(root.join("sub/page.txt"), "sub page\n").unwrap();
        fs::create_dir(root.join("no-index")).unwrap();
        fs::write(root.join("no-index/file.txt"), "x\n").unwrap();
        fs::write(outside.path().join("secret.txt"), "SECRET\n").unwrap();
        symlink(root.join("hello.txt"), root.join("link-inside.txt")).unwrap();
        symlink(outside.path().join("secret.txt"), root.join("link-outside.txt")).unwrap();
        symlink(outside.path(), root.join("dir-outside")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        Site { dir, outside }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Adds `big.bin`, `BIG_LEN` bytes of a pattern whose every offset is checkable.
    pub fn with_big_file(self) -> Site {
        fs::write(self.dir.path().join("big.bin"), big_content()).unwrap();
        self
    }
}

pub fn big_content() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i % 251) as u8).collect()
}

/// The diagnostic lines (stderr) that tests wait for, named once. They are what an operator
/// greps for too, so a change here is a change in the product. Close reasons come from the
/// server's own `CloseReason` text.
pub mod logged {
    use onepoll::drive::CloseReason;

    /// The ready line: everything that could fail at start did not.
    pub const READY: &str = "listening on http";
    pub const ACCEPT_PAUSED: &str = "accept paused";
    pub const SHUTTING_DOWN: &str = "shutting down";
    pub const LOG_REOPENED: &str = "SIGHUP: access log reopened";
    /// `auth: <file> reloaded (<n> users)`, after SIGHUP.
    pub const AUTH_RELOADED: &str = " reloaded (";
    pub const STOPPING_WORKERS: &str = "supervisor: stopping";
    /// A head that could not be parsed (debug level), followed by the error.
    pub const HEAD_REFUSED: &str = "request head refused: ";
    /// A finished response (debug level): `done: <status> with <bytes> bytes sent`.
    pub const DONE: &str = "done: ";
    /// A panic the engine caught: always a bug, and fails the test that caused it.
    pub const PANICKED: &str = "panicked";
    /// A trace line: `sendfile` met a full socket.
    pub const SENDFILE_BLOCKED: &str = "sendfile WouldBlock";
    /// Trace lines: WRITABLE interest armed (`+`) and dropped (`-`).
    pub const WRITABLE_ARMED: &str = "epoll_ctl +WRITABLE";
    pub const WRITABLE_DROPPED: &str = "epoll_ctl -WRITABLE";

    /// `close: <reason>`, as the connection logs it at debug level.
    pub fn close(reason: CloseReason) -> String {
        format!("close: {reason}")
    }
}

/// A command for an outside tool a test drives. A missing tool fails the test with what to
/// install (`.ci/run` installs each): a test never passes by skipping what it is about.
pub fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(found, "this test needs `{name}`: apt-get install {package} (.ci/run installs it)");
    Command::new(name)
}

/// curl with `args`, quiet but for errors, bounded to a minute.
pub fn curl(args: &[&str]) -> std::process::Output {
    tool("curl", "curl").args(["--silent", "--show-error", "--max-time", "60"]).args(args).output().unwrap()
}

/// Sends `signal` (a name without `SIG`, e.g. "HUP") to `pid`, as `kill -HUP pid` does.
pub fn send_signal(pid: u32, signal: &str) {
    let signal: nix::sys::signal::Signal = format!("SIG{signal}").parse().expect("a signal name");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("kill");
}

/// `GET path` over HTTP/1.1 with a Host field and optional extra lines.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// Runs each listed test function (which takes the engine's CLI name) once per engine, as
/// `test_name::engine_name`, so a failure names the engine it happened on: `all` on every
/// engine, `concurrent` on those that serve clients at the same time (all but `serial`).
#[macro_export]
macro_rules! engine_tests {
    (all: [$($all:ident),* $(,)?]; $(concurrent: [$($concurrent:ident),* $(,)?];)?) => {
        $( $crate::engine_tests!(@each $all: event_loop, serial, thread_per_conn, thread_pool, process_per_conn; coroutine); )*
        $($( $crate::engine_tests!(@each $concurrent: event_loop, thread_per_conn, thread_pool, process_per_conn; coroutine); )*)?
    };
    // After `;`: engines built only with their cargo feature (`coroutine`).
    (@each $test:ident: $($engine:ident),+ $(; $featured:ident)?) => {
        mod $test {
            $(
                #[test]
                fn $engine() {
                    super::$test(&stringify!($engine).replace('_', "-"));
                }
            )+
            $(
                #[cfg(feature = "coroutine")]
                #[test]
                fn $featured() {
                    super::$test(&stringify!($featured).replace('_', "-"));
                }
            )?
        }
    };
}
