//! A rustls session over a socket, as a [`Transport`]: rustls' unbuffered API, with every
//! buffer ours and pooled.
//!
//! Everything happens on the caller's thread, without blocking: a read takes what records the
//! socket has and hands back the plaintext they held; a write encrypts only once the records of
//! the previous write have left, so at most one write's worth of ciphertext (four records) waits
//! ahead of what the socket took; a file range is read with `pread` 64 KiB at a time and
//! encrypted the same way, never a whole file in memory. One byte first tells TLS from plain HTTP
//! sent to the HTTPS port, which gets a plain-text `400`.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};

use log::debug;

use super::{ACME_TLS_ALPN, ServedCertificate, count_handshake, take_resolved};
use crate::recycle::FreeList;
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
    /// Where a `writev`'s slices are joined before they are encrypted as one run of records:
    /// one buffer per thread that keeps its room, so a cached 32 KiB body allocates nothing.
    static STAGING: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
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
    /// Records to send that have not reached the socket yet.
    outgoing: Outgoing,
    /// Decrypted application data; `plaintext[plaintext_read..]` has not been read yet.
    plaintext: Vec<u8>,
    plaintext_read: usize,
    /// The peer's close_notify arrived: reads end once the plaintext before it is read.
    peer_closed: bool,
    /// The last socket read returned less than it was offered: on an edge-triggered socket,
    /// it is empty until the next readiness event.
    socket_drained: bool,
    /// The certificate the handshake sent, and so the sites this session may ask for.
    certificate: Option<Arc<ServedCertificate>>,
    /// The handshake is over and was counted (see `tls::handshakes`).
    handshake_counted: bool,
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
    /// Emptied buffers for records to send and for decrypted bytes.
    static SPARE_RECORD_BUFFER: FreeList<Vec<u8>> = const { FreeList::new(SPARE_RECORD_BUFFERS) };
    /// Buffers for records read or to send, kept at their length (their old bytes are never
    /// read), so taking one for each request costs no zeroing of 18 KiB.
    static SPARE_WIRE_BUFFER: FreeList<Vec<u8>> = const { FreeList::new(SPARE_RECORD_BUFFERS) };
}

fn take_record_buffer() -> Vec<u8> {
    SPARE_RECORD_BUFFER.with(FreeList::take).unwrap_or_default()
}

fn take_wire_buffer() -> Vec<u8> {
    SPARE_WIRE_BUFFER.with(FreeList::take).unwrap_or_else(|| vec![0; RECORD_WIRE_BYTES])
}

/// Gives a records buffer back at its length (one grown past four records, for a long
/// handshake message, is let go).
fn give_wire_buffer(buffer: &mut Vec<u8>) {
    let buffer = std::mem::take(buffer);
    if (RECORD_WIRE_BYTES..=RECORD_WIRE_BYTES * 5).contains(&buffer.len()) {
        SPARE_WIRE_BUFFER.with(|spares| spares.give(buffer));
    }
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
            outgoing: Outgoing::default(),
            plaintext: Vec::new(),
            plaintext_read: 0,
            peer_closed: false,
            socket_drained: false,
            certificate: None,
            handshake_counted: false,
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
        let TlsTransport {
            session,
            incoming,
            incoming_used,
            outgoing,
            plaintext,
            peer_closed,
            certificate,
            handshake_counted,
            ..
        } = self;
        loop {
            let status = session.process_tls_records(&mut incoming[..*incoming_used]);
            // Taken right after every handshake step, so the slot is empty before the next
            // session's (see `RESOLVED`).
            if certificate.is_none() {
                *certificate = take_resolved();
            }
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
                    let mut room = RECORD_WIRE_BYTES;
                    let written = loop {
                        match handshake.encode(outgoing.room(room)) {
                            Ok(written) => break written,
                            Err(EncodeError::InsufficientSize(size)) => room = size.required_size,
                            Err(error) => return Err(io::Error::other(error.to_string())),
                        }
                    };
                    outgoing.commit(written);
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
                        let len = data.map_or(0, <[u8]>::len);
                        let mut room = len + 64 * (len / RECORD_PLAINTEXT_BYTES + 1);
                        let written = loop {
                            let result = match data {
                                Some(data) => traffic.encrypt(data, outgoing.room(room)),
                                None => traffic.queue_close_notify(outgoing.room(room)),
                            };
                            match result {
                                Ok(written) => break written,
                                Err(EncryptError::InsufficientSize(size)) => room = size.required_size,
                                Err(error) => return Err(io::Error::other(error.to_string())),
                            }
                        };
                        outgoing.commit(written);
                    }
                    Some(Standing::Traffic)
                }
                Ok(_) => Some(Standing::Traffic), // a state added by a later rustls
                Err(error) => {
                    // Whatever alert rustls queued comes out as EncodeTlsData on the next call.
                    discard_front(incoming, incoming_used, discard);
                    // A record that does not parse stays in `incoming` (no discard): processing it
                    // again would fail again and send a second fatal alert, which trips a rustls
                    // debug assertion. One state then; after a handshake error, every pending one.
                    let states = if matches!(error, rustls::Error::InvalidMessage(_)) { 1 } else { 8 };
                    debug!("TLS: {error}; alert sent");
                    let _ = alert_records(session, incoming, incoming_used, outgoing, states);
                    return Err(tls_error(error));
                }
            };
            discard_front(incoming, incoming_used, discard);
            if standing == Some(Standing::Traffic) && !*handshake_counted {
                *handshake_counted = true;
                count_handshake(session.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
            }
            if let Some(standing) = standing {
                if *incoming_used == 0 && !incoming.is_empty() {
                    give_wire_buffer(incoming);
                }
                return Ok(standing);
            }
        }
    }

    /// Sends `outgoing` until it is empty (its buffer then goes back to the pool) or the socket
    /// would block (`WouldBlock`).
    /// A TLS-ALPN-01 validation's handshake is over: it is all the CA asks (RFC 8737 §3), so
    /// the connection ends as if the client had closed, before any request is read.
    fn validated_challenge(&self) -> bool {
        !self.session.is_handshaking() && self.session.alpn_protocol() == Some(ACME_TLS_ALPN)
    }

    fn flush_records(&mut self) -> io::Result<()> {
        while !self.outgoing.unsent().is_empty() {
            match self.inner.write(self.outgoing.unsent())? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                sent => self.outgoing.sent += sent,
            }
        }
        self.outgoing.release();
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
            let standing = self.process(None);
            // Handshake messages, tickets, alerts (the one an error queued too): out now, or
            // at the next writable event.
            let flushed = self.flush_some();
            let standing = standing?;
            flushed?;
            if standing == Standing::Traffic && self.validated_challenge() {
                debug!("TLS-ALPN-01 handshake complete: closing without a request");
                self.peer_closed = true;
                self.finish();
                return Ok(0);
            }
            if self.plaintext_read < self.plaintext.len() || self.peer_closed {
                continue;
            }
            if standing == Standing::Closed {
                return Ok(0);
            }
            // Nothing decrypted: more records from the socket.
            if self.incoming.is_empty() {
                self.incoming = take_wire_buffer();
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
                give_wire_buffer(&mut self.incoming);
            }
            match read {
                Ok(0) => return Ok(0), // TCP end without close_notify: the connection closes either way
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Records encoded or encrypted and not yet sent. The buffer keeps its length between uses
/// (only `bytes[sent..filled]` counts), so encrypting into it zeroes nothing.
#[derive(Default)]
struct Outgoing {
    bytes: Vec<u8>,
    filled: usize,
    sent: usize,
}

impl Outgoing {
    /// At least `len` bytes of room after what is filled, for `encode` and `encrypt` to write in.
    fn room(&mut self, len: usize) -> &mut [u8] {
        if self.bytes.is_empty() {
            self.bytes = take_wire_buffer();
        }
        if self.bytes.len() < self.filled + len {
            self.bytes.resize(self.filled + len, 0);
        }
        &mut self.bytes[self.filled..]
    }

    fn commit(&mut self, written: usize) {
        self.filled += written;
    }

    fn unsent(&self) -> &[u8] {
        &self.bytes[self.sent..self.filled]
    }

    /// All sent: the buffer goes back to the pool.
    fn release(&mut self) {
        (self.filled, self.sent) = (0, 0);
        give_wire_buffer(&mut self.bytes);
    }
}

/// Drops the first `count` of the `used` bytes of `buffer`, keeping the rest at its start.
fn discard_front(buffer: &mut [u8], used: &mut usize, count: usize) {
    if count > 0 {
        buffer.copy_within(count..*used, 0);
        *used -= count;
    }
}

/// After an error: what rustls still had to send and the alert it queued, encoded into
/// `outgoing`, in at most `states` steps. `incoming[..used]` is what is left of the records
/// read; each call's `discard` is dropped from it as after any other call.
fn alert_records(
    session: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    used: &mut usize,
    outgoing: &mut Outgoing,
    states: usize,
) -> Option<()> {
    // The ServerHello and more, when TLS 1.3 fails in its extensions, then the alert, each its
    // own state (three encodes for a TLS 1.3 ALPN failure), then one transmit.
    for _ in 0..states {
        let status = session.process_tls_records(&mut incoming[..*used]);
        let discard = status.discard;
        let more = match status.state {
            Ok(ConnectionState::EncodeTlsData(mut records)) => {
                let written = records.encode(outgoing.room(RECORD_WIRE_BYTES)).ok()?;
                outgoing.commit(written);
                true
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                false
            }
            _ => false,
        };
        discard_front(incoming, used, discard);
        if !more {
            break;
        }
    }
    Some(())
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl<S> Drop for TlsTransport<S> {
    /// A connection closing mid-exchange hands its buffers to the next one.
    fn drop(&mut self) {
        give_wire_buffer(&mut self.incoming);
        give_wire_buffer(&mut self.outgoing.bytes);
        give_record_buffer(&mut self.plaintext);
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
                    self.incoming = take_wire_buffer();
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
        STAGING.with_borrow_mut(|staging| {
            staging.clear();
            for slice in slices {
                let room = FILE_CHUNK_BYTES - staging.len();
                staging.extend_from_slice(&slice[..slice.len().min(room)]);
                if staging.len() == FILE_CHUNK_BYTES {
                    break;
                }
            }
            self.encrypt(staging)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.mode {
            Mode::PlainHttp => self.inner.flush(),
            _ => self.flush_records(),
        }
    }
}

impl<S: Transport> Transport for TlsTransport<S> {
    fn has_unsent_output(&self) -> bool {
        !self.outgoing.unsent().is_empty()
    }

    fn local_port(&self) -> Option<u16> {
        self.inner.local_port()
    }

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

    fn negotiated_http2(&self) -> bool {
        self.mode == Mode::Tls && self.session.alpn_protocol() == Some(b"h2")
    }

    fn certificate_covers(&self, site: &str) -> bool {
        self.certificate.as_ref().is_none_or(|certificate| certificate.covers(site))
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
