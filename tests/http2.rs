//! HTTP/2 against the real binary: curl over TLS (ALPN `h2`) and with prior knowledge on plain
//! HTTP, `--http2 off`, every engine that serves TLS, graceful shutdown with a stream in
//! flight, and the attack cases over raw frames, each followed by a request on a fresh
//! connection to show it cost the server nothing lasting.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::tls::{HttpsServer, Pem};
use common::{BIG_LEN, HELLO, INDEX, IO_TIMEOUT, Server, Site, big_content, curl};
use onepoll::http2::frame::{self, ErrorCode, FRAME_HEADER_LEN, FrameHeader, flag, kind};
use onepoll::http2::hpack::{Decoder, HeaderList};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A frame the server sent.
#[derive(Debug)]
struct Frame {
    header: FrameHeader,
    payload: Vec<u8>,
}

/// A client speaking raw frames, with prior knowledge, over plain TCP.
struct RawClient {
    stream: TcpStream,
    unread: Vec<u8>,
    decoder: Decoder,
}

impl RawClient {
    /// Connected, preface and an empty SETTINGS sent.
    fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut client = RawClient { stream, unread: Vec::new(), decoder: Decoder::default() };
        let mut start = PREFACE.to_vec();
        start.extend(raw(kind::SETTINGS, 0, 0, &[]));
        client.send(&start);
        client
    }

    /// Sends `bytes`; false once the server has closed.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next frame, or `None` at the end of the connection.
    fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(head) = self.unread.first_chunk::<FRAME_HEADER_LEN>() {
                let header = FrameHeader::parse(head);
                if self.unread.len() >= FRAME_HEADER_LEN + header.len {
                    let payload = self.unread[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len].to_vec();
                    self.unread.drain(..FRAME_HEADER_LEN + header.len);
                    return Some(Frame { header, payload });
                }
            }
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(read) => self.unread.extend_from_slice(&buf[..read]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("no frame within {IO_TIMEOUT:?}: {error}"),
            }
        }
    }

    /// Frames until GOAWAY (its code returned) or the end of the connection (`None`).
    fn until_goaway(&mut self) -> Option<u32> {
        while let Some(frame) = self.next() {
            if frame.header.kind == kind::GOAWAY {
                return Some(u32::from_be_bytes(frame.payload[4..8].try_into().unwrap()));
            }
        }
        None
    }

    /// The `:status` of a HEADERS frame.
    fn status(&mut self, frame: &Frame) -> String {
        let mut list = HeaderList::default();
        self.decoder.decode(&frame.payload, &mut list, 1 << 20).unwrap();
        let (name, value) = list.iter().next().unwrap();
        assert_eq!(name, b":status");
        String::from_utf8(value.to_vec()).unwrap()
    }
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// A GET header block of literals without indexing (RFC 7541 §6.2.2).
fn get_block(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "test")] {
        out.push(0);
        for text in [name, value] {
            out.push(text.len() as u8);
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, stream, &get_block(path))
}

/// A plain prior-knowledge GET with curl succeeds: the server still serves everyone.
fn still_serves(addr: SocketAddr) {
    let page = curl(&["--http2-prior-knowledge", &format!("http://{addr}/hello.txt")]);
    assert_eq!(String::from_utf8_lossy(&page.stdout), HELLO, "{page:?}");
}

fn https(site: &Site, extra: &[&str]) -> (HttpsServer, String) {
    with_certificate(|pem| HttpsServer::start(&site.root(), &[pem], extra))
}

/// Only an HTTPS listener: the serial engine serves one.
fn https_only(site: &Site, extra: &[&str]) -> (HttpsServer, String) {
    with_certificate(|pem| HttpsServer::start_tls_only(&site.root(), &[pem], extra))
}

/// A server `start` starts with a certificate for `localhost`, and the file that trusts it.
fn with_certificate(start: impl FnOnce(&Pem) -> HttpsServer) -> (HttpsServer, String) {
    let pem = Pem::for_names(&["localhost"]);
    let server = start(&pem);
    std::fs::write(server.file("trusted.pem"), &pem.cert).unwrap();
    let cacert = server.file("trusted.pem").to_str().unwrap().to_owned();
    (server, cacert)
}

#[test]
fn curl_over_tls_gets_h2_for_every_url_on_one_connection() {
    let site = Site::new();
    let (server, cacert) = https(&site, &[]);
    let base = format!("https://localhost:{}", server.https.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.https.port());
    let out = curl(&[
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        "--http2",
        &format!("{base}/"),
        &format!("{base}/hello.txt"),
        &format!("{base}/nope"),
        "--write-out",
        "[%{http_version} %{http_code} %{num_connects}]\n",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(INDEX) && text.contains(HELLO), "{text}");
    assert!(text.contains("[2 200 1]") && text.contains("[2 200 0]") && text.contains("[2 404 0]"), "{text}");
    server.server.wait_for_access("GET /hello.txt HTTP/2.0", 200);
    server.server.wait_for_access("GET /nope HTTP/2.0", 404);
}

// curl 7.88.1 (Debian 12) cannot reuse a prior-knowledge connection (curl#10634, fixed in
// 8.0), so each of these is one URL per curl.
#[test]
fn prior_knowledge_on_plain_http_serves_pages_heads_ranges_and_large_files() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &[], "debug");
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let h2 = |args: &[&str]| {
        let mut all = vec!["--http2-prior-knowledge"];
        all.extend_from_slice(args);
        curl(&all)
    };
    let page = h2(&["--write-out", "[%{http_version}]", &url("/hello.txt")]);
    assert_eq!(String::from_utf8_lossy(&page.stdout), format!("{HELLO}[2]"));
    let head = h2(&["--head", &url("/hello.txt")]);
    let head = String::from_utf8_lossy(&head.stdout);
    assert!(head.starts_with("HTTP/2 200") && head.contains("content-length: 13"), "{head}");
    let range = h2(&["--range", "0-4", "--write-out", "[%{http_code}]", &url("/hello.txt")]);
    assert_eq!(String::from_utf8_lossy(&range.stdout), "hello[206]");
    // Several ranges: multipart/byteranges, byte for byte what HTTP/1.1 sends (the boundary
    // comes from the ETag), from the cache (hello.txt) and from the file across many frames.
    for (path, ranges, octets) in
        [("/hello.txt", "0-1,4-6,-2", 7), ("/big.bin", "0-99999,5000000-5065535,-70000", 235_536)]
    {
        let over_h2 = h2(&["--range", ranges, &url(path)]);
        let over_h1 = curl(&["--range", ranges, &url(path)]);
        assert!(over_h2.status.success() && over_h1.status.success());
        let head = String::from_utf8_lossy(&over_h2.stdout[..200]);
        assert!(head.contains("Content-Range: bytes 0-"), "{path}: {head}");
        assert!(over_h2.stdout.len() > octets && over_h2.stdout == over_h1.stdout, "{path}");
    }
    let redirect =
        h2(&["--output", "/dev/null", "--write-out", "%{http_code} %{redirect_url}", &url("/sub")]);
    assert_eq!(String::from_utf8_lossy(&redirect.stdout), format!("301 {}/", url("/sub")));
    let target = site.root().join("downloaded.bin");
    let download = h2(&["--output", target.to_str().unwrap(), &url("/big.bin")]);
    assert!(download.status.success(), "{download:?}");
    assert!(std::fs::read(&target).unwrap() == big_content(), "20 MiB arrive intact");
    let lines = server.log_lines();
    assert!(lines.iter().any(|line| line.contains("reading head -> http2")), "the state change is logged");
    assert!(lines.iter().any(|line| line.contains(&format!("\"GET /big.bin HTTP/2.0\" 200 {BIG_LEN}"))));
}

#[test]
fn http2_off_keeps_every_client_on_http11() {
    let site = Site::new();
    let (server, cacert) = https(&site, &["--http2", "off"]);
    let resolve = format!("localhost:{}:127.0.0.1", server.https.port());
    let url = format!("https://localhost:{}/hello.txt", server.https.port());
    let out = curl(&[
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        "--http2",
        "--write-out",
        "[%{http_version}]",
        &url,
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{HELLO}[1.1]"));
    // A preface on plain HTTP is then an HTTP/1.1 request line with a version we refuse.
    let mut client = common::Client::connect(server.server.addr);
    client.send(PREFACE);
    let response = client.response(false);
    assert_eq!(response.status, 505, "{response:?}");
}

fn curl_gets_h2_over_tls(engine: &str) {
    let site = Site::new();
    let (server, cacert) = https_only(&site, &["--engine", engine]);
    let resolve = format!("localhost:{}:127.0.0.1", server.https.port());
    let base = format!("https://localhost:{}", server.https.port());
    let out = curl(&[
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        &format!("{base}/hello.txt"),
        &format!("{base}/hello.txt"),
        "--write-out",
        "[%{http_version}]",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{HELLO}[2]{HELLO}[2]"), "{out:?}");
}

engine_tests! {
    all: [curl_gets_h2_over_tls];
}

#[test]
fn sigterm_sends_goaway_and_finishes_the_stream_in_flight() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &["--grace-period", "20"], "debug");
    let mut client = RawClient::connect(server.addr);
    client.send(&get(1, "/big.bin"));
    // The default windows let 65,535 octets through; then the stream waits for us.
    let mut received = 0;
    while received < 65_535 {
        let frame = client.next().expect("data");
        if frame.header.kind == kind::DATA {
            received += frame.payload.len();
        }
    }
    server.signal("TERM");
    let goaway = loop {
        let frame = client.next().expect("a GOAWAY");
        if frame.header.kind == kind::GOAWAY {
            break frame;
        }
    };
    assert_eq!(goaway.payload, [0, 0, 0, 1, 0, 0, 0, 0], "last stream 1, NO_ERROR");
    let open = (BIG_LEN as u32).to_be_bytes();
    client.send(&raw(kind::WINDOW_UPDATE, 0, 0, &open));
    client.send(&raw(kind::WINDOW_UPDATE, 0, 1, &open));
    let mut ended = false;
    while let Some(frame) = client.next() {
        if frame.header.kind == kind::DATA {
            received += frame.payload.len();
            ended |= frame.header.has(flag::END_STREAM);
        }
    }
    assert!(ended && received == BIG_LEN, "{received} octets, ended: {ended}");
}

#[test]
fn rapid_reset_is_told_to_calm_down_and_costs_nothing_lasting() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &[], "info");
    let mut client = RawClient::connect(server.addr);
    let mut pairs = Vec::new();
    for stream in (1..20_000u32).step_by(2) {
        pairs.extend(get(stream, "/big.bin"));
        pairs.extend(raw(kind::RST_STREAM, 0, stream, &(ErrorCode::Cancel as u32).to_be_bytes()));
    }
    client.send(&pairs);
    assert_eq!(client.until_goaway(), Some(ErrorCode::EnhanceYourCalm as u32));
    still_serves(server.addr);
}

#[test]
fn a_continuation_flood_ends_after_a_bounded_header_block() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "info");
    let mut client = RawClient::connect(server.addr);
    client.send(&raw(kind::HEADERS, flag::END_STREAM, 1, &get_block("/")));
    let mut sent = 0;
    while sent < 10 << 20 && client.send(&raw(kind::CONTINUATION, 0, 1, &[0x40; 1024])) {
        sent += 1024;
        if sent == 64 * 1024 {
            break;
        }
    }
    assert_eq!(client.until_goaway(), Some(ErrorCode::EnhanceYourCalm as u32));
    still_serves(server.addr);
}

#[test]
fn floods_of_pings_settings_and_empty_frames_are_told_to_calm_down() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &[], "info");
    let floods: [(&str, Vec<u8>); 3] = [
        ("ping", raw(kind::PING, 0, 0, &[1; 8])),
        ("settings", raw(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])),
        ("empty data", raw(kind::DATA, 0, 1, &[])),
    ];
    for (name, frame) in floods {
        let mut client = RawClient::connect(server.addr);
        // An open stream to send the empty frames on: a request whose body never comes.
        client.send(&raw(kind::HEADERS, flag::END_HEADERS, 1, &get_block("/big.bin")));
        let flood = frame.repeat(5_000);
        client.send(&flood);
        assert_eq!(client.until_goaway(), Some(ErrorCode::EnhanceYourCalm as u32), "{name}");
    }
    still_serves(server.addr);
}

#[test]
fn an_hpack_bomb_gets_431_and_a_table_size_over_ours_ends_the_connection() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "info");
    let mut client = RawClient::connect(server.addr);
    // A 4,000-octet field added to the table, then named 200 times: 800 kB from 4 kB.
    let mut bomb = get_block("/hello.txt");
    bomb.extend([0x40, 1, b'x', 0x7f, 0xa1, 0x1e]); // a value of 127 + 0x1e21 = 4,000 octets
    bomb.extend(std::iter::repeat_n(b'y', 4_000));
    bomb.extend(std::iter::repeat_n(0xbe, 200));
    client.send(&raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &bomb));
    let headers = loop {
        let frame = client.next().expect("a response");
        if frame.header.kind == kind::HEADERS {
            break frame;
        }
    };
    assert_eq!(client.status(&headers), "431");
    let mut oversized = vec![0x3f, 0xe2, 0x1f]; // a table of 5,000 octets; we allow 4,096
    oversized.extend(get_block("/"));
    client.send(&raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &oversized));
    assert_eq!(client.until_goaway(), Some(ErrorCode::Compression as u32));
    still_serves(server.addr);
}

#[test]
fn frames_out_of_place_end_the_connection_with_the_right_code() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "info");
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "stream id going backwards",
            [get(5, "/hello.txt"), get(3, "/hello.txt")].concat(),
            ErrorCode::Protocol,
        ),
        ("DATA on stream 0", raw(kind::DATA, 0, 0, b"x"), ErrorCode::Protocol),
        ("SETTINGS on a stream", raw(kind::SETTINGS, 0, 1, &[]), ErrorCode::Protocol),
        ("an oversized frame", raw(kind::PING, 0, 0, &[0; 16_385]), ErrorCode::FrameSize),
        (
            "PUSH_PROMISE from a client",
            raw(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]),
            ErrorCode::Protocol,
        ),
    ];
    for (name, bytes, code) in cases {
        let mut client = RawClient::connect(server.addr);
        client.send(&bytes);
        assert_eq!(client.until_goaway(), Some(code as u32), "{name}");
        assert!(client.next().is_none(), "{name}: then the connection closes");
    }
    // Zero-length headers reset only their stream.
    let mut client = RawClient::connect(server.addr);
    client.send(&raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &[]));
    client.send(&get(3, "/hello.txt"));
    let (mut reset, mut answered) = (false, false);
    while !(reset && answered) {
        let frame = client.next().expect("frames");
        reset |= frame.header.kind == kind::RST_STREAM && frame.header.stream == 1;
        answered |=
            frame.header.kind == kind::DATA && frame.header.stream == 3 && frame.payload == HELLO.as_bytes();
    }
    still_serves(server.addr);
}

#[test]
fn a_client_window_of_zero_forever_is_ended_by_the_send_timeout() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &["--send-timeout", "1"], "debug");
    let mut client = RawClient::connect(server.addr);
    client.send(&raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
    client.send(&get(1, "/big.bin"));
    let started = Instant::now();
    while let Some(frame) = client.next() {
        assert_ne!(frame.header.kind, kind::DATA, "no window, no data");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    server.wait_for_log("close: send timeout");
    still_serves(server.addr);
}

#[test]
fn a_window_update_dribble_is_told_to_calm_down() {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &[], "info");
    let mut client = RawClient::connect(server.addr);
    client.send(&raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
    client.send(&get(1, "/big.bin"));
    // One octet of window per frame received: the server could only answer with one-octet
    // frames. (Updates sent together are read together, and make one frame.)
    let update = raw(kind::WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes());
    let mut goaway = None;
    for _ in 0..2_000 {
        client.send(&update);
        match client.next() {
            Some(frame) if frame.header.kind == kind::GOAWAY => {
                goaway = Some(u32::from_be_bytes(frame.payload[4..8].try_into().unwrap()));
                break;
            }
            Some(frame) => assert!(frame.header.kind != kind::DATA || frame.payload.len() < 16),
            None => break,
        }
    }
    assert_eq!(goaway, Some(ErrorCode::EnhanceYourCalm as u32));
    still_serves(server.addr);
}
