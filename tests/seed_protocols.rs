//! Echo (RFC 862) and Daytime (RFC 867) over TCP and UDP, served by the same single-threaded
//! event loop as HTTP, tested with raw sockets.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use common::{HELLO, IO_TIMEOUT, Server, Site, get};

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

/// `Tue Dec  1 15:52:00 2026\r\n` (ctime's format, in UTC), checked field by field.
fn assert_daytime(line: &str) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let body = line.strip_suffix("\r\n").unwrap_or_else(|| panic!("no CRLF: {line:?}"));
    assert_eq!(body.len(), 24, "{line:?}");
    let (weekday, month, day, clock, year) =
        (&body[0..3], &body[4..7], &body[8..10], &body[11..19], &body[20..]);
    assert!(DAYS.contains(&weekday) && MONTHS.contains(&month), "{line:?}");
    assert!((1..=31).contains(&day.trim_start().parse::<u32>().unwrap()), "{line:?}");
    assert!(day.starts_with(' ') == (day.trim_start().len() == 1), "day padded with a space: {line:?}");
    assert!(year.len() == 4 && year.parse::<u32>().is_ok(), "{line:?}");
    assert!(clock.split(':').all(|part| part.len() == 2 && part.parse::<u8>().is_ok()), "{line:?}");
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

#[test]
fn a_daytime_client_that_speaks_first_gets_an_orderly_close_not_a_reset() {
    let site = Site::new();
    let (_server, _, daytime) = seeded(&site);
    let mut stream = connect(daytime);
    stream.write_all(b"what time is it?\r\n").unwrap();
    // Closing with those bytes unread would reset the connection (and can lose the line):
    // the server shuts its side, drops what we sent and waits for our EOF.
    let mut line = String::new();
    stream.read_to_string(&mut line).unwrap();
    assert_daytime(&line);
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

/// What `nc -N host port < file` does: connect, send everything, half-close, then read until
/// the server closes.
fn like_netcat(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(input).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut output = Vec::new();
    stream.read_to_end(&mut output).unwrap();
    output
}

#[test]
fn a_client_that_sends_half_closes_then_reads_gets_everything() {
    let site = Site::new();
    let (_server, echo, daytime) = seeded(&site);
    assert_eq!(like_netcat(echo, b"echo via a half-closed socket\n"), b"echo via a half-closed socket\n");
    assert_eq!(like_netcat(echo, b""), b"");
    assert_daytime(&String::from_utf8(like_netcat(daytime, b"")).unwrap());
}

// The seeds' own clients, each as the same socket calls in the same order (written here: the
// seeds are not part of the project).

/// Seed 000's `client.py` against echo: connect, one send, one recv of at most 1024 bytes.
#[test]
fn the_socket_tutorials_echo_client_gets_its_greeting_back() {
    let site = Site::new();
    let (_server, echo, _) = seeded(&site);
    let mut s = TcpStream::connect(echo).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(s.write(b"Hello World!").unwrap(), 12);
    let mut msg = [0u8; 1024];
    let len = s.read(&mut msg).unwrap();
    assert_eq!(&msg[..len], b"Hello World!");
    drop(s); // the seed's process exits, which closes it
}

/// Seed 004's `Client.py` against daytime: it sends its command first, then reads the time.
/// Our daytime does not wait for a command, and must not reset the connection for the bytes
/// it never read before the client has the line.
#[test]
fn the_timestamp_client_gets_the_time_although_it_speaks_first() {
    let site = Site::new();
    let (_server, _, daytime) = seeded(&site);
    for _ in 0..50 {
        let mut tcp_client = TcpStream::connect(daytime).unwrap();
        tcp_client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(tcp_client.write(b"timetampe").unwrap(), 9);
        let mut current_timestampe = [0u8; 1024];
        let len = tcp_client.read(&mut current_timestampe).unwrap();
        assert_daytime(std::str::from_utf8(&current_timestampe[..len]).unwrap());
        drop(tcp_client); // `with` closes it
    }
}

/// Seed 003's TCP client against echo: several messages on one connection (GBK-encoded, so
/// not UTF-8), each sent and its answer read, then close.
#[test]
fn the_tcp_chat_client_gets_each_message_back_on_one_connection() {
    let site = Site::new();
    let (server, echo, _) = seeded(&site);
    let mut tcp_socket = TcpStream::connect(echo).unwrap();
    tcp_socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let messages: [&[u8]; 3] = [b"\xc4\xe3\xba\xc3", b"hello", b"\xd0\xbb\xd0\xbb"]; // GBK
    for message in messages {
        assert_eq!(tcp_socket.write(message).unwrap(), message.len());
        let mut recv_data = [0u8; 1024];
        let len = tcp_socket.read(&mut recv_data).unwrap();
        assert_eq!(&recv_data[..len], message);
    }
    drop(tcp_socket);
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
}

/// Seed 003's UDP client against echo: bind, a datagram per line typed until `exit`, never a
/// recv; the echoes wait in its socket, which we read only to check them.
#[test]
fn the_udp_client_that_never_reads_is_answered_and_harms_nothing() {
    let site = Site::new();
    let (server, echo, _) = seeded(&site);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lines: [&[u8]; 3] = [b"\xc4\xe3\xba\xc3", b"second", b"exit"];
    for var in lines {
        assert_eq!(s.send_to(var, echo).unwrap(), var.len());
    }
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for var in lines {
        let mut reply = [0u8; 64];
        let (len, from) = s.recv_from(&mut reply).unwrap();
        assert_eq!((&reply[..len], from), (var, echo));
    }
    drop(s);
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
}
