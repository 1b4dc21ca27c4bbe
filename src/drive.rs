//! The contract between an engine and the clients it drives: an HTTP
//! [`crate::connection::Connection`] or a seed protocol's client, each a [`Client`]. An engine
//! lends a client a [`Context`] (the time, and what the service answers from) for each
//! `drive`, and gets back a [`Verdict`]; it never needs to know which protocol it is driving to
//! obey one.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::AccessLog;
use crate::files::FileCache;
use crate::http2::frame::ErrorCode;
use crate::site::Sites;
use crate::status::{Census, Counters};

/// What every engine asks of every client it holds, HTTP or a seed protocol alike (redis'
/// handler table): the engine obeys verdicts and never asks which kind of client it drives.
pub trait Client {
    /// `conn=<token> fd=<fd>`, for the engine's own log lines about it.
    fn label(&self) -> ConnLabel;
    /// Does everything possible without blocking (a blocking engine's socket blocks instead),
    /// and says what to wait for next. Safe on a spurious wake-up: the I/O's outcome decides.
    fn drive(&mut self, cx: &mut Context<'_>) -> Verdict;
    /// When it runs out of time if nothing moves, and which limit that is.
    fn deadline(&self, limits: &Limits) -> (Instant, Timeout);
    /// Closing it now would lose nothing it was asked for.
    fn is_idle(&self) -> bool;
    /// The readiness event reported a hang-up or an error.
    fn note_hang_up(&mut self) {}
    /// The server is shutting down: finish what was asked, take nothing new.
    fn begin_draining(&mut self) {}
    /// Logs the close and whatever it leaves unsent; dropping it closes the socket.
    fn close(self: Box<Self>, reason: CloseReason, cx: &mut Context<'_>);
    /// Where it is, for the status report's count of connections.
    fn phase(&self) -> Phase;
}

/// Where a client is, as the status report counts connections: nginx's Reading, Writing and
/// Waiting, with TLS handshakes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshaking,
    /// A request (head or body) is coming in.
    Reading,
    /// A response is going out.
    Writing,
    /// Idle between requests.
    Waiting,
}

impl Phase {
    pub const COUNT: usize = 4;
}

/// What an engine lends a client for one call: the time, and the parts of the service it
/// answers from. One value, so a new part (a second site, counters) changes no signature.
pub struct Context<'a> {
    time: Time,
    /// What is served, and how a request chooses its site.
    pub sites: &'a Sites,
    /// Where each response's line goes.
    pub access_log: &'a AccessLog,
    /// Small files in memory, when the engine keeps them (the event loop, which alone reads
    /// their change events and is the one thread touching them).
    pub cache: Option<&'a mut FileCache>,
    /// The service's counts, when it keeps them (the event loop, for `--status-listen`).
    pub counters: Option<&'a Counters>,
    /// The engine's count of its connections, when it reports them.
    pub census: Option<&'a Census>,
    /// `--http2`: plain connections that open with HTTP/2's preface speak it.
    pub http2: bool,
}

/// Where a [`Context`] gets the time.
#[derive(Debug, Clone, Copy)]
pub enum Time {
    /// The time the event loop read for this turn.
    Turn(Now),
    /// Read live on every call: a blocking engine's `drive` waits for its client.
    Live,
}

impl<'a> Context<'a> {
    pub fn new(
        time: Time,
        sites: &'a Sites,
        access_log: &'a AccessLog,
        cache: Option<&'a mut FileCache>,
    ) -> Self {
        Context { time, sites, access_log, cache, counters: None, census: None, http2: true }
    }

    pub fn with_http2(mut self, http2: bool) -> Self {
        self.http2 = http2;
        self
    }

    /// The time now, as this context tells it.
    pub fn now(&self) -> Now {
        match self.time {
            Time::Turn(now) => now,
            Time::Live => Now::read(),
        }
    }
}

/// Per-connection time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head must arrive whole within this long of its first byte (slowloris).
    pub header_timeout: Duration,
    /// An idle keep-alive connection (or a stalled request body) is closed after this long.
    pub idle_timeout: Duration,
    /// A client that takes no response bytes for this long is dropped.
    pub send_timeout: Duration,
}

/// The clock, read once per loop turn: wall time for HTTP dates, monotonic time for deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub wall: SystemTime,
    pub mono: Instant,
}

impl Now {
    pub fn read() -> Now {
        Now { wall: SystemTime::now(), mono: Instant::now() }
    }
}

/// The event loop's clock: one `clock_gettime(CLOCK_MONOTONIC)` per turn. Wall time (HTTP
/// dates, log lines: one-second resolution) is the wall clock read at most once a second plus
/// the monotonic time since, so a turn costs one vDSO call, not two; nginx caches its time per
/// turn the same way. A step of the system clock shows within a second.
#[derive(Debug, Clone, Copy)]
pub struct TurnClock {
    /// The last full reading of both clocks.
    synced: Now,
}

/// How long the wall time derived from the monotonic clock is trusted.
const WALL_RESYNC: Duration = Duration::from_secs(1);

impl TurnClock {
    pub fn new() -> TurnClock {
        TurnClock { synced: Now::read() }
    }

    /// The time for this turn.
    pub fn read(&mut self) -> Now {
        let mono = Instant::now();
        let since = mono.saturating_duration_since(self.synced.mono);
        if since >= WALL_RESYNC {
            self.synced = Now { wall: SystemTime::now(), mono };
            return self.synced;
        }
        Now { wall: self.synced.wall + since, mono }
    }
}

impl Default for TurnClock {
    fn default() -> TurnClock {
        TurnClock::new()
    }
}

/// Which limit a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    Header,
    Idle,
    Send,
}

/// `conn=<token> fd=<fd>`: the prefix of every log line about a connection, so logs line up
/// with strace output.
#[derive(Debug, Clone, Copy)]
pub struct ConnLabel {
    pub token: usize,
    pub fd: RawFd,
}

impl fmt::Display for ConnLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn={} fd={}", self.token, self.fd)
    }
}

/// What the driver of a connection should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wait for readability, and for writability too when `writable` (output is pending).
    Wait { writable: bool },
    /// Ready to write more, but gave way to the others: drive again soon without waiting for
    /// an event (edge-triggered readiness would not report this socket again).
    Yield,
    /// Close the connection now.
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed between requests.
    PeerClosed,
    /// The client closed with a request head or body half sent.
    PeerClosedMidRequest,
    /// The last response said `Connection: close`.
    ResponseSaidClose,
    /// A request body broke its own framing after its response was already queued.
    BadBody,
    /// The socket failed (reset, broken pipe, ...).
    Io(io::ErrorKind),
    /// A time limit ran out.
    Timeout(Timeout),
    /// The server is shutting down and this connection had nothing in flight.
    ShuttingDown,
    /// Serving it hit a bug (a panic), caught by the engine.
    Panicked,
    /// A request named a host no site answers to, and `unknown_host = "close"`.
    UnknownHost,
    /// HTTP/2 ended with this GOAWAY: a connection error, or a finished drain (NO_ERROR).
    Http2(ErrorCode),
    /// The file a response was sending got shorter (already logged as a warning naming it).
    FileShrank,
}

impl CloseReason {
    /// Why a connection whose I/O failed with `error` closes: the socket, unless the error
    /// is a file that shrank under its response.
    pub fn from_io(error: &io::Error) -> CloseReason {
        match error.get_ref().is_some_and(|inner| inner.is::<crate::output::FileShrank>()) {
            true => CloseReason::FileShrank,
            false => CloseReason::Io(error.kind()),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::PeerClosedMidRequest => f.write_str("peer closed mid-request"),
            CloseReason::ResponseSaidClose => f.write_str("response said close"),
            CloseReason::BadBody => f.write_str("malformed request body"),
            CloseReason::Io(kind) => write!(f, "socket error: {kind}"),
            CloseReason::FileShrank => f.write_str("the file being sent shrank"),
            CloseReason::Timeout(Timeout::Header) => f.write_str("header timeout"),
            CloseReason::Timeout(Timeout::Idle) => f.write_str("idle timeout"),
            CloseReason::Timeout(Timeout::Send) => f.write_str("send timeout"),
            CloseReason::ShuttingDown => f.write_str("shutting down"),
            CloseReason::UnknownHost => f.write_str("unknown host"),
            CloseReason::Panicked => f.write_str("panicked"),
            CloseReason::Http2(code) => write!(f, "HTTP/2 GOAWAY {}", code.name()),
        }
    }
}
