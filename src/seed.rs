//! The seed protocols every server book starts with, served by the same event loop as HTTP
//! (`--echo-port`, `--daytime-port`): Echo (RFC 862) sends back whatever arrives, Daytime
//! (RFC 867) sends the time as one line. Each runs over TCP, as a connection in the loop's slab
//! with its own tiny state machine, and over UDP, one reply per datagram.
//!
//! They are HTTP with everything but the loop taken away: read until `WouldBlock`, write what
//! is pending, wait for WRITABLE only while something is, close on EOF or a timeout. Echo also
//! shows backpressure: while the client is not reading its echo, we stop reading from it, so a
//! client that only sends fills its own socket buffers, never our memory.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Instant, SystemTime};

use log::{debug, trace};
use mio::net::{TcpStream, UdpSocket};

use crate::drive::{Client, CloseReason, ConnLabel, Context, Limits, Phase, Timeout, Verdict};
use crate::http::http_date;
use crate::transport::nonblocking;

/// Bytes of echo held per connection: reading stops while this much waits to go back.
pub const ECHO_BUFFER_BYTES: usize = 4096;
/// Bytes one echo client may bounce per drive before it yields: a client that reads as fast as
/// it writes never leaves the socket empty, and must not keep the loop to itself.
pub const ECHO_BYTES_PER_DRIVE: usize = 64 * 1024;
/// Datagrams one seed socket answers per loop turn, for the same reason.
pub const DATAGRAMS_PER_TURN: usize = 64;
/// Largest datagram read (and echoed); the kernel truncates longer ones.
const MAX_DATAGRAM_BYTES: usize = 2048;

/// The seed protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    Echo,
    Daytime,
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Seed::Echo => "echo",
            Seed::Daytime => "daytime",
        })
    }
}

/// One TCP client of a seed protocol.
pub struct SeedConnection {
    stream: TcpStream,
    label: ConnLabel,
    state: SeedState,
    /// Last time bytes moved either way (or the accept).
    last_progress: Instant,
}

enum SeedState {
    /// Echo: `buffer[sent..]` still has to go back; reading stops while the buffer is full.
    /// After the client's EOF (`read_closed`), the rest is sent and the connection closes.
    Echoing { buffer: Vec<u8>, sent: usize, read_closed: bool },
    /// Daytime: the line, `sent` bytes of it already out; the connection closes after it.
    Telling { line: Vec<u8>, sent: usize },
    /// Daytime after the line: our side is shut (FIN sent) and whatever the client sends is
    /// read and dropped until its EOF. Closing with unread bytes would send a reset, which
    /// can destroy the line before a client that sent a command first (the seed's timestamp
    /// client does) has read it.
    Lingering,
}

/// How long a daytime client may take to close after its line.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

impl SeedConnection {
    pub fn new(
        seed: Seed,
        stream: TcpStream,
        label: ConnLabel,
        now: Instant,
        wall: SystemTime,
    ) -> SeedConnection {
        let state = match seed {
            Seed::Echo => SeedState::Echoing { buffer: Vec::new(), sent: 0, read_closed: false },
            Seed::Daytime => SeedState::Telling { line: daytime_line(wall).into_bytes(), sent: 0 },
        };
        SeedConnection { stream, label, state, last_progress: now }
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn step(&mut self, now: Instant) -> io::Result<Verdict> {
        let label = self.label;
        match &mut self.state {
            SeedState::Telling { line, sent } => {
                if !write_pending(&mut self.stream, line, sent, &label, &mut self.last_progress, now)? {
                    return Ok(Verdict::Wait { writable: true });
                }
                trace!("{label} shutdown(SHUT_WR)");
                self.stream.shutdown(std::net::Shutdown::Write)?;
                self.state = SeedState::Lingering;
                self.step(now)
            }
            SeedState::Lingering => {
                let mut dropped = [0u8; 512];
                loop {
                    match nonblocking(|| self.stream.read(&mut dropped))? {
                        Some(0) => return Ok(Verdict::Close(CloseReason::ResponseSaidClose)),
                        Some(read) => trace!("{label} read {read}B (dropped)"),
                        None => return Ok(Verdict::Wait { writable: false }),
                    }
                }
            }
            SeedState::Echoing { buffer, sent, read_closed } => {
                let mut bounced = 0;
                loop {
                    // Write first: only an emptied buffer makes room to read more (backpressure).
                    if !write_pending(&mut self.stream, buffer, sent, &label, &mut self.last_progress, now)? {
                        return Ok(Verdict::Wait { writable: true });
                    }
                    bounced += buffer.len();
                    buffer.clear();
                    *sent = 0;
                    if *read_closed {
                        return Ok(Verdict::Close(CloseReason::PeerClosed));
                    }
                    if bounced >= ECHO_BYTES_PER_DRIVE {
                        return Ok(Verdict::Yield);
                    }
                    buffer.resize(ECHO_BUFFER_BYTES, 0);
                    match nonblocking(|| self.stream.read(buffer))? {
                        Some(0) => {
                            trace!("{label} read EOF");
                            buffer.clear();
                            *read_closed = true;
                        }
                        Some(read) => {
                            trace!("{label} read {read}B");
                            buffer.truncate(read);
                            self.last_progress = now;
                        }
                        None => {
                            buffer.clear();
                            return Ok(Verdict::Wait { writable: false });
                        }
                    }
                }
            }
        }
    }
}

impl Client for SeedConnection {
    fn label(&self) -> ConnLabel {
        self.label
    }

    fn phase(&self) -> Phase {
        match self.is_idle() {
            true => Phase::Waiting,
            false => Phase::Writing,
        }
    }

    /// Whether closing now loses nothing the client was promised.
    fn is_idle(&self) -> bool {
        match &self.state {
            SeedState::Echoing { buffer, sent, .. } => *sent == buffer.len(),
            SeedState::Telling { .. } => false,
            SeedState::Lingering => true,
        }
    }

    /// When to give up: idle (nothing to send) or send timeout (the client is not reading).
    fn deadline(&self, limits: &Limits) -> (Instant, Timeout) {
        match (&self.state, self.is_idle()) {
            (SeedState::Lingering, _) => {
                (self.last_progress + limits.idle_timeout.min(LINGER), Timeout::Idle)
            }
            (_, true) => (self.last_progress + limits.idle_timeout, Timeout::Idle),
            (_, false) => (self.last_progress + limits.send_timeout, Timeout::Send),
        }
    }

    /// Does all the reading and writing possible without blocking; a seed needs nothing from
    /// the context but the time.
    fn drive(&mut self, cx: &mut Context<'_>) -> Verdict {
        match self.step(cx.now().mono) {
            Ok(verdict) => verdict,
            Err(error) => Verdict::Close(CloseReason::Io(error.kind())),
        }
    }

    fn close(self: Box<Self>, reason: CloseReason, _: &mut Context<'_>) {
        debug!("{} close: {reason}", self.label);
    }
}

/// Writes `bytes[*sent..]` until done (true) or the socket is full (false).
fn write_pending(
    stream: &mut TcpStream,
    bytes: &[u8],
    sent: &mut usize,
    label: &ConnLabel,
    last_progress: &mut Instant,
    now: Instant,
) -> io::Result<bool> {
    while *sent < bytes.len() {
        match nonblocking(|| stream.write(&bytes[*sent..]))? {
            Some(0) => return Err(io::ErrorKind::WriteZero.into()),
            Some(written) => {
                trace!("{label} write {written}B");
                *sent += written;
                *last_progress = now;
            }
            None => {
                trace!("{label} write WouldBlock");
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether a datagram socket was emptied or stopped at its budget with datagrams left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Drained,
    BudgetSpent,
}

/// Answers up to [`DATAGRAMS_PER_TURN`] datagrams on `socket`, until `WouldBlock`. A reply the
/// socket cannot take right now is dropped: UDP promises no delivery, and the loop must not
/// wait on one client.
pub fn answer_datagrams(socket: &UdpSocket, seed: Seed, wall: SystemTime) -> Answered {
    let mut datagram = [0u8; MAX_DATAGRAM_BYTES];
    let mut answered = 0;
    while answered < DATAGRAMS_PER_TURN {
        let (len, peer) = match socket.recv_from(&mut datagram) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Answered::Drained,
            // ECONNREFUSED is the ICMP answer to an earlier reply, reported once: read on.
            Err(error)
                if matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused) =>
            {
                continue;
            }
            Err(error) => {
                debug!("{seed} udp recv_from: {error}");
                return Answered::Drained;
            }
        };
        answered += 1;
        let reply = datagram_reply(seed, &datagram[..len], wall);
        match socket.send_to(&reply, peer) {
            Ok(sent) => trace!("{seed} udp {peer} {len}B in, {sent}B out"),
            Err(error) => debug!("{seed} udp reply to {peer} dropped: {error}"),
        }
    }
    Answered::BudgetSpent
}

/// The reply to one datagram: the same bytes (echo) or the time (daytime, whatever was sent).
pub fn datagram_reply(seed: Seed, request: &[u8], wall: SystemTime) -> Vec<u8> {
    match seed {
        Seed::Echo => request.to_vec(),
        Seed::Daytime => daytime_line(wall).into_bytes(),
    }
}

/// RFC 867 leaves the format free; we answer as BSD inetd's daytime and the seed's
/// `time.ctime()` do: `Tue Dec  1 15:52:00 2026` (day of month padded to two columns), in UTC,
/// ending in CRLF.
pub fn daytime_line(wall: SystemTime) -> String {
    // The IMF-fixdate `Tue, 01 Dec 2026 15:52:00 GMT`, rearranged.
    let date = http_date(wall);
    let day = date.day().strip_prefix('0').unwrap_or(date.day());
    format!("{} {} {day:>2} {} {}\r\n", date.weekday(), date.month(), date.clock(), date.year())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn daytime_is_the_ctime_format() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_317_869); // 2026-11-22 03:24:29 UTC
        assert_eq!(daytime_line(at), "Sun Nov 22 03:24:29 2026\r\n");
        let single_digit_day = UNIX_EPOCH + Duration::from_secs(1_796_140_320); // 2026-12-01 15:52
        assert_eq!(daytime_line(single_digit_day), "Tue Dec  1 15:52:00 2026\r\n");
        let first = UNIX_EPOCH + Duration::from_secs(1_772_323_200 + 86_400); // 2026-03-02
        assert_eq!(daytime_line(first), "Mon Mar  2 00:00:00 2026\r\n");
    }

    #[test]
    fn an_echo_client_that_keeps_sending_yields_after_its_budget() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut written = 0;
        while written < 4 * ECHO_BYTES_PER_DRIVE {
            match client.write(&[b'x'; 8192]) {
                Ok(n) => written += n,
                Err(_) => break, // the buffers are full
            }
        }
        assert!(written > 2 * ECHO_BYTES_PER_DRIVE, "only {written} bytes fit the socket buffers");
        let label = ConnLabel { token: 0, fd: 0 };
        let now = Instant::now();
        let mut conn = SeedConnection::new(Seed::Echo, TcpStream::from_std(server), label, now, UNIX_EPOCH);
        // More is waiting and the client has room for the echo, yet the drive gives way.
        assert_eq!(conn.step(now).unwrap(), Verdict::Yield);
    }

    #[test]
    fn a_datagram_socket_answers_a_budget_per_turn() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let waiting = DATAGRAMS_PER_TURN + 10;
        for i in 0..waiting {
            client.send_to(&[i as u8; 100], server.local_addr().unwrap()).unwrap();
        }
        server.set_nonblocking(true).unwrap();
        let server = UdpSocket::from_std(server);
        assert_eq!(answer_datagrams(&server, Seed::Echo, UNIX_EPOCH), Answered::BudgetSpent);
        assert_eq!(answer_datagrams(&server, Seed::Echo, UNIX_EPOCH), Answered::Drained);
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = [0u8; 200];
        for i in 0..waiting {
            let (len, _) = client.recv_from(&mut reply).unwrap();
            assert_eq!(&reply[..len], &[i as u8; 100][..]);
        }
    }

    #[test]
    fn datagrams_get_their_bytes_back_or_the_time() {
        let at = UNIX_EPOCH;
        assert_eq!(datagram_reply(Seed::Echo, b"ping\n", at), b"ping\n");
        assert_eq!(datagram_reply(Seed::Daytime, b"anything", at), b"Thu Jan  1 00:00:00 1970\r\n");
    }
}
