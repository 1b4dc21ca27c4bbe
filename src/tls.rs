//! HTTPS: a rustls session wrapped around a socket is one more [`Transport`], so the
//! connection, the output queue and the event loop above it run unchanged.
//!
//! Everything happens on the caller's thread, without blocking: a read pulls what records the
//! socket has into the session and hands back the plaintext they held; a write encrypts into
//! the session only once the records of the previous write have left, so at most one write's
//! worth of ciphertext (at most four records) waits ahead of what the socket took; a file range
//! is read with `pread` 64 KiB at a time and encrypted the same way, never a whole file in memory.
//!
//! The certificates (several, chosen by SNI) are loaded and checked here, at start and again
//! on SIGHUP; the session ticket key and the session cache outlive reloads, so clients resume
//! across them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::recycle::{give_bytes, take_bytes};
use crate::transport::Transport;

/// The first byte of every TLS connection: a handshake record's content type.
const HANDSHAKE_RECORD: u8 = 0x16;
/// Largest plaintext in one TLS record; a write is encrypted in pieces of at most this much.
const RECORD_PLAINTEXT_BYTES: usize = 16 * 1024;
/// File bytes read and encrypted per `send_file`: four full records, sent in one write, so a
/// large download costs a quarter of the syscalls of a record at a time, and no more than
/// these four records ever wait ahead of the socket.
const FILE_CHUNK_BYTES: usize = 4 * RECORD_PLAINTEXT_BYTES;
/// Sessions the server remembers for TLS 1.2 resumption (about 200 bytes each).
const SESSION_CACHE_ENTRIES: usize = 1024;

/// A certificate chain and its private key, as PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What survives a certificate reload: the key that seals session tickets and the cache of
/// TLS 1.2 sessions, so a client resumes whether or not the certificates changed meanwhile.
#[derive(Debug, Clone)]
pub struct Sessions {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Sessions {
    pub fn new() -> Result<Sessions, String> {
        let ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|error| format!("session tickets: {error}"))?;
        Ok(Sessions { ticketer, cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES) })
    }
}

/// Loads every certificate and key, checks that each key matches its certificate, and builds
/// the configuration new handshakes use: TLS 1.2 and 1.3 with rustls' default suites in the
/// server's order (AES-128-GCM first), ALPN `http/1.1`, the first pair for clients that send no
/// (or no matching) SNI.
pub fn server_config(pairs: &[CertificateFiles], sessions: &Sessions) -> Result<Arc<ServerConfig>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM before AES-256-GCM (each within its TLS version): both are strong, and 128
    // takes 10 AES rounds per block instead of 14, which is most of a large download's CPU.
    provider.cipher_suites.sort_by_key(|suite| match suite.suite() {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        _ => 1,
    });
    let provider = Arc::new(provider);
    let mut keys = Vec::with_capacity(pairs.len());
    for pair in pairs {
        keys.push(Arc::new(load_pair(pair, &provider)?));
    }
    if keys.is_empty() {
        return Err("HTTPS needs --tls-cert and --tls-key".into());
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Certificates::new(keys)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The server's order of suites decides, not the client's: testssl.sh rates a server
    // without a cipher order as a weakness.
    config.ignore_client_order = true;
    config.ticketer = Arc::clone(&sessions.ticketer);
    config.session_storage = Arc::clone(&sessions.cache);
    Ok(Arc::new(config))
}

/// HTTPS as configured: the files to load again on SIGHUP, and what new handshakes use now.
#[derive(Debug)]
pub struct Https {
    files: Vec<CertificateFiles>,
    sessions: Sessions,
    config: Arc<ServerConfig>,
}

impl Https {
    /// Loads `files` (every pair must load and match: a broken one is an error at start).
    pub fn load(files: Vec<CertificateFiles>) -> Result<Https, String> {
        let sessions = Sessions::new()?;
        let config = server_config(&files, &sessions)?;
        Ok(Https { files, sessions, config })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Loads the files again. On any error the configuration in use stays; connections open
    /// now keep the one they started with either way.
    pub fn reload(&mut self) -> Result<(), String> {
        self.config = server_config(&self.files, &self.sessions)?;
        Ok(())
    }
}

/// One pair, with the file named in any error.
fn load_pair(pair: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_error = |error: &dyn std::fmt::Display| format!("certificate {}: {error}", pair.cert.display());
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|error| cert_error(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| cert_error(&error))?;
    if chain.is_empty() {
        return Err(cert_error(&"no CERTIFICATE block in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|error| format!("private key {}: {error}", pair.key.display()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| format!("{} and {}: {error}", pair.cert.display(), pair.key.display()))
}

/// The loaded certificates, picked by the name the client asked for (SNI).
#[derive(Debug)]
struct Certificates {
    /// In the order given; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
    /// Names already resolved to a certificate (index into `keys`), so a handshake parses
    /// no certificate once its name has been seen.
    known: std::sync::Mutex<HashMap<String, usize>>,
}

/// Most distinct SNI names remembered (a client can send any name; unknown ones get the default).
const KNOWN_NAMES: usize = 1024;

impl Certificates {
    fn new(keys: Vec<Arc<CertifiedKey>>) -> Certificates {
        Certificates { keys, known: std::sync::Mutex::new(HashMap::new()) }
    }

    /// The first certificate valid for `name` (wildcards included), else the default.
    fn index_for(&self, name: &str) -> usize {
        let Ok(subject) = ServerName::try_from(name) else { return 0 };
        self.keys
            .iter()
            .position(|key| {
                key.end_entity_cert().is_ok_and(|cert| {
                    webpki::EndEntityCert::try_from(cert)
                        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&subject).is_ok())
                })
            })
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = match hello.server_name() {
            Some(name) if self.keys.len() > 1 => {
                let name = name.to_ascii_lowercase();
                let mut known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match known.get(&name) {
                    Some(&index) => index,
                    None => {
                        let index = self.index_for(&name);
                        if known.len() < KNOWN_NAMES {
                            known.insert(name, index);
                        }
                        index
                    }
                }
            }
            _ => 0,
        };
        self.keys.get(index).cloned()
    }
}

/// A socket speaking TLS, or, when its first byte showed plain HTTP, a socket whose requests
/// are all answered `400` in plain text (nginx does the same).
pub struct TlsTransport<S> {
    inner: S,
    session: ServerConnection,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing read yet: the first byte decides.
    FirstByte,
    Tls,
    /// The client sent plain HTTP: bytes pass through unencrypted so it can be told.
    PlainHttp,
}

impl<S> TlsTransport<S> {
    pub fn new(inner: S, config: &Arc<ServerConfig>) -> Result<TlsTransport<S>, rustls::Error> {
        Ok(TlsTransport { inner, session: ServerConnection::new(Arc::clone(config))?, mode: Mode::FirstByte })
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Transport> TlsTransport<S> {
    /// Sends the records the session has ready; `WouldBlock` when the socket takes no more.
    fn flush_records(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            if self.session.write_tls(&mut self.inner)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Sends what it can now; what the socket does not take waits for the next write or flush.
    fn flush_some(&mut self) -> io::Result<()> {
        match self.flush_records() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            result => result,
        }
    }

    /// Encrypts `plaintext` (all of it, or as much as the session buffers) once the previous
    /// records are out.
    fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        self.flush_records()?;
        let taken = self.session.writer().write(plaintext)?;
        if taken == 0 && !plaintext.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into()); // its buffer is full
        }
        self.flush_some()?;
        Ok(taken)
    }

    fn read_tls(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(read) => return Ok(read), // 0: the peer's close_notify
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            if self.session.read_tls(&mut self.inner)? == 0 {
                return Ok(0); // TCP end without close_notify: the connection closes either way
            }
            if let Err(error) = self.session.process_new_packets() {
                let _ = self.flush_some(); // the alert rustls queued, if the socket takes it
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // Handshake messages, tickets, key updates: out now, or at the next writable event.
            self.flush_some()?;
        }
    }
}

impl<S: Transport> Read for TlsTransport<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.mode {
            Mode::Tls => self.read_tls(buf),
            Mode::PlainHttp => self.inner.read(buf),
            Mode::FirstByte => {
                // One byte tells a TLS record (0x16) from the letter a plain request starts with.
                let mut first = [0u8; 1];
                if buf.is_empty() || self.inner.read(&mut first)? == 0 {
                    return Ok(0);
                }
                if first[0] == HANDSHAKE_RECORD {
                    self.mode = Mode::Tls;
                    self.session.read_tls(&mut &first[..])?;
                    return self.read_tls(buf);
                }
                self.mode = Mode::PlainHttp;
                buf[0] = first[0];
                match self.inner.read(&mut buf[1..]) {
                    Ok(read) => Ok(1 + read),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(1),
                    Err(error) => Err(error),
                }
            }
        }
    }
}

impl<S: Transport> Write for TlsTransport<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.mode {
            Mode::PlainHttp => self.inner.write(buf),
            _ => self.encrypt(&buf[..buf.len().min(RECORD_PLAINTEXT_BYTES * 4)]),
        }
    }

    /// The slices are copied into one buffer first, so a head and a small body become one
    /// record instead of a record per slice.
    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.mode == Mode::PlainHttp {
            return self.inner.write_vectored(slices);
        }
        let mut staging = take_bytes();
        for slice in slices {
            let room = RECORD_PLAINTEXT_BYTES * 4 - staging.len();
            staging.extend_from_slice(&slice[..slice.len().min(room)]);
            if staging.len() == RECORD_PLAINTEXT_BYTES * 4 {
                break;
            }
        }
        let result = self.encrypt(&staging);
        give_bytes(staging);
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.mode {
            Mode::PlainHttp => self.inner.flush(),
            _ => self.flush_records(),
        }
    }
}

impl<S: Transport> Transport for TlsTransport<S> {
    /// A chunk of the file read with `pread` and encrypted: TLS bytes cannot skip user space
    /// without kernel TLS.
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        if self.mode == Mode::PlainHttp {
            return self.inner.send_file(file, offset, len);
        }
        self.flush_records()?;
        let mut chunk = [0u8; FILE_CHUNK_BYTES];
        let read = file.read_at(&mut chunk[..len.min(FILE_CHUNK_BYTES)], offset)?;
        if read == 0 {
            return Ok(0);
        }
        self.encrypt(&chunk[..read])
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        self.inner.stop_blocking()
    }

    /// Plaintext may wait in the session after a short read, so only the socket's
    /// `WouldBlock` proves there is nothing more.
    fn short_read_drains(&self) -> bool {
        false
    }

    fn note_hang_up(&mut self) {
        self.inner.note_hang_up();
    }

    fn is_handshaking(&self) -> bool {
        self.mode != Mode::PlainHttp && self.session.is_handshaking()
    }

    fn is_encrypted(&self) -> bool {
        self.mode == Mode::Tls
    }

    fn is_plain_http_on_tls_port(&self) -> bool {
        self.mode == Mode::PlainHttp
    }

    /// `close_notify` before the socket closes, if the socket takes it now.
    fn finish(&mut self) {
        if self.mode == Mode::Tls && !self.session.is_handshaking() {
            self.session.send_close_notify();
            let _ = self.flush_records();
        }
    }
}
