//! One HTTP/1.1 connection as an explicit state machine, whatever drives its socket.
//!
//! The event loop calls [`Connection::drive`] when the socket may be ready; `drive` does all the
//! work that is possible without blocking and returns a [`Verdict`]: which readiness to wait
//! for next, to yield to the other clients, or that the connection is finished and why. A
//! blocking engine calls `drive` once and it runs the connection to its end. The cycle is RFC
//! 9112's: read, answer every complete request already buffered (pipelining) in order, flush
//! the batch, read again.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use log::{debug, trace};

use crate::access_log::AccessLog;
use crate::drive::{Clock, CloseReason, ConnLabel, Limits, Now, Site, Timeout, Verdict};
use crate::files::Found;
use crate::http::{
    BodyDiscard, HttpError, MAX_HEAD_BYTES, Parsed, Request, logged_fields, parse_head, respond,
};
use crate::output::{AccessRecord, Flushed, Output, OutputQueue};
use crate::recycle::FreeList;
use crate::transport::Transport;

/// Most responses queued on one connection; past this we stop parsing (and so reading) until
/// the client takes what it asked for, which bounds memory however much it pipelines.
pub const MAX_QUEUED_RESPONSES: usize = 32;
/// Unread request bytes thrown away before closing, so the kernel does not answer them with a
/// RST that could destroy our last response in flight.
const MAX_DRAIN_ON_CLOSE_BYTES: usize = 64 * 1024;

/// `Referer` and `User-Agent` for the access log, when it is on.
type LoggedFields = (Option<String>, Option<String>);

/// Where the connection is in reading its current request.
#[derive(Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Throwing away the body of a request already answered.
    Body(BodyDiscard),
    /// No more requests will be read; close once the output is flushed.
    Closing(CloseReason),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Head => "reading head",
            Phase::Body(_) => "discarding body",
            Phase::Closing(_) => "closing",
        }
    }
}

pub struct Connection<T> {
    transport: T,
    label: ConnLabel,
    peer: Option<SocketAddr>,
    input: InputBuffer,
    phase: Phase,
    /// Responses not yet fully written, oldest first.
    output: OutputQueue,
    /// Last time bytes moved either way (or the accept): the base of idle and send timeouts.
    last_progress: Instant,
    /// When the partial request head now in `input` was first seen: the header deadline's base.
    head_started: Option<Instant>,
    /// The server is shutting down: answer what was asked, with `Connection: close`.
    draining: bool,
    /// The last read was short on an edge-triggered socket: nothing more to read until the
    /// next readiness event.
    socket_drained: bool,
    /// The readiness event said the peer hung up (or failed): read on to EOF or the error.
    peer_hung_up: bool,
}

impl<T: Transport> Connection<T> {
    pub fn new(transport: T, label: ConnLabel, peer: Option<SocketAddr>, now: Now) -> Connection<T> {
        Connection {
            transport,
            label,
            peer,
            input: InputBuffer::default(),
            phase: Phase::Head,
            output: OutputQueue::default(),
            last_progress: now.mono,
            head_started: None,
            draining: false,
            socket_drained: false,
            peer_hung_up: false,
        }
    }

    pub fn label(&self) -> ConnLabel {
        self.label
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Does everything possible without blocking. Every call is safe, even on a spurious
    /// wake-up: the outcome of each read and write decides, never the event bits.
    pub fn drive(&mut self, site: &Site, clock: &mut impl Clock) -> Verdict {
        let sent_before = self.output.bytes_sent();
        let verdict = self.drive_io(site, clock);
        let now = clock.now();
        if self.output.bytes_sent() != sent_before {
            self.last_progress = now.mono;
        }
        let partial_head = matches!(self.phase, Phase::Head) && !self.input.is_empty();
        self.head_started = if partial_head { Some(self.head_started.unwrap_or(now.mono)) } else { None };
        if let Verdict::Close(_) = verdict {
            // Free the buffer now, not when the engine drops us after its batch: a burst of
            // closing clients then shares one buffer instead of each allocating its own.
            self.input.give_back();
        }
        verdict
    }

    fn drive_io(&mut self, site: &Site, clock: &mut impl Clock) -> Verdict {
        loop {
            let now = clock.now();
            let needs_input = self.answer_buffered_requests(site, now.wall);
            match self.output.send_some(&mut self.transport, &self.label, &site.access_log) {
                Ok(Flushed::All) => {}
                Ok(Flushed::Blocked) => return Verdict::Wait { writable: true },
                Ok(Flushed::Yielded) => return Verdict::Yield,
                Err(error) => return Verdict::Close(CloseReason::Io(error.kind())),
            }
            if let Phase::Closing(reason) = self.phase {
                self.drain_unread_input();
                return Verdict::Close(reason);
            }
            if !needs_input {
                continue; // more requests are buffered; the output now has room for them
            }
            if self.socket_drained {
                // A short read on an edge-triggered socket drained it (epoll(7), Q9): new data
                // brings a new event, so the read that would only say WouldBlock is skipped.
                // It also means every request read in a turn was read before that turn's
                // responses went out, which keeps the file cache exact (see file_cache).
                self.socket_drained = false;
                self.input.release_if_empty();
                self.output.release_if_empty();
                return Verdict::Wait { writable: false };
            }
            // Edge-triggered readiness (mio `Poll` docs): read until drained before waiting.
            let space = self.input.space();
            match self.input.read_from(&mut self.transport) {
                Ok(0) => {
                    trace!("{} read EOF", self.label);
                    let mid_request = !self.input.is_empty() || matches!(self.phase, Phase::Body(_));
                    return Verdict::Close(if mid_request {
                        CloseReason::PeerClosedMidRequest
                    } else {
                        CloseReason::PeerClosed
                    });
                }
                Ok(read) => {
                    trace!("{} read {read}B", self.label);
                    self.last_progress = now.mono;
                    self.socket_drained =
                        read < space && self.transport.short_read_drains() && !self.peer_hung_up;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    trace!("{} read WouldBlock", self.label);
                    self.input.release_if_empty();
                    self.output.release_if_empty();
                    return Verdict::Wait { writable: false };
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Verdict::Close(CloseReason::Io(error.kind())),
            }
        }
    }

    /// When this connection runs out of time if nothing moves, and which limit that is.
    pub fn deadline(&self, limits: &Limits) -> (Instant, Timeout) {
        if !self.output.is_empty() {
            (self.last_progress + limits.send_timeout, Timeout::Send)
        } else if let Some(started) = self.head_started {
            (started + limits.header_timeout, Timeout::Header)
        } else {
            (self.last_progress + limits.idle_timeout, Timeout::Idle)
        }
    }

    /// True when nothing is in flight: no output, no partial request, no body being read.
    pub fn is_idle(&self) -> bool {
        self.output.is_empty() && self.input.is_empty() && matches!(self.phase, Phase::Head)
    }

    /// Tells the connection its readiness event reported a hang-up or error (EPOLLRDHUP,
    /// EPOLLERR), so `drive` reads until it sees the EOF or the error instead of stopping
    /// after a short read.
    pub fn note_hang_up(&mut self) {
        self.peer_hung_up = true;
    }

    /// From now on every response says `Connection: close`; the engine closes idle ones.
    pub fn begin_draining(&mut self) {
        self.draining = true;
    }

    /// Logs the close and anything left unsent. Dropping `self` closes the socket.
    pub fn close(mut self, reason: CloseReason, access_log: &AccessLog) {
        debug!("{} close: {reason}", self.label);
        self.output.abandon(&self.label, access_log);
    }

    /// Answers every complete request in the input, in order. Returns true when nothing more
    /// can happen without reading, false when it stopped for output room or for closing.
    fn answer_buffered_requests(&mut self, site: &Site, now: SystemTime) -> bool {
        loop {
            if self.output.len() >= MAX_QUEUED_RESPONSES {
                return false;
            }
            match &mut self.phase {
                Phase::Closing(_) => return false,
                _ if self.input.is_empty() => return true,
                Phase::Body(discard) => match discard.consume(self.input.data()) {
                    Ok(progress) => {
                        self.input.consume(progress.consumed);
                        if !progress.finished {
                            return true;
                        }
                        self.enter(Phase::Head);
                    }
                    Err(error) => {
                        debug!("{} request body refused: {error}", self.label);
                        self.enter(Phase::Closing(CloseReason::BadBody));
                    }
                },
                Phase::Head => match parse_head(self.input.data()) {
                    Ok(Parsed::Partial) => return true,
                    Ok(Parsed::Complete { request, head_len }) => {
                        let logged = match site.access_log.is_enabled() {
                            true => logged_fields(&self.input.data()[..head_len]),
                            false => (None, None),
                        };
                        self.input.consume(head_len);
                        self.answer(request, logged, site, now);
                    }
                    Err(error) => {
                        debug!("{} request head refused: {error}", self.label);
                        self.queue_response(None, Err(error), (None, None), site, now);
                    }
                },
            }
        }
    }

    /// Queues the response to one request and moves to whatever comes after it.
    fn answer(&mut self, mut request: Request, logged: LoggedFields, site: &Site, now: SystemTime) {
        request.keep_alive &= !self.draining;
        let body = BodyDiscard::for_framing(request.body);
        let found = match &body {
            Ok(_) => request.check_method().and_then(|()| {
                site.root.find_target(&request.target, request.fields.accept_encoding.as_deref())
            }),
            Err(error) => Err(error.clone()),
        };
        let keep_alive = self.queue_response(Some(&request), found, logged, site, now);
        if keep_alive {
            match body {
                Ok(Some(discard)) => self.enter(Phase::Body(discard)),
                _ => self.enter(Phase::Head),
            }
        }
    }

    /// Decides and queues one response; enters `Closing` when it closes the connection.
    fn queue_response(
        &mut self,
        request: Option<&Request>,
        found: Result<Found, HttpError>,
        (referer, user_agent): LoggedFields,
        site: &Site,
        now: SystemTime,
    ) -> bool {
        let mut response = respond(request, found.as_ref().map(Found::resource).map_err(Clone::clone), now);
        response.add_headers(&site.headers);
        let file = found.ok().and_then(Found::into_body);
        let request_line = match request {
            _ if !site.access_log.is_enabled() => String::new(),
            Some(r) => format!("{} {} {}", r.method.as_str(), r.target, r.version.as_str()),
            None => "-".to_owned(),
        };
        let access = AccessRecord {
            peer: self.peer,
            request_line,
            referer,
            user_agent,
            received: now,
            status: response.status.code(),
            head_bytes: 0,
            bytes_sent: 0,
        };
        self.output.push(Output::new(&response, file, access));
        if !response.keep_alive {
            self.enter(Phase::Closing(CloseReason::ResponseSaidClose));
        }
        response.keep_alive
    }

    fn enter(&mut self, next: Phase) {
        if std::mem::discriminant(&self.phase) != std::mem::discriminant(&next) {
            debug!("{} {} -> {}", self.label, self.phase.name(), next.name());
        }
        self.phase = next;
    }

    /// Reads and drops what the client already sent, so closing does not reset the connection.
    fn drain_unread_input(&mut self) {
        if self.transport.stop_blocking().is_err() {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAIN_ON_CLOSE_BYTES {
            match self.transport.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    }
}

/// Request bytes read but not yet consumed. Taken from a per-thread pool on first read and given
/// back whenever it empties, so an idle keep-alive connection holds no buffer, and a busy one
/// costs no allocation or zeroing per request.
#[derive(Debug, Default)]
struct InputBuffer {
    /// Storage of `INPUT_CAPACITY` bytes, or empty while idle.
    bytes: Vec<u8>,
    /// `bytes[start..filled]` holds unconsumed input. Consuming a request moves `start`;
    /// the bytes are moved to the front only before a read, not once per pipelined request.
    start: usize,
    filled: usize,
}

/// One more than the largest head, so a head that fills the buffer is known to be too large.
const INPUT_CAPACITY: usize = MAX_HEAD_BYTES + 1;
/// Most idle buffers a thread keeps for reuse (128 KiB).
const POOLED_BUFFERS: usize = 8;

thread_local! {
    /// Input buffers not in use, already `INPUT_CAPACITY` long; their old bytes are never read.
    static SPARE_BUFFERS: FreeList<Vec<u8>> = const { FreeList::new(POOLED_BUFFERS) };
}

impl InputBuffer {
    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.filled]
    }

    fn is_empty(&self) -> bool {
        self.start == self.filled
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
        }
    }

    /// How many bytes the next `read_from` may take.
    fn space(&self) -> usize {
        INPUT_CAPACITY - (self.filled - self.start)
    }

    fn read_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.bytes.is_empty() {
            self.bytes = SPARE_BUFFERS.with(FreeList::take).unwrap_or_else(|| vec![0; INPUT_CAPACITY]);
        }
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.filled, 0);
            (self.start, self.filled) = (0, self.filled - self.start);
        }
        if self.filled == self.bytes.len() {
            // Unreachable: a full buffer always fails to parse (431) before we read again.
            return Err(io::Error::other("input buffer full"));
        }
        let read = source.read(&mut self.bytes[self.filled..])?;
        self.filled += read;
        Ok(read)
    }

    fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.give_back();
        }
    }

    fn give_back(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let buffer = std::mem::take(&mut self.bytes);
        (self.start, self.filled) = (0, 0); // whatever was unconsumed is dropped with it
        SPARE_BUFFERS.with(|spares| spares.give(buffer));
    }
}

impl Drop for InputBuffer {
    /// A closing connection (whose last read was often just the EOF) returns its buffer too.
    fn drop(&mut self) {
        self.give_back();
    }
}
