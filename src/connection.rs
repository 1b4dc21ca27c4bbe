//! One HTTP/1.1 connection as an explicit state machine, whatever drives its socket.
//!
//! The engine calls [`Connection::drive`] when the socket may be ready; `drive` does all the
//! work that is possible without blocking and returns a [`Verdict`]: which readiness to wait
//! for next, to yield to the other clients, or that the connection is finished and why. A
//! blocking engine calls `drive` once and it runs the connection to its end. The cycle is RFC
//! 9112's: read, answer every complete request already buffered (pipelining) in order, flush
//! the batch, read again.
//!
//! Where the connection is in that cycle is one [`State`]; the deadline, the readiness to wait
//! for and whether the connection is idle are read off it and nothing else.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::thread::LocalKey;
use std::time::{Instant, SystemTime};

use log::{debug, trace};

use crate::connection_h2::{Http2, Io};
use crate::drive::{Client, CloseReason, ConnLabel, Context, Limits, Now, Phase, Timeout, Verdict};
use crate::exchange::{Exchange, Logged, look_up, respond_to};
use crate::files::Found;
use crate::http::{HttpError, Request, Response, Version};
use crate::http1::{BodyDiscard, Framing, Head, MAX_HEAD_BYTES, Parsed, parse_head};
use crate::http2::connection::PREFACE;
use crate::http2::frame::{DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN};
use crate::output::{Flushed, OutputQueue, Pending, SPARE_QUEUES, Sent, Tag};
use crate::recycle::FreeList;
use crate::site::SiteChoice;
use crate::transport::{Transport, nonblocking};

/// Most responses queued on one connection; past this we stop parsing (and so reading) until
/// the client takes what it asked for, which bounds memory however much it pipelines.
pub const MAX_QUEUED_RESPONSES: usize = 32;
/// Unread request bytes thrown away before closing, so the kernel does not answer them with a
/// RST that could destroy our last response in flight.
const MAX_DRAIN_ON_CLOSE_BYTES: usize = 64 * 1024;

thread_local! {
    /// Emptied output queues of HTTP connections, for the next busy one.
    static SPARE_OUTPUT_QUEUES: FreeList<VecDeque<Pending<Logged>>> = const { FreeList::new(SPARE_QUEUES) };
}

impl Tag for Logged {
    fn spare_queues() -> &'static LocalKey<FreeList<VecDeque<Pending<Logged>>>> {
        &SPARE_OUTPUT_QUEUES
    }
}

/// Where a connection is in its life (darkhttpd's receive / send / done, with pipelining).
/// Whether responses wait for the socket is not a state of its own but a fact read off the
/// output ([`Connection::output_pending`]): while they do, requests are still read and
/// answered behind them, the send timeout applies and WRITABLE is awaited too.
#[derive(Debug)]
enum State {
    /// Reading requests (idle, header or idle timeout while no output is pending).
    Reading(Reading),
    /// No more requests will be read; close once the output is flushed (send timeout).
    Closing(CloseReason),
    /// The client opened with HTTP/2 (its preface, or ALPN `h2`): frames from now on.
    Http2(Box<Http2>),
}

/// What a connection's first bytes say it speaks.
enum Opening {
    Http1,
    Http2,
    /// A prefix of HTTP/2's preface: more bytes decide.
    Undecided,
}

/// Where reading the request stream is.
#[derive(Debug)]
enum Reading {
    /// Between requests: nothing unanswered is buffered.
    Idle,
    /// Part of a request head is buffered; its first byte arrived at `since`.
    Head { since: Instant },
    /// Throwing away the body of a request already answered.
    Body(BodyDiscard),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Reading(Reading::Idle) => "idle",
            State::Reading(Reading::Head { .. }) => "reading head",
            State::Reading(Reading::Body(_)) => "discarding body",
            State::Closing(_) => "closing",
            State::Http2(_) => "http2",
        }
    }

    /// The reading side, unless the connection is closing.
    fn reading_mut(&mut self) -> Option<&mut Reading> {
        match self {
            State::Reading(reading) => Some(reading),
            State::Closing(_) | State::Http2(_) => None,
        }
    }
}

pub struct Connection<T> {
    transport: T,
    label: ConnLabel,
    peer: Option<SocketAddr>,
    /// Request bytes read and not yet consumed.
    input: InputBuffer,
    state: State,
    /// Responses not yet fully written, oldest first, each with its access-log record.
    output: OutputQueue<Logged>,
    /// Last time bytes moved either way (or the accept): the base of idle and send timeouts.
    last_progress: Instant,
    /// The server is shutting down: answer what was asked, with `Connection: close`. A policy
    /// for the responses still to come, not a phase of this connection.
    draining: bool,
    /// The port it came in on, once the access log asked for it (0: not yet).
    local_port: u16,
    /// It came in on `--status-listen`: it answers `/status` and `/metrics`, no site.
    serves_status: bool,
    /// Nothing has been read from it yet but the start of its first request: its first
    /// bytes may still turn out to be HTTP/2's preface.
    opening: bool,
}

impl<T: Transport> Connection<T> {
    pub fn new(transport: T, label: ConnLabel, peer: Option<SocketAddr>, now: Now) -> Connection<T> {
        Connection {
            transport,
            label,
            peer,
            input: InputBuffer::default(),
            state: State::Reading(Reading::Idle),
            output: OutputQueue::default(),
            last_progress: now.mono,
            draining: false,
            local_port: 0,
            serves_status: false,
            opening: true,
        }
    }

    /// A connection of the status listener, which serves the reports and nothing else.
    pub fn serving_status(mut self) -> Connection<T> {
        self.serves_status = true;
        self.opening = false;
        self
    }

    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    fn drive_io(&mut self, cx: &mut Context<'_>) -> Verdict {
        // A short read on an edge-triggered socket proves it empty (epoll(7), Q9) until the
        // next readiness event, and every `drive` may be that event: so the proof lasts for
        // this call only.
        let mut socket_drained = false;
        loop {
            if let State::Http2(http2) = &mut self.state {
                let io = Io {
                    transport: &mut self.transport,
                    input: &mut self.input,
                    label: self.label,
                    peer: self.peer,
                    last_progress: &mut self.last_progress,
                    local_port: &mut self.local_port,
                };
                return http2.drive(io, cx);
            }
            let now = cx.now();
            let needs_input = self.answer_buffered_requests(cx, now);
            match self.send_queued(cx) {
                Ok(Flushed::All) => {}
                Ok(Flushed::Yielded) => return Verdict::Yield,
                Ok(_) => return self.waiting(),
                Err(error) => return Verdict::Close(CloseReason::from_io(&error)),
            }
            if let State::Closing(reason) = self.state {
                self.drain_unread_input();
                return Verdict::Close(reason);
            }
            if !needs_input {
                continue; // more requests are buffered; the output now has room for them
            }
            if socket_drained {
                // The read that would only say WouldBlock is skipped. It also means every
                // request read in a turn was read before that turn's responses went out, which
                // keeps the file cache exact (see files::cache).
                return self.waiting();
            }
            // Edge-triggered readiness (mio `Poll` docs): read until drained before waiting.
            let space = self.input.space();
            match nonblocking(|| self.input.read_from(&mut self.transport)) {
                Ok(Some(0)) => {
                    trace!("{} read EOF", self.label);
                    let mid_request = !matches!(self.state, State::Reading(Reading::Idle));
                    return Verdict::Close(match mid_request {
                        true => CloseReason::PeerClosedMidRequest,
                        false => CloseReason::PeerClosed,
                    });
                }
                Ok(Some(read)) => {
                    trace!("{} read {read}B", self.label);
                    self.last_progress = now.mono;
                    if let State::Reading(reading @ Reading::Idle) = &mut self.state {
                        *reading = Reading::Head { since: now.mono };
                        debug!("{} idle -> reading head", self.label);
                    }
                    socket_drained = read < space && self.transport.short_read_drains();
                }
                Ok(None) => {
                    trace!("{} read WouldBlock", self.label);
                    return self.waiting();
                }
                Err(error) => return Verdict::Close(CloseReason::from_io(&error)),
            }
        }
    }

    /// Waits for what the state needs, holding no buffer it does not need meanwhile.
    fn waiting(&mut self) -> Verdict {
        self.input.release_if_empty();
        self.output.release_if_empty();
        // A closing connection waits only while output is pending: otherwise it has closed.
        Verdict::Wait { writable: self.output_pending() }
    }

    /// Responses (or, under TLS, records) are waiting for the socket to take them.
    fn output_pending(&self) -> bool {
        !self.output.is_empty() || self.transport.has_unsent_output()
    }

    /// Writes what the socket takes; each response that completes gets its access line.
    fn send_queued(&mut self, cx: &Context<'_>) -> io::Result<Flushed> {
        let flushed =
            self.output.send_some(&mut self.transport, &self.label, &mut finished(cx, self.label))?;
        // A layer under HTTP (TLS) may still hold bytes: records, handshake messages.
        match (flushed, self.transport.flush()) {
            (Flushed::All, Err(error)) if error.kind() == io::ErrorKind::WouldBlock => Ok(Flushed::Blocked),
            (Flushed::All, Err(error)) => Err(error),
            (flushed, _) => Ok(flushed),
        }
    }

    /// Answers every complete request in the input, in order. Returns true when nothing more
    /// can happen without reading, false when it stopped for output room or for closing.
    fn answer_buffered_requests(&mut self, cx: &mut Context<'_>, now: Now) -> bool {
        loop {
            if self.output.len() >= MAX_QUEUED_RESPONSES {
                return false;
            }
            if self.state.reading_mut().is_none() {
                return false;
            }
            if self.input.is_empty() {
                return true;
            }
            if self.opening {
                match self.first_bytes(cx) {
                    Opening::Undecided => return true,
                    Opening::Http1 => self.opening = false,
                    Opening::Http2 => {
                        self.enter(State::Http2(Box::new(Http2::new(now))));
                        return false;
                    }
                }
            }
            let Some(reading) = self.state.reading_mut() else {
                return false;
            };
            match reading {
                Reading::Body(discard) => match discard.consume(self.input.data()) {
                    Ok(progress) => {
                        self.input.consume(progress.consumed);
                        if !progress.finished {
                            return true;
                        }
                        self.next_request(now);
                    }
                    Err(error) => {
                        debug!("{} request body refused: {error}", self.label);
                        self.enter(State::Closing(CloseReason::BadBody));
                    }
                },
                Reading::Idle | Reading::Head { .. } => {
                    let was_idle = matches!(reading, Reading::Idle);
                    // The request borrows its head where it was read: the input buffer is lent
                    // to it while its response is decided, and the head consumed after.
                    let input = std::mem::take(&mut self.input);
                    let answered = match parse_head(input.data()) {
                        Ok(Parsed::Partial) => None,
                        // By reference: the request is a few hundred bytes, not worth moving.
                        Ok(Parsed::Complete { ref request, framing, head_len }) => {
                            let choice = match self.serves_status {
                                true => SiteChoice::Report,
                                false => cx.sites.choose_for(request),
                            };
                            match choice {
                                SiteChoice::Close => {
                                    debug!("{} request for an unknown host: closing", self.label);
                                    self.enter(State::Closing(CloseReason::UnknownHost));
                                    Some((0, None))
                                }
                                choice => {
                                    // Nothing pipelined behind it: its response may go out at once.
                                    let lone = head_len == input.data().len();
                                    Some((head_len, self.answer(request, framing, choice, lone, cx, now)))
                                }
                            }
                        }
                        Err(error) => {
                            debug!("{} request head refused: {error}", self.label);
                            self.queue_response(None, Err(error), false, cx, now.wall);
                            Some((0, None)) // the refusal closes: nothing after it is read
                        }
                    };
                    self.input = input;
                    let Some((head_len, body)) = answered else {
                        if was_idle {
                            self.set_reading(Reading::Head { since: now.mono }); // pipelined leftovers
                        }
                        return true;
                    };
                    self.input.consume(head_len);
                    match body {
                        Some(discard) => self.set_reading(Reading::Body(discard)),
                        None => self.next_request(now),
                    }
                }
            }
        }
    }

    /// Queues the response to one request framed as `framing`, where `choice` sends it (a
    /// site, a 404 for a host no site answers to, or the health check); `lone`: no other
    /// request is buffered behind it. Returns the request's body, to be read and dropped next.
    fn answer(
        &mut self,
        request: &Request<'_>,
        framing: Framing,
        choice: SiteChoice<'_>,
        lone: bool,
        cx: &mut Context<'_>,
        now: Now,
    ) -> Option<BodyDiscard> {
        let body = BodyDiscard::for_framing(framing.body);
        let refused = body.as_ref().err().cloned();
        let keep_alive = framing.keep_alive && !self.draining;
        let (exchange, found) = look_up(request, choice, refused, &self.transport, keep_alive, cx);
        let stays_open = self.queue_response(Some(exchange), found, lone, cx, now.wall);
        body.ok().flatten().filter(|_| stays_open)
    }

    /// Which protocol the first bytes read speak: HTTP/2 if TLS agreed on it, or (`--http2`,
    /// plain HTTP) they are its preface (RFC 9113 §3.3: prior knowledge); over TLS without
    /// ALPN `h2`, HTTP/1.1 whatever they are.
    fn first_bytes(&self, cx: &Context<'_>) -> Opening {
        if self.transport.negotiated_http2() {
            return Opening::Http2;
        }
        if !cx.http2 || self.transport.is_encrypted() {
            return Opening::Http1;
        }
        let data = self.input.data();
        let compared = data.len().min(PREFACE.len());
        match (data[..compared] == PREFACE[..compared], compared == PREFACE.len()) {
            (false, _) => Opening::Http1,
            (true, false) => Opening::Undecided,
            (true, true) => Opening::Http2,
        }
    }

    /// After a request is answered in full: idle, or reading the next head already buffered.
    fn next_request(&mut self, now: Now) {
        match self.input.is_empty() {
            true => self.set_reading(Reading::Idle),
            false => self.set_reading(Reading::Head { since: now.mono }),
        }
    }

    /// Decides and queues the response to `exchange` (`None`: a head that did not parse);
    /// enters `Closing` when it closes the connection. A `lone` response (nothing buffered
    /// behind it to answer in the same `writev`) is sent at once when the queue is empty.
    /// Returns whether the connection stays open.
    fn queue_response(
        &mut self,
        exchange: Option<Exchange<'_, '_>>,
        found: Result<Found, HttpError>,
        lone: bool,
        cx: &Context<'_>,
        now: SystemTime,
    ) -> bool {
        let keep_alive = exchange.as_ref().is_some_and(|exchange| exchange.keep_alive);
        let version = exchange.as_ref().map_or(Version::Http11, |exchange| exchange.request.version);
        let peer = self.peer;
        let (response, record) =
            respond_to(exchange.as_ref(), found, cx, now, peer, &mut || self.local_port());
        let keep_alive = keep_alive && !response.ends_connection;
        let Response { status, headers, body, .. } = response;
        let head = Head::new(status, headers, version, keep_alive);
        if !lone {
            self.output.push(head, body, record);
        } else if let Err(error) = self.output.send_or_push(
            &mut self.transport,
            &self.label,
            head,
            body,
            record,
            &mut finished(cx, self.label),
        ) {
            self.enter(State::Closing(CloseReason::from_io(&error)));
            return false;
        }
        if !keep_alive {
            self.enter(State::Closing(CloseReason::ResponseSaidClose));
        }
        keep_alive
    }

    /// The port the connection came in on (asked of the socket once), 0 if it has none.
    fn local_port(&mut self) -> u16 {
        if self.local_port == 0 {
            self.local_port = self.transport.local_port().unwrap_or(0);
        }
        self.local_port
    }

    /// Moves the reading side on, unless the connection is closing.
    fn set_reading(&mut self, next: Reading) {
        self.enter_with(|state| match state {
            State::Reading(_) => State::Reading(next),
            closing => closing,
        });
    }

    fn enter(&mut self, next: State) {
        self.enter_with(|_| next);
    }

    /// Replaces the state by `next(state)`, logging the change at debug level.
    fn enter_with(&mut self, next: impl FnOnce(State) -> State) {
        let before = self.state.name();
        let state = std::mem::replace(&mut self.state, State::Reading(Reading::Idle));
        self.state = next(state);
        if before != self.state.name() {
            debug!("{} {before} -> {}", self.label, self.state.name());
        }
    }

    /// Reads and drops what the client already sent, so closing does not reset the connection.
    /// Never inlined: its scratch buffer would otherwise enlarge `drive`'s stack frame.
    #[cold]
    #[inline(never)]
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

impl<T: Transport> Client for Connection<T> {
    fn label(&self) -> ConnLabel {
        self.label
    }

    /// Every call is safe, even on a spurious wake-up: the outcome of each read and write
    /// decides, never the event bits.
    fn drive(&mut self, cx: &mut Context<'_>) -> Verdict {
        let sent_before = self.output.bytes_sent();
        let verdict = self.drive_io(cx);
        if self.output.bytes_sent() != sent_before {
            self.last_progress = cx.now().mono;
        }
        if let Verdict::Close(_) = verdict {
            // Free the buffer now, not when the engine drops us after its batch: a burst of
            // closing clients then shares one buffer instead of each allocating its own.
            self.input.give_back();
        }
        verdict
    }

    fn deadline(&self, limits: &Limits) -> (Instant, Timeout) {
        if self.transport.is_handshaking() {
            // The TLS handshake is part of getting a request in: it counts from the accept.
            return (self.last_progress + limits.header_timeout, Timeout::Header);
        }
        match &self.state {
            State::Http2(http2) => http2.deadline(&self.transport, self.last_progress, limits),
            _ if self.output_pending() => (self.last_progress + limits.send_timeout, Timeout::Send),
            State::Reading(Reading::Head { since }) => (*since + limits.header_timeout, Timeout::Header),
            State::Reading(Reading::Idle | Reading::Body(_)) => {
                (self.last_progress + limits.idle_timeout, Timeout::Idle)
            }
            State::Closing(_) => (self.last_progress + limits.send_timeout, Timeout::Send),
        }
    }

    /// True between requests, with every response out (HTTP/2: no stream in flight).
    fn is_idle(&self) -> bool {
        match &self.state {
            State::Http2(http2) => http2.is_idle(),
            state => matches!(state, State::Reading(Reading::Idle)) && !self.output_pending(),
        }
    }

    fn phase(&self) -> Phase {
        match &self.state {
            _ if self.transport.is_handshaking() => Phase::Handshaking,
            State::Http2(http2) => http2.phase(&self.transport),
            _ if self.output_pending() => Phase::Writing,
            State::Reading(Reading::Idle) => Phase::Waiting,
            State::Reading(_) => Phase::Reading,
            State::Closing(_) => Phase::Writing,
        }
    }

    /// EPOLLRDHUP or EPOLLERR: a fact about the socket, kept by the transport.
    fn note_hang_up(&mut self) {
        self.transport.note_hang_up();
    }

    /// From now on every response says `Connection: close` (HTTP/2: GOAWAY); the engine
    /// closes idle ones.
    fn begin_draining(&mut self) {
        self.draining = true;
        if let State::Http2(http2) = &mut self.state {
            http2.begin_draining();
        }
    }

    fn close(mut self: Box<Self>, reason: CloseReason, cx: &mut Context<'_>) {
        self.finish(reason, cx);
    }
}

impl<T: Transport> Connection<T> {
    /// [`Client::close`] without the box, for a client that holds a connection inside it:
    /// logs the close and whatever is left unsent; dropping it then closes the socket.
    pub(crate) fn finish(&mut self, reason: CloseReason, cx: &mut Context<'_>) {
        debug!("{} close: {reason}", self.label);
        if let State::Http2(http2) = &mut self.state {
            http2.finish(&mut self.transport, cx, self.label);
        }
        self.transport.finish();
        self.output.abandon(&mut finished(cx, self.label));
    }
}

/// Request bytes read but not yet consumed. Taken from a per-thread pool on first read and given
/// back whenever it empties, so an idle keep-alive connection holds no buffer, and a busy one
/// costs no allocation or zeroing per request.
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    /// Storage of `INPUT_CAPACITY` bytes, or empty while idle.
    bytes: Vec<u8>,
    /// `bytes[start..filled]` holds unconsumed input. Consuming a request moves `start`;
    /// the bytes are moved to the front only before a read, not once per pipelined request.
    start: usize,
    filled: usize,
}

/// One more than the largest head, so a head that fills the buffer is known to be too large;
/// and room for one whole HTTP/2 frame of the largest size we accept.
const INPUT_CAPACITY: usize = {
    let frame = FRAME_HEADER_LEN + DEFAULT_MAX_FRAME_SIZE;
    if frame > MAX_HEAD_BYTES + 1 { frame } else { MAX_HEAD_BYTES + 1 }
};
/// Most idle buffers a thread keeps for reuse (128 KiB).
const POOLED_BUFFERS: usize = 8;

thread_local! {
    /// Input buffers not in use, already `INPUT_CAPACITY` long; their old bytes are never read.
    static SPARE_BUFFERS: FreeList<Vec<u8>> = const { FreeList::new(POOLED_BUFFERS) };
}

impl InputBuffer {
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.filled]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.filled
    }

    pub(crate) fn consume(&mut self, count: usize) {
        self.start += count;
        if self.start == self.filled {
            (self.start, self.filled) = (0, 0);
        }
    }

    /// How many bytes the next `read_from` may take.
    pub(crate) fn space(&self) -> usize {
        INPUT_CAPACITY - (self.filled - self.start)
    }

    pub(crate) fn read_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
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

    pub(crate) fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.give_back();
        }
    }

    pub(crate) fn give_back(&mut self) {
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

/// What happens when a response is all out: its bytes counted and its access line written,
/// if the status listener and the log are on.
fn finished<'c>(cx: &'c Context<'_>, label: ConnLabel) -> impl FnMut(&Logged, Sent) + 'c {
    let (access_log, counters) = (cx.access_log, cx.counters);
    move |logged: &Logged, sent: Sent| {
        if let Some(counters) = counters {
            counters.sent(sent.bytes);
        }
        if let Some(record) = logged {
            access_log.record(&label, record, sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::access_log::AccessLog;
    use crate::drive::Time;
    use crate::files::{FileCache, Root};
    use crate::service::Service;
    use crate::site::{Site, Sites};
    use crate::transport::fake::FakeSocket;

    const LIMITS: Limits = Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(15),
        send_timeout: Duration::from_secs(30),
    };
    const GET_HELLO: &[u8] = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n";

    /// A site with `hello.txt` ("hello") and `big.bin` (200 KiB), and a connection to it
    /// over a scripted socket. The directory lives as long as the returned guard.
    fn setup() -> (tempfile::TempDir, Service, Connection<FakeSocket>, Now) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("hello.txt"), "hello").unwrap();
        fs::write(dir.path().join("big.bin"), vec![7u8; 200 * 1024]).unwrap();
        let site = Site {
            id: String::new(),
            root: Root::new(dir.path()).unwrap(),
            headers: Vec::new(),
            path_headers: Vec::new(),
            https_redirect: None,
            auth: None,
        };
        let site =
            Service { sites: Sites::one(site), access_log: AccessLog::off(), limits: LIMITS, http2: true };
        let now = Now { wall: UNIX_EPOCH + Duration::from_secs(1_795_322_700), mono: Instant::now() };
        let label = ConnLabel { token: 0, fd: -1 };
        let connection = Connection::new(FakeSocket::writing(&[], true), label, None, now);
        (dir, site, connection, now)
    }

    /// The status codes of the responses in `written`, in order (no body here contains one).
    fn statuses(written: &[u8]) -> Vec<u16> {
        let text = String::from_utf8_lossy(written);
        text.match_indices("HTTP/1.1 ").map(|(at, _)| text[at + 9..at + 12].parse().unwrap()).collect()
    }

    fn drive(connection: &mut Connection<FakeSocket>, service: &Service, now: Now) -> Verdict {
        drive_with(connection, service, None, now)
    }

    /// Drives as the event loop does: with the turn's time and the cache it lends, if any.
    fn drive_with(
        connection: &mut Connection<FakeSocket>,
        service: &Service,
        cache: Option<&mut FileCache>,
        now: Now,
    ) -> Verdict {
        let mut cx = Context::new(Time::Turn(now), &service.sites, &service.access_log, cache);
        connection.drive(&mut cx)
    }

    /// The same, with a file cache lent as the event loop lends its own.
    fn drive_cached(
        connection: &mut Connection<FakeSocket>,
        service: &Service,
        cache: &mut FileCache,
        now: Now,
    ) -> Verdict {
        drive_with(connection, service, Some(cache), now)
    }

    fn later(now: Now, seconds: u64) -> Now {
        Now { wall: now.wall + Duration::from_secs(seconds), mono: now.mono + Duration::from_secs(seconds) }
    }

    #[test]
    fn pipelined_heads_split_at_every_byte() {
        let mut requests = GET_HELLO.to_vec();
        requests.extend_from_slice(b"HEAD /missing HTTP/1.1\r\nHost: t\r\n\r\n");
        requests.extend_from_slice(GET_HELLO);
        for split in 0..=requests.len() {
            let (_dir, site, mut connection, now) = setup();
            for part in [&requests[..split], &requests[split..]] {
                connection.transport.send(part);
                assert_eq!(
                    drive(&mut connection, &site, now),
                    Verdict::Wait { writable: false },
                    "split {split}"
                );
            }
            let written = connection.transport.take_written();
            assert_eq!(statuses(&written), [200, 404, 200], "split {split}");
            assert!(written.ends_with(b"\r\n\r\nhello"), "split {split}");
            assert!(connection.is_idle(), "split {split}");
        }
    }

    #[test]
    fn partial_writes_of_zero_to_n_bytes_lose_nothing() {
        for budget in 0..40 {
            let (_dir, site, mut connection, now) = setup();
            // Each write takes `budget` bytes, or blocks (0) every other call.
            let budgets = (0..2000).map(|i| if i % 2 == 0 { budget } else { 0 });
            connection.transport.write_budgets = budgets.collect();
            connection.transport.send(&GET_HELLO.repeat(3));
            let mut turns = 0;
            while drive(&mut connection, &site, now) == (Verdict::Wait { writable: true }) {
                assert!(turns < 2000, "no progress with budget {budget}");
                turns += 1;
            }
            assert!(connection.is_idle());
            let written = connection.transport.take_written();
            assert_eq!(statuses(&written), [200, 200, 200], "budget {budget}");
            assert_eq!(written.windows(5).filter(|w| w == b"hello").count(), 3, "budget {budget}");
        }
    }

    #[test]
    fn a_lone_request_is_answered_in_one_writev_and_a_pipelined_batch_in_one_too() {
        let (_dir, site, mut connection, now) = setup();
        let mut cache = FileCache::new(None).unwrap(); // bodies in memory: no sendfile
        connection.transport.send(GET_HELLO);
        assert_eq!(drive_cached(&mut connection, &site, &mut cache, now), Verdict::Wait { writable: false });
        assert_eq!(connection.transport.calls, ["writev"]);
        assert!(connection.transport.take_written().ends_with(b"\r\n\r\nhello"));
        // Read together, three requests are answered together: sent one by one they would
        // cost three writes.
        connection.transport.send(&GET_HELLO.repeat(3));
        assert_eq!(drive_cached(&mut connection, &site, &mut cache, now), Verdict::Wait { writable: false });
        assert_eq!(connection.transport.calls, ["writev", "writev"]);
        assert_eq!(statuses(&connection.transport.take_written()), [200, 200, 200]);
        assert!(connection.is_idle() && connection.output.is_empty());
    }

    #[test]
    fn a_lone_response_the_socket_takes_in_part_is_finished_from_the_queue() {
        for budget in 1..80 {
            let (_dir, site, mut connection, now) = setup();
            let mut cache = FileCache::new(None).unwrap();
            connection.transport.write_budgets = [budget, 0].into();
            connection.transport.send(GET_HELLO);
            assert_eq!(
                drive_cached(&mut connection, &site, &mut cache, now),
                Verdict::Wait { writable: true },
                "budget {budget}"
            );
            assert_eq!(connection.deadline(&LIMITS).1, Timeout::Send);
            assert_eq!(
                drive_cached(&mut connection, &site, &mut cache, now),
                Verdict::Wait { writable: false },
                "budget {budget}"
            );
            let written = connection.transport.take_written();
            assert_eq!(statuses(&written), [200], "budget {budget}");
            assert!(written.ends_with(b"\r\n\r\nhello"), "budget {budget}");
            assert!(connection.is_idle());
        }
    }

    #[test]
    fn a_reset_while_answering_closes_with_the_socket_error_and_logs_the_response() {
        for cached in [false, true] {
            let (dir, mut site, mut connection, now) = setup();
            // Cached, the lone response is written at once.
            let mut cache = cached.then(|| FileCache::new(None).unwrap());
            let log_path = dir.path().join("access.log");
            site.access_log =
                AccessLog::open(&crate::access_log::Destination::File(log_path.clone()), false).unwrap();
            connection.transport.reset = true;
            connection.transport.send(GET_HELLO);
            let verdict = drive_with(&mut connection, &site, cache.as_mut(), now);
            assert_eq!(verdict, Verdict::Close(CloseReason::Io(io::ErrorKind::ConnectionReset)));
            let mut cx = site.live_context();
            Box::new(connection).close(CloseReason::Io(io::ErrorKind::ConnectionReset), &mut cx);
            let log = fs::read_to_string(&log_path).unwrap();
            assert_eq!(log.lines().count(), 1, "cached {cached}: {log}");
            assert!(log.contains("\"GET /hello.txt HTTP/1.1\" 200 0 "), "cached {cached}: {log}");
        }
    }

    #[test]
    fn a_request_sent_while_a_response_waits_for_the_socket_is_read() {
        let (_dir, site, mut connection, now) = setup();
        connection.transport.write_budgets = [100, 0].into();
        connection.transport.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(drive(&mut connection, &site, now), Verdict::Wait { writable: true });
        assert_eq!(connection.deadline(&LIMITS), (now.mono + LIMITS.send_timeout, Timeout::Send));
        // The next request arrives while the big response is stuck: one edge, then writable.
        connection.transport.send(GET_HELLO);
        while drive(&mut connection, &site, now) == Verdict::Yield {}
        assert_eq!(statuses(&connection.transport.take_written()), [200, 200]);
        assert!(connection.is_idle());
    }

    #[test]
    fn a_hang_up_mid_body_closes_as_such() {
        let (_dir, site, mut connection, now) = setup();
        connection.transport.send(b"POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345");
        assert_eq!(drive(&mut connection, &site, now), Verdict::Wait { writable: false });
        assert_eq!(statuses(&connection.transport.take_written()), [405]);
        assert_eq!(connection.deadline(&LIMITS), (now.mono + LIMITS.idle_timeout, Timeout::Idle));
        connection.transport.peer_closed = true;
        assert_eq!(drive(&mut connection, &site, now), Verdict::Close(CloseReason::PeerClosedMidRequest));
    }

    #[test]
    fn the_header_deadline_runs_from_the_first_byte_of_a_head() {
        let (_dir, site, mut connection, now) = setup();
        assert_eq!(connection.deadline(&LIMITS), (now.mono + LIMITS.idle_timeout, Timeout::Idle));
        let first = later(now, 3);
        connection.transport.send(b"GET /hello.txt HT");
        drive(&mut connection, &site, first);
        assert_eq!(connection.deadline(&LIMITS), (first.mono + LIMITS.header_timeout, Timeout::Header));
        // More bytes of the same head do not push the deadline back (slowloris).
        connection.transport.send(b"TP/1.1\r\nHost:");
        drive(&mut connection, &site, later(now, 5));
        assert_eq!(connection.deadline(&LIMITS).0, first.mono + LIMITS.header_timeout);
        assert!(!connection.is_idle());
        let done = later(now, 6);
        connection.transport.send(b" t\r\n\r\n");
        drive(&mut connection, &site, done);
        assert_eq!(connection.deadline(&LIMITS), (done.mono + LIMITS.idle_timeout, Timeout::Idle));
        assert!(connection.is_idle());
    }

    #[test]
    fn keep_alive_until_a_request_says_close() {
        let (_dir, site, mut connection, now) = setup();
        connection.transport.send(GET_HELLO);
        assert_eq!(drive(&mut connection, &site, now), Verdict::Wait { writable: false });
        assert!(connection.is_idle());
        connection.transport.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        connection.transport.send(GET_HELLO); // after close: never answered
        assert_eq!(drive(&mut connection, &site, now), Verdict::Close(CloseReason::ResponseSaidClose));
        let written = connection.transport.take_written();
        assert_eq!(statuses(&written), [200, 200]);
        assert!(String::from_utf8_lossy(&written).contains("Connection: close\r\n"));
        assert!(connection.transport.incoming.is_empty(), "unread input is drained before the close");
    }

    #[test]
    fn a_body_discard_that_ends_inside_the_next_head() {
        let (_dir, site, mut connection, now) = setup();
        connection
            .transport
            .send(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcdeGET /hello.txt HT");
        let first = later(now, 1);
        assert_eq!(drive(&mut connection, &site, first), Verdict::Wait { writable: false });
        assert_eq!(statuses(&connection.transport.take_written()), [405]);
        assert_eq!(connection.deadline(&LIMITS), (first.mono + LIMITS.header_timeout, Timeout::Header));
        connection.transport.send(b"TP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(drive(&mut connection, &site, later(now, 2)), Verdict::Wait { writable: false });
        let written = connection.transport.take_written();
        assert_eq!(statuses(&written), [200]);
        assert!(written.ends_with(b"hello") && connection.is_idle());
    }

    /// Counts this thread's heap allocations, so a test can see what one request costs.
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    #[allow(unsafe_code)] // a counting allocator for the test only
    // SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
    // const-initialised thread-local Cell, which never allocates.
    unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            ALLOCATIONS.with(|count| count.set(count.get() + 1));
            // SAFETY: the caller's contract for `alloc` is passed on as is.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: `ptr` came from `System.alloc` with this `layout`.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: CountingAllocator = CountingAllocator;

    /// A keep-alive request for a file in the small-file cache allocates nothing, alone or 16
    /// pipelined, once the per-thread pools are warm: the cost left is the kernel's.
    #[test]
    fn a_cached_keep_alive_hit_allocates_nothing() {
        let (_dir, site, mut connection, now) = setup();
        let mut cache = FileCache::new(None).unwrap();
        // Room for everything the fake socket will see, so it does not allocate either.
        connection.transport.incoming.reserve(64 * 1024);
        connection.transport.written.reserve(1024 * 1024);
        connection.transport.calls.reserve(1024);
        let pipelined = GET_HELLO.repeat(16);
        let requests = [
            GET_HELLO,
            b"GET /hello.txt HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
            b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
            &pipelined,
        ];
        for (round, request) in requests.iter().cycle().take(200).enumerate() {
            let before = ALLOCATIONS.with(std::cell::Cell::get);
            connection.transport.send(request);
            assert_eq!(
                drive_cached(&mut connection, &site, &mut cache, now),
                Verdict::Wait { writable: false }
            );
            let allocated = ALLOCATIONS.with(std::cell::Cell::get) - before;
            assert!(connection.transport.written.ends_with(b"\r\n\r\nhello"));
            connection.transport.written.clear();
            if round >= 10 {
                assert_eq!(allocated, 0, "request {round} allocated {allocated} times");
            }
        }
    }

    /// The same for a form the compressor made: a hit on it is a hit on memory like any other.
    #[cfg(feature = "compression")]
    #[test]
    fn a_compressed_hit_allocates_nothing_either() {
        let (dir, site, mut connection, now) = setup();
        let script: String = (0..200).map(|n| format!("console.log('line {n}');\n")).collect();
        fs::write(dir.path().join("app.js"), &script).unwrap();
        let mut cache = FileCache::new(Some(1 << 20)).unwrap();
        connection.transport.incoming.reserve(64 * 1024);
        connection.transport.written.reserve(1024 * 1024);
        connection.transport.calls.reserve(1024);
        let request = b"GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\r\n";
        connection.transport.send(request);
        drive_cached(&mut connection, &site, &mut cache, now);
        let first = String::from_utf8_lossy(&connection.transport.take_written()).into_owned();
        assert!(first.contains("Vary: Accept-Encoding") && !first.contains("Content-Encoding"), "{first}");
        // What the compressor's child would do, here in the test's thread.
        let job = cache.next_compression_job().expect("the request queued brotli");
        assert_eq!(job.coding, crate::http::ContentCoding::Brotli);
        let brotli = crate::files::compress::run(&job).unwrap();
        cache.install_compressed(&job, Some(brotli.clone()));
        assert!(cache.next_compression_job().is_none(), "one job per form");
        for round in 0..100 {
            let before = ALLOCATIONS.with(std::cell::Cell::get);
            connection.transport.send(request);
            assert_eq!(
                drive_cached(&mut connection, &site, &mut cache, now),
                Verdict::Wait { writable: false }
            );
            let allocated = ALLOCATIONS.with(std::cell::Cell::get) - before;
            assert!(connection.transport.written.ends_with(&brotli));
            connection.transport.written.clear();
            if round >= 10 {
                assert_eq!(allocated, 0, "request {round} allocated {allocated} times");
            }
        }
    }

    #[test]
    fn a_quiet_peer_closing_between_requests_is_a_plain_close() {
        let (_dir, site, mut connection, now) = setup();
        connection.transport.send(GET_HELLO);
        connection.transport.peer_closed = true;
        assert_eq!(drive(&mut connection, &site, now), Verdict::Close(CloseReason::PeerClosed));
        assert_eq!(statuses(&connection.transport.take_written()), [200]);
    }
}
