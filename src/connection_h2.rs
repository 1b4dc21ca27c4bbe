//! HTTP/2 on a connection's transport: the I/O around the sans-I/O [`http2::connection`].
//! A [`crate::connection::Connection`] becomes one when its first bytes are HTTP/2's preface
//! (prior knowledge on plain HTTP) or TLS agreed on `h2`; it keeps its transport, input buffer
//! and label, and its state is then an [`Http2`].
//!
//! Each `drive` is the HTTP/1.1 cycle with frames: answer the frames already read (each
//! request through [`crate::exchange`], as HTTP/1.1's are), produce DATA a few frames ahead,
//! write until the socket refuses, read until it is empty. Bodies are read from the file cache's
//! memory or with `pread`, one frame at a time, only when flow control and the socket allow.

use std::io;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, trace};
use nix::errno::Errno;
use nix::sys::uio::preadv;

use crate::connection::InputBuffer;
use crate::drive::{CloseReason, ConnLabel, Context, Limits, Now, Phase, Timeout, Verdict};
use crate::exchange::{Logged, look_up, respond_to};
use crate::files::FileBody;
use crate::http::response::MultipartPart;
use crate::http::{BodyPlan, HttpError, Request};
use crate::http2::connection::{BodySource, Connection as Protocol, ReadFailed, Reply, StreamEnd};
use crate::output::Sent;
use crate::site::SiteChoice;
use crate::transport::{Transport, nonblocking};

/// The HTTP/2 side of a connection, boxed in its state: the protocol's tables and streams.
#[derive(Debug)]
pub(crate) struct Http2 {
    protocol: Protocol<StreamBody>,
    /// When the preface or the header block now arriving started: the header timeout's base.
    mid_request_since: Option<Instant>,
}

/// What one round of writing did.
struct Flushed {
    /// Nothing is left for the socket.
    all_out: bool,
    /// Some octets went out: progress, for the send timeout.
    wrote: bool,
}

/// What a connection lends its HTTP/2 side for one call.
pub(crate) struct Io<'c, T> {
    pub(crate) transport: &'c mut T,
    pub(crate) input: &'c mut InputBuffer,
    pub(crate) label: ConnLabel,
    pub(crate) peer: Option<SocketAddr>,
    /// Last time bytes moved either way.
    pub(crate) last_progress: &'c mut Instant,
    /// The port it came in on, once asked (0: not yet).
    pub(crate) local_port: &'c mut u16,
}

impl Http2 {
    pub(crate) fn new(now: Now) -> Http2 {
        Http2 { protocol: Protocol::new(), mid_request_since: Some(now.mono) }
    }

    /// Runs the connection as far as it goes without blocking.
    pub(crate) fn drive<T: Transport>(&mut self, io: Io<'_, T>, cx: &mut Context<'_>) -> Verdict {
        let Io { transport, input, label, peer, last_progress, local_port } = io;
        let mut socket_drained = false;
        loop {
            let now = cx.now();
            let consumed = {
                let transport = &*transport;
                let mut local_port = || {
                    if *local_port == 0 {
                        *local_port = transport.local_port().unwrap_or(0);
                    }
                    *local_port
                };
                self.protocol.handle(input.data(), &mut |stream, request| {
                    answer(stream, request, transport, peer, cx, now, &mut local_port)
                })
            };
            input.consume(consumed);
            self.protocol.produce();
            self.log_ended(cx, label);
            self.mid_request_since = match self.protocol.is_mid_request() {
                true => self.mid_request_since.or(Some(now.mono)),
                false => None,
            };
            let flushed = self.write_output(transport, cx, label);
            if let Ok(Flushed { wrote: true, .. }) = flushed {
                *last_progress = now.mono;
            }
            match flushed {
                Ok(Flushed { all_out: true, .. }) => {}
                Ok(Flushed { all_out: false, .. }) => return self.waiting(transport, input),
                Err(error) => return Verdict::Close(CloseReason::from_io(&error)),
            }
            if let Some(code) = self.protocol.closing() {
                return Verdict::Close(CloseReason::Http2(code));
            }
            if socket_drained || input.space() == 0 {
                return self.waiting(transport, input);
            }
            let space = input.space();
            match nonblocking(|| input.read_from(transport)) {
                Ok(Some(0)) => {
                    trace!("{label} read EOF");
                    let mid_request = self.protocol.has_streams() || self.protocol.is_mid_request();
                    return Verdict::Close(match mid_request {
                        true => CloseReason::PeerClosedMidRequest,
                        false => CloseReason::PeerClosed,
                    });
                }
                Ok(Some(read)) => {
                    trace!("{label} read {read}B");
                    *last_progress = now.mono;
                    socket_drained = read < space && transport.short_read_drains();
                }
                Ok(None) => {
                    trace!("{label} read WouldBlock");
                    return self.waiting(transport, input);
                }
                Err(error) => return Verdict::Close(CloseReason::from_io(&error)),
            }
        }
    }

    /// Writes what the protocol queued, until it is all out or the socket stops taking it.
    fn write_output<T: Transport>(
        &mut self,
        transport: &mut T,
        cx: &Context<'_>,
        label: ConnLabel,
    ) -> io::Result<Flushed> {
        let mut wrote = false;
        loop {
            let output = self.protocol.output();
            if output.is_empty() {
                break;
            }
            match nonblocking(|| transport.write(output))? {
                Some(0) => return Err(io::ErrorKind::WriteZero.into()),
                Some(written) => {
                    trace!("{label} write {written}B");
                    if let Some(counters) = cx.counters {
                        counters.sent(written as u64);
                    }
                    self.protocol.advance_output(written);
                    self.protocol.produce();
                    wrote = true;
                }
                None => {
                    trace!("{label} write WouldBlock");
                    return Ok(Flushed { all_out: false, wrote });
                }
            }
        }
        // A layer under HTTP (TLS) may still hold records.
        let all_out = nonblocking(|| transport.flush())?.is_some();
        Ok(Flushed { all_out, wrote })
    }

    /// Waits for the socket, holding no buffer while none is needed.
    fn waiting<T: Transport>(&mut self, transport: &T, input: &mut InputBuffer) -> Verdict {
        input.release_if_empty();
        self.protocol.release_idle_buffers();
        Verdict::Wait { writable: self.output_pending(transport) }
    }

    fn output_pending<T: Transport>(&self, transport: &T) -> bool {
        !self.protocol.output().is_empty() || transport.has_unsent_output()
    }

    /// One access line per stream that ended.
    fn log_ended(&mut self, cx: &Context<'_>, label: ConnLabel) {
        for (body, sent, end) in self.protocol.take_ended() {
            if end != StreamEnd::Complete {
                debug!("{label} http2 stream ended {end:?}");
            }
            if let Some(record) = &body.logged {
                let body_bytes = body.delivered;
                cx.access_log.record(
                    &label,
                    record,
                    Sent { head_bytes: sent.saturating_sub(body_bytes), bytes: sent },
                );
            }
        }
    }

    pub(crate) fn deadline<T: Transport>(
        &self,
        transport: &T,
        last_progress: Instant,
        limits: &Limits,
    ) -> (Instant, Timeout) {
        if self.output_pending(transport) || self.protocol.is_window_blocked() {
            return (last_progress + limits.send_timeout, Timeout::Send);
        }
        match self.mid_request_since {
            Some(since) => (since + limits.header_timeout, Timeout::Header),
            None => (last_progress + limits.idle_timeout, Timeout::Idle),
        }
    }

    /// No stream in flight: closing now loses nothing (a queued GOAWAY is sent on the way out).
    pub(crate) fn is_idle(&self) -> bool {
        !self.protocol.has_streams() && !self.protocol.is_mid_request()
    }

    pub(crate) fn phase<T: Transport>(&self, transport: &T) -> Phase {
        match () {
            _ if self.output_pending(transport) || self.protocol.has_streams() => Phase::Writing,
            _ if self.protocol.is_mid_request() => Phase::Reading,
            _ => Phase::Waiting,
        }
    }

    /// Shutdown: GOAWAY now; open streams finish.
    pub(crate) fn begin_draining(&mut self) {
        self.protocol.begin_draining();
    }

    /// On the way out: what the socket takes at once of the queued frames (a GOAWAY), and an
    /// access line for each stream cut short.
    pub(crate) fn finish<T: Transport>(&mut self, transport: &mut T, cx: &Context<'_>, label: ConnLabel) {
        if transport.stop_blocking().is_ok() {
            let _ = self.write_output(transport, cx, label);
        }
        self.log_ended(cx, label);
    }
}

/// The reply to one stream's request, decided as HTTP/1.1's are; `None` resets it (a host
/// that `unknown_host = "close"` refuses).
fn answer(
    stream: u32,
    request: Result<&Request<'_>, HttpError>,
    transport: &impl Transport,
    peer: Option<SocketAddr>,
    cx: &mut Context<'_>,
    now: Now,
    local_port: &mut dyn FnMut() -> u16,
) -> Option<Reply<StreamBody>> {
    let (response, logged) = match request {
        Err(error) => respond_to(None, Err(error), cx, now.wall, peer, local_port),
        Ok(request) => {
            let choice = cx.sites.choose_for(request);
            if let SiteChoice::Close = choice {
                return None;
            }
            let (exchange, found) = look_up(request, choice, None, transport, true, cx);
            respond_to(Some(&exchange), found, cx, now.wall, peer, local_port)
        }
    };
    trace!("http2 stream {stream}: {}", response.status.code());
    Some(Reply {
        status: response.status.code(),
        fields: response.headers,
        body: StreamBody::new(response.body, logged),
    })
}

/// A stream's response body and its access record.
#[derive(Debug)]
pub(crate) struct StreamBody {
    source: Source,
    /// Octets still to send.
    remaining: u64,
    /// Octets sent so far, for the access log.
    delivered: u64,
    logged: Logged,
}

/// Where a body's octets come from.
#[derive(Debug)]
enum Source {
    Empty,
    Text {
        text: String,
        at: usize,
    },
    /// `file` from `offset` on (`remaining` octets of it).
    File {
        file: FileBody,
        offset: u64,
    },
    /// Each part's head then its range, then the closing delimiter: `part` is the one being
    /// sent, `at` how far into its head and range.
    Multipart {
        file: FileBody,
        parts: Vec<MultipartPart>,
        closing: String,
        part: usize,
        at: u64,
    },
}

impl StreamBody {
    fn new(plan: BodyPlan<FileBody>, logged: Logged) -> StreamBody {
        let (source, remaining) = match plan {
            BodyPlan::Empty => (Source::Empty, 0),
            BodyPlan::Page(text) => {
                let len = text.len() as u64;
                (Source::Text { text, at: 0 }, len)
            }
            BodyPlan::File { file, offset, len } => (Source::File { file, offset }, len),
            BodyPlan::Multipart { file, parts, closing } => {
                let len = parts.iter().map(|part| part.head.len() as u64 + part.len).sum::<u64>()
                    + closing.len() as u64;
                (Source::Multipart { file, parts, closing, part: 0, at: 0 }, len)
            }
        };
        StreamBody { source, remaining, delivered: 0, logged }
    }
}

impl BodySource for StreamBody {
    fn remaining(&self) -> u64 {
        self.remaining
    }

    fn fill(&mut self, payloads: &mut [&mut [u8]]) -> Result<(), ReadFailed> {
        let want: usize = payloads.iter().map(|payload| payload.len()).sum();
        if want as u64 > self.remaining {
            return Err(ReadFailed);
        }
        match &mut self.source {
            Source::Empty if want == 0 => {}
            Source::Empty => return Err(ReadFailed),
            Source::Text { text, at } => {
                for payload in payloads.iter_mut() {
                    let bytes = text.as_bytes().get(*at..*at + payload.len()).ok_or(ReadFailed)?;
                    payload.copy_from_slice(bytes);
                    *at += payload.len();
                }
            }
            Source::File { file, offset } => {
                read_file(file, *offset, payloads)?;
                *offset += want as u64;
            }
            Source::Multipart { file, parts, closing, part, at } => {
                for payload in payloads.iter_mut() {
                    let mut filled = 0;
                    while filled < payload.len() {
                        let room = &mut payload[filled..];
                        let Some(current) = parts.get(*part) else {
                            let from = (*at as usize).min(closing.len());
                            let take = room.len().min(closing.len() - from);
                            room[..take].copy_from_slice(&closing.as_bytes()[from..from + take]);
                            *at += take as u64;
                            if take < room.len() {
                                return Err(ReadFailed); // asked for more than the body has
                            }
                            break;
                        };
                        let head = current.head.as_bytes();
                        let take = if (*at as usize) < head.len() {
                            let take = room.len().min(head.len() - *at as usize);
                            room[..take].copy_from_slice(&head[*at as usize..*at as usize + take]);
                            take
                        } else {
                            let into_range = *at - head.len() as u64;
                            let take = (room.len() as u64).min(current.len - into_range) as usize;
                            read_file(file, current.offset + into_range, &mut [&mut room[..take]])?;
                            take
                        };
                        *at += take as u64;
                        filled += take;
                        if *at == head.len() as u64 + current.len {
                            (*part, *at) = (*part + 1, 0);
                        }
                    }
                }
            }
        }
        self.remaining -= want as u64;
        self.delivered += want as u64;
        Ok(())
    }
}

/// Fills `payloads` in order with the octets of `file` from `offset`: copied from the cache,
/// or read with one `preadv` for them all (the kernel copies straight into the frames).
fn read_file(file: &FileBody, offset: u64, payloads: &mut [&mut [u8]]) -> Result<(), ReadFailed> {
    match file {
        FileBody::Cached(cached) => {
            let mut from = usize::try_from(offset).map_err(|_| ReadFailed)?;
            for payload in payloads.iter_mut() {
                let bytes = cached.content.get(from..from + payload.len()).ok_or(ReadFailed)?;
                payload.copy_from_slice(bytes);
                from += payload.len();
            }
            Ok(())
        }
        FileBody::Open { file, .. } => {
            let want: usize = payloads.iter().map(|payload| payload.len()).sum();
            let mut slices: Vec<IoSliceMut<'_>> =
                payloads.iter_mut().map(|payload| IoSliceMut::new(payload)).collect();
            let mut unfilled = &mut slices[..];
            let mut filled = 0;
            while filled < want {
                let at = i64::try_from(offset + filled as u64).map_err(|_| ReadFailed)?;
                match preadv(file, unfilled, at) {
                    Ok(0) => {
                        let file = crate::output::file_name(file);
                        let ended = offset + filled as u64;
                        log::warn!(
                            "{file} shrank while it was sent: it ends before byte {ended}; the stream is reset"
                        );
                        return Err(ReadFailed);
                    }
                    Ok(read) => {
                        filled += read;
                        IoSliceMut::advance_slices(&mut unfilled, read);
                    }
                    Err(Errno::EINTR) => {}
                    Err(error) => {
                        log::warn!("preadv for an HTTP/2 stream failed: {error}");
                        return Err(ReadFailed);
                    }
                }
            }
            Ok(())
        }
    }
}
