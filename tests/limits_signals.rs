//! Hostile and broken clients, resource exhaustion and signals. Every time bound here is a
//! generous multiple of the configured limit: these check that limits act, not how fast.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, HELLO, Server, Site, get, logged};
use onepoll::drive::{CloseReason, Timeout};

#[test]
fn a_slowloris_head_is_closed_at_the_deadline_while_others_are_served() {
    let site = Site::new();
    let server =
        Server::start_with(&site.root(), &["--header-timeout", "1", "--idle-timeout", "30"], "debug");
    let mut slow = server.connect();
    slow.stream.set_nodelay(true).unwrap();
    let started = Instant::now();
    let trickle = b"GET /hello.txt HTTP/1.1\r\nX-Slow: ";
    let mut closed_after = None;
    for i in 0..40 {
        // One byte every 100 ms: always some progress, never a whole head.
        if slow.stream.write_all(&[trickle[i.min(trickle.len() - 1)]]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Meanwhile another client is served promptly.
        let asked = Instant::now();
        assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
        assert!(asked.elapsed() < Duration::from_secs(1), "others must not wait on the slow client");
        thread::sleep(Duration::from_millis(100));
        if server
            .log_lines()
            .iter()
            .any(|line| line.contains(&logged::close(CloseReason::Timeout(Timeout::Header))))
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickling head was never cut off");
    assert!(closed_after >= Duration::from_secs(1), "closed too early: {closed_after:?}");
    assert!(closed_after < Duration::from_secs(5), "closed too late: {closed_after:?}");
    slow.time_until_closed();
}

#[test]
fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &["--idle-timeout", "1"], "debug");
    let mut client = server.connect();
    client.send(&get("/hello.txt"));
    assert_eq!(client.response(false).body_text(), HELLO);
    thread::sleep(Duration::from_millis(300));
    // Activity restarts the clock; it cannot run out sooner than a second after this send.
    let sent = Instant::now();
    client.send(&get("/hello.txt"));
    assert_eq!(client.response(false).body_text(), HELLO);
    client.time_until_closed();
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(5), "{waited:?}");
    server.wait_for_log(&logged::close(CloseReason::Timeout(Timeout::Idle)));
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &["--send-timeout", "1"], "debug");
    let mut stalled = server.connect();
    stalled.send(&get("/big.bin"));
    let line = server.wait_for_log(&logged::close(CloseReason::Timeout(Timeout::Send)));
    assert!(line.contains("conn="), "{line}");
    let sent = server.wait_for_access("GET /big.bin HTTP/1.1", 200);
    assert!(sent < common::BIG_LEN as u64, "{sent}");
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    drop(stalled);
}

fn at_max_conns_new_clients_wait_in_the_backlog_until_a_slot_frees(engine: &str) {
    let site = Site::new();
    let args = ["--engine", engine, "--max-conns", "2", "--idle-timeout", "30"];
    let server = Server::start_with(&site.root(), &args, "debug");
    let mut first = server.connect();
    let mut second = server.connect();
    for client in [&mut first, &mut second] {
        client.send(&get("/hello.txt"));
        assert_eq!(client.response(false).body_text(), HELLO);
    }
    let mut third = server.connect(); // the kernel completes the handshake; onepoll does not accept
    third.send(&get("/hello.txt"));
    third.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    let waited = loop {
        match third.stream.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue, // a stray signal, not an answer
            other => break other,
        }
    };
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "third client answered while two were open: {waited:?}"
    );
    drop(first);
    third.stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    assert_eq!(third.response(false).body_text(), HELLO);
    server.wait_for_log(&format!("{}: 2 connections open", logged::ACCEPT_PAUSED));
}

#[test]
fn running_out_of_descriptors_neither_spins_nor_stalls() {
    let site = Site::new();
    let mut server = Server::start_with_fd_limit(&site.root(), 24, &["--idle-timeout", "60"]);
    let mut early = server.connect();
    early.send(&get("/hello.txt"));
    assert_eq!(early.response(false).body_text(), HELLO);
    // Far more clients than descriptors; the surplus waits in the backlog.
    let crowd: Vec<Client> = (0..40).map(|_| server.connect()).collect();
    server.wait_for_log(logged::ACCEPT_PAUSED);
    // A file already in the small-file cache needs no descriptor and is still served...
    early.send(&get("/hello.txt"));
    assert_eq!(early.response(false).body_text(), HELLO);
    // ...but opening another fails for want of one: 503, and the connection lives on.
    early.send(&get("/style.css"));
    let refused = early.response(false);
    assert_eq!(refused.status, 503);
    // While paused the loop sleeps instead of spinning on the readable listener.
    let cpu_before = server.cpu_time();
    thread::sleep(Duration::from_secs(1));
    let cpu_used = server.cpu_time() - cpu_before;
    assert!(cpu_used < Duration::from_millis(300), "spinning: {cpu_used:?} of CPU in 1 s");
    assert!(server.is_running());
    // Descriptors free up: service resumes, for new clients and for ones from the backlog
    // (this one waits in the backlog until the server has closed the crowd's connections).
    drop(crowd);
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    early.send(&get("/hello.txt"));
    assert_eq!(early.response(false).body_text(), HELLO);
}

#[test]
fn five_hundred_concurrent_connections_times_five_keep_alive_requests() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "info");
    let addr = server.addr;
    let workers: Vec<_> = (0..20)
        .map(|_| {
            thread::spawn(move || {
                // Each worker holds 25 connections open at once and cycles requests over them.
                let mut clients: Vec<Client> = (0..25).map(|_| Client::connect(addr)).collect();
                for _ in 0..5 {
                    for client in &mut clients {
                        client.send(&get("/hello.txt"));
                    }
                    for client in &mut clients {
                        assert_eq!(client.response(false).body_text(), HELLO);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    server.wait_for_log_count("\"GET /hello.txt HTTP/1.1\" 200", 2500);
}

fn sigterm_lets_a_slow_download_finish_then_exits_zero(engine: &str) {
    let site = Site::new();
    let ten_mib: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    fs::write(site.root().join("ten.bin"), &ten_mib).unwrap();
    let mut server = Server::start_with(&site.root(), &["--engine", engine, "--grace-period", "20"], "debug");
    let mut idle = server.connect();
    idle.send(&get("/hello.txt"));
    idle.response(false);
    let mut download = server.connect();
    download.send(&get("/ten.bin"));
    let mut head = [0u8; 4096];
    let mut got = download.stream.read(&mut head).unwrap();

    server.signal("TERM");
    server.wait_for_log(logged::SHUTTING_DOWN);
    // The idle keep-alive connection is closed at once; new clients are refused.
    idle.time_until_closed();
    assert!(TcpStream::connect(server.addr).is_err(), "listener still open after SIGTERM");

    // The download, read slowly, still gets every byte.
    got += download.read_slowly_to_end(Duration::from_millis(2));
    let head_len = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got - head_len, ten_mib.len());
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}

fn a_second_signal_exits_at_once(engine: &str) {
    let site = Site::new().with_big_file();
    let mut server = Server::start_with(&site.root(), &["--engine", engine, "--grace-period", "60"], "debug");
    let mut stalled = server.connect();
    stalled.send(&get("/big.bin"));
    let mut some = [0u8; 1024];
    stalled.stream.read_exact(&mut some).unwrap();
    server.signal("INT");
    server.wait_for_log(logged::SHUTTING_DOWN);
    assert!(server.is_running(), "a download is in flight: the first signal must not end it");
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(1));
}

fn sighup_reopens_the_access_log_and_serving_goes_on(engine: &str) {
    let site = Site::new();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("access.log");
    let args = ["--engine", engine, "--access-log", log_path.to_str().unwrap()];
    let server = Server::start_with(&site.root(), &args, "info");
    assert_eq!(server.exchange(&get("/hello.txt")).status, 200);
    let rotated = logs.path().join("access.log.1");
    fs::rename(&log_path, &rotated).unwrap();
    server.signal("HUP");
    server.wait_for_log(logged::LOG_REOPENED);
    assert_eq!(server.exchange(&get("/missing")).status, 404);
    // The line is written just after the response, so the client can be a moment ahead of it.
    let deadline = Instant::now() + common::IO_TIMEOUT;
    let new = loop {
        let new = fs::read_to_string(&log_path).unwrap();
        if new.contains("/missing") || Instant::now() > deadline {
            break new;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("\"GET /hello.txt HTTP/1.1\" 200 ") && !old.contains("/missing"), "{old}");
    assert!(new.contains("\"GET /missing HTTP/1.1\" 404 ") && !new.contains("hello"), "{new}");
    assert!(
        !server.log_lines().iter().any(|line| line.contains("\"GET /hello.txt")),
        "access lines left stderr"
    );
}

fn sigterm_right_after_the_ready_line_is_still_a_graceful_stop(engine: &str) {
    // The ready line comes after the signal handlers, so no SIGTERM can meet the default
    // action (death by signal, exit status -1 here) however early it follows the line. Before
    // the fix this failed within a hundred starts.
    // kill(2) straight from the test, no `kill` process in between: as early as can be.
    let site = Site::new();
    for _ in 0..100 {
        let mut server = Server::start_with(&site.root(), &["--engine", engine], "info");
        let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        assert_eq!(server.wait_exit(common::IO_TIMEOUT), Some(0));
    }
}

fn sigterm_while_clients_keep_connecting_is_still_a_graceful_stop(engine: &str) {
    let site = Site::new();
    let mut server = Server::start_with(&site.root(), &["--engine", engine], "debug");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = server.addr;
    let connectors: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
                }
            })
        })
        .collect();
    // Connections arrive in the same wake-up as the signal: the listeners close under them.
    server.wait_for_log(" accept ");
    server.signal("TERM");
    let status = server.wait_exit(common::IO_TIMEOUT);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for connector in connectors {
        connector.join().unwrap();
    }
    let panicked = server.log_lines().into_iter().find(|line| line.contains(logged::PANICKED));
    assert_eq!((status, panicked), (Some(0), None));
}

// The engines that stop gracefully: the event loop and the forking parent, which tells its
// children to finish.
engine_tests!(@each at_max_conns_new_clients_wait_in_the_backlog_until_a_slot_frees: event_loop, process_per_conn);
engine_tests!(@each sigterm_lets_a_slow_download_finish_then_exits_zero: event_loop, process_per_conn);
engine_tests!(@each a_second_signal_exits_at_once: event_loop, process_per_conn);
engine_tests!(@each sighup_reopens_the_access_log_and_serving_goes_on: event_loop, process_per_conn);
engine_tests!(@each sigterm_right_after_the_ready_line_is_still_a_graceful_stop: event_loop, process_per_conn);
engine_tests!(@each sigterm_while_clients_keep_connecting_is_still_a_graceful_stop: event_loop, process_per_conn);
