//! Response bytes on their way to a socket, shared by every engine.
//!
//! An [`Output`] is one response: its head (and small generated body) as bytes with a cursor,
//! then optionally a file range with its own cursor. [`OutputQueue::send_some`] writes as much
//! of the queued outputs as the socket takes right now: consecutive byte parts go out in one
//! `writev`, file ranges through `sendfile(2)` (read+write where sendfile is unavailable), and
//! a short write just moves a cursor. Memory stays flat: a file is never read whole.
//!
//! Each output carries a tag it never looks at (the connection's access record) and lends it
//! to the caller, with what was sent, when the response is finished or abandoned: this layer
//! reports, the connection logs.

use std::collections::VecDeque;
use std::fmt::Display;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread::LocalKey;

use log::trace;

use crate::files::{CachedFile, FileBody};
use crate::http::{BodyPlan, Response};
use crate::recycle::{FreeList, give_bytes, take_bytes};
use crate::transport::Transport;

/// Most byte slices handed to one `writev` (well under `IOV_MAX`).
const MAX_IOVECS: usize = 64;
/// Slices gathered for a single queued response (head, body, and a few multipart pieces).
const FEW_IOVECS: usize = 8;
/// Most bytes asked of one `sendfile`. Smaller calls let the kernel's copy into this socket
/// overlap with the client draining it (lighttpd uses the same 256 KiB).
const MAX_SENDFILE_BYTES: usize = 256 * 1024;
/// Bytes one `send_some` call writes before it yields, so one fast download cannot starve the
/// other clients of the loop.
pub const SEND_BUDGET_BYTES: u64 = 512 * 1024;
/// Bytes moved per read+write when `sendfile` is unavailable.
const COPY_CHUNK_BYTES: usize = 16 * 1024;

/// One response waiting to be sent, and the caller's tag `G` for it.
#[derive(Debug)]
pub struct Output<G> {
    /// What is left to send, in order; only the front segment can be partly sent.
    segments: Segments,
    /// The open file that every `Segment::File` reads from (a cached body becomes `Shared`
    /// segments instead).
    file: Option<File>,
    /// Set once `sendfile` turned out not to work for this file or socket.
    copy_fallback: bool,
    sent: Sent,
    tag: G,
}

/// How much of a response reached the socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Length of the response head, so a log can count body bytes as nginx does.
    pub head_bytes: u64,
    /// Bytes of this response (head included) actually written so far.
    pub bytes: u64,
}

impl Sent {
    /// Body bytes that reached the socket.
    pub fn body_bytes(&self) -> u64 {
        self.bytes.saturating_sub(self.head_bytes)
    }
}

#[derive(Debug)]
enum Segment {
    /// A status line; `sent` bytes of it are out.
    Static { bytes: &'static [u8], sent: usize },
    /// Header block, generated page or multipart delimiters; `sent` bytes of it are out.
    Bytes { bytes: Vec<u8>, sent: usize },
    /// `content[start..end]` of a cached file, shared rather than copied; `start` advances.
    Shared { cached: Arc<CachedFile>, start: usize, end: usize },
    /// File bytes from `offset` (the next to send) up to, not including, `end`.
    File { offset: u64, end: u64 },
}

impl<G> Output<G> {
    /// The output for `response`, whose body plan owns the file bytes it reads.
    pub fn new(response: Response<FileBody>, tag: G) -> Output<G> {
        let Response { status, headers, body, .. } = response;
        // The header block goes out as built, behind its static status line: nothing copied.
        let (status_line, header_block) = (status.line().as_bytes(), headers.into_block());
        let head_bytes = (status_line.len() + header_block.len()) as u64;
        let mut segments = SPARE_SEGMENTS.with(FreeList::take).unwrap_or_else(|| VecDeque::with_capacity(4));
        segments.push_back(Segment::Static { bytes: status_line, sent: 0 });
        segments.push_back(Segment::Bytes { bytes: header_block, sent: 0 });
        let sent = Sent { head_bytes, bytes: 0 };
        let mut output = Output { segments: Segments(segments), file: None, copy_fallback: false, sent, tag };
        match body {
            BodyPlan::Empty => {}
            BodyPlan::Page(page) => output.push_bytes(page.as_bytes()),
            BodyPlan::File { file, offset, len } => {
                let file = output.take_body(file);
                output.push_file(&file, offset, len);
            }
            BodyPlan::Multipart { file, parts, closing } => {
                let file = output.take_body(file);
                for part in parts {
                    output.push_bytes(part.head.as_bytes());
                    output.push_file(&file, part.offset, part.len);
                }
                output.push_bytes(closing.as_bytes());
            }
        }
        output
    }

    /// Keeps an open file for `Segment::File` to read; a cached body is returned as is.
    fn take_body(&mut self, body: FileBody) -> Option<Arc<CachedFile>> {
        match body {
            FileBody::Open(file) => {
                self.file = Some(file);
                None
            }
            FileBody::Cached(cached) => Some(cached),
        }
    }

    fn push_bytes(&mut self, more: &[u8]) {
        match self.segments.back_mut() {
            Some(Segment::Bytes { bytes, .. }) => bytes.extend_from_slice(more),
            _ => {
                let mut bytes = take_bytes();
                bytes.extend_from_slice(more);
                self.segments.push_back(Segment::Bytes { bytes, sent: 0 });
            }
        }
    }

    /// A range of the body: shared from `cached` contents, or read from the open file.
    fn push_file(&mut self, cached: &Option<Arc<CachedFile>>, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        match cached {
            Some(cached) => {
                let (start, end) = (offset as usize, (offset + len) as usize);
                self.segments.push_back(Segment::Shared { cached: Arc::clone(cached), start, end });
            }
            None => self.segments.push_back(Segment::File { offset, end: offset + len }),
        }
    }

    /// Sends from the front segment, which must be a file range.
    fn send_file_segment<T: Transport>(&mut self, transport: &mut T) -> io::Result<usize> {
        let (Some(Segment::File { offset, end }), Some(file)) = (self.segments.front(), &self.file) else {
            return Err(io::Error::other("front segment is not a file range"));
        };
        let len = usize::try_from(end - offset).unwrap_or(usize::MAX).min(MAX_SENDFILE_BYTES);
        if !self.copy_fallback {
            match transport.send_file(file, *offset, len) {
                Err(error) if sendfile_unsupported(&error) => self.copy_fallback = true,
                result => return result,
            }
        }
        let mut chunk = [0u8; COPY_CHUNK_BYTES];
        let read = file.read_at(&mut chunk[..len.min(COPY_CHUNK_BYTES)], *offset)?;
        if read == 0 {
            return Ok(0);
        }
        // Whatever the socket does not take is read again next time: simple, and only a fallback.
        transport.write(&chunk[..read])
    }

    /// Moves the front segment's cursor past `sent` bytes, up to its end; returns how many
    /// of them it took.
    fn advance_front(&mut self, sent: usize) -> usize {
        let (taken, finished) = match self.segments.front_mut() {
            Some(Segment::Static { bytes, sent: done }) => advance_cursor(done, bytes.len(), sent),
            Some(Segment::Bytes { bytes, sent: done }) => advance_cursor(done, bytes.len(), sent),
            Some(Segment::Shared { start, end, .. }) => {
                let taken = sent.min(*end - *start);
                *start += taken;
                (taken, start == end)
            }
            Some(Segment::File { offset, end }) => {
                let taken = sent.min(usize::try_from(*end - *offset).unwrap_or(usize::MAX));
                *offset += taken as u64;
                (taken, offset == end)
            }
            None => (0, false),
        };
        if finished && let Some(Segment::Bytes { bytes, .. }) = self.segments.pop_front() {
            give_bytes(bytes);
        }
        self.sent.bytes += taken as u64;
        taken
    }
}

/// Moves a byte segment's cursor `done` past up to `sent` of its `len` bytes: how many it
/// took, and whether the segment is now all out.
fn advance_cursor(done: &mut usize, len: usize, sent: usize) -> (usize, bool) {
    let taken = sent.min(len - *done);
    *done += taken;
    (taken, *done == len)
}

/// The segments of one output, in a deque that goes back to a per-thread pool when dropped.
#[derive(Debug)]
struct Segments(VecDeque<Segment>);

impl std::ops::Deref for Segments {
    type Target = VecDeque<Segment>;
    fn deref(&self) -> &VecDeque<Segment> {
        &self.0
    }
}

impl std::ops::DerefMut for Segments {
    fn deref_mut(&mut self) -> &mut VecDeque<Segment> {
        &mut self.0
    }
}

impl Drop for Segments {
    /// Hands the deque and any head buffer back for the next response.
    fn drop(&mut self) {
        let mut segments = std::mem::take(&mut self.0);
        for segment in segments.drain(..) {
            if let Segment::Bytes { bytes, .. } = segment {
                give_bytes(bytes);
            }
        }
        if segments.capacity() > 0 && segments.capacity() <= 8 {
            SPARE_SEGMENTS.with(|spares| spares.give(segments));
        }
    }
}

/// Most spare segment deques a thread keeps.
const SPARES_PER_THREAD: usize = 64;

thread_local! {
    static SPARE_SEGMENTS: FreeList<VecDeque<Segment>> = const { FreeList::new(SPARES_PER_THREAD) };
}

fn sendfile_unsupported(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
        || matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP))
}

/// Whether [`OutputQueue::send_some`] emptied the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    All,
    /// The socket would block; wait for it to become writable.
    Blocked,
    /// `SEND_BUDGET_BYTES` went out and more is pending: come back after the others.
    Yielded,
}

/// What the caller attaches to each output. A static cannot be generic, so each tag type
/// names the per-thread pool that keeps spare queue storage for its outputs: an idle
/// connection holds no queue, and a busy one takes and returns one without allocating.
pub trait Tag: Sized + 'static {
    fn spare_queues() -> &'static LocalKey<FreeList<VecDeque<Output<Self>>>>;
}

/// Most spare queues a thread keeps; a queue starts with room for 4 responses and is kept
/// up to room for 32 (a pipelining client's batch), so pipelining allocates nothing either.
pub const SPARE_QUEUES: usize = 16;
const QUEUE_CAPACITY: usize = 4;
const MAX_SPARE_QUEUE_CAPACITY: usize = 32;

/// Responses in the order their requests arrived (RFC 9112 §9.3.2: pipelined responses keep
/// request order).
#[derive(Debug)]
pub struct OutputQueue<G> {
    pending: VecDeque<Output<G>>,
    /// Total bytes written from this queue.
    bytes_sent: u64,
}

impl<G> Default for OutputQueue<G> {
    fn default() -> Self {
        OutputQueue { pending: VecDeque::new(), bytes_sent: 0 }
    }
}

impl<G: Tag> OutputQueue<G> {
    pub fn push(&mut self, output: Output<G>) {
        if self.pending.capacity() == 0 {
            let spare = G::spare_queues().with(FreeList::take);
            self.pending = spare.unwrap_or_else(|| VecDeque::with_capacity(QUEUE_CAPACITY));
        }
        self.pending.push_back(output);
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes until the queue is empty or the socket would block. Hands each response that
    /// completes to `finished` with its tag, and logs each syscall outcome at trace level.
    pub fn send_some<T: Transport>(
        &mut self,
        transport: &mut T,
        label: &dyn Display,
        finished: &mut impl FnMut(&G, Sent),
    ) -> io::Result<Flushed> {
        let budget_end = self.bytes_sent + SEND_BUDGET_BYTES;
        while let Some(front) = self.pending.front_mut() {
            if self.bytes_sent >= budget_end {
                return Ok(Flushed::Yielded);
            }
            let (result, syscall) = match front.segments.front() {
                None => {
                    self.finish_front(finished);
                    continue;
                }
                Some(Segment::Static { .. } | Segment::Bytes { .. } | Segment::Shared { .. }) => {
                    (self.write_bytes(transport), "writev")
                }
                Some(Segment::File { .. }) => {
                    let result = front.send_file_segment(transport);
                    (result, if front.copy_fallback { "read+write" } else { "sendfile" })
                }
            };
            match result {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, format!("{syscall} sent nothing")));
                }
                Ok(sent) => {
                    trace!("{label} {syscall} {sent}B");
                    self.bytes_sent += sent as u64;
                    self.advance(sent, finished);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    trace!("{label} {syscall} WouldBlock");
                    return Ok(Flushed::Blocked);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    trace!("{label} {syscall} {error}");
                    return Err(error);
                }
            }
        }
        Ok(Flushed::All)
    }

    /// One `writev` of every unsent byte segment from the front, across outputs, up to the
    /// first file range.
    fn write_bytes<T: Transport>(&self, transport: &mut T) -> io::Result<usize> {
        // A lone response is a head and a body or two: setting up all MAX_IOVECS slices for it
        // was a fifth of the connection's user time. A pipelined batch gets the full array.
        match self.pending.len() {
            1 => self.gather::<T, FEW_IOVECS>(transport),
            _ => self.gather::<T, MAX_IOVECS>(transport),
        }
    }

    /// `write_bytes` with room for `N` slices (the rest go in the next call).
    fn gather<T: Transport, const N: usize>(&self, transport: &mut T) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); N];
        let mut count = 0;
        let mut file_follows = false;
        'outputs: for output in &self.pending {
            for segment in output.segments.iter() {
                slices[count] = match segment {
                    Segment::Static { bytes, sent } => IoSlice::new(&bytes[*sent..]),
                    Segment::Bytes { bytes, sent } => IoSlice::new(&bytes[*sent..]),
                    Segment::Shared { cached, start, end } => IoSlice::new(&cached.content[*start..*end]),
                    Segment::File { .. } => {
                        file_follows = true;
                        break 'outputs;
                    }
                };
                count += 1;
                if count == N {
                    break 'outputs;
                }
            }
        }
        match file_follows {
            true => transport.write_vectored_more(&slices[..count]),
            false => transport.write_vectored(&slices[..count]),
        }
    }

    /// Moves cursors past `sent` bytes just written, finishing every output they complete.
    fn advance(&mut self, mut sent: usize, finished: &mut impl FnMut(&G, Sent)) {
        while let Some(front) = self.pending.front_mut() {
            sent -= front.advance_front(sent);
            if front.segments.is_empty() {
                self.finish_front(finished);
            } else if sent == 0 {
                break;
            }
        }
    }

    /// Reports the front output, then drops it where it stands (its tag is lent, not moved).
    fn finish_front(&mut self, finished: &mut impl FnMut(&G, Sent)) {
        if let Some(done) = self.pending.front() {
            finished(&done.tag, done.sent);
        }
        self.pending.pop_front();
    }

    /// Drops what can no longer be sent, handing each response to `abandoned` with the bytes
    /// it got out.
    pub fn abandon(&mut self, abandoned: &mut impl FnMut(&G, Sent)) {
        while !self.pending.is_empty() {
            self.finish_front(abandoned);
        }
    }

    /// Gives the queue's storage back once it is empty, so an idle connection holds none.
    pub fn release_if_empty(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            let storage = std::mem::take(&mut self.pending);
            if storage.capacity() <= MAX_SPARE_QUEUE_CAPACITY {
                G::spare_queues().with(|spares| spares.give(storage));
            }
        }
    }

    /// Bytes written to the socket over the queue's life; a change means the client is reading.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::http::{FileMeta, HttpError, Parsed, Resource, parse_head, respond};
    use crate::transport::fake::FakeSocket;

    fn get(fields: &str) -> crate::http::Request {
        match parse_head(format!("GET /f HTTP/1.1\r\nHost: x\r\n{fields}\r\n").as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    /// Each output is tagged with a name, to see which finished.
    type Name = &'static str;

    thread_local! {
        static SPARE_NAMED: FreeList<VecDeque<Output<Name>>> = const { FreeList::new(SPARE_QUEUES) };
    }

    impl super::Tag for Name {
        fn spare_queues() -> &'static LocalKey<FreeList<VecDeque<Output<Name>>>> {
            &SPARE_NAMED
        }
    }

    fn page_output(tag: Name) -> (Output<Name>, Vec<u8>) {
        let response = respond(Some(&get("")), Err(HttpError::NotFound), UNIX_EPOCH);
        let mut expected = Vec::new();
        response.write_head(&mut expected);
        let BodyPlan::Page(page) = &response.body else { unreachable!() };
        expected.extend_from_slice(page.as_bytes());
        (Output::new(response, tag), expected)
    }

    fn open_file(content: &[u8]) -> FileBody {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        FileBody::Open(file)
    }

    /// The response to `GET /f` with `fields`, for a file of `content` served from `body`.
    /// `content` as the file cache holds it, with the meta `file_output` gives it.
    fn cached(content: &[u8]) -> FileBody {
        FileBody::Cached(CachedFile::new(
            FileMeta::plain(content.len() as u64, None, b"f.bin"),
            content.into(),
        ))
    }

    fn file_output(content: &[u8], body: FileBody, fields: &str) -> (Output<Name>, Vec<u8>) {
        let meta = FileMeta::plain(content.len() as u64, None, b"f.bin");
        let response = respond(Some(&get(fields)), Ok(Resource::File(meta, body)), UNIX_EPOCH);
        let mut expected = Vec::new();
        response.write_head(&mut expected);
        match &response.body {
            BodyPlan::File { offset, len, .. } => {
                expected.extend_from_slice(&content[*offset as usize..(offset + len) as usize]);
            }
            BodyPlan::Multipart { parts, closing, .. } => {
                for part in parts {
                    expected.extend_from_slice(part.head.as_bytes());
                    expected
                        .extend_from_slice(&content[part.offset as usize..(part.offset + part.len) as usize]);
                }
                expected.extend_from_slice(closing.as_bytes());
            }
            other => panic!("{other:?}"),
        }
        (Output::new(response, "file"), expected)
    }

    /// Calls `send_some` until it reports `All`, as an engine would after each writable event;
    /// returns how often it blocked and the tags of the finished outputs.
    fn send_all(queue: &mut OutputQueue<Name>, socket: &mut FakeSocket) -> (usize, Vec<Name>) {
        let mut blocked = 0;
        let mut finished = Vec::new();
        while queue.send_some(socket, &"test", &mut |tag, _| finished.push(*tag)).unwrap() == Flushed::Blocked
        {
            blocked += 1;
            assert!(blocked < 10_000, "no progress");
        }
        (blocked, finished)
    }

    #[test]
    fn batches_byte_outputs_into_one_writev() {
        let mut queue = OutputQueue::default();
        let mut expected = Vec::new();
        for tag in ["a", "b", "c"] {
            let (output, bytes) = page_output(tag);
            queue.push(output);
            expected.extend(bytes);
        }
        let mut socket = FakeSocket::writing(&[], true);
        let (_, finished) = send_all(&mut queue, &mut socket);
        assert_eq!(socket.calls, ["writev"]);
        assert_eq!(socket.written, expected);
        assert_eq!(finished, ["a", "b", "c"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn survives_partial_writes_and_would_block_everywhere() {
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for sendfile_works in [true, false] {
            let mut queue = OutputQueue::default();
            let mut expected = Vec::new();
            for (output, bytes) in [
                page_output("page"),
                file_output(&content, open_file(&content), ""),
                page_output("page"),
                file_output(b"x", open_file(b"x"), ""),
                file_output(&content, open_file(&content), "Range: bytes=0-9,50000-50100,-7\r\n"),
                file_output(&content, cached(&content), "Range: bytes=1-2,-3\r\n"),
            ] {
                queue.push(output);
                expected.extend(bytes);
            }
            let budgets: Vec<usize> = (0..400).map(|i| [1, 0, 7, 0, 1000, 3][i % 6]).collect();
            let mut socket = FakeSocket::writing(&budgets, sendfile_works);
            let (blocked, finished) = send_all(&mut queue, &mut socket);
            assert!(blocked > 0);
            assert_eq!(finished.len(), 6);
            assert_eq!(socket.written.len(), expected.len());
            assert!(socket.written == expected, "bytes differ (sendfile_works={sendfile_works})");
            assert_eq!(socket.calls.contains(&"write"), !sendfile_works);
        }
    }

    #[test]
    fn a_cached_body_goes_out_with_its_head_in_one_writev() {
        let mut queue = OutputQueue::default();
        let (output, expected) = file_output(b"hello", cached(b"hello"), "");
        queue.push(output);
        let mut socket = FakeSocket::writing(&[], true);
        send_all(&mut queue, &mut socket);
        assert_eq!((socket.calls, socket.written), (vec!["writev"], expected));
    }

    #[test]
    fn head_of_a_file_response_rides_with_earlier_bytes() {
        let mut queue = OutputQueue::default();
        let (page, _) = page_output("page");
        let (file, _) = file_output(b"hello", open_file(b"hello"), "");
        queue.push(page);
        queue.push(file);
        let mut socket = FakeSocket::writing(&[], true);
        send_all(&mut queue, &mut socket);
        assert_eq!(socket.calls, ["writev+more", "sendfile"]);
    }

    #[test]
    fn abandoning_reports_what_each_response_got_out() {
        let mut queue = OutputQueue::default();
        let (output, expected) = file_output(b"0123456789", open_file(b"0123456789"), "");
        queue.push(output);
        queue.push(page_output("never").0);
        let mut socket = FakeSocket::writing(&[usize::MAX, 6, 0], true);
        let mut finished = Vec::new();
        let flushed = queue.send_some(&mut socket, &"test", &mut |tag, sent| finished.push((*tag, sent)));
        assert_eq!((flushed.unwrap(), finished.len()), (Flushed::Blocked, 0));
        queue.abandon(&mut |tag, sent| finished.push((*tag, sent)));
        let head_bytes = expected.len() as u64 - 10;
        assert_eq!(finished[0], ("file", Sent { head_bytes, bytes: head_bytes + 6 }));
        assert_eq!((finished[1].0, finished[1].1.bytes), ("never", 0));
        assert_eq!(finished[0].1.body_bytes(), 6);
    }
}
