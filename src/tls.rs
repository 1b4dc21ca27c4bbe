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
//! on SIGHUP; the session ticket keys and the session cache outlive reloads, so clients resume
//! across them, and the ticket keys come from a secret the workers of one supervisor share,
//! so they resume on any worker.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hkdf};
use rustls::crypto::CryptoProvider;
use rustls::server::UnbufferedServerConnection;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{CipherSuite, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::recycle::{FreeList, give_bytes, take_bytes};
use crate::transport::Transport;

/// The first byte of every TLS connection: a handshake record's content type.
const HANDSHAKE_RECORD: u8 = 0x16;
/// Largest plaintext in one TLS record; a write is encrypted in pieces of at most this much.
const RECORD_PLAINTEXT_BYTES: usize = 16 * 1024;
/// File bytes read and encrypted per `send_file`: four full records, sent in one write, so a
/// large download costs a quarter of the syscalls of a record at a time, and no more than
/// these four records ever wait ahead of the socket.
const FILE_CHUNK_BYTES: usize = 4 * RECORD_PLAINTEXT_BYTES;
thread_local! {
    /// Where file bytes wait to be encrypted: one buffer per thread, on the heap (a thread of
    /// the thread-per-connection engine has a 64 KiB stack).
    static FILE_CHUNK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sessions the server remembers for TLS 1.2 resumption (about 200 bytes each).
const SESSION_CACHE_ENTRIES: usize = 1024;

/// A certificate chain and its private key, as PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What survives a certificate reload: the keys that seal session tickets and the cache of
/// TLS 1.2 sessions, so a client resumes whether or not the certificates changed meanwhile.
#[derive(Debug, Clone)]
pub struct Sessions {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Sessions {
    /// Tickets sealed with keys derived from `secret`: every process given the same secret
    /// (the workers of one supervisor) opens the others' tickets.
    pub fn new(secret: TicketSecret) -> Sessions {
        let ticketer = Arc::new(SharedTicketer { secret });
        Sessions { ticketer, cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES) }
    }
}

/// The secret session-ticket keys are derived from.
pub type TicketSecret = [u8; 32];

/// A fresh ticket secret, from the operating system's random source.
pub fn new_ticket_secret() -> Result<TicketSecret, String> {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).map_err(|_| "no randomness for session tickets".to_owned())?;
    Ok(secret)
}

/// How long one session-ticket key seals new tickets; a ticket opens during its own period
/// and the next, so it lives one to two periods.
const TICKET_KEY_SECONDS: u64 = 6 * 3600;

/// Seals TLS session tickets with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from
/// the shared secret and the current period, so keys rotate without any process telling
/// another, and a ticket from one worker resumes on any worker of the same supervisor.
/// A ticket is `period (8 bytes) || nonce (12) || sealed session state`.
struct SharedTicketer {
    secret: TicketSecret,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTicketer") // never the secret
    }
}

impl SharedTicketer {
    fn key(&self, period: u64) -> Option<aead::LessSafeKey> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"onepoll session tickets");
        let info = period.to_be_bytes();
        let info = [&info[..]];
        let prk = salt.extract(&self.secret);
        let okm = prk.expand(&info, &aead::CHACHA20_POLY1305).ok()?;
        Some(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }

    fn period_now() -> u64 {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        since_epoch.as_secs() / TICKET_KEY_SECONDS
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_KEY_SECONDS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let period = Self::period_now();
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(8 + nonce.len() + plain.len() + aead::MAX_TAG_LEN);
        ticket.extend_from_slice(&period.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        let aad = aead::Aad::from(period.to_be_bytes());
        self.key(period)?
            .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut sealed)
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (period, rest) = ticket.split_at_checked(8)?;
        let period = u64::from_be_bytes(period.try_into().ok()?);
        let now = Self::period_now();
        if period != now && period + 1 != now {
            return None; // sealed with a key that has expired (or is not in use yet)
        }
        let (nonce, sealed) = rest.split_at_checked(aead::NONCE_LEN)?;
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut opened = sealed.to_vec();
        let aad = aead::Aad::from(period.to_be_bytes());
        let plain = self.key(period)?.open_in_place(nonce, aad, &mut opened).ok()?;
        Some(plain.to_vec())
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
    /// Loads `files` (every pair must load and match: a broken one is an error at start);
    /// session tickets are sealed with keys derived from `secret`.
    pub fn load(files: Vec<CertificateFiles>, secret: TicketSecret) -> Result<Https, String> {
        let sessions = Sessions::new(secret);
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
///
/// It drives rustls' unbuffered API, so every buffer is ours: records read but not processed
/// (`incoming`), records encrypted but not sent (`outgoing`), and plaintext decrypted but not
/// yet read (`plaintext`). Each comes from a per-thread pool when needed and goes back as soon
/// as it is empty, so an idle TLS connection holds the session's keys and state, and no buffer.
pub struct TlsTransport<S> {
    inner: S,
    session: UnbufferedServerConnection,
    mode: Mode,
    /// Bytes of TLS records read from the socket; the first `incoming_used` are valid.
    incoming: Vec<u8>,
    incoming_used: usize,
    /// Records to send; `outgoing[outgoing_sent..]` has not reached the socket yet.
    outgoing: Vec<u8>,
    outgoing_sent: usize,
    /// Decrypted application data; `plaintext[plaintext_read..]` has not been read yet.
    plaintext: Vec<u8>,
    plaintext_read: usize,
    /// The peer's close_notify arrived: reads end once the plaintext before it is read.
    peer_closed: bool,
    /// The last socket read returned less than it was offered: on an edge-triggered socket,
    /// it is empty until the next readiness event.
    socket_drained: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing read yet: the first byte decides.
    FirstByte,
    Tls,
    /// The client sent plain HTTP: bytes pass through unencrypted so it can be told.
    PlainHttp,
}

/// The largest TLS record on the wire (16 KiB of plaintext plus header, padding and tag),
/// the room `incoming` starts with; a handshake message split over records may take up to
/// `MAX_INCOMING_BYTES`.
const RECORD_WIRE_BYTES: usize = RECORD_PLAINTEXT_BYTES + 2048 + 5;
const MAX_INCOMING_BYTES: usize = 64 * 1024 + RECORD_WIRE_BYTES;
/// Record buffers a thread keeps for reuse.
const SPARE_RECORD_BUFFERS: usize = 16;

thread_local! {
    static SPARE_RECORD_BUFFER: FreeList<Vec<u8>> = const { FreeList::new(SPARE_RECORD_BUFFERS) };
}

fn take_record_buffer() -> Vec<u8> {
    SPARE_RECORD_BUFFER.with(FreeList::take).unwrap_or_default()
}

/// Gives an emptied buffer back (one grown past a record's size is let go).
fn give_record_buffer(buffer: &mut Vec<u8>) {
    let mut buffer = std::mem::take(buffer);
    if (1..=RECORD_WIRE_BYTES * 5).contains(&buffer.capacity()) {
        buffer.clear();
        SPARE_RECORD_BUFFER.with(|spares| spares.give(buffer));
    }
}

/// Where the session stands after processing what was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The handshake needs more bytes from the peer.
    NeedsInput,
    /// Application data may flow both ways.
    Traffic,
    /// Both sides said close_notify.
    Closed,
}

impl<S> TlsTransport<S> {
    pub fn new(inner: S, config: &Arc<ServerConfig>) -> Result<TlsTransport<S>, rustls::Error> {
        Ok(TlsTransport {
            inner,
            session: UnbufferedServerConnection::new(Arc::clone(config))?,
            mode: Mode::FirstByte,
            incoming: Vec::new(),
            incoming_used: 0,
            outgoing: Vec::new(),
            outgoing_sent: 0,
            plaintext: Vec::new(),
            plaintext_read: 0,
            peer_closed: false,
            socket_drained: false,
        })
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Transport> TlsTransport<S> {
    /// Processes the records read so far until the session needs input or can carry
    /// application data: decrypted data goes to `plaintext`, handshake records to `outgoing`.
    /// With `encrypt`, it then encrypts that plaintext (or a close_notify, for `None`) into
    /// `outgoing`, if the session is past its handshake.
    fn process(&mut self, encrypt: Option<Option<&[u8]>>) -> io::Result<Standing> {
        let TlsTransport { session, incoming, incoming_used, outgoing, plaintext, peer_closed, .. } = self;
        loop {
            let status = session.process_tls_records(&mut incoming[..*incoming_used]);
            let discard = status.discard;
            let standing = match status.state {
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        if plaintext.is_empty() {
                            *plaintext = take_record_buffer();
                        }
                        plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut handshake)) => {
                    let start = outgoing.len();
                    grow_for(outgoing, start + RECORD_WIRE_BYTES);
                    let written = loop {
                        match handshake.encode(&mut outgoing[start..]) {
                            Ok(written) => break written,
                            Err(EncodeError::InsufficientSize(size)) => {
                                grow_for(outgoing, start + size.required_size)
                            }
                            Err(error) => return Err(io::Error::other(error.to_string())),
                        }
                    };
                    outgoing.truncate(start + written);
                    None
                }
                // Our `outgoing` holds what was encoded: it leaves with the next flush.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Standing::NeedsInput),
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Standing::Closed),
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    while early.next_record().is_some() {} // never accepted (no 0-RTT)
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    if let Some(data) = encrypt {
                        let start = outgoing.len();
                        let overhead = 64 * (data.map_or(0, <[u8]>::len) / RECORD_PLAINTEXT_BYTES + 1);
                        grow_for(outgoing, start + data.map_or(0, <[u8]>::len) + overhead);
                        let written = loop {
                            let room = &mut outgoing[start..];
                            let result = match data {
                                Some(data) => traffic.encrypt(data, room),
                                None => traffic.queue_close_notify(room),
                            };
                            match result {
                                Ok(written) => break written,
                                Err(EncryptError::InsufficientSize(size)) => {
                                    grow_for(outgoing, start + size.required_size)
                                }
                                Err(error) => return Err(io::Error::other(error.to_string())),
                            }
                        };
                        outgoing.truncate(start + written);
                    }
                    Some(Standing::Traffic)
                }
                Ok(_) => Some(Standing::Traffic), // a state added by a later rustls
                Err(error) => {
                    // Whatever alert rustls queued comes out as EncodeTlsData on the next call.
                    discard_front(incoming, incoming_used, discard);
                    let _ = alert_records(session, &mut incoming[..*incoming_used], outgoing);
                    return Err(tls_error(error));
                }
            };
            discard_front(incoming, incoming_used, discard);
            if let Some(standing) = standing {
                if *incoming_used == 0 && !incoming.is_empty() {
                    give_record_buffer(incoming);
                }
                return Ok(standing);
            }
        }
    }

    /// Sends `outgoing` until it is empty (its buffer then goes back to the pool) or the socket
    /// would block (`WouldBlock`).
    fn flush_records(&mut self) -> io::Result<()> {
        while self.outgoing_sent < self.outgoing.len() {
            match self.inner.write(&self.outgoing[self.outgoing_sent..])? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                sent => self.outgoing_sent += sent,
            }
        }
        if !self.outgoing.is_empty() {
            self.outgoing_sent = 0;
            give_record_buffer(&mut self.outgoing);
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

    /// Encrypts `plaintext` once the previous records are out, and sends what it can.
    fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        self.flush_records()?;
        match self.process(Some(Some(plaintext)))? {
            Standing::Traffic => {}
            Standing::NeedsInput => return Err(io::ErrorKind::WouldBlock.into()), // mid-handshake
            Standing::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
        }
        self.flush_some()?;
        Ok(plaintext.len())
    }

    fn read_tls(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.plaintext_read < self.plaintext.len() {
                let unread = &self.plaintext[self.plaintext_read..];
                let taken = unread.len().min(buf.len());
                buf[..taken].copy_from_slice(&unread[..taken]);
                self.plaintext_read += taken;
                if self.plaintext_read == self.plaintext.len() {
                    self.plaintext_read = 0;
                    give_record_buffer(&mut self.plaintext);
                }
                return Ok(taken);
            }
            if self.peer_closed {
                return Ok(0);
            }
            let standing = self.process(None)?;
            // Handshake messages, tickets, alerts: out now, or at the next writable event.
            self.flush_some()?;
            if self.plaintext_read < self.plaintext.len() || self.peer_closed {
                continue;
            }
            if standing == Standing::Closed {
                return Ok(0);
            }
            // Nothing decrypted: more records from the socket.
            if self.incoming.is_empty() {
                self.incoming = take_record_buffer();
            }
            if self.incoming_used == self.incoming.len() {
                if self.incoming.len() >= MAX_INCOMING_BYTES {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS message too large"));
                }
                let room = (self.incoming_used + RECORD_WIRE_BYTES).min(MAX_INCOMING_BYTES);
                self.incoming.resize(room, 0);
            }
            let room = self.incoming.len() - self.incoming_used;
            let read = self.inner.read(&mut self.incoming[self.incoming_used..]);
            self.socket_drained = matches!(read, Ok(read) if read > 0 && read < room);
            if let Ok(read) = read {
                self.incoming_used += read;
            }
            if self.incoming_used == 0 {
                // Nothing came (WouldBlock, or the end): no buffer waits meanwhile, so a burst of
                // closing clients reuses one pooled buffer instead of each allocating its own.
                give_record_buffer(&mut self.incoming);
            }
            match read {
                Ok(0) => return Ok(0), // TCP end without close_notify: the connection closes either way
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Makes `buffer` at least `len` bytes long (zeroed; `encode` and `encrypt` write in place).
fn grow_for(buffer: &mut Vec<u8>, len: usize) {
    if buffer.capacity() == 0 {
        *buffer = take_record_buffer();
    }
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
}

/// Drops the first `count` of the `used` bytes of `buffer`, keeping the rest at its start.
fn discard_front(buffer: &mut [u8], used: &mut usize, count: usize) {
    if count > 0 {
        buffer.copy_within(count..*used, 0);
        *used -= count;
    }
}

/// After an error: the alert rustls queued, encoded into `outgoing`. `incoming` is what is left
/// of the records read (rustls tracks its progress through them between calls).
fn alert_records(
    session: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    outgoing: &mut Vec<u8>,
) -> Option<()> {
    let status = session.process_tls_records(incoming);
    if let Ok(ConnectionState::EncodeTlsData(mut alert)) = status.state {
        let start = outgoing.len();
        grow_for(outgoing, start + 64);
        let written = alert.encode(&mut outgoing[start..]).ok()?;
        outgoing.truncate(start + written);
    }
    Some(())
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl<S> Drop for TlsTransport<S> {
    /// A connection closing mid-exchange hands its buffers to the next one.
    fn drop(&mut self) {
        for buffer in [&mut self.incoming, &mut self.outgoing, &mut self.plaintext] {
            give_record_buffer(buffer);
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
                    self.incoming = take_record_buffer();
                    self.incoming.resize(RECORD_WIRE_BYTES, 0);
                    self.incoming[0] = first[0];
                    self.incoming_used = 1;
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
            _ => self.encrypt(&buf[..buf.len().min(FILE_CHUNK_BYTES)]),
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
            let room = FILE_CHUNK_BYTES - staging.len();
            staging.extend_from_slice(&slice[..slice.len().min(room)]);
            if staging.len() == FILE_CHUNK_BYTES {
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
        FILE_CHUNK.with_borrow_mut(|chunk| {
            chunk.resize(FILE_CHUNK_BYTES, 0);
            let read = file.read_at(&mut chunk[..len.min(FILE_CHUNK_BYTES)], offset)?;
            match read {
                0 => Ok(0),
                _ => self.encrypt(&chunk[..read]),
            }
        })
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        self.inner.stop_blocking()
    }

    /// A short read of plaintext proves nothing by itself; the socket read behind it does.
    /// Every complete record it brought was decrypted in the same call (`process` runs until
    /// the session needs input), so once that plaintext is read, only bytes still on their way
    /// are missing, and they come with a new readiness event.
    fn short_read_drains(&self) -> bool {
        self.mode == Mode::Tls
            && self.socket_drained
            && self.plaintext_read == self.plaintext.len()
            && self.inner.short_read_drains()
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
        if self.mode == Mode::Tls && !self.session.is_handshaking() && self.flush_records().is_ok() {
            let _ = self.process(Some(None)).and_then(|_| self.flush_records());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_with_the_same_secret_only_and_not_when_altered() {
        let state = b"resumption state".to_vec();
        let issuer = SharedTicketer { secret: [7; 32] };
        let ticket = issuer.encrypt(&state).unwrap();
        assert_eq!(SharedTicketer { secret: [7; 32] }.decrypt(&ticket), Some(state.clone()));
        assert_eq!(SharedTicketer { secret: [8; 32] }.decrypt(&ticket), None);
        for at in [0, 8, 20, ticket.len() - 1] {
            let mut altered = ticket.clone();
            altered[at] ^= 1;
            assert_eq!(issuer.decrypt(&altered), None, "byte {at} altered");
        }
        assert_eq!(issuer.decrypt(&ticket[..10]), None);
        assert_ne!(issuer.encrypt(&state), Some(ticket), "a fresh nonce per ticket");
    }

    #[test]
    fn tickets_open_in_their_period_and_the_next_only() {
        let issuer = SharedTicketer { secret: [1; 32] };
        let now = SharedTicketer::period_now();
        let seal = |period: u64| {
            let nonce = [3u8; aead::NONCE_LEN];
            let mut sealed = b"state".to_vec();
            let aad = aead::Aad::from(period.to_be_bytes());
            let key = issuer.key(period).unwrap();
            key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut sealed)
                .unwrap();
            [&period.to_be_bytes()[..], &nonce, &sealed].concat()
        };
        assert!(issuer.decrypt(&seal(now)).is_some());
        assert!(issuer.decrypt(&seal(now - 1)).is_some());
        assert!(issuer.decrypt(&seal(now - 2)).is_none(), "expired key");
        assert!(issuer.decrypt(&seal(now + 1)).is_none(), "a key not in use yet");
    }
}
