//! Echo (RFC 862) and Daytime (RFC 867) over TCP and UDP, served by the same single-threaded
//! event loop as HTTP, tested with raw sockets (and with `nc` when it is installed).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use common::{HELLO, IO_TIMEOUT, Server, Site, get, tool};

/// A server with both seed protocols on ports the OS picks; returns their addresses too.
fn seeded(site: &Site) -> (Server, SocketAddr, SocketAddr) {
    let server = Server::start_with(&site.root(), &["--echo-port", "0", "--daytime-port", "0"], "info");
    let addr_of = |seed: &str| -> SocketAddr {
        let line = server.wait_for_log(&format!("{seed} (TCP and UDP) on "));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (echo, daytime) = (addr_of("echo"), addr_of("daytime"));
    (server, echo, daytime)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// `Sunday, November 22, 2026 03:24:29-UTC\r\n`, checked field by field.
fn assert_daytime(line: &str) {
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let body = line.strip_suffix("\r\n").unwrap_or_else(|| panic!("no CRLF: {line:?}"));
    let (weekday, rest) = body.split_once(", ").unwrap();
    let (month_day, rest) = rest.split_once(", ").unwrap();
    let (month, day) = month_day.split_once(' ').unwrap();
    let (year, clock) = rest.split_once(' ').unwrap();
    assert!(DAYS.contains(&weekday) && MONTHS.contains(&month), "{line:?}");
    assert!((1..=31).contains(&day.parse::<u32>().unwrap()), "{line:?}");
    assert!(year.len() == 4 && year.parse::<u32>().is_ok(), "{line:?}");
    let clock = clock.strip_suffix("-UTC").unwrap();
    assert!(clock.len() == 8 && clock.split(':').all(|part| part.parse::<u8>().is_ok()), "{line:?}");
}

#[test]
fn echo_sends_back_everything_and_closes_after_the_clients_eof() {
    let site = Site::new();
    let (server, echo, _) = seeded(&site);
    let mut stream = connect(echo);
    stream.write_all(b"hello\n").unwrap();
    let mut reply = [0u8; 6];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello\n");
    // A megabyte written by one thread comes back whole to another, in order.
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap(); // ends: the server closes after our EOF
    sender.join().unwrap();
    assert!(back == data, "echo differs ({} of {} bytes back)", back.len(), data.len());
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
}

#[test]
fn echo_stops_reading_from_a_client_that_does_not_read_its_echo() {
    let site = Site::new();
    let (server, echo, _) = seeded(&site);
    let rss_before = server.memory_kib("RssAnon");
    let mut flooder = connect(echo);
    flooder.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0usize;
    // Writing without reading must block once the socket buffers both ways are full.
    let blocked = loop {
        match flooder.write(&chunk) {
            Ok(n) => written += n,
            Err(error) => break error,
        }
        assert!(written < 256 * 1024 * 1024, "the server kept reading: {written} bytes taken");
    };
    assert!(
        matches!(blocked.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        "{blocked}"
    );
    // Meanwhile the one thread still serves everyone else, and holds no backlog of echo.
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    let grown = server.memory_kib("RssAnon").saturating_sub(rss_before);
    assert!(grown < 1024, "anonymous RSS (heap) grew {grown} KiB while {written} bytes were pending");
    // Once the client reads, everything it sent comes back.
    flooder.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    flooder.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), written);
    assert!(back.iter().all(|&b| b == b'x'));
}

#[test]
fn daytime_over_tcp_is_one_line_then_close() {
    let site = Site::new();
    let (server, _, daytime) = seeded(&site);
    let mut stream = connect(daytime);
    let mut line = String::new();
    stream.read_to_string(&mut line).unwrap();
    assert_daytime(&line);
    assert_eq!(fs_task_count(server.pid()), 1, "HTTP, echo and daytime on one thread");
}

fn fs_task_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

#[test]
fn udp_echo_and_daytime_answer_each_datagram() {
    let site = Site::new();
    let (_server, echo, daytime) = seeded(&site);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut reply = [0u8; 2048];
    for message in [&b"ping"[..], b"", &[0xff; 1400]] {
        client.send_to(message, echo).unwrap();
        let (len, from) = client.recv_from(&mut reply).unwrap();
        assert_eq!((&reply[..len], from), (message, echo));
    }
    client.send_to(b"what time is it?", daytime).unwrap();
    let (len, from) = client.recv_from(&mut reply).unwrap();
    assert_eq!(from, daytime);
    assert_daytime(std::str::from_utf8(&reply[..len]).unwrap());
}

#[test]
fn nc_talks_to_both() {
    let site = Site::new();
    let (_server, echo, daytime) = seeded(&site);
    let port = |addr: SocketAddr| addr.port().to_string();
    let time = tool("nc", "netcat-openbsd").args(["-w", "5", "127.0.0.1", &port(daytime)]).output().unwrap();
    assert_daytime(&String::from_utf8_lossy(&time.stdout));
    let mut nc = tool("nc", "netcat-openbsd")
        .args(["-N", "-w", "5", "127.0.0.1", &port(echo)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    nc.stdin.take().unwrap().write_all(b"echo via nc\n").unwrap();
    let output = nc.wait_with_output().unwrap();
    assert_eq!(output.stdout, b"echo via nc\n");
}
