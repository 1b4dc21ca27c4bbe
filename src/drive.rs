//! The contract between an engine and what it drives: an HTTP [`crate::connection::Connection`]
//! or a seed protocol's client. An engine hands it the clock and the site, and gets back a
//! [`Verdict`]; it never needs to know which protocol it is driving to obey one.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::AccessLog;
use crate::files::Root;
use crate::http::{ExtraHeader, PathHeader};

/// What every connection serves, and the limits it serves it under.
#[derive(Debug)]
pub struct Site {
    pub root: Root,
    pub limits: Limits,
    pub access_log: AccessLog,
    /// Added to every response (`--header`).
    pub headers: Vec<ExtraHeader>,
    /// Added to the responses for some paths (`--header-for`).
    pub path_headers: Vec<PathHeader>,
    /// `--https-redirect`: plain-HTTP requests are sent to HTTPS on this port.
    pub https_redirect: Option<u16>,
    /// `--auth-file`: Basic authentication, checked before any file access.
    pub auth: Option<crate::auth::Auth>,
}

impl Site {
    /// SIGHUP: the access log reopened (logrotate moved it) and the password file read again.
    pub fn reload(&self) {
        match self.access_log.reopen() {
            Ok(()) => log::info!("SIGHUP: access log reopened"),
            Err(error) => log::warn!("SIGHUP: cannot reopen the access log: {error}"),
        }
        if let Some(auth) = &self.auth {
            auth.reload();
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

/// Where [`Connection::drive`] gets the time. The event loop passes the [`Now`] it read for
/// the turn; a blocking engine, whose `drive` waits for its client, reads the clock live.
pub trait Clock {
    fn now(&mut self) -> Now;
}

impl Clock for Now {
    fn now(&mut self) -> Now {
        *self
    }
}

/// Reads the system clocks on every call.
pub struct LiveClock;

impl Clock for LiveClock {
    fn now(&mut self) -> Now {
        Now::read()
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
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::PeerClosedMidRequest => f.write_str("peer closed mid-request"),
            CloseReason::ResponseSaidClose => f.write_str("response said close"),
            CloseReason::BadBody => f.write_str("malformed request body"),
            CloseReason::Io(kind) => write!(f, "socket error: {kind}"),
            CloseReason::Timeout(Timeout::Header) => f.write_str("header timeout"),
            CloseReason::Timeout(Timeout::Idle) => f.write_str("idle timeout"),
            CloseReason::Timeout(Timeout::Send) => f.write_str("send timeout"),
            CloseReason::ShuttingDown => f.write_str("shutting down"),
            CloseReason::Panicked => f.write_str("panicked"),
        }
    }
}
