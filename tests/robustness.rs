//! Connection-level behaviour over raw sockets: pipelining, dribbled input, slow readers,
//! resets, request bodies that must not be parsed as requests, and the one-thread rule.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::{BIG_LEN, Client, HELLO, INDEX, IO_TIMEOUT, Server, Site, big_content, get, logged};
use onepoll::drive::CloseReason;

fn twenty_pipelined_requests_in_one_write_are_answered_in_order(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let targets = ["/hello.txt", "/", "/missing", "/sub/page.txt", "/style.css"];
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let target = targets[i % targets.len()];
        let method = if i % 7 == 3 { "HEAD" } else { "GET" };
        batch.extend_from_slice(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        expected.push((method, target));
    }
    let mut client = server.connect();
    client.send(&batch);
    for (method, target) in expected {
        let response = client.response(method == "HEAD");
        let want = match target {
            "/hello.txt" => HELLO,
            "/" => INDEX,
            "/sub/page.txt" => "sub page\n",
            "/style.css" => "body { color: red }\n",
            _ => "",
        };
        if target == "/missing" {
            assert_eq!(response.status, 404);
        } else if method == "GET" {
            assert_eq!(response.body_text(), want, "{method} {target}");
        } else {
            assert!(response.body.is_empty());
        }
    }
    client.send(&get("/hello.txt"));
    assert_eq!(client.response(false).body_text(), HELLO);
}

fn a_request_dribbled_one_byte_per_write_is_answered(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let mut client = server.connect();
    client.stream.set_nodelay(true).unwrap();
    let request = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    for byte in request {
        client.send(&[*byte]);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(client.response(false).body_text(), HELLO);
    assert_eq!(client.response(false).body_text(), INDEX);
}

fn a_body_that_looks_like_a_request_is_discarded_not_parsed(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let smuggled = "GET /sub/page.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let chunked = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    for (framing, body) in [
        (format!("Content-Length: {}", smuggled.len()), smuggled.to_owned()),
        ("Transfer-Encoding: chunked".to_owned(), chunked),
    ] {
        let mut client = server.connect();
        client.send(format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n{body}").as_bytes());
        client.send(&get("/"));
        assert_eq!(client.response(false).body_text(), HELLO, "{framing}");
        // The next response is for `/`, not for the smuggled `/sub/page.txt`.
        assert_eq!(client.response(false).body_text(), INDEX, "{framing}");
    }
}

fn a_malformed_chunked_body_closes_after_the_response(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let mut client = server.connect();
    client.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response(false).body_text(), HELLO);
    client.expect_closed();
}

/// The second request arrives while the first response waits for the client to read (the
/// readiness edge comes and goes while output is blocked): it must still be read and answered.
/// The connection once kept "the socket is drained" from before the block; here the loop's
/// `epoll_ctl` re-arm when WRITABLE is dropped hid that (the unit test
/// `a_request_sent_while_a_response_waits_for_the_socket_is_read` shows it).
fn a_request_sent_while_a_large_response_is_stuck_is_answered(engine: &str) {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &["--engine", engine], "trace");
    let mut client = server.connect();
    client.send(&get("/big.bin"));
    if engine == "event-loop" {
        server.wait_for_log(logged::SENDFILE_BLOCKED); // the response is stuck in a full socket
    }
    client.send(&get("/hello.txt"));
    let big = client.response(false);
    assert_eq!((big.status, big.body.len()), (200, BIG_LEN));
    assert_eq!(client.response(false).body_text(), HELLO);
}

fn a_slow_reader_gets_every_byte_of_a_large_file_while_others_are_served(engine: &str) {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &["--engine", engine], "trace");
    let baseline_kib = server.proportional_kib();
    let mut peak_kib = baseline_kib;
    let mut slow = server.connect();
    slow.send(&get("/big.bin"));
    let mut received = Vec::with_capacity(BIG_LEN + 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut reads = 0;
    loop {
        let n = slow.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early after {} bytes", received.len());
        received.extend_from_slice(&chunk[..n]);
        reads += 1;
        if reads % 16 == 0 {
            // While the slow client lags, another client is served promptly.
            assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
            // Sampled while the file is on its way, where a process-per-connection server's
            // child serving it is counted too.
            peak_kib = peak_kib.max(server.proportional_kib());
            thread::sleep(Duration::from_millis(5));
        }
        let head_end = received.windows(4).position(|w| w == b"\r\n\r\n");
        if head_end.is_some_and(|end| received.len() == end + 4 + BIG_LEN) {
            break;
        }
    }
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    assert!(head.contains(&format!("Content-Length: {BIG_LEN}\r\n")), "{head}");
    assert_eq!(received.len() - head_end, BIG_LEN);
    assert!(received[head_end..] == big_content()[..], "body differs from the file");
    // The socket buffer filled up on the way: this really exercised partial sends, and
    // WRITABLE interest was armed for the wait and dropped once the file was out.
    if engine == "event-loop" {
        server.wait_for_log(logged::SENDFILE_BLOCKED);
        let armed = server.wait_for_log(logged::WRITABLE_ARMED);
        let label = armed
            .split("] ")
            .nth(1)
            .unwrap()
            .split(logged::WRITABLE_ARMED)
            .next()
            .unwrap()
            .strip_suffix(' ')
            .unwrap()
            .to_owned();
        server.wait_for_log(&format!("{label} {}", logged::WRITABLE_DROPPED));
    }
    // The file streamed: the server never held anything near its 20 MiB in memory.
    let grown_kib = peak_kib - baseline_kib;
    assert!(grown_kib < 4 * 1024, "PSS grew {grown_kib} KiB while sending a {BIG_LEN}-byte file");
}

fn a_client_resetting_mid_download_does_not_disturb_others(engine: &str) {
    let site = Site::new().with_big_file();
    let server = Server::start_engine(&site.root(), engine);
    for _ in 0..5 {
        let mut quitter = server.connect();
        quitter.send(&get("/big.bin"));
        let mut first = [0u8; 1024];
        quitter.stream.read_exact(&mut first).unwrap();
        // Closing with unread data makes the kernel send RST instead of FIN.
        drop(quitter);
        assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    }
    server.wait_for_log("close: socket error");
    let sent = server.wait_for_access("GET /big.bin HTTP/1.1", 200);
    assert!(sent < BIG_LEN as u64, "access log should show the bytes actually sent: {sent}");
}

fn a_client_that_half_closes_still_gets_its_response(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let mut client = server.connect();
    client.send(&get("/hello.txt"));
    client.shutdown_write();
    let all = client.read_to_close();
    assert!(all.ends_with(HELLO.as_bytes()), "{}", String::from_utf8_lossy(&all));
}

fn many_concurrent_keep_alive_clients_are_served(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let addr = server.addr;
    let workers: Vec<_> = (0..50)
        .map(|_| {
            thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                for _ in 0..10 {
                    client.send(&get("/hello.txt"));
                    assert_eq!(client.response(false).body_text(), HELLO);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn the_server_runs_exactly_one_thread() {
    let site = Site::new().with_big_file();
    let server = Server::start(&site.root());
    let mut busy: Vec<_> = (0..10).map(|_| server.connect()).collect();
    for client in &mut busy {
        client.send(&get("/big.bin"));
    }
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    let tasks = fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap().count();
    assert_eq!(tasks, 1, "the default engine must be single-threaded");
}

#[test]
fn logs_carry_connection_labels_and_access_lines() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "trace");
    let mut client = server.connect();
    client.send(&get("/hello.txt"));
    client.response(false);
    drop(client);
    let accept = server.wait_for_log(" accept 127.0.0.1:");
    let label = accept.split(" accept").next().unwrap().split("] ").nth(1).unwrap().to_owned();
    assert!(label.starts_with("conn=") && label.contains(" fd="), "{accept}");
    server.wait_for_log(&format!("{label} read "));
    server.wait_for_log(&format!("{label} writev "));
    server.wait_for_log(&format!("{label} {}", logged::close(CloseReason::PeerClosed)));
    // A response that fits the socket buffer never needs WRITABLE interest.
    assert!(!server.log_lines().iter().any(|line| line.contains("WRITABLE")), "{:?}", server.log_lines());
    server.wait_for_log(&format!("{label} {}200 with ", logged::DONE));
    server.wait_for_access("GET /hello.txt HTTP/1.1", 200);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    server.wait_for_log(&format!("{}400 Bad Request: missing Host", logged::HEAD_REFUSED));
}

fn a_client_that_pipelines_without_reading_cannot_grow_server_memory(engine: &str) {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &["--engine", engine], "info");
    let mut greedy = server.connect();
    // Served once first, so whatever serves it (a child process, a thread) exists and is warm.
    greedy.send(&get("/hello.txt"));
    assert_eq!(greedy.response(false).body_text(), HELLO);
    let before_kib = server.proportional_kib();
    let batch = get("/hello.txt").repeat(20_000); // about 700 KB of requests, nothing read back
    let writer = {
        let mut stream = greedy.stream.try_clone().unwrap();
        thread::spawn(move || {
            // Blocks once both socket buffers fill: the server has stopped reading from us.
            let _ = stream.write_all(&batch);
        })
    };
    // The server stops reading once 32 responses wait: our unsent bytes then pile up here.
    let deadline = Instant::now() + IO_TIMEOUT;
    while unsent_bytes(&greedy.stream) < 64 * 1024 {
        assert!(Instant::now() < deadline, "the server went on reading from a client that never reads");
        thread::sleep(Duration::from_millis(10));
    }
    // Others are served while the greedy client's responses pile up unread.
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    // Holding the 20,000 responses would take about 4 MB, the requests 700 KB.
    let grown_kib = server.proportional_kib().saturating_sub(before_kib);
    assert!(grown_kib < 1024, "grew {grown_kib} KiB (PSS) with 20,000 unread pipelined requests");
    // Reading resumes the flow: every response arrives, in order.
    for _ in 0..20_000 {
        assert_eq!(greedy.response(false).body_text(), HELLO);
    }
    writer.join().unwrap();
}

engine_tests! {
    all: [
        twenty_pipelined_requests_in_one_write_are_answered_in_order,
        a_request_dribbled_one_byte_per_write_is_answered,
        a_body_that_looks_like_a_request_is_discarded_not_parsed,
        a_malformed_chunked_body_closes_after_the_response,
        a_client_resetting_mid_download_does_not_disturb_others,
        a_client_that_half_closes_still_gets_its_response,
        a_request_sent_while_a_large_response_is_stuck_is_answered,
    ];
    concurrent: [
        a_slow_reader_gets_every_byte_of_a_large_file_while_others_are_served,
        many_concurrent_keep_alive_clients_are_served,
        a_client_that_pipelines_without_reading_cannot_grow_server_memory,
    ];
}

#[test]
fn each_engine_has_the_threads_its_design_implies() {
    let site = Site::new();
    // (arguments, threads in the server, child processes of one thread each)
    let cases: &[(&[&str], usize, usize)] = &[
        (&["--engine", "event-loop"], 1, 0),
        (&["--engine", "serial"], 1, 0),
        (&["--engine", "thread-pool", "--threads", "6"], 1 + 6, 0), // fixed, whatever the load
        (&["--engine", "thread-per-conn"], 1 + 5, 0),
        (&["--engine", "process-per-conn"], 1, 5),
        #[cfg(feature = "coroutine")]
        (&["--engine", "coroutine"], 1, 0), // current_thread: the runtime starts no thread
    ];
    for &(args, threads, processes) in cases {
        let server = Server::start_with(&site.root(), args, "info");
        let mut clients: Vec<_> = (0..5).map(|_| server.connect()).collect();
        // The first client is served by every engine; serial leaves the rest in the backlog.
        clients[0].send(&get("/hello.txt"));
        assert_eq!(clients[0].response(false).body_text(), HELLO);
        if args[1] != "serial" {
            for client in &mut clients[1..] {
                client.send(&get("/hello.txt"));
                assert_eq!(client.response(false).body_text(), HELLO);
            }
        }
        let tasks = |pid: u32| fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
        assert_eq!(tasks(server.pid()), threads, "{args:?}");
        let children = server.child_pids();
        assert_eq!(children.len(), processes, "{args:?}");
        assert!(children.into_iter().all(|child| tasks(child) == 1), "{args:?}");
    }
}

/// A zombie (an exited child nobody reaped) whose parent is `pid`, if any.
fn zombie_of(pid: u32) -> Option<String> {
    fs::read_dir("/proc").unwrap().flatten().find_map(|entry| {
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        // `pid (comm) state ppid ...`: the name may hold spaces, so split after its `)`.
        let after_name: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
        (after_name[0] == "Z" && after_name[1] == pid.to_string()).then_some(stat)
    })
}

#[test]
fn a_process_per_connection_server_reaps_every_child_and_leaks_no_descriptor() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &["--engine", "process-per-conn"], "info");
    let descriptors = || {
        let mut fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .flatten()
            .map(|fd| format!("{:?}->{:?}", fd.file_name(), fs::read_link(fd.path()).ok()))
            .collect();
        fds.sort();
        fds
    };
    let before = descriptors();
    // 300 connections, 50 at a time: children end while others start, so SIGCHLDs coalesce.
    for _ in 0..6 {
        let mut batch: Vec<Client> = (0..50).map(|_| server.connect()).collect();
        for client in &mut batch {
            client.send(&get("/hello.txt"));
        }
        for client in &mut batch {
            assert_eq!(client.response(false).body_text(), HELLO);
        }
    }
    // The clients are gone: every child ends and is reaped.
    let deadline = Instant::now() + common::IO_TIMEOUT;
    while !server.child_pids().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.child_pids(), Vec::<u32>::new(), "children left");
    assert_eq!(zombie_of(server.pid()), None);
    // Every descriptor the parent holds now, it held before (a leaked client socket would be
    // a socket it did not have); one it had at start may be gone.
    let after = descriptors();
    let leaked: Vec<&String> = after.iter().filter(|fd| !before.contains(fd)).collect();
    assert!(leaked.is_empty(), "the parent leaked {leaked:?} (before: {before:?})");
}

/// Bytes written to `stream` that the peer has not acknowledged (`SIOCOUTQ`, tcp(7)): they grow
/// only while the peer's receive window is shut, i.e. while it does not read.
fn unsent_bytes(stream: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut unsent: libc::c_int = 0;
    // SAFETY: a valid socket descriptor and a c_int out-parameter, as tcp(7) documents.
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
    assert_eq!(result, 0, "ioctl(SIOCOUTQ)");
    unsent as usize
}
