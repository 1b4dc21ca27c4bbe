//! One HTTP/2 connection (RFC 9113) as a sans-I/O state machine: bytes in through
//! [`Connection::handle`], which answers each request as its header block completes; bytes out
//! through [`Connection::output`], topped up with DATA by [`Connection::produce`] as the socket
//! takes them. No sockets, no clock, no files: a response body is a [`BodySource`] the caller
//! supplies, read a frame at a time, so a large file is never in memory and nothing is read
//! ahead of what flow control and the socket allow.
//!
//! Every limit is a named constant, and every way a peer can make a connection cost more than
//! the requests it carries (the 2019 flood family, rapid reset, CONTINUATION floods, HPACK
//! bombs) ends in a stream reset or a GOAWAY, whose error code [`Connection::closing`] tells.

use crate::http::fields::Headers;
use crate::http::{HttpError, Request};
use crate::recycle::{give_frame_buffer, take_frame_buffer};

use super::frame::{self, ErrorCode, FRAME_HEADER_LEN, FrameHeader, flag, kind, setting};
use super::frame::{DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, MAX_WINDOW};
use super::hpack::{Decoder, Encoder, HeaderList};
use super::request::{Refusal, check_trailers, request_from};

/// The connection preface every client sends first (§3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Streams one client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS), as nginx, h2o
/// and Caddy default to.
pub const MAX_CONCURRENT_STREAMS: usize = 100;
/// Largest decoded header list we keep (SETTINGS_MAX_HEADER_LIST_SIZE); larger gets 431, as
/// an HTTP/1.1 head over 16 KiB does.
pub const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;
/// Most octets of one header block gathered across HEADERS and CONTINUATION frames: past this
/// the block cannot decode within [`MAX_HEADER_LIST_SIZE`] anyway, and the connection ends
/// (the 2024 CONTINUATION flood).
pub const MAX_HEADER_BLOCK_BYTES: usize = 2 * MAX_HEADER_LIST_SIZE;
/// Output queued beyond this stops the reading of frames until the socket takes it, so a
/// client that sends PINGs or requests and never reads holds a bounded buffer.
pub const MAX_QUEUED_OUTPUT: usize = 64 * 1024;
/// DATA is produced until this much output waits: a few frames ahead of the socket.
const OUTPUT_TARGET: usize = 4 * (DEFAULT_MAX_FRAME_SIZE + FRAME_HEADER_LEN);
/// Frames that move no request forward (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA,
/// refused header blocks, unknown types) one connection may send, plus
/// [`FRAMES_PER_RESPONSE`] per response served, before it is told to calm down (nginx's and
/// h2o's answer to CVE-2019-9512/9514/9515/9518 and CVE-2023-44487).
pub const POINTLESS_FRAME_ALLOWANCE: u64 = 1_000;
const FRAMES_PER_RESPONSE: u64 = 4;
/// DATA frames under [`SMALL_DATA`] octets that a tiny window forced (CVE-2019-9511's
/// dribble) allowed per connection beyond one per response.
pub const SMALL_FRAME_ALLOWANCE: u64 = 1_000;
const SMALL_DATA: usize = 1024;
/// Our receive windows are topped back up once they fall under half.
const RECEIVE_WINDOW_REFILL: i64 = DEFAULT_WINDOW / 2;
/// DATA frames a stream alone with window may get from one read of its body.
const FRAMES_PER_READ: usize = 4;
/// Stream slots a connection makes room for when its first stream opens.
const STREAMS_PER_BATCH: usize = 16;

/// A response body, read as DATA frames go out.
pub trait BodySource {
    /// Octets still to send.
    fn remaining(&self) -> u64;
    /// Fills each of `payloads` whole, in order, with the body's next octets: the payloads of
    /// consecutive DATA frames, together never more than [`BodySource::remaining`]. Several
    /// at once let a file body read them with one `preadv`.
    fn fill(&mut self, payloads: &mut [&mut [u8]]) -> Result<(), ReadFailed>;
}

/// A body could not be read (the caller logged why): its stream is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailed;

/// What answers a request: its status and fields, and its body (which also carries whatever
/// the caller wants back when the stream ends, such as an access-log record).
pub struct Reply<B> {
    pub status: u16,
    pub fields: Headers,
    pub body: B,
}

/// How a stream ended, for the caller's log and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The whole response went out.
    Complete,
    /// The client reset it, or the connection ended first.
    Cancelled,
    /// Reading its body failed: reset with INTERNAL_ERROR.
    Failed,
}

/// A stream's response and how far it is.
struct Stream<B> {
    id: u32,
    /// What we may still send on it (§6.9); negative after the peer shrank the initial window.
    send_window: i64,
    /// The request's side, until the client sends END_STREAM.
    incoming: Option<Incoming>,
    /// The body still to send, with the octets sent so far (HEADERS included).
    body: B,
    sent: u64,
}

/// What may still arrive on a stream whose request has not ended: a body (which we drop),
/// then perhaps trailers.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    /// What the client may still send before we top it up.
    window: i64,
    /// Body octets the request's content-length still promises (§8.1.1), if it gave one.
    declared_left: Option<u64>,
}

/// A stream whose response is out while its request is not over (half-closed local, §5.1),
/// kept so what still arrives on it is checked as the RFC says; it counts toward
/// [`MAX_CONCURRENT_STREAMS`], as the client counts it.
#[derive(Debug)]
struct Answered {
    id: u32,
    incoming: Incoming,
    /// Nothing more is sent; kept for the window-overflow rule (§6.9.1).
    send_window: i64,
}

/// Where a stream id stands now.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// In `streams`, at this index: a response is going out.
    Responding(usize),
    /// In `answered`, at this index.
    Answered(usize),
    /// Not open (or never was).
    Closed,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the rest of the client preface; `matched` octets of it arrived.
    Preface {
        matched: usize,
    },
    /// The preface arrived; the first frame must be SETTINGS.
    AwaitingSettings,
    Open,
    /// We sent GOAWAY with NO_ERROR (shutdown, or the client's own GOAWAY): streams up to
    /// `last_stream` are finished, nothing new is taken.
    Draining,
    /// We sent GOAWAY with this error: nothing more is read; close once the output is out.
    Failed(ErrorCode),
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

/// The peer's settings that shape what we send.
#[derive(Debug, Clone, Copy)]
struct PeerSettings {
    initial_window: i64,
    max_frame_size: usize,
}

pub struct Connection<B> {
    phase: Phase,
    peer: PeerSettings,
    decoder: Decoder,
    encoder: Encoder,
    /// The decoded list of the block being answered, reused.
    list: HeaderList,
    pending_block: Option<PendingBlock>,
    /// Streams with a response still going out (a request body may still be coming in).
    streams: Vec<Stream<B>>,
    /// Streams answered whose request is still coming in.
    answered: Vec<Answered>,
    /// Where the round-robin of DATA starts next, as an index into `streams`.
    next_turn: usize,
    /// The highest stream id the client opened (stream ids only go up, §5.1.1).
    last_stream: u32,
    /// What we may still send on the connection as a whole.
    send_window: i64,
    /// What the client may still send before we top it up.
    receive_window: i64,
    /// Frames to send: `out[out_start..]` waits for the socket.
    out: Vec<u8>,
    out_start: usize,
    /// Responses completed, and the frames and small DATA the allowances count.
    responses: u64,
    pointless_frames: u64,
    small_frames: u64,
    /// Streams that ended since the caller last asked ([`Connection::take_ended`]).
    ended: Vec<(B, u64, StreamEnd)>,
}

/// The connection at a glance, for logs: not its tables or buffers.
impl<B> std::fmt::Debug for Connection<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase)
            .field("streams", &self.streams.len())
            .field("last_stream", &self.last_stream)
            .finish_non_exhaustive()
    }
}

impl<B: BodySource> Default for Connection<B> {
    fn default() -> Self {
        Connection::new()
    }
}

impl<B: BodySource> Connection<B> {
    /// A connection whose client preface has not been read yet; our SETTINGS are queued.
    pub fn new() -> Connection<B> {
        let mut out = Vec::new();
        frame::write_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS as u32),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE as u32),
                (setting::ENABLE_PUSH, 0),
            ],
        );
        Connection {
            phase: Phase::Preface { matched: 0 },
            peer: PeerSettings { initial_window: DEFAULT_WINDOW, max_frame_size: DEFAULT_MAX_FRAME_SIZE },
            decoder: Decoder::default(),
            encoder: Encoder::default(),
            list: HeaderList::default(),
            pending_block: None,
            streams: Vec::new(),
            answered: Vec::new(),
            next_turn: 0,
            last_stream: 0,
            send_window: DEFAULT_WINDOW,
            receive_window: DEFAULT_WINDOW,
            out,
            out_start: 0,
            responses: 0,
            pointless_frames: 0,
            small_frames: 0,
            ended: Vec::new(),
        }
    }

    /// Reads the frames at the start of `input`, answering each request with `answer` (the
    /// stream's id, and its request or the error status to send instead; `None` resets the
    /// stream unanswered). Returns how many octets it consumed: only whole frames, and none
    /// while the output is over [`MAX_QUEUED_OUTPUT`] or the connection failed.
    pub fn handle(
        &mut self,
        input: &[u8],
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> usize {
        self.ensure_output_buffer();
        let mut consumed = 0;
        if let Phase::Preface { matched } = self.phase {
            let wanted = &PREFACE[matched..];
            let take = wanted.len().min(input.len());
            if input[..take] != wanted[..take] {
                self.fail(ErrorCode::Protocol);
                return input.len();
            }
            consumed = take;
            self.phase = match matched + take == PREFACE.len() {
                true => Phase::AwaitingSettings,
                false => Phase::Preface { matched: matched + take },
            };
        }
        while !matches!(self.phase, Phase::Failed(_) | Phase::Preface { .. })
            && self.queued_output() <= MAX_QUEUED_OUTPUT
        {
            let rest = &input[consumed..];
            let Some(header) = rest.first_chunk::<FRAME_HEADER_LEN>().map(FrameHeader::parse) else { break };
            if header.len > DEFAULT_MAX_FRAME_SIZE {
                self.fail(ErrorCode::FrameSize); // §4.2: larger than our SETTINGS_MAX_FRAME_SIZE
                break;
            }
            let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len) else { break };
            consumed += FRAME_HEADER_LEN + header.len;
            if let Err(code) = self.frame(header, payload, answer) {
                self.fail(code);
            }
        }
        if let Phase::Failed(_) = self.phase {
            return input.len(); // nothing after a connection error is read
        }
        self.refill_receive_window();
        consumed
    }

    /// One frame. `Err` is a connection error (§5.4.1); stream errors reset the stream here.
    fn frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> Result<(), ErrorCode> {
        if self.phase == Phase::AwaitingSettings {
            if header.kind != kind::SETTINGS || header.has(flag::ACK) {
                return Err(ErrorCode::Protocol); // §3.4: the preface ends with SETTINGS
            }
            self.phase = Phase::Open;
        }
        if let Some(pending) = &self.pending_block
            && (header.kind != kind::CONTINUATION || header.stream != pending.stream)
        {
            return Err(ErrorCode::Protocol); // §6.10: nothing may interleave a header block
        }
        match header.kind {
            kind::DATA => self.data(header, payload),
            kind::HEADERS => self.headers(header, payload, answer),
            kind::CONTINUATION => self.continuation(header, payload, answer),
            kind::PRIORITY => {
                self.pointless()?;
                match (header.stream, payload) {
                    (0, _) => Err(ErrorCode::Protocol),
                    (_, [a, b, c, d, _weight]) => {
                        if u32::from_be_bytes([*a, *b, *c, *d]) & 0x7fff_ffff == header.stream {
                            self.reset(header.stream, ErrorCode::Protocol); // §5.3.1: on itself
                        }
                        Ok(())
                    }
                    _ => {
                        self.reset(header.stream, ErrorCode::FrameSize);
                        Ok(())
                    }
                }
            }
            kind::RST_STREAM => {
                self.pointless()?;
                match (header.stream, payload.len()) {
                    (0, _) => Err(ErrorCode::Protocol),
                    (_, 4..=4) if header.stream > self.last_stream => Err(ErrorCode::Protocol), // idle
                    (stream, 4) => {
                        self.end_stream(stream, StreamEnd::Cancelled);
                        Ok(())
                    }
                    _ => Err(ErrorCode::FrameSize),
                }
            }
            kind::SETTINGS => self.settings(header, payload),
            kind::PUSH_PROMISE => Err(ErrorCode::Protocol), // §8.4: clients never push
            kind::PING => {
                self.pointless()?;
                match (header.stream, payload.first_chunk::<8>()) {
                    (0, Some(data)) if payload.len() == 8 => {
                        if !header.has(flag::ACK) {
                            frame::write_ping_ack(&mut self.out, data);
                        }
                        Ok(())
                    }
                    (0, _) => Err(ErrorCode::FrameSize),
                    _ => Err(ErrorCode::Protocol),
                }
            }
            // The client opens no more streams (§6.8); we have none to open, so nothing changes:
            // it closes, or the idle timeout does.
            kind::GOAWAY => match header.stream {
                0 if payload.len() >= 8 => Ok(()),
                0 => Err(ErrorCode::FrameSize),
                _ => Err(ErrorCode::Protocol),
            },
            kind::WINDOW_UPDATE => self.window_update(header, payload),
            _ => self.pointless(), // §4.1: unknown types are ignored
        }
    }

    fn data(&mut self, header: FrameHeader, payload: &[u8]) -> Result<(), ErrorCode> {
        let id = header.stream;
        if id == 0 {
            return Err(ErrorCode::Protocol);
        }
        if id > self.last_stream {
            return Err(ErrorCode::Protocol); // §5.1: DATA on an idle stream
        }
        // The whole frame counts against both windows, padding included (§6.9.1).
        let flow = payload.len() as i64;
        self.receive_window -= flow;
        if self.receive_window < 0 {
            return Err(ErrorCode::FlowControl);
        }
        let content = unpadded(header, payload)?;
        if payload.is_empty() && !header.has(flag::END_STREAM) {
            self.pointless()?; // CVE-2019-9518: empty frames
        }
        let found = self.find(id);
        let incoming = match found {
            Found::Responding(at) => self.streams[at].incoming.as_mut(),
            Found::Answered(at) => Some(&mut self.answered[at].incoming),
            Found::Closed => None,
        };
        let Some(incoming) = incoming else {
            // Closed, reset by us, or half-closed (remote): its octets still count for the
            // connection (§5.1).
            self.pointless()?;
            self.reset(id, ErrorCode::StreamClosed);
            return Ok(());
        };
        incoming.window -= flow;
        if incoming.window < 0 {
            self.reset(id, ErrorCode::FlowControl);
            return Ok(());
        }
        let length = content.len() as u64;
        match incoming.declared_left {
            Some(left) if length > left => {
                self.reset(id, ErrorCode::Protocol); // §8.1.1: more than content-length said
                return Ok(());
            }
            Some(left) => incoming.declared_left = Some(left - length),
            None => {}
        }
        // A body we do not read (GET and HEAD are all we serve): dropped.
        if header.has(flag::END_STREAM) {
            self.request_ended(id);
        } else if incoming.window < RECEIVE_WINDOW_REFILL {
            match found {
                Found::Responding(_) => {
                    let increment = DEFAULT_WINDOW - incoming.window;
                    incoming.window = DEFAULT_WINDOW;
                    frame::write_window_update(&mut self.out, id, increment as u32);
                }
                // The response is out: §8.1 lets us ask for no more of the body.
                _ => {
                    frame::write_rst_stream(&mut self.out, id, ErrorCode::NoError);
                    self.end_stream(id, StreamEnd::Complete);
                }
            }
        }
        Ok(())
    }

    /// The client ended its request (END_STREAM on DATA or trailers): checked against the
    /// length it declared, then the stream is done if its response is.
    fn request_ended(&mut self, id: u32) {
        let (found, incoming) = match self.find(id) {
            found @ Found::Responding(at) => (found, self.streams[at].incoming),
            found @ Found::Answered(at) => (found, Some(self.answered[at].incoming)),
            Found::Closed => return,
        };
        if incoming.and_then(|incoming| incoming.declared_left).is_some_and(|left| left > 0) {
            self.reset(id, ErrorCode::Protocol); // §8.1.1: less than content-length said
            return;
        }
        match found {
            Found::Responding(at) => {
                self.streams[at].incoming = None;
                self.finish_if_done(at);
            }
            _ => self.end_stream(id, StreamEnd::Complete),
        }
    }

    fn headers(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> Result<(), ErrorCode> {
        let stream = header.stream;
        if stream == 0 || stream.is_multiple_of(2) {
            return Err(ErrorCode::Protocol); // §5.1.1: clients open odd streams
        }
        let mut block = unpadded(header, payload)?;
        if header.has(flag::PRIORITY) {
            let Some((dependency, rest)) = block.split_first_chunk::<5>() else {
                return Err(ErrorCode::FrameSize);
            };
            let depends_on = u32::from_be_bytes([dependency[0], dependency[1], dependency[2], dependency[3]]);
            if depends_on & 0x7fff_ffff == stream {
                // §5.3.1: a stream cannot depend on itself. Its block still must be decoded.
                self.pending_block = None;
                block = rest;
                self.decode_and_drop(block)?;
                self.reset(stream, ErrorCode::Protocol);
                return Ok(());
            }
            block = rest;
        }
        if stream <= self.last_stream {
            // Trailers on a stream whose request body is still coming, or an error.
            let request_open = match self.find(stream) {
                Found::Responding(at) => self.streams[at].incoming.is_some(),
                Found::Answered(_) => true,
                Found::Closed => false,
            };
            return match request_open {
                true => {
                    if !header.has(flag::END_STREAM) {
                        return Err(ErrorCode::Protocol); // §8.1: trailers end the stream
                    }
                    self.pending_or_now(header, block, answer)?;
                    Ok(())
                }
                // §5.1: the last stream opened is closed now; below it, the id went backwards
                // (§5.1.1), whether or not that stream was ever open.
                _ if stream == self.last_stream => Err(ErrorCode::StreamClosed),
                _ => Err(ErrorCode::Protocol),
            };
        }
        self.pending_or_now(header, block, answer)
    }

    /// Completes the block now if END_HEADERS says so, else keeps it for CONTINUATION.
    fn pending_or_now(
        &mut self,
        header: FrameHeader,
        block: &[u8],
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> Result<(), ErrorCode> {
        let end_stream = header.has(flag::END_STREAM);
        if header.has(flag::END_HEADERS) {
            return self.header_block(header.stream, end_stream, block, answer);
        }
        if block.len() > MAX_HEADER_BLOCK_BYTES {
            return Err(ErrorCode::EnhanceYourCalm);
        }
        self.pending_block = Some(PendingBlock { stream: header.stream, end_stream, bytes: block.to_vec() });
        Ok(())
    }

    fn continuation(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> Result<(), ErrorCode> {
        let Some(mut pending) = self.pending_block.take() else {
            return Err(ErrorCode::Protocol); // §6.10: CONTINUATION follows HEADERS only
        };
        if payload.is_empty() && !header.has(flag::END_HEADERS) {
            self.pointless()?;
        }
        if pending.bytes.len() + payload.len() > MAX_HEADER_BLOCK_BYTES {
            return Err(ErrorCode::EnhanceYourCalm);
        }
        pending.bytes.extend_from_slice(payload);
        if !header.has(flag::END_HEADERS) {
            self.pending_block = Some(pending);
            return Ok(());
        }
        self.header_block(pending.stream, pending.end_stream, &pending.bytes, answer)
    }

    /// A whole header block on `stream`: a new request, or trailers.
    fn header_block(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &[u8],
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> Result<(), ErrorCode> {
        let mut list = std::mem::take(&mut self.list);
        list.clear();
        let decoded = self.decoder.decode(block, &mut list, MAX_HEADER_LIST_SIZE);
        let outcome = self.after_decoding(stream, end_stream, decoded.is_ok(), &list, answer);
        self.list = list;
        if self.streams.is_empty() {
            self.list = HeaderList::default(); // an idle connection keeps no list
        }
        outcome
    }

    fn after_decoding(
        &mut self,
        stream: u32,
        end_stream: bool,
        decoded: bool,
        list: &HeaderList,
        answer: &mut impl FnMut(u32, Result<&Request<'_>, HttpError>) -> Option<Reply<B>>,
    ) -> Result<(), ErrorCode> {
        if !decoded {
            return Err(ErrorCode::Compression); // §4.3: the table may now disagree
        }
        if !matches!(self.find(stream), Found::Closed) {
            // Trailers: checked, then dropped; the request is complete.
            match check_trailers(list) {
                Ok(()) => self.request_ended(stream),
                Err(_) => self.reset(stream, ErrorCode::Protocol),
            }
            return Ok(());
        }
        if self.phase == Phase::Draining {
            return Ok(()); // §6.8: streams after our GOAWAY are ignored
        }
        self.last_stream = stream;
        if self.streams.len() + self.answered.len() >= MAX_CONCURRENT_STREAMS {
            self.pointless()?;
            self.reset(stream, ErrorCode::RefusedStream);
            return Ok(());
        }
        let parsed = match request_from(list) {
            // §8.1.1: a length declared with END_STREAM already set must be zero.
            Ok((_, Some(1..))) if end_stream => Err(Refusal::Malformed("content-length without a body")),
            parsed => parsed,
        };
        let (request, declared_left) = match parsed {
            Ok((request, declared)) => (Ok(request), declared),
            Err(Refusal::Answer(error)) => (Err(error), None),
            Err(Refusal::Malformed(_)) => {
                self.pointless()?; // zero-length and broken blocks cost a reset each
                self.reset(stream, ErrorCode::Protocol);
                return Ok(());
            }
        };
        let Some(reply) = answer(stream, request.as_ref().map_err(Clone::clone)) else {
            self.reset(stream, ErrorCode::RefusedStream);
            return Ok(());
        };
        let incoming = (!end_stream).then_some(Incoming { window: DEFAULT_WINDOW, declared_left });
        self.start_response(stream, incoming, reply);
        Ok(())
    }

    /// Queues the HEADERS of `reply` and, if it has a body, the stream that sends it.
    fn start_response(&mut self, stream: u32, incoming: Option<Incoming>, reply: Reply<B>) {
        let Reply { status, fields, body } = reply;
        let mut block = take_block_buffer();
        self.encoder.encode(status, fields.iter_bytes(), &mut block);
        let before = self.out.len();
        let no_body = body.remaining() == 0;
        frame::write_headers(&mut self.out, stream, &block, no_body, self.peer.max_frame_size);
        let sent = (self.out.len() - before) as u64;
        give_block_buffer(block);
        if self.streams.capacity() == 0 {
            // Room for a batch at once: clients send several requests together (h2load's -m,
            // a browser's page), and the table is let go again when the batch is done.
            self.streams.reserve(STREAMS_PER_BATCH);
        }
        self.streams.push(Stream { id: stream, send_window: self.peer.initial_window, incoming, body, sent });
        let at = self.streams.len() - 1;
        if no_body {
            self.finish_if_done(at);
        }
    }

    fn settings(&mut self, header: FrameHeader, payload: &[u8]) -> Result<(), ErrorCode> {
        if header.stream != 0 {
            return Err(ErrorCode::Protocol);
        }
        if header.has(flag::ACK) {
            return match payload.is_empty() {
                true => Ok(()),
                false => Err(ErrorCode::FrameSize),
            };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(ErrorCode::FrameSize);
        }
        self.pointless()?;
        for entry in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match id {
                setting::HEADER_TABLE_SIZE => self.encoder.set_peer_limit(value as usize),
                setting::ENABLE_PUSH if value > 1 => return Err(ErrorCode::Protocol),
                setting::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return Err(ErrorCode::FlowControl);
                    }
                    // §6.9.2: every open stream's window moves by the difference.
                    let delta = value - self.peer.initial_window;
                    let windows = self.streams.iter_mut().map(|stream| &mut stream.send_window);
                    for window in
                        windows.chain(self.answered.iter_mut().map(|stream| &mut stream.send_window))
                    {
                        *window += delta;
                        if *window > MAX_WINDOW {
                            return Err(ErrorCode::FlowControl);
                        }
                    }
                    self.peer.initial_window = value;
                }
                setting::MAX_FRAME_SIZE => match value as usize {
                    size @ DEFAULT_MAX_FRAME_SIZE..=0xff_ffff => self.peer.max_frame_size = size,
                    _ => return Err(ErrorCode::Protocol),
                },
                _ => {} // §6.5.2: unknown settings are ignored
            }
        }
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    fn window_update(&mut self, header: FrameHeader, payload: &[u8]) -> Result<(), ErrorCode> {
        let Some(bytes) = payload.first_chunk::<4>().filter(|_| payload.len() == 4) else {
            return Err(ErrorCode::FrameSize);
        };
        let increment = i64::from(u32::from_be_bytes(*bytes) & 0x7fff_ffff);
        if header.stream == 0 {
            if increment == 0 {
                return Err(ErrorCode::Protocol);
            }
            self.send_window += increment;
            return match self.send_window > MAX_WINDOW {
                true => Err(ErrorCode::FlowControl),
                false => Ok(()),
            };
        }
        if header.stream > self.last_stream {
            return Err(ErrorCode::Protocol); // idle stream
        }
        let window = match self.find(header.stream) {
            Found::Responding(at) => &mut self.streams[at].send_window,
            Found::Answered(at) => &mut self.answered[at].send_window,
            Found::Closed => return Ok(()), // ignored
        };
        if increment == 0 {
            self.reset(header.stream, ErrorCode::Protocol);
            return Ok(());
        }
        *window += increment;
        if *window > MAX_WINDOW {
            self.reset(header.stream, ErrorCode::FlowControl);
        }
        Ok(())
    }

    /// Counts a frame that moves nothing forward; too many end the connection.
    fn pointless(&mut self) -> Result<(), ErrorCode> {
        self.pointless_frames += 1;
        match self.pointless_frames > POINTLESS_FRAME_ALLOWANCE + FRAMES_PER_RESPONSE * self.responses {
            true => Err(ErrorCode::EnhanceYourCalm),
            false => Ok(()),
        }
    }

    /// Decodes a block only to keep the HPACK table in step (§4.3), for a stream refused anyway.
    fn decode_and_drop(&mut self, block: &[u8]) -> Result<(), ErrorCode> {
        let mut list = std::mem::take(&mut self.list);
        list.clear();
        let decoded = self.decoder.decode(block, &mut list, MAX_HEADER_LIST_SIZE);
        self.list = list;
        decoded.map_err(|_| ErrorCode::Compression)
    }

    fn position(&self, stream: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == stream)
    }

    fn find(&self, stream: u32) -> Found {
        if let Some(at) = self.position(stream) {
            return Found::Responding(at);
        }
        match self.answered.iter().position(|s| s.id == stream) {
            Some(at) => Found::Answered(at),
            None => Found::Closed,
        }
    }

    /// Resets `stream` (a stream error, §5.4.2), ending it if it is open.
    fn reset(&mut self, stream: u32, code: ErrorCode) {
        frame::write_rst_stream(&mut self.out, stream, code);
        let end = match code {
            ErrorCode::Internal => StreamEnd::Failed,
            _ => StreamEnd::Cancelled,
        };
        self.end_stream(stream, end);
    }

    /// Forgets `stream`, handing its body back to the caller if its response was going out.
    fn end_stream(&mut self, stream: u32, end: StreamEnd) {
        match self.find(stream) {
            Found::Responding(at) => {
                let stream = self.streams.remove(at);
                if end == StreamEnd::Complete {
                    self.responses += 1;
                }
                if self.ended.capacity() == 0 {
                    self.ended.reserve(STREAMS_PER_BATCH);
                }
                self.ended.push((stream.body, stream.sent, end));
                if self.next_turn > at {
                    self.next_turn -= 1;
                }
            }
            Found::Answered(at) => {
                self.answered.swap_remove(at);
            }
            Found::Closed => {}
        }
    }

    /// Ends the response of the stream at `at` once it is all out; a request still arriving
    /// keeps the stream among the answered until it ends.
    fn finish_if_done(&mut self, at: usize) {
        let stream = &self.streams[at];
        if stream.body.remaining() > 0 {
            return;
        }
        let (id, incoming, send_window) = (stream.id, stream.incoming, stream.send_window);
        self.end_stream(id, StreamEnd::Complete);
        if let Some(incoming) = incoming {
            self.answered.push(Answered { id, incoming, send_window });
        }
    }

    /// Tops up the connection's receive window once the client has used half of it.
    fn refill_receive_window(&mut self) {
        if self.receive_window < RECEIVE_WINDOW_REFILL && !matches!(self.phase, Phase::Failed(_)) {
            frame::write_window_update(&mut self.out, 0, (DEFAULT_WINDOW - self.receive_window) as u32);
            self.receive_window = DEFAULT_WINDOW;
        }
    }

    /// Sends GOAWAY with `code` and stops reading (a connection error, §5.4.1).
    fn fail(&mut self, code: ErrorCode) {
        if let Phase::Failed(_) = self.phase {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_stream, code);
        self.phase = Phase::Failed(code);
        self.pending_block = None;
        self.answered = Vec::new();
        for stream in std::mem::take(&mut self.streams) {
            self.ended.push((stream.body, stream.sent, StreamEnd::Cancelled));
        }
    }

    /// The server is shutting down (or the client said GOAWAY): GOAWAY with NO_ERROR naming
    /// the last stream we will answer; open streams finish, new ones are ignored.
    pub fn begin_draining(&mut self) {
        if matches!(self.phase, Phase::Open | Phase::AwaitingSettings | Phase::Preface { .. }) {
            frame::write_goaway(&mut self.out, self.last_stream, ErrorCode::NoError);
            self.phase = Phase::Draining;
        }
    }

    /// Appends DATA frames, round-robin over the streams with a body and window, until
    /// [`OUTPUT_TARGET`] octets wait or nothing more may be sent: a frame per stream per turn,
    /// or, for a stream that is the only one able to send, up to [`FRAMES_PER_READ`] frames
    /// filled by one read. Reading a body fails: that stream is reset with INTERNAL_ERROR.
    pub fn produce(&mut self) {
        if !self.streams.is_empty() {
            self.ensure_output_buffer();
        }
        while self.queued_output() < OUTPUT_TARGET && self.send_window > 0 && !self.streams.is_empty() {
            let count = self.streams.len();
            let can_send = |stream: &Stream<B>| stream.body.remaining() > 0 && stream.send_window > 0;
            let ready = (0..count)
                .map(|turn| (self.next_turn + turn) % count)
                .find(|&at| can_send(&self.streams[at]));
            let Some(at) = ready else { return };
            self.next_turn = at + 1;
            let alone =
                !self.streams.iter().enumerate().any(|(other, stream)| other != at && can_send(stream));
            let mut queued = self.queued_output();
            // The frames' lengths, within both windows, the peer's frame size and the target.
            let stream = &mut self.streams[at];
            let (mut remaining, mut window) =
                (stream.body.remaining(), stream.send_window.min(self.send_window));
            let (mut lens, mut frames) = ([0usize; FRAMES_PER_READ], 0);
            while frames < if alone { FRAMES_PER_READ } else { 1 }
                && remaining > 0
                && window > 0
                && queued < OUTPUT_TARGET
            {
                let len = remaining.min(window as u64).min(self.peer.max_frame_size as u64) as usize;
                lens[frames] = len;
                frames += 1;
                (remaining, window, queued) =
                    (remaining - len as u64, window - len as i64, queued + FRAME_HEADER_LEN + len);
            }
            let lens = &lens[..frames];
            let start = self.out.len();
            for (n, &len) in lens.iter().enumerate() {
                let flags = if n + 1 == frames && remaining == 0 { flag::END_STREAM } else { 0 };
                frame::write_header(&mut self.out, len, kind::DATA, flags, stream.id);
                self.out.resize(self.out.len() + len, 0);
            }
            let mut payloads: [&mut [u8]; FRAMES_PER_READ] = Default::default();
            let mut rest = &mut self.out[start..];
            for (payload, &len) in payloads.iter_mut().zip(lens) {
                let (frame, after) = std::mem::take(&mut rest).split_at_mut(FRAME_HEADER_LEN + len);
                *payload = &mut frame[FRAME_HEADER_LEN..];
                rest = after;
            }
            if stream.body.fill(&mut payloads[..frames]).is_err() {
                self.out.truncate(start);
                let id = stream.id;
                self.reset(id, ErrorCode::Internal);
                continue;
            }
            let sent: usize = lens.iter().sum();
            stream.send_window -= sent as i64;
            stream.sent += (frames * FRAME_HEADER_LEN + sent) as u64;
            self.send_window -= sent as i64;
            let small = lens
                .iter()
                .enumerate()
                .filter(|&(n, &len)| len < SMALL_DATA && !(n + 1 == frames && remaining == 0));
            self.small_frames += small.count() as u64;
            if self.small_frames > SMALL_FRAME_ALLOWANCE + self.responses {
                self.fail(ErrorCode::EnhanceYourCalm);
                return;
            }
            if remaining == 0 {
                self.finish_if_done(at);
            }
        }
    }

    /// A connection that let its output buffer go takes a pooled one before writing frames.
    fn ensure_output_buffer(&mut self) {
        if self.out.capacity() == 0 {
            self.out = take_frame_buffer();
        }
    }

    /// The octets waiting for the socket.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// The socket took `count` octets of [`Connection::output`]. The buffer is let go once
    /// empty and no stream needs it, so an idle connection holds none. What was taken is
    /// dropped once it is at least what is left (a copy of the rest, amortised), so a socket
    /// that always takes a little less than was queued does not grow the buffer by a body.
    pub fn advance_output(&mut self, count: usize) {
        self.out_start += count;
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
            if self.streams.is_empty() {
                give_frame_buffer(std::mem::take(&mut self.out));
            }
        } else if self.out_start >= self.queued_output() {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    fn queued_output(&self) -> usize {
        self.out.len() - self.out_start
    }

    /// Streams ended since the last call: each body (with what it carries), the octets its
    /// frames took, and how it ended.
    pub fn take_ended(&mut self) -> std::vec::Drain<'_, (B, u64, StreamEnd)> {
        self.ended.drain(..)
    }

    /// A response is in progress: streams are open (some may wait for window).
    pub fn has_streams(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Streams have body left that flow control holds back: the client must open its window.
    pub fn is_window_blocked(&self) -> bool {
        let mut waiting = self.streams.iter().filter(|stream| stream.body.remaining() > 0).peekable();
        waiting.peek().is_some() && (self.send_window <= 0 || waiting.all(|stream| stream.send_window <= 0))
    }

    /// Part of a header block (or of the preface) has arrived and the rest has not.
    pub fn is_mid_request(&self) -> bool {
        self.pending_block.is_some() || matches!(self.phase, Phase::Preface { .. } | Phase::AwaitingSettings)
    }

    /// The connection is done once its output is out: a connection error (with its code), or
    /// a drain with no stream left.
    pub fn closing(&self) -> Option<ErrorCode> {
        match self.phase {
            Phase::Failed(code) => Some(code),
            Phase::Draining if self.streams.is_empty() => Some(ErrorCode::NoError),
            _ => None,
        }
    }

    /// Lets go of the room streams and decoding left behind once no stream is open, so an
    /// idle connection keeps only its HPACK tables (and its output until the socket took it).
    pub fn release_idle_buffers(&mut self) {
        if self.streams.is_empty() && self.ended.is_empty() && self.pending_block.is_none() {
            if self.queued_output() == 0 {
                give_frame_buffer(std::mem::take(&mut self.out));
                self.out_start = 0;
            }
            self.streams = Vec::new();
            self.ended = Vec::new();
            if self.answered.is_empty() {
                self.answered = Vec::new();
            }
            self.list = HeaderList::default();
            self.decoder.release_scratch();
        }
    }

    /// Idle: no stream and no partial block; only HPACK tables are kept.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.pending_block.is_none() && self.queued_output() == 0
    }
}

/// A frame's payload without its padding (§6.1, §6.2).
fn unpadded(header: FrameHeader, payload: &[u8]) -> Result<&[u8], ErrorCode> {
    if !header.has(flag::PADDED) {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else { return Err(ErrorCode::FrameSize) };
    match rest.len().checked_sub(pad as usize) {
        Some(len) => Ok(&rest[..len]),
        None => Err(ErrorCode::Protocol),
    }
}

/// Header blocks are encoded into one buffer per thread, then framed into the output: a
/// response allocates nothing for its block.
fn take_block_buffer() -> Vec<u8> {
    BLOCK_BUFFER.with(|spare| spare.take())
}

fn give_block_buffer(mut block: Vec<u8>) {
    block.clear();
    BLOCK_BUFFER.with(|spare| spare.set(block));
}

thread_local! {
    static BLOCK_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    /// A body of `left` octets `b'x'`.
    #[derive(Debug)]
    struct TestBody {
        left: u64,
        /// Calls to `fill`: reads of the body.
        reads: u32,
    }

    impl BodySource for TestBody {
        fn remaining(&self) -> u64 {
            self.left
        }

        fn fill(&mut self, payloads: &mut [&mut [u8]]) -> Result<(), ReadFailed> {
            let want: u64 = payloads.iter().map(|payload| payload.len() as u64).sum();
            self.left = self.left.checked_sub(want).ok_or(ReadFailed)?;
            self.reads += 1;
            for payload in payloads {
                payload.fill(b'x');
            }
            Ok(())
        }
    }

    /// A frame we sent, as read back.
    #[derive(Debug)]
    struct Sent {
        header: FrameHeader,
        payload: Vec<u8>,
    }

    /// The client side: frames written by hand, our output parsed back.
    struct Peer {
        connection: Connection<TestBody>,
        /// The body size each request to `/big` gets; others get 5 octets.
        big: u64,
        requests: Vec<(u32, Result<String, HttpError>)>,
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::write_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// A header block of literal fields without indexing (RFC 7541 §6.2.2), short strings only.
    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0);
            for text in [name, value] {
                assert!(text.len() < 127);
                out.push(text.len() as u8);
                out.extend_from_slice(text.as_bytes());
            }
        }
        out
    }

    fn get(path: &str) -> Vec<u8> {
        block(&[(":method", "GET"), (":scheme", "https"), (":path", path), (":authority", "h")])
    }

    fn request_headers(stream: u32, path: &str) -> Vec<u8> {
        frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, stream, &get(path))
    }

    impl Peer {
        /// A connection past the preface and both SETTINGS, its output so far taken.
        fn open() -> Peer {
            let mut peer = Peer::new();
            let mut start = PREFACE.to_vec();
            start.extend(frame(kind::SETTINGS, 0, 0, &[]));
            assert_eq!(peer.send(&start), start.len());
            let sent = peer.take();
            assert_eq!(sent[0].header.kind, kind::SETTINGS);
            assert_eq!((sent[1].header.kind, sent[1].header.flags), (kind::SETTINGS, flag::ACK));
            peer
        }

        fn new() -> Peer {
            Peer { connection: Connection::new(), big: 100_000, requests: Vec::new() }
        }

        /// Hands `bytes` to the connection; returns what it consumed.
        fn send(&mut self, bytes: &[u8]) -> usize {
            let (big, requests) = (self.big, &mut self.requests);
            self.connection.handle(bytes, &mut |stream, request| {
                requests.push((stream, request.clone().map(|r| r.target.raw.to_owned())));
                let len = match request {
                    Ok(request) if request.method == Method::Head => 0,
                    Ok(request) if request.target.raw == "/big" => big,
                    Ok(request) if request.target.raw == "/refused" => return None,
                    _ => 5,
                };
                let mut fields = Headers::default();
                fields.push(field!("Content-Length"), len);
                let status = if request.is_ok() { 200 } else { 431 };
                Some(Reply { status, fields, body: TestBody { left: len, reads: 0 } })
            })
        }

        /// Everything the connection would send now (DATA included), as frames.
        fn take(&mut self) -> Vec<Sent> {
            let mut frames = Vec::new();
            loop {
                self.connection.produce();
                let output = self.connection.output().to_vec();
                if output.is_empty() {
                    return frames;
                }
                self.connection.advance_output(output.len());
                let mut rest = &output[..];
                while let Some(head) = rest.first_chunk::<FRAME_HEADER_LEN>() {
                    let header = FrameHeader::parse(head);
                    let payload = rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len].to_vec();
                    rest = &rest[FRAME_HEADER_LEN + header.len..];
                    frames.push(Sent { header, payload });
                }
            }
        }

        /// The code of the GOAWAY among `frames`, if there is one.
        fn goaway(frames: &[Sent]) -> Option<u32> {
            let goaway = frames.iter().find(|f| f.header.kind == kind::GOAWAY)?;
            Some(u32::from_be_bytes(goaway.payload[4..8].try_into().unwrap()))
        }

        fn resets(frames: &[Sent]) -> Vec<(u32, u32)> {
            let resets = frames.iter().filter(|f| f.header.kind == kind::RST_STREAM);
            resets
                .map(|f| (f.header.stream, u32::from_be_bytes(f.payload[..4].try_into().unwrap())))
                .collect()
        }
    }

    fn data_octets(frames: &[Sent], stream: u32) -> usize {
        let data = frames.iter().filter(|f| f.header.kind == kind::DATA && f.header.stream == stream);
        data.map(|f| f.payload.len()).sum()
    }

    fn decoded_status(decoder: &mut Decoder, frame: &Sent) -> String {
        let mut list = HeaderList::default();
        decoder.decode(&frame.payload, &mut list, 1 << 16).unwrap();
        let (name, value) = list.iter().next().unwrap();
        assert_eq!(name, b":status");
        String::from_utf8(value.to_vec()).unwrap()
    }

    #[test]
    fn a_request_gets_headers_then_data_and_ends_complete() {
        let mut peer = Peer::open();
        peer.send(&request_headers(1, "/a"));
        let sent = peer.take();
        assert_eq!(sent[0].header.kind, kind::HEADERS);
        assert!(sent[0].header.has(flag::END_HEADERS) && !sent[0].header.has(flag::END_STREAM));
        assert_eq!(decoded_status(&mut Decoder::default(), &sent[0]), "200");
        assert_eq!((sent[1].header.kind, sent[1].payload.as_slice()), (kind::DATA, &b"xxxxx"[..]));
        assert!(sent[1].header.has(flag::END_STREAM));
        assert_eq!(sent.len(), 2);
        let ended: Vec<_> = peer.connection.take_ended().map(|(_, _, end)| end).collect();
        assert_eq!(ended, [StreamEnd::Complete]);
        assert_eq!(peer.requests, [(1, Ok("/a".to_owned()))]);
        assert!(peer.connection.is_idle());
        assert_eq!(peer.connection.out.capacity(), 0, "an idle connection holds no output buffer");
        peer.connection.release_idle_buffers();
        assert_eq!(peer.connection.streams.capacity() + peer.connection.ended.capacity(), 0);
        // A frame that needs no answer leaves no output buffer behind once the connection waits.
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
        assert!(peer.connection.output().is_empty());
        peer.connection.release_idle_buffers();
        assert_eq!(peer.connection.out.capacity(), 0);
    }

    #[test]
    fn a_preface_that_is_not_one_gets_protocol_error() {
        let mut peer = Peer::new();
        assert_eq!(peer.send(b"GET / HTTP/1.1\r\n\r\n"), 18);
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::Protocol as u32));
        assert_eq!(peer.connection.closing(), Some(ErrorCode::Protocol));
        let mut split = Peer::new();
        assert_eq!(split.send(&PREFACE[..10]), 10);
        assert!(split.connection.is_mid_request());
        let mut rest = PREFACE[10..].to_vec();
        rest.extend(frame(kind::PING, 0, 0, &[0; 8])); // the first frame must be SETTINGS
        split.send(&rest);
        assert_eq!(Peer::goaway(&split.take()), Some(ErrorCode::Protocol as u32));
    }

    #[test]
    fn flow_control_windows_are_honoured_exactly() {
        let mut peer = Peer::open();
        peer.send(&request_headers(1, "/big"));
        let sent = peer.take();
        assert_eq!(data_octets(&sent, 1), 65_535, "the default windows");
        assert!(peer.connection.is_window_blocked());
        // The stream's window opens, the connection's not yet: still nothing.
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 1, &100_000u32.to_be_bytes()));
        assert_eq!(data_octets(&peer.take(), 1), 0);
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &1_000u32.to_be_bytes()));
        assert_eq!(data_octets(&peer.take(), 1), 1_000);
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes()));
        let sent = peer.take();
        assert_eq!(data_octets(&sent, 1), 100_000 - 66_535);
        assert!(sent.last().unwrap().header.has(flag::END_STREAM));
        assert!(sent.iter().all(|f| f.payload.len() <= DEFAULT_MAX_FRAME_SIZE));
    }

    /// The TLS transport takes at most 64 KiB per write, a little less than four full frames:
    /// what it took is dropped from the buffer, so a 4 MiB body never grows it past a few frames.
    #[test]
    fn a_socket_that_takes_a_little_less_than_was_queued_keeps_the_buffer_small() {
        let mut peer = Peer::open();
        peer.big = 4 << 20;
        peer.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &(8u32 << 20).to_be_bytes()));
        peer.send(&request_headers(1, "/big"));
        let mut sent = 0;
        while !peer.connection.output().is_empty() {
            let took = peer.connection.output().len().min(64 * 1024);
            sent += took;
            peer.connection.advance_output(took);
            peer.connection.produce();
            assert!(
                peer.connection.out.capacity() <= 2 * OUTPUT_TARGET,
                "{} after {sent}",
                peer.connection.out.capacity()
            );
        }
        assert!(sent > 4 << 20);
        assert!(!peer.connection.has_streams());
    }

    #[test]
    fn a_smaller_initial_window_moves_open_streams_and_a_window_past_two_gigabytes_fails() {
        let mut peer = Peer::open();
        peer.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]));
        peer.send(&request_headers(1, "/big"));
        assert_eq!(data_octets(&peer.take(), 1), 10);
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 1, &0x7fff_fff0u32.to_be_bytes()));
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 1, &0x10u32.to_be_bytes()));
        assert_eq!(Peer::resets(&peer.take()), [(1, ErrorCode::FlowControl as u32)]);
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &0x7fff_fff0u32.to_be_bytes()));
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::FlowControl as u32));
    }

    /// A stream that is the only one able to send gets four frames per read of its body (one
    /// `preadv` for a file); beside another, one frame per turn each.
    #[test]
    fn a_stream_alone_gets_four_frames_per_read_and_one_per_turn_beside_another() {
        let mut peer = Peer::open();
        peer.big = 1 << 20;
        peer.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &(4u32 << 20).to_be_bytes()));
        peer.send(&request_headers(1, "/big"));
        let sent = peer.take();
        assert_eq!(data_octets(&sent, 1), 1 << 20);
        let frames = sent.iter().filter(|f| f.header.kind == kind::DATA).count();
        assert_eq!(frames, 64);
        let reads: Vec<u32> = peer.connection.take_ended().map(|(body, _, _)| body.reads).collect();
        assert_eq!(reads, [16]);
        peer.send(&request_headers(3, "/big"));
        peer.send(&request_headers(5, "/big"));
        let sent = peer.take();
        let order: Vec<u32> =
            sent.iter().filter(|f| f.header.kind == kind::DATA).map(|f| f.header.stream).collect();
        assert_eq!(&order[..4], [3, 5, 3, 5], "{order:?}");
        assert!(sent.iter().all(|f| f.payload.len() <= DEFAULT_MAX_FRAME_SIZE));
        assert!(sent.iter().rfind(|f| f.header.kind == kind::DATA).unwrap().header.has(flag::END_STREAM));
    }

    #[test]
    fn streams_share_the_connection_round_robin() {
        let mut peer = Peer::open();
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &1_000_000u32.to_be_bytes()));
        peer.send(&request_headers(1, "/big"));
        peer.send(&request_headers(3, "/big"));
        peer.send(&request_headers(5, "/a"));
        let sent = peer.take();
        let order: Vec<u32> =
            sent.iter().filter(|f| f.header.kind == kind::DATA).map(|f| f.header.stream).collect();
        assert_eq!(&order[..4], [1, 3, 5, 1], "{order:?}");
        assert_eq!(data_octets(&sent, 5), 5);
    }

    #[test]
    fn frames_in_the_wrong_place_are_connection_errors() {
        let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
            (frame(kind::DATA, 0, 0, b"x"), ErrorCode::Protocol),
            (frame(kind::HEADERS, flag::END_HEADERS, 0, &get("/")), ErrorCode::Protocol),
            (frame(kind::HEADERS, flag::END_HEADERS, 2, &get("/")), ErrorCode::Protocol),
            (frame(kind::SETTINGS, 0, 1, &[]), ErrorCode::Protocol),
            (frame(kind::PING, 0, 1, &[0; 8]), ErrorCode::Protocol),
            (frame(kind::PING, 0, 0, &[0; 7]), ErrorCode::FrameSize),
            (frame(kind::SETTINGS, 0, 0, &[0; 5]), ErrorCode::FrameSize),
            (frame(kind::SETTINGS, flag::ACK, 0, &[0; 6]), ErrorCode::FrameSize),
            (frame(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), ErrorCode::Protocol),
            (frame(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]), ErrorCode::Protocol),
            (frame(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]), ErrorCode::FlowControl),
            (frame(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]), ErrorCode::Protocol),
            (frame(kind::CONTINUATION, flag::END_HEADERS, 1, &get("/")), ErrorCode::Protocol),
            (frame(kind::RST_STREAM, 0, 0, &[0; 4]), ErrorCode::Protocol),
            (frame(kind::RST_STREAM, 0, 9, &[0; 4]), ErrorCode::Protocol),
            (frame(kind::WINDOW_UPDATE, 0, 0, &[0; 4]), ErrorCode::Protocol),
            (frame(kind::WINDOW_UPDATE, 0, 0, &[0; 3]), ErrorCode::FrameSize),
            (frame(kind::WINDOW_UPDATE, 0, 9, &[0, 0, 0, 1]), ErrorCode::Protocol),
            (frame(kind::DATA, 0, 9, b"x"), ErrorCode::Protocol),
            (frame(kind::GOAWAY, 0, 1, &[0; 8]), ErrorCode::Protocol),
            (frame(0xff, 0, 0, &vec![0; DEFAULT_MAX_FRAME_SIZE + 1]), ErrorCode::FrameSize),
            (frame(kind::HEADERS, flag::END_HEADERS | flag::PADDED, 1, &[9, 1, 2]), ErrorCode::Protocol),
            (frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x3f, 0xe2, 0x1f]), ErrorCode::Compression),
        ];
        for (bytes, code) in cases {
            let mut peer = Peer::open();
            peer.send(&bytes);
            assert_eq!(Peer::goaway(&peer.take()), Some(code as u32), "{:?}", &bytes[..9]);
            assert_eq!(peer.connection.closing(), Some(code));
            assert_eq!(
                peer.send(&request_headers(11, "/")),
                9 + get("/").len(),
                "input after the error is dropped"
            );
            assert!(peer.take().is_empty(), "and nothing more is answered");
        }
    }

    #[test]
    fn a_stream_id_that_goes_backwards_or_reuses_a_closed_stream_ends_the_connection() {
        let mut peer = Peer::open();
        peer.send(&request_headers(5, "/"));
        peer.send(&request_headers(3, "/"));
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::Protocol as u32));
        let mut peer = Peer::open();
        peer.send(&request_headers(5, "/"));
        peer.send(&request_headers(5, "/"));
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::StreamClosed as u32));
    }

    #[test]
    fn malformed_and_empty_header_blocks_reset_their_stream_only() {
        let mut peer = Peer::open();
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &[]));
        let bad = block(&[(":method", "GET"), (":path", "/"), (":scheme", "https"), ("Upper", "x")]);
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &bad));
        peer.send(&request_headers(5, "/refused"));
        peer.send(&request_headers(7, "/fine"));
        let sent = peer.take();
        let code = |code: ErrorCode| code as u32;
        assert_eq!(
            Peer::resets(&sent),
            [
                (1, code(ErrorCode::Protocol)),
                (3, code(ErrorCode::Protocol)),
                (5, code(ErrorCode::RefusedStream))
            ]
        );
        assert_eq!(data_octets(&sent, 7), 5);
        assert_eq!(Peer::goaway(&sent), None);
    }

    #[test]
    fn an_hpack_bomb_is_answered_431_and_an_oversized_table_update_ends_the_connection() {
        let mut peer = Peer::open();
        // One 4,000-octet field put in the table, then named 100 times: 400 kB from 4 kB.
        let mut bomb = get("/");
        bomb.extend([0x40, 1, b'x', 0x7f]);
        let mut length = Vec::new();
        let mut rest = 4_000 - 127;
        while rest >= 128 {
            length.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        length.push(rest as u8);
        bomb.extend(length);
        bomb.extend(std::iter::repeat_n(b'y', 4_000));
        bomb.extend(std::iter::repeat_n(0xbe, 100)); // index 62: the newest entry
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &bomb));
        let sent = peer.take();
        assert_eq!(peer.requests, [(1, Err(HttpError::HeaderFieldsTooLarge))]);
        assert_eq!(decoded_status(&mut Decoder::default(), &sent[0]), "431");
        // §6.3 of RFC 7541: a size update above our SETTINGS_HEADER_TABLE_SIZE (4,096).
        let mut oversized = vec![0x3f, 0xe2, 0x1f]; // 5000
        oversized.extend(get("/"));
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &oversized));
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::Compression as u32));
    }

    #[test]
    fn a_continuation_flood_ends_the_connection_after_a_bounded_block() {
        let mut peer = Peer::open();
        let mut flood = frame(kind::HEADERS, flag::END_STREAM, 1, &get("/"));
        for _ in 0..100 {
            flood.extend(frame(kind::CONTINUATION, 0, 1, &[0x40; 1024]));
        }
        peer.send(&flood);
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::EnhanceYourCalm as u32));
        assert!(peer.connection.pending_block.is_none());
        // Empty CONTINUATION frames grow nothing, and are counted instead.
        let mut peer = Peer::open();
        let mut empties = frame(kind::HEADERS, flag::END_STREAM, 1, &get("/"));
        for _ in 0..=POINTLESS_FRAME_ALLOWANCE {
            empties.extend(frame(kind::CONTINUATION, 0, 1, &[]));
        }
        peer.send(&empties);
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::EnhanceYourCalm as u32));
    }

    /// The 2019 floods (CVE-2019-9512 ping, 9515 settings, 9518 empty frames, 9514 reset) and
    /// 2023's rapid reset: each is told to calm down, none grows the output past its bound.
    #[test]
    fn floods_of_frames_that_ask_for_nothing_are_told_to_calm_down() {
        type Flood = fn(u32) -> Vec<u8>;
        let floods: Vec<(&str, Vec<u8>, Flood)> = vec![
            ("ping", vec![], |_| frame(kind::PING, 0, 0, &[7; 8])),
            ("settings", vec![], |_| frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0])),
            ("priority", vec![], |_| frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 0, 16])),
            ("empty data", frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/big")), |_| {
                frame(kind::DATA, 0, 1, &[])
            }),
            ("zero-length headers", vec![], |n| {
                frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 2 * n + 3, &[])
            }),
        ];
        for (name, setup, flood) in floods {
            let mut peer = Peer::open();
            peer.send(&setup);
            peer.take();
            let mut peak = 0;
            let mut closed = false;
            for n in 0..2 * POINTLESS_FRAME_ALLOWANCE as u32 {
                peer.send(&flood(n));
                peak = peak.max(peer.connection.output().len());
                if peer.connection.closing().is_some() {
                    closed = true;
                    break;
                }
                if peer.connection.output().len() > MAX_QUEUED_OUTPUT / 2 {
                    peer.take();
                }
            }
            assert!(closed, "{name}: never closed");
            assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::EnhanceYourCalm as u32), "{name}");
            assert!(peak <= MAX_QUEUED_OUTPUT + 2 * OUTPUT_TARGET, "{name}: {peak}");
        }
        // Rapid reset: requests cancelled before their response is out.
        let mut peer = Peer::open();
        let mut stream = 1;
        while peer.connection.closing().is_none() && stream < 10_000 {
            let mut pair = request_headers(stream, "/big");
            pair.extend(frame(kind::RST_STREAM, 0, stream, &(ErrorCode::Cancel as u32).to_be_bytes()));
            peer.send(&pair);
            if peer.connection.output().len() > MAX_QUEUED_OUTPUT / 2 {
                peer.connection.advance_output(peer.connection.output().len());
            }
            stream += 2;
        }
        assert_eq!(peer.connection.closing(), Some(ErrorCode::EnhanceYourCalm));
        assert!(stream / 2 <= POINTLESS_FRAME_ALLOWANCE as u32 + 2, "{stream}");
        assert!(!peer.connection.has_streams());
    }

    #[test]
    fn a_peer_that_never_reads_stops_being_read() {
        let mut peer = Peer::open();
        // Requests for small files, 50 at a time, answered as the engine would (DATA produced
        // after each read) while the socket takes nothing.
        let mut stream = 1;
        let mut consumed_all = true;
        for _ in 0..1_000 {
            let mut batch = Vec::new();
            for _ in 0..50 {
                batch.extend(request_headers(stream, "/a"));
                stream += 2;
            }
            let consumed = peer.send(&batch);
            peer.connection.produce();
            if consumed < batch.len() {
                consumed_all = false;
                assert_eq!(peer.send(&batch[consumed..]), 0, "nothing more until the socket takes some");
                break;
            }
        }
        assert!(!consumed_all, "reading never stopped");
        assert!(peer.connection.output().len() <= MAX_QUEUED_OUTPUT + OUTPUT_TARGET);
        assert_eq!(peer.connection.closing(), None, "a client that reads late is not an attacker");
        peer.take();
        assert!(peer.send(&request_headers(stream + 100, "/a")) > 0);
    }

    #[test]
    fn a_window_dribble_is_told_to_calm_down_and_a_zero_window_waits() {
        let mut peer = Peer::open();
        peer.send(&frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0]));
        peer.send(&request_headers(1, "/big"));
        assert_eq!(data_octets(&peer.take(), 1), 0);
        assert!(peer.connection.is_window_blocked(), "the send timeout's to end");
        for _ in 0..=SMALL_FRAME_ALLOWANCE + 1 {
            peer.send(&frame(kind::WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes()));
            peer.connection.produce();
        }
        assert_eq!(Peer::goaway(&peer.take()), Some(ErrorCode::EnhanceYourCalm as u32));
    }

    #[test]
    fn draining_finishes_open_streams_and_ignores_new_ones() {
        let mut peer = Peer::open();
        peer.send(&request_headers(1, "/big"));
        peer.connection.begin_draining();
        peer.send(&request_headers(3, "/a"));
        let sent = peer.take();
        assert_eq!(Peer::goaway(&sent), Some(0));
        assert_eq!(peer.requests.len(), 1);
        assert_eq!(peer.connection.closing(), None, "stream 1 still has window to wait for");
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes()));
        peer.send(&frame(kind::WINDOW_UPDATE, 0, 1, &100_000u32.to_be_bytes()));
        peer.take();
        assert_eq!(peer.connection.closing(), Some(ErrorCode::NoError));
    }

    #[test]
    fn a_request_body_is_dropped_with_its_windows_refilled_while_the_response_goes_out() {
        let mut peer = Peer::open();
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/big")));
        peer.take();
        for _ in 0..4 {
            peer.send(&frame(kind::DATA, 0, 1, &[0; 16_000]));
        }
        let sent = peer.take();
        let updates: Vec<u32> =
            sent.iter().filter(|f| f.header.kind == kind::WINDOW_UPDATE).map(|f| f.header.stream).collect();
        assert!(updates.contains(&0) && updates.contains(&1), "{updates:?}");
        assert_eq!(peer.connection.closing(), None);
    }

    /// A request answered before it ended (§8.1) is still read to its end and checked; only a
    /// body past half a window is told to stop, with RST_STREAM(NO_ERROR).
    #[test]
    fn a_request_answered_early_is_still_checked_until_it_ends() {
        let post = |length: &str| {
            let mut fields =
                vec![(":method", "POST"), (":scheme", "https"), (":path", "/a"), (":authority", "h")];
            if !length.is_empty() {
                fields.push(("content-length", length));
            }
            block(&fields)
        };
        let answered = |peer: &mut Peer, stream: u32, length: &str| {
            peer.send(&frame(kind::HEADERS, flag::END_HEADERS, stream, &post(length)));
            let sent = peer.take();
            assert!(sent.iter().any(|f| f.header.kind == kind::DATA && f.header.has(flag::END_STREAM)));
            assert_eq!(Peer::resets(&sent), [], "not reset while the request may still be checked");
        };
        let protocol = ErrorCode::Protocol as u32;
        let mut peer = Peer::open();
        answered(&mut peer, 1, "4");
        peer.send(&frame(kind::DATA, flag::END_STREAM, 1, b"test"));
        assert_eq!(Peer::resets(&peer.take()), [], "the declared length arrived");
        answered(&mut peer, 3, "3");
        peer.send(&frame(kind::DATA, 0, 3, b"test"));
        assert_eq!(Peer::resets(&peer.take()), [(3, protocol)], "§8.1.1: more than declared");
        answered(&mut peer, 5, "5");
        peer.send(&frame(kind::DATA, flag::END_STREAM, 5, b"test"));
        assert_eq!(Peer::resets(&peer.take()), [(5, protocol)], "§8.1.1: less than declared");
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 7, &post("2")));
        assert_eq!(Peer::resets(&peer.take()), [(7, protocol)], "declared, yet no body");
        answered(&mut peer, 9, "");
        peer.send(&frame(kind::DATA, 0, 9, b"test"));
        peer.send(&frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            9,
            &block(&[(":method", "POST")]),
        ));
        assert_eq!(Peer::resets(&peer.take()), [(9, protocol)], "§8.1: a pseudo-header in trailers");
        answered(&mut peer, 11, "");
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 11, &block(&[("x-t", "ok")])));
        assert_eq!(Peer::resets(&peer.take()), [], "trailers end the request");
        answered(&mut peer, 13, "");
        for _ in 0..2 {
            peer.send(&frame(kind::WINDOW_UPDATE, 0, 13, &0x7fff_ffffu32.to_be_bytes()));
        }
        assert_eq!(Peer::resets(&peer.take()), [(13, ErrorCode::FlowControl as u32)]);
        answered(&mut peer, 15, "");
        peer.send(&frame(kind::RST_STREAM, 0, 15, &(ErrorCode::Cancel as u32).to_be_bytes()));
        peer.send(&frame(kind::DATA, flag::END_STREAM, 15, b"test"));
        assert_eq!(Peer::resets(&peer.take()), [(15, ErrorCode::StreamClosed as u32)], "§5.1: closed");
        answered(&mut peer, 17, "");
        for _ in 0..3 {
            peer.send(&frame(kind::DATA, 0, 17, &[0; 16_000]));
        }
        assert_eq!(Peer::resets(&peer.take()), [(17, ErrorCode::NoError as u32)], "§8.1: stop sending");
        assert_eq!(peer.connection.closing(), None);
        assert!(peer.connection.is_idle(), "requests still arriving hold nothing of the server's");
        answered(&mut peer, 19, "");
        peer.send(&frame(kind::HEADERS, flag::END_HEADERS, 19, &block(&[("x-t", "ok")])));
        assert_eq!(Peer::goaway(&peer.take()), Some(protocol), "§8.1: trailers must end the stream");
    }

    /// A client's GOAWAY says it opens no more streams; the connection stays usable until
    /// it closes or goes idle (h2spec 7 expects the PING after it answered).
    #[test]
    fn a_client_goaway_leaves_the_connection_open() {
        let mut peer = Peer::open();
        peer.send(&frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0xff]));
        peer.send(&frame(kind::PING, 0, 0, b"12345678"));
        let sent = peer.take();
        assert!(sent.iter().any(|f| f.header.kind == kind::PING && f.header.has(flag::ACK)));
        assert_eq!(Peer::goaway(&sent), None);
        assert_eq!(peer.connection.closing(), None);
    }
}
