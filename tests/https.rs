//! HTTPS against the real binary: a rustls client and curl over TLS 1.3 and 1.2, plain HTTP
//! on the TLS port, stalled and garbled handshakes, SNI, SIGHUP reloads, resumption, and
//! certificate errors at start. Certificates are made here with rcgen.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{HttpsServer, Pem};
use common::{Client, HELLO, IO_TIMEOUT, Site, before_exec, big_content, get, tool};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

const BOTH_VERSIONS: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

/// The usual set-up: a site, a certificate for `localhost`, onepoll serving both (plain and
/// HTTPS) with `extra` flags, and a client configuration that trusts the certificate.
struct Localhost {
    site: Site,
    server: HttpsServer,
    config: Arc<ClientConfig>,
}

impl Localhost {
    fn start(site: Site, extra: &[&str]) -> Localhost {
        let pem = Pem::for_names(&["localhost"]);
        let server = HttpsServer::start(&site.root(), &[&pem], extra);
        let config = client_config(&[&pem], &BOTH_VERSIONS);
        Localhost { site, server, config }
    }
}

/// A client that never resumes: every handshake shows the certificate served now.
fn without_resumption(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn client_config(trusted: &[&Pem], versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in trusted {
        roots.add(pem.der()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type TlsClient = Client<StreamOwned<ClientConnection, TcpStream>>;

/// A TLS connection to `addr` asking for `name` (an IP address sends no SNI); the handshake
/// completes before it returns.
fn tls_connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> TlsClient {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut stream = StreamOwned::new(ClientConnection::new(Arc::clone(config), name).unwrap(), tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).expect("TLS handshake");
    }
    Client::over(stream)
}

fn get_over_tls(client: &mut TlsClient, path: &str) -> common::Response {
    client.send(&get(path));
    client.response(false)
}

#[test]
fn files_come_over_tls_1_3_and_1_2_on_one_keep_alive_connection() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&pem], &[]);
    for (version, expected) in [(&rustls::version::TLS13, "TLSv1_3"), (&rustls::version::TLS12, "TLSv1_2")] {
        let mut client = tls_connect(server.https, "localhost", &client_config(&[&pem], &[version]));
        assert_eq!(format!("{:?}", client.stream.conn.protocol_version().unwrap()), expected);
        assert_eq!(client.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        for _ in 0..3 {
            let response = get_over_tls(&mut client, "/hello.txt");
            assert_eq!((response.status, response.body_text().as_str()), (200, HELLO));
        }
        let index = get_over_tls(&mut client, "/");
        assert_eq!(index.status, 200);
    }
    // The plain listener still speaks plain HTTP.
    assert_eq!(server.server.exchange(&get("/hello.txt")).body_text(), HELLO);
}

#[test]
fn curl_downloads_a_large_file_and_ranges_intact_over_https() {
    let site = Site::new().with_big_file();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&pem], &[]);
    let port = server.https.port();
    fs::write(server.file("trusted.pem"), &pem.cert).unwrap();
    let curl = |args: &[&str]| {
        let output = tool("curl", "curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(server.file("trusted.pem"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    };
    let url = format!("https://localhost:{port}/big.bin");
    assert!(curl(&[&url]) == big_content(), "the 20 MiB body differs");
    let big = big_content();
    assert_eq!(curl(&["-r", "1000000-1000099", &url]), &big[1_000_000..1_000_100]);
    let both = curl(&["--tlsv1.2", "--tls-max", "1.2", "-r", "0-9", &url, &url]);
    assert_eq!(both, [&big[..10], &big[..10]].concat());
}

#[test]
fn plain_http_on_the_https_port_is_told_to_use_https_in_plain_text() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&pem], &[]);
    let mut client = Client::connect(server.https);
    client.send(&get("/hello.txt"));
    let response = client.response(false);
    assert_eq!(response.status, 400);
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(response.body_text().contains("https://"), "{}", response.body_text());
    client.expect_closed();
}

#[test]
fn a_stalled_handshake_is_closed_at_the_header_deadline_while_others_are_served() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let server =
        HttpsServer::start(&site.root(), &[&pem], &["--header-timeout", "1", "--idle-timeout", "30"]);
    let mut silent = Client::connect(server.https);
    let mut half = Client::connect(server.https);
    half.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]); // a ClientHello that never ends
    let config = client_config(&[&pem], &BOTH_VERSIONS);
    let mut other = tls_connect(server.https, "localhost", &config);
    assert_eq!(get_over_tls(&mut other, "/hello.txt").status, 200);
    for stalled in [&mut silent, &mut half] {
        let waited = stalled.time_until_closed();
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    }
    server.server.wait_for_log("close: header timeout");
    assert_eq!(get_over_tls(&mut other, "/hello.txt").status, 200);
}

#[test]
fn garbage_for_a_client_hello_gets_an_alert_and_a_close_and_others_are_served() {
    let Localhost { site: _site, server, config } = Localhost::start(Site::new(), &[]);
    // The first is a handshake message longer than its record: rustls waits for the rest, and
    // the header deadline closes it. The others get a decode_error alert.
    for (garbage, alert) in
        [(&b"\x16\x03\x01\x00\x05hello"[..], false), (&[0x16; 64], true), (b"\x16\x03\x03\xff\xffjunk", true)]
    {
        let mut client = Client::connect(server.https);
        client.send(garbage);
        let answer = client.read_to_close();
        match alert {
            true => assert_eq!(answer, [0x15, 3, 3, 0, 2, 2, 50], "expected a decode_error alert"),
            false => assert!(answer.is_empty(), "{answer:?}"),
        }
        let mut other = tls_connect(server.https, "localhost", &config);
        assert_eq!(get_over_tls(&mut other, "/hello.txt").status, 200);
    }
}

#[test]
fn sni_picks_the_certificate_and_a_client_without_sni_gets_the_first() {
    let site = Site::new();
    let first = Pem::for_names(&["a.test", "127.0.0.1"]);
    let second = Pem::for_names(&["b.test", "*.wild.test"]);
    let server = HttpsServer::start(&site.root(), &[&first, &second], &[]);
    let config = without_resumption(client_config(&[&first, &second], &BOTH_VERSIONS));
    for (name, expected) in
        [("a.test", &first), ("b.test", &second), ("x.wild.test", &second), ("127.0.0.1", &first)]
    {
        let mut client = tls_connect(server.https, name, &config);
        let served = client.stream.conn.peer_certificates().unwrap()[0].clone();
        assert!(served == expected.der(), "{name} got the wrong certificate");
        assert_eq!(get_over_tls(&mut client, "/hello.txt").status, 200);
    }
}

#[test]
fn sighup_reloads_certificates_and_a_broken_pair_keeps_the_old_ones() {
    let site = Site::new();
    let old = Pem::for_names(&["localhost"]);
    let new = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&old], &[]);
    // Resumed sessions keep the certificate of their first handshake.
    let config = without_resumption(client_config(&[&old, &new], &BOTH_VERSIONS));
    let served = |client: &TlsClient| client.stream.conn.peer_certificates().unwrap()[0].clone();
    let mut before = tls_connect(server.https, "localhost", &config);
    assert!(served(&before) == old.der());

    fs::write(server.file("cert0.pem"), &new.cert).unwrap();
    fs::write(server.file("key0.pem"), &new.key).unwrap();
    server.server.signal("HUP");
    server.server.wait_for_log("certificates reloaded");
    let after = tls_connect(server.https, "localhost", &config);
    assert!(served(&after) == new.der(), "a new handshake still got the old certificate");
    assert_eq!(get_over_tls(&mut before, "/hello.txt").status, 200, "an open connection broke");

    // A key that does not match the certificate: one error line, the new pair stays.
    fs::write(server.file("key0.pem"), &old.key).unwrap();
    server.server.signal("HUP");
    let error = server.server.wait_for_log("certificates kept as they were");
    assert!(error.contains("ERROR"), "{error}");
    let mut still = tls_connect(server.https, "localhost", &config);
    assert!(served(&still) == new.der());
    assert_eq!(get_over_tls(&mut still, "/hello.txt").status, 200);
}

#[test]
fn sessions_resume_over_tls_1_3_and_1_2() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&pem], &["--status-listen", "127.0.0.1:0"]);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = client_config(&[&pem], &[version]);
        let mut first = tls_connect(server.https, "localhost", &config);
        assert_eq!(get_over_tls(&mut first, "/hello.txt").status, 200); // reads 1.3 tickets too
        assert_eq!(first.stream.conn.handshake_kind(), Some(HandshakeKind::Full));
        let mut second = tls_connect(server.https, "localhost", &config);
        assert_eq!(second.stream.conn.handshake_kind(), Some(HandshakeKind::Resumed), "{version:?}");
        assert_eq!(get_over_tls(&mut second, "/hello.txt").status, 200);
    }
    // The status report counts them: two full handshakes, two resumptions.
    let line = server.server.wait_for_log("status on http://");
    let status: SocketAddr =
        line.split("http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let mut client = Client::connect(status);
    client.send(b"GET /metrics HTTP/1.1\r\nHost: s\r\n\r\n");
    let metrics = client.response(false).body_text();
    for sample in
        ["onepoll_tls_handshakes_total{kind=\"full\"} 2", "onepoll_tls_handshakes_total{kind=\"resumed\"} 2"]
    {
        assert!(metrics.lines().any(|line| line == sample), "{sample} not in\n{metrics}");
    }
    // rcgen's certificates are valid until 4096: thousands of years from now.
    let expiry =
        metrics.lines().find(|line| line.starts_with("onepoll_certificate_expiry_seconds{certificate=\""));
    let seconds: i64 =
        expiry.and_then(|line| line.rsplit(' ').next()?.parse().ok()).expect("an expiry sample");
    assert!(seconds > 1_000 * 365 * 86_400, "{metrics}");
}

#[test]
fn the_tls_server_still_runs_one_thread() {
    let Localhost { site: _site, server, config } = Localhost::start(Site::new(), &[]);
    let mut clients: Vec<TlsClient> =
        (0..20).map(|_| tls_connect(server.https, "localhost", &config)).collect();
    for client in &mut clients {
        assert_eq!(get_over_tls(client, "/hello.txt").status, 200);
    }
    let threads = fs::read_dir(format!("/proc/{}/task", server.server.pid())).unwrap().count();
    assert_eq!(threads, 1);
}

#[test]
fn a_client_closing_with_close_notify_is_a_plain_close() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&pem], &[]);
    let mut client = tls_connect(server.https, "localhost", &client_config(&[&pem], &BOTH_VERSIONS));
    assert_eq!(get_over_tls(&mut client, "/hello.txt").status, 200);
    client.stream.conn.send_close_notify();
    client.stream.flush().unwrap();
    let mut rest = Vec::new();
    let _ = client.stream.read_to_end(&mut rest);
    server.server.wait_for_log("close: peer closed");
}

#[test]
fn bad_certificates_at_start_are_one_line_errors() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let other = Pem::for_names(&["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let (cert, key, other_key) =
        (write("cert.pem", &pem.cert), write("key.pem", &pem.key), write("other.pem", &other.key));
    let garbage = write("garbage.pem", "not a certificate\n");
    let missing = dir.path().join("missing.pem");
    for (cert, key, says) in [
        (&missing, &key, "missing.pem"),
        (&garbage, &key, "garbage.pem"),
        (&cert, &garbage, "garbage.pem"),
        (&cert, &other_key, "other.pem"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--listen-tls", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("onepoll: ") && stderr.contains(says), "{stderr}");
    }
    let unpaired = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .arg(site.root())
        .args(["--listen-tls", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(unpaired.status.code(), Some(1));
}

/// `--listen-tls` alone serves HTTPS only; with an explicit `--port` (or `--addr`) beside it,
/// that plain listener is served too, never silently dropped.
#[test]
fn an_explicit_port_beside_listen_tls_serves_plain_http_too() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let config = client_config(&[&pem], &BOTH_VERSIONS);
    let both =
        HttpsServer::start_with(&site.root(), &[&pem], &["--port", "0", "--listen-tls", "127.0.0.1:0"], &[]);
    let line = both.server.wait_for_log("listening on http://");
    let plain: SocketAddr = line.split("http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    let mut client = Client::connect(plain);
    client.send(&get("/hello.txt"));
    assert_eq!(client.response(false).body_text(), HELLO);
    let mut secure = tls_connect(both.https, "localhost", &config);
    assert_eq!(get_over_tls(&mut secure, "/hello.txt").body_text(), HELLO);
    let https_only = HttpsServer::start_tls_only(&site.root(), &[&pem], &[]);
    assert!(!https_only.server.log_lines().iter().any(|line| line.contains("listening on http://")));
}

#[test]
fn https_redirect_sends_plain_http_to_https_except_acme_challenges() {
    let site = Site::new();
    let challenge = site.root().join(".well-known/acme-challenge");
    fs::create_dir_all(&challenge).unwrap();
    fs::write(challenge.join("token-1"), "token-1.thumbprint").unwrap();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&pem], &["--https-redirect"]);
    let https_port = server.https.port();

    let mut plain = server.server.connect();
    plain.send(b"GET /hello.txt?x=1 HTTP/1.1\r\nHost: example.test:8080\r\n\r\n");
    let moved = plain.response(false);
    assert_eq!(moved.status, 308);
    let expected = format!("https://example.test:{https_port}/hello.txt?x=1");
    assert_eq!(moved.header("Location"), Some(expected.as_str()));
    plain.send(b"GET /.well-known/acme-challenge/token-1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let token = plain.response(false);
    assert_eq!((token.status, token.body_text().as_str()), (200, "token-1.thumbprint"));

    let mut secure = tls_connect(server.https, "localhost", &client_config(&[&pem], &BOTH_VERSIONS));
    assert_eq!(get_over_tls(&mut secure, "/hello.txt").body_text(), HELLO);

    // A real client follows it.
    fs::write(server.file("trusted.pem"), &pem.cert).unwrap();
    let output = tool("curl", "curl")
        .args(["-sS", "--fail", "-L", "--cacert"])
        .arg(server.file("trusted.pem"))
        .args(["--resolve", &format!("localhost:{https_port}:127.0.0.1")])
        .arg(format!("http://localhost:{}/hello.txt", server.server.addr.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), HELLO, "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn workers_serve_https_and_resume_each_others_sessions() {
    let Localhost { site: _site, server, config } = Localhost::start(Site::new(), &["--workers", "2"]);
    let mut kinds = Vec::new();
    for _ in 0..16 {
        let mut client = tls_connect(server.https, "localhost", &config);
        assert_eq!(get_over_tls(&mut client, "/hello.txt").body_text(), HELLO); // takes the tickets
        kinds.push(client.stream.conn.handshake_kind().unwrap());
    }
    // SO_REUSEPORT spread the connections over both workers...
    for worker in ["worker=0", "worker=1"] {
        let served =
            server.server.log_lines().iter().any(|line| line.contains(worker) && line.contains("(TLS)"));
        assert!(served, "{worker} accepted no TLS connection");
    }
    // ...and every ticket opened wherever it landed: one full handshake, then resumptions.
    assert_eq!(kinds[0], HandshakeKind::Full);
    assert!(kinds[1..].iter().all(|kind| *kind == HandshakeKind::Resumed), "{kinds:?}");
}

#[test]
fn socket_activation_tells_https_listeners_apart_by_name() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    fs::write(&cert, &pem.cert).unwrap();
    fs::write(&key, &pem.key).unwrap();
    let (plain_socket, secure_socket) = (
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (plain, secure) = (plain_socket.local_addr().unwrap(), secure_socket.local_addr().unwrap());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll"));
    command.arg(site.root()).arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
    before_exec::activate(&mut command, &[(&plain_socket, "http"), (&secure_socket, "https")]);
    let mut activated =
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut client = Client::connect(plain);
    client.send(&get("/hello.txt"));
    assert_eq!(client.response(false).body_text(), HELLO);
    let mut secure_client = tls_connect(secure, "localhost", &client_config(&[&pem], &BOTH_VERSIONS));
    assert_eq!(get_over_tls(&mut secure_client, "/hello.txt").body_text(), HELLO);
    activated.kill().unwrap();
    activated.wait().unwrap();
}

engine_tests! {
    all: [every_engine_serves_https, each_site_has_its_certificate_and_a_host_it_does_not_cover_gets_421];
}

/// The same TLS layer under every engine: keep-alive requests and a 20 MiB body, intact.
fn every_engine_serves_https(engine: &str) {
    let site = Site::new().with_big_file();
    let pem = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start_tls_only(&site.root(), &[&pem], &["--engine", engine]);
    let mut client = tls_connect(server.https, "localhost", &client_config(&[&pem], &BOTH_VERSIONS));
    for _ in 0..3 {
        assert_eq!(get_over_tls(&mut client, "/hello.txt").body_text(), HELLO);
    }
    let big = get_over_tls(&mut client, "/big.bin");
    assert!(big.status == 200 && big.body == big_content(), "{engine}: the 20 MiB body differs");
}

#[test]
fn thousands_of_abandoned_handshakes_leak_nothing_and_others_are_served() {
    let Localhost { site: _site, server, config } = Localhost::start(Site::new(), &[]);
    let mut warm = tls_connect(server.https, "localhost", &config);
    assert_eq!(get_over_tls(&mut warm, "/hello.txt").status, 200);
    let before = server.server.memory_kib("RssAnon");
    // Half a ClientHello, a whole one never answered, a truncated record after a handshake.
    for round in 0..3000 {
        let mut stream = TcpStream::connect(server.https).unwrap();
        match round % 3 {
            0 => stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]).unwrap(),
            1 => {
                let name = ServerName::try_from("localhost").unwrap();
                let mut hello = ClientConnection::new(Arc::clone(&config), name).unwrap();
                hello.write_tls(&mut stream).unwrap();
            }
            _ => {
                let mut done = tls_connect(server.https, "localhost", &config);
                done.stream.sock.write_all(&[0x17, 0x03, 0x03, 0x40, 0x00, 1, 2, 3]).unwrap();
            }
        }
    }
    let mut other = tls_connect(server.https, "localhost", &config);
    assert_eq!(get_over_tls(&mut other, "/hello.txt").body_text(), HELLO);
    // Every abandoned connection is gone once the server saw the hang-ups.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let grown = server.server.memory_kib("RssAnon").saturating_sub(before);
        if grown < 2048 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "heap grew {grown} KiB after 3000 abandoned handshakes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tls_client_that_stops_reading_mid_file_is_dropped_at_the_send_timeout() {
    let Localhost { site: _site, server, config } =
        Localhost::start(Site::new().with_big_file(), &["--send-timeout", "1"]);
    let mut stalled = tls_connect(server.https, "localhost", &config);
    stalled.send(&get("/big.bin"));
    let mut other = tls_connect(server.https, "localhost", &config);
    assert_eq!(get_over_tls(&mut other, "/hello.txt").body_text(), HELLO);
    server.server.wait_for_log("close: send timeout");
    assert_eq!(get_over_tls(&mut other, "/hello.txt").body_text(), HELLO);
}

#[test]
fn an_alert_from_the_client_mid_response_closes_only_that_connection() {
    let Localhost { site: _site, server, config } = Localhost::start(Site::new().with_big_file(), &[]);
    let mut client = tls_connect(server.https, "localhost", &config);
    client.send(&get("/big.bin"));
    let mut some = [0u8; 4096];
    let _ = client.stream.read(&mut some).unwrap();
    // A fatal alert record in plain bytes on the wire (as after a MAC failure), then the close.
    client.stream.sock.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x14]).unwrap();
    drop(client);
    let mut other = tls_connect(server.https, "localhost", &config);
    assert_eq!(get_over_tls(&mut other, "/hello.txt").body_text(), HELLO);
    assert_eq!(get_over_tls(&mut other, "/big.bin").body, big_content());
}

#[test]
fn pipelined_requests_in_one_record_in_many_records_and_dribbled_are_all_answered() {
    let Localhost { site: _site, server, config } = Localhost::start(Site::new(), &[]);
    let requests: Vec<u8> = (0..20).flat_map(|_| get("/hello.txt")).collect();

    // Twenty requests in one record, then twenty records in one TCP write.
    for one_record in [true, false] {
        let mut client = tls_connect(server.https, "localhost", &config);
        if one_record {
            client.stream.conn.writer().write_all(&requests).unwrap();
        } else {
            for _ in 0..20 {
                client.stream.conn.writer().write_all(&get("/hello.txt")).unwrap();
            }
        }
        client.stream.flush().unwrap();
        for index in 0..20 {
            assert_eq!(
                client.response(false).body_text(),
                HELLO,
                "response {index} (one record: {one_record})"
            );
        }
    }

    // One record per byte of a request, each in its own TCP write, with pauses between.
    let mut client = tls_connect(server.https, "localhost", &config);
    for byte in get("/hello.txt") {
        client.stream.conn.writer().write_all(&[byte]).unwrap();
        client.stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(client.response(false).body_text(), HELLO);
}

#[test]
fn sighup_reloads_the_certificates_of_every_worker() {
    let site = Site::new();
    let (old, new) = (Pem::for_names(&["localhost"]), Pem::for_names(&["localhost"]));
    let server = HttpsServer::start(&site.root(), &[&old], &["--workers", "2"]);
    server.server.wait_for_log_count("worker=1 listening on https://", 1);
    fs::write(server.file("cert0.pem"), &new.cert).unwrap();
    fs::write(server.file("key0.pem"), &new.key).unwrap();
    server.server.signal("HUP"); // to the supervisor, which forwards it
    server.server.wait_for_log_count("certificates reloaded", 2);
    // Sixteen fresh handshakes land on both workers (SO_REUSEPORT): each shows the new one.
    let config = without_resumption(client_config(&[&old, &new], &BOTH_VERSIONS));
    for _ in 0..16 {
        let client = tls_connect(server.https, "localhost", &config);
        assert!(client.stream.conn.peer_certificates().unwrap()[0] == new.der(), "an old certificate served");
    }
}

/// Under --https-redirect, ACME HTTP-01 works for every site's names: each site's challenge
/// comes from its own root over plain HTTP, and the rest of each site is sent to HTTPS.
#[test]
fn https_redirect_spares_each_sites_own_acme_challenges() {
    let sites = tempfile::tempdir().unwrap();
    let mut config = String::new();
    for site in ["a", "b"] {
        let challenge = sites.path().join(site).join(".well-known/acme-challenge");
        fs::create_dir_all(&challenge).unwrap();
        fs::write(challenge.join("token"), format!("token-of-{site}")).unwrap();
        let root = sites.path().join(site).display().to_string();
        config.push_str(&format!("[[site]]\nnames = [\"{site}.example\"]\nroot = \"{root}\"\n\n"));
    }
    let file = sites.path().join("onepoll.toml");
    fs::write(&file, config).unwrap();
    let pem = Pem::for_names(&["localhost"]);
    let args = ["--https-redirect", "--config", file.to_str().unwrap()];
    let server = HttpsServer::start(sites.path(), &[&pem], &args);
    let https_port = server.https.port();
    let mut plain = server.server.connect();
    for site in ["a", "b"] {
        let request =
            format!("GET /.well-known/acme-challenge/token HTTP/1.1\r\nHost: {site}.example\r\n\r\n");
        plain.send(request.as_bytes());
        let token = plain.response(false);
        assert_eq!((token.status, token.body_text()), (200, format!("token-of-{site}")), "{site}");
        plain.send(format!("GET /page HTTP/1.1\r\nHost: {site}.example\r\n\r\n").as_bytes());
        let moved = plain.response(false);
        let expected = format!("https://{site}.example:{https_port}/page");
        assert_eq!((moved.status, moved.header("Location")), (308, Some(expected.as_str())), "{site}");
    }
}

/// `GET path` with `host` as the Host field, on an open TLS connection.
fn get_host_over_tls(client: &mut TlsClient, host: &str, path: &str) -> (u16, String) {
    client.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let response = client.response(false);
    (response.status, response.body_text())
}

/// Sites `a` (the default, its own certificate), `b` (its own, with a wildcard) and `c` (the
/// shared one, valid for its name), each root's `site.txt` naming it; the shared pair also
/// covers `localhost`. Returns the directory, the config file and the pairs a, b, shared.
fn sites_with_certificates() -> (tempfile::TempDir, PathBuf, [Pem; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let pems = [
        Pem::for_names(&["a.test", "127.0.0.1"]),
        Pem::for_names(&["b.test", "*.b.test"]),
        Pem::for_names(&["c.test", "localhost"]),
    ];
    let mut config = String::new();
    for (site, names, pem) in [
        ("a", "\"a.test\"", Some(&pems[0])),
        ("b", "\"b.test\", \"*.b.test\"", Some(&pems[1])),
        ("c", "\"c.test\"", None),
    ] {
        let root = dir.path().join(site);
        fs::create_dir(&root).unwrap();
        fs::write(root.join("site.txt"), site).unwrap();
        config.push_str(&format!("[[site]]\nnames = [{names}]\nroot = \"{}\"\n", root.display()));
        if let Some(pem) = pem {
            let (cert, key) =
                (dir.path().join(format!("{site}.crt")), dir.path().join(format!("{site}.key")));
            fs::write(&cert, &pem.cert).unwrap();
            fs::write(&key, &pem.key).unwrap();
            config.push_str(&format!("tls_cert = \"{}\"\ntls_key = \"{}\"\n", cert.display(), key.display()));
        }
        config.push('\n');
    }
    let file = dir.path().join("onepoll.toml");
    fs::write(&file, config).unwrap();
    (dir, file, pems)
}

/// Each site is served under its own certificate, chosen by SNI; a request whose Host names a
/// site the connection's certificate is not one of gets `421` (RFC 9110 §15.5.20) on a
/// connection that stays open, never that site's files; a client without SNI gets the default
/// site's certificate.
fn each_site_has_its_certificate_and_a_host_it_does_not_cover_gets_421(engine: &str) {
    let (dir, file, [a, b, shared]) = sites_with_certificates();
    let args = ["--config", file.to_str().unwrap(), "--engine", engine];
    let server = HttpsServer::start_tls_only(dir.path(), &[&shared], &args);
    let config = without_resumption(client_config(&[&a, &b, &shared], &BOTH_VERSIONS));
    // SNI, the certificate it gets, and the (Host, status, body) of requests on that connection.
    type Requests<'a> = &'a [(&'a str, u16, &'a str)];
    let cases: [(&str, &Pem, Requests); 5] = [
        (
            "a.test",
            &a,
            &[("a.test", 200, "a"), ("b.test", 421, ""), ("c.test", 421, ""), ("other.test", 200, "a")],
        ),
        (
            "b.test",
            &b,
            &[("b.test", 200, "b"), ("x.b.test:443", 200, "b"), ("a.test", 421, ""), ("other.test", 421, "")],
        ),
        ("x.b.test", &b, &[("x.b.test", 200, "b"), ("b.test", 200, "b")]),
        ("c.test", &shared, &[("c.test", 200, "c"), ("a.test", 421, "")]),
        ("127.0.0.1", &a, &[("a.test", 200, "a"), ("127.0.0.1", 200, "a"), ("b.test", 421, "")]),
    ];
    for (sni, certificate, requests) in cases {
        let mut client = tls_connect(server.https, sni, &config);
        let served = client.stream.conn.peer_certificates().unwrap()[0].clone();
        assert!(served == certificate.der(), "SNI {sni} got the wrong certificate");
        for &(host, status, body) in requests {
            let (got, text) = get_host_over_tls(&mut client, host, "/site.txt");
            assert_eq!(got, status, "SNI {sni}, Host {host}");
            if status == 200 {
                assert_eq!(text, body, "SNI {sni}, Host {host}");
            } else {
                assert!(!text.contains(['a', 'b', 'c']) || text.contains("Misdirected"), "{text}");
            }
        }
    }
    // curl, verifying each name against its own certificate.
    let cacert = dir.path().join("b.crt");
    let port = server.https.port();
    let resolve = format!("x.b.test:{port}:127.0.0.1");
    let url = format!("https://x.b.test:{port}/site.txt");
    let args = ["--cacert", cacert.to_str().unwrap(), "--resolve", &resolve, "-w", " %{http_code}"];
    let ok = common::curl(&[&args[..], &[&url]].concat());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "b 200", "{}", String::from_utf8_lossy(&ok.stderr));
    let misdirected = common::curl(&[&args[..], &["-o", "/dev/null", "-H", "Host: a.test", &url]].concat());
    assert_eq!(String::from_utf8_lossy(&misdirected.stdout), " 421");
}

/// A SIGHUP that gives site `b` a new certificate: new handshakes get it, and a connection
/// opened before under the old one still serves `b` (a site is known by its first name, not by
/// which load of the file it came from).
#[test]
fn a_reload_keeps_open_connections_serving_the_sites_their_certificate_covers() {
    let (dir, file, [a, b, shared]) = sites_with_certificates();
    let server = HttpsServer::start(dir.path(), &[&shared], &["--config", file.to_str().unwrap()]);
    let renewed = Pem::for_names(&["b.test", "*.b.test"]);
    let config = without_resumption(client_config(&[&a, &b, &shared, &renewed], &BOTH_VERSIONS));
    let mut before = tls_connect(server.https, "b.test", &config);
    assert_eq!(get_host_over_tls(&mut before, "b.test", "/site.txt"), (200, "b".to_owned()));
    fs::write(dir.path().join("b.crt"), &renewed.cert).unwrap();
    fs::write(dir.path().join("b.key"), &renewed.key).unwrap();
    server.server.signal("HUP");
    server.server.wait_for_log("configuration reloaded, 3 sites, 3 certificates");
    let mut after = tls_connect(server.https, "b.test", &config);
    assert!(after.stream.conn.peer_certificates().unwrap()[0] == renewed.der());
    assert_eq!(get_host_over_tls(&mut after, "b.test", "/site.txt"), (200, "b".to_owned()));
    assert_eq!(get_host_over_tls(&mut before, "b.test", "/site.txt"), (200, "b".to_owned()));
    assert_eq!(get_host_over_tls(&mut before, "a.test", "/site.txt").0, 421);
}

/// `--check-config` loads every site's pairs, and refuses a site no certificate is for when
/// HTTPS is served.
#[test]
fn check_config_loads_each_sites_certificates_and_wants_one_for_every_site() {
    let (dir, file, _) = sites_with_certificates();
    let check = |file: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .args(["--config", file.to_str().unwrap(), "--listen-tls", "127.0.0.1:0", "--check-config"])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    // Site c has no pair of its own and there is no shared one.
    let (code, text) = check(&file);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("site c.test has no certificate"), "{text}");
    let shared = Pem::for_names(&["c.test"]);
    fs::write(dir.path().join("c.crt"), &shared.cert).unwrap();
    fs::write(dir.path().join("c.key"), &shared.key).unwrap();
    let top = format!("tls_cert = \"{0}/c.crt\"\ntls_key = \"{0}/c.key\"\n", dir.path().display());
    let with_shared = dir.path().join("shared.toml");
    fs::write(&with_shared, top + &fs::read_to_string(&file).unwrap()).unwrap();
    let (code, text) = check(&with_shared);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("certificates: 3 loaded"), "{text}");
}

/// A client offering `alpn`, trusting `trusted`.
fn offering(trusted: &[&Pem], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = Arc::unwrap_or_clone(without_resumption(client_config(trusted, &BOTH_VERSIONS)));
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}

/// What a CA's validator does with the certificate of a TLS-ALPN-01 handshake: takes it to
/// inspect. rustls' signature checks parse the certificate with webpki, which refuses its
/// critical acmeIdentifier extension, so this one checks nothing; that the server holds the
/// key is what pebble's Go validator checks in scripts/acme-check.sh.
#[derive(Debug)]
struct Validator(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Validator {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration of a CA validating TLS-ALPN-01: only `acme-tls/1` offered.
fn validating() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Validator(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A handshake that must fail: the error rustls reports.
fn failed_handshake(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> std::io::Error {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut session = ClientConnection::new(Arc::clone(config), name).unwrap();
    loop {
        if let Err(error) = session.complete_io(&mut tcp) {
            return error;
        }
        assert!(session.is_handshaking(), "the handshake succeeded");
    }
}

#[test]
fn a_tls_alpn_01_validation_gets_the_challenge_certificate_and_a_close_and_no_one_else_does() {
    for engine in ["event-loop", "thread-per-conn"] {
        let site = Site::new();
        let challenges = tempfile::tempdir().unwrap();
        let dir = challenges.path().to_str().unwrap();
        let usual = Pem::for_names(&["localhost", "other.test"]);
        let server =
            HttpsServer::start(&site.root(), &[&usual], &["--tls-acme-dir", dir, "--engine", engine]);
        // Written after the start, as an ACME client does just before it asks for validation.
        let challenge = Pem::for_challenge("localhost", [7; 32]);
        fs::write(challenges.path().join("localhost.crt.pem"), &challenge.cert).unwrap();
        fs::write(challenges.path().join("localhost.key.pem"), &challenge.key).unwrap();

        let validation = validating();
        let mut client = tls_connect(server.https, "LocalHost", &validation);
        assert_eq!(client.stream.conn.alpn_protocol(), Some(&b"acme-tls/1"[..]));
        assert!(client.stream.conn.peer_certificates().unwrap()[0] == challenge.der());
        // Closed by the server without a request: close_notify, then the end.
        let mut rest = Vec::new();
        assert_eq!(client.stream.read_to_end(&mut rest).expect("a clean close"), 0, "{engine}");
        server.server.wait_for_log("TLS-ALPN-01 validation for localhost: presenting");

        // No challenge certificate for the name: the handshake fails, nothing else is presented.
        let error = failed_handshake(server.https, "other.test", &validation);
        assert!(error.to_string().contains("alert"), "{engine}: {error}");

        // Clients that offer more than acme-tls/1 (or no ALPN) get the usual certificate and pages.
        for alpn in [&[&b"acme-tls/1"[..], b"http/1.1"][..], &[b"http/1.1"], &[]] {
            let mut client = tls_connect(server.https, "localhost", &offering(&[&usual], alpn));
            assert!(client.stream.conn.peer_certificates().unwrap()[0] == usual.der(), "{alpn:?}");
            assert_eq!(get_over_tls(&mut client, "/hello.txt").body_text(), HELLO, "{engine} {alpn:?}");
        }
    }
}

#[test]
fn without_a_challenge_directory_acme_tls_1_is_not_offered() {
    let site = Site::new();
    let usual = Pem::for_names(&["localhost"]);
    let server = HttpsServer::start(&site.root(), &[&usual], &[]);
    let error = failed_handshake(server.https, "localhost", &validating());
    assert!(error.to_string().contains("NoApplicationProtocol"), "{error}");
}

/// A ClientHello from rustls for `name`, with its SNI bytes replaced by `sent` (same length):
/// what a client that puts an IP address in SNI sends.
fn client_hello_with_sni(name: &str, sent: &str) -> Vec<u8> {
    assert_eq!(name.len(), sent.len());
    let config = client_config(&[], &BOTH_VERSIONS);
    let mut session = ClientConnection::new(config, ServerName::try_from(name.to_owned()).unwrap()).unwrap();
    let mut hello = Vec::new();
    session.write_tls(&mut hello).unwrap();
    let at = hello.windows(name.len()).position(|window| window == name.as_bytes()).expect("the SNI");
    hello[at..at + name.len()].copy_from_slice(sent.as_bytes());
    hello
}

#[test]
fn a_client_sending_an_ip_address_as_sni_is_a_debug_line_not_a_warning() {
    let site = Site::new();
    let pem = Pem::for_names(&["localhost"]);
    let files = tempfile::tempdir().unwrap();
    fs::write(files.path().join("c.pem"), &pem.cert).unwrap();
    fs::write(files.path().join("k.pem"), &pem.key).unwrap();
    for level in ["info", "debug"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
        command.arg(site.root()).args(["--listen-tls", "127.0.0.1:0", "--tls-cert"]);
        command.arg(files.path().join("c.pem")).arg("--tls-key").arg(files.path().join("k.pem"));
        let server = common::Server::spawn(command, level);
        for _ in 0..3 {
            let mut client = Client::connect(server.addr);
            client.send(&client_hello_with_sni("abc.xyz", "1.2.3.4"));
            client.shutdown_write();
            client.read_to_close();
        }
        let config = client_config(&[&pem], &BOTH_VERSIONS);
        let mut fine = tls_connect(server.addr, "localhost", &config);
        assert_eq!(get_over_tls(&mut fine, "/hello.txt").status, 200);
        let lines = server.log_lines();
        let about_sni: Vec<&String> = lines.iter().filter(|line| line.contains("Illegal SNI")).collect();
        assert!(!lines.iter().any(|line| line.contains("WARN")), "{level}: {lines:?}");
        match level {
            "info" => assert!(about_sni.is_empty(), "{about_sni:?}"),
            _ => assert!(
                about_sni.len() == 3 && about_sni.iter().all(|line| line.contains("DEBUG")),
                "{about_sni:?}"
            ),
        }
    }
}
