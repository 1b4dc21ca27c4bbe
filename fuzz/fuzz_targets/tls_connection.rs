//! A real TLS handshake with a rustls client over an in-memory socket, then arbitrary bytes:
//! either as application data the client encrypts (request heads, bodies, pipelining inside
//! TLS) or raw on the wire (records of any shape after the handshake). The connection must
//! never panic, and it must either answer or close, never spin.
#![no_main]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use onepoll::access_log::AccessLog;
use onepoll::connection::Connection;
use onepoll::drive::{Client, ConnLabel, Context, Limits, Now, Time, Verdict};
use onepoll::files::Root;
use onepoll::service::Service;
use onepoll::site::{Site, Sites};
use onepoll::tls::{CertificateFiles, CertificatePlan, Https, TlsTransport};
use onepoll::transport::Transport;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The server's socket: what the client sent waits in `incoming`, what the server wrote
/// lands in `outgoing`. Non-blocking: an empty `incoming` reads as `WouldBlock`.
#[derive(Default)]
struct Pipe {
    incoming: VecDeque<u8>,
    outgoing: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.incoming.read(buf)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Pipe {
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        let mut chunk = vec![0u8; len.min(64 * 1024)];
        let read = file.read_at(&mut chunk, offset)?;
        self.write(&chunk[..read])
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn short_read_drains(&self) -> bool {
        true
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    service: Service,
    https: Https,
    client: Arc<ClientConfig>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!DOCTYPE html><title>fuzz</title>\n").unwrap();
        std::fs::write(dir.path().join("big.bin"), vec![7u8; 200 * 1024]).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let plan = CertificatePlan::one_site(vec![CertificateFiles { cert: cert.clone(), key }]);
        let https = Https::load(plan, [9; 32]).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
        };
        let site = Site {
            id: String::new(),
            root: Root::new(dir.path()).unwrap(),
            headers: Vec::new(),
            path_headers: Vec::new(),
            https_redirect: None,
            auth: None,
        };
        let service = Service { sites: Sites::one(site), access_log: AccessLog::off(), limits };
        Setup { _dir: dir, service, https, client: Arc::new(client) }
    })
}

/// Moves the client's records to the server, drives it, and gives its records back; false once
/// the server closed.
fn exchange(client: &mut ClientConnection, server: &mut Connection<TlsTransport<Pipe>>, now: Now) -> bool {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    server.transport_mut().inner_mut().incoming.extend(wire);
    let open = !matches!(drive(server, now), Verdict::Close(_));
    let sent = std::mem::take(&mut server.transport_mut().inner_mut().outgoing);
    let mut sent = &sent[..];
    while !sent.is_empty() {
        match client.read_tls(&mut sent) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if client.process_new_packets().is_err() {
                    break;
                }
            }
        }
    }
    let mut plaintext = Vec::new();
    let _ = client.reader().read_to_end(&mut plaintext);
    open
}

/// One drive with the turn's time, as the event loop would.
fn drive(server: &mut Connection<TlsTransport<Pipe>>, now: Now) -> Verdict {
    let service = &setup().service;
    server.drive(&mut Context::new(Time::Turn(now), &service.sites, &service.access_log, None))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let setup = setup();
    let now = Now { wall: UNIX_EPOCH + Duration::from_secs(1_795_322_700), mono: Instant::now() };
    let label = ConnLabel { token: 0, fd: -1 };
    let transport = TlsTransport::new(Pipe::default(), setup.https.config()).unwrap();
    let mut server = Connection::new(transport, label, None, now);
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::clone(&setup.client), name).unwrap();
    for _ in 0..10 {
        if !client.is_handshaking() {
            break;
        }
        assert!(exchange(&mut client, &mut server, now), "closed during a clean handshake");
    }
    assert!(!client.is_handshaking(), "the handshake did not finish");
    match mode % 2 {
        0 => {
            client.writer().write_all(bytes).unwrap();
            for _ in 0..64 {
                if !exchange(&mut client, &mut server, now) {
                    break;
                }
            }
        }
        _ => {
            server.transport_mut().inner_mut().incoming.extend(bytes);
            for _ in 0..64 {
                if matches!(drive(&mut server, now), Verdict::Close(_)) {
                    break;
                }
                server.transport_mut().inner_mut().outgoing.clear();
            }
        }
    }
});
