//! Response bytes on their way to a socket, shared by every engine.
//!
//! An [`OutputQueue`] holds a connection's responses in request order as one run of segments:
//! each response's status line, header block, generated body or cached file bytes, file ranges
//! and multipart delimiters, one after the other, beside a short list of the responses they
//! belong to (the front segment always belongs to the front response). [`OutputQueue::send_some`]
//! writes as much as the socket takes right now: consecutive byte segments go out in one
//! `writev`, across responses; file ranges through `sendfile(2)` (read+write where sendfile is
//! unavailable); a short write just moves a cursor. Memory stays flat: a file is never read whole.
//!
//! Each response carries a tag the queue never looks at (the connection's access record) and
//! lends it to the caller, with what was sent, when the response is finished or abandoned: this
//! layer reports, the connection logs.

use std::collections::VecDeque;
use std::fmt::Display;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::thread::LocalKey;

use log::{trace, warn};

use crate::files::{CachedFile, FileBody};
use crate::http::BodyPlan;
use crate::http1::Head;
use crate::recycle::{FreeList, give_bytes, take_bytes};
use crate::transport::{Transport, nonblocking};

/// Most byte slices handed to one `writev` (well under `IOV_MAX`).
const MAX_IOVECS: usize = 64;
/// Slices gathered for a single queued response (head, body, and a few multipart pieces).
const FEW_IOVECS: usize = 8;
/// Most bytes asked of one `sendfile`. Smaller calls let the kernel's copy into this socket
/// overlap with the client draining it (lighttpd uses the same 256 KiB).
const MAX_SENDFILE_BYTES: usize = 256 * 1024;
/// Bytes one `send_some` call writes before it yields, so one fast download cannot starve the
/// other clients of the loop.
pub(crate) const SEND_BUDGET_BYTES: u64 = 512 * 1024;
/// Bytes moved per read+write when `sendfile` is unavailable.
const COPY_CHUNK_BYTES: usize = 16 * 1024;

/// One queued response: how many of the queue's segments are its own, what they read from,
/// and the caller's tag `G` for it.
#[derive(Debug)]
pub(crate) struct Pending<G> {
    /// Its segments still in the queue (at least its status line until it is finished).
    segments: usize,
    /// The open file its `Segment::File` ranges read from (a cached body is `Shared` instead).
    file: Option<File>,
    /// Set once `sendfile` turned out not to work for this file or socket.
    copy_fallback: bool,
    /// How far the kernel was asked to read the file ahead (see [`read_ahead`]).
    read_ahead_to: u64,
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
    Shared { cached: Rc<CachedFile>, start: usize, end: usize },
    /// Bytes of the owning response's file from `offset` (the next to send) up to, not
    /// including, `end`.
    File { offset: u64, end: u64 },
}

impl Segment {
    /// Moves the cursor past up to `sent` bytes: how many it took, and whether it is all out.
    fn advance(&mut self, sent: usize) -> (usize, bool) {
        match self {
            Segment::Static { bytes, sent: done } => advance_cursor(done, bytes.len(), sent),
            Segment::Bytes { bytes, sent: done } => advance_cursor(done, bytes.len(), sent),
            Segment::Shared { start, end, .. } => {
                let taken = sent.min(*end - *start);
                *start += taken;
                (taken, start == end)
            }
            Segment::File { offset, end } => {
                let taken = sent.min(usize::try_from(*end - *offset).unwrap_or(usize::MAX));
                *offset += taken as u64;
                (taken, offset == end)
            }
        }
    }
}

/// Moves a byte segment's cursor `done` past up to `sent` of its `len` bytes: how many it
/// took, and whether the segment is now all out.
fn advance_cursor(done: &mut usize, len: usize, sent: usize) -> (usize, bool) {
    let taken = sent.min(len - *done);
    *done += taken;
    (taken, *done == len)
}

/// Most spare segment deques a thread keeps, and the room a new one starts with (a
/// response is two to four segments; a pipelined batch grows it, and it is kept up to 64).
const SPARE_SEGMENT_DEQUES: usize = 64;
const SEGMENTS_CAPACITY: usize = 8;
const MAX_SPARE_SEGMENTS_CAPACITY: usize = 64;

thread_local! {
    static SPARE_SEGMENTS: FreeList<VecDeque<Segment>> = const { FreeList::new(SPARE_SEGMENT_DEQUES) };
}

fn sendfile_unsupported(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Unsupported
        || matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP))
}

/// Whether [`OutputQueue::send_some`] emptied the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    All,
    /// The socket would block; wait for it to become writable.
    Blocked,
    /// `SEND_BUDGET_BYTES` went out and more is pending: come back after the others.
    Yielded,
}

/// What the caller attaches to each response. A static cannot be generic, so each tag type
/// names the per-thread pool that keeps spare response lists for it: an idle connection
/// holds no queue storage, and a busy one takes and returns some without allocating.
pub(crate) trait Tag: Sized + 'static {
    fn spare_queues() -> &'static LocalKey<FreeList<VecDeque<Pending<Self>>>>;
}

/// Most spare response lists a thread keeps; one starts with room for 4 responses and is kept
/// up to room for 32 (a pipelining client's batch), so pipelining allocates nothing either.
pub(crate) const SPARE_QUEUES: usize = 16;
const QUEUE_CAPACITY: usize = 4;
const MAX_SPARE_QUEUE_CAPACITY: usize = 32;

/// Responses in the order their requests arrived (RFC 9112 §9.3.2: pipelined responses keep
/// request order).
#[derive(Debug)]
pub(crate) struct OutputQueue<G> {
    /// Every unsent part of every queued response, in order; only the front one can be
    /// partly sent.
    segments: VecDeque<Segment>,
    /// The queued responses, oldest first; the front one owns the front segments.
    responses: VecDeque<Pending<G>>,
    /// Total bytes written from this queue.
    bytes_sent: u64,
}

impl<G> Default for OutputQueue<G> {
    fn default() -> Self {
        OutputQueue { segments: VecDeque::new(), responses: VecDeque::new(), bytes_sent: 0 }
    }
}

impl<G: Tag> OutputQueue<G> {
    /// Queues a response: its `head`, then `body`, whose plan owns the file bytes it reads,
    /// tagged `tag`.
    pub(crate) fn push(&mut self, head: Head, body: BodyPlan<FileBody>, tag: G) {
        self.push_parts(head, body, tag);
    }

    /// Sends a response (`head`, then `body`) at once when nothing is queued ahead of it and its body is in memory,
    /// straight from where it lies, and queues only what the socket did not take. A lone small
    /// response (most keep-alive requests) then costs one `writev` and no queue storage; one
    /// that must wait, or reads from an open file (sendfile), is queued as by [`Self::push`].
    /// An error other than `WouldBlock` is returned after the response is handed to `finished`
    /// with nothing sent, as [`Self::abandon`] would have handed it once queued.
    pub(crate) fn send_or_push<T: Transport>(
        &mut self,
        transport: &mut T,
        label: &dyn Display,
        head: Head,
        body: BodyPlan<FileBody>,
        tag: G,
        finished: &mut impl FnMut(&G, Sent),
    ) -> io::Result<()> {
        let head_bytes = head.wire_len();
        let in_memory = match &body {
            _ if !self.is_empty() => None,
            BodyPlan::Empty => Some(&[][..]),
            BodyPlan::Page(page) => Some(page.as_bytes()),
            BodyPlan::File { file: FileBody::Cached(cached), offset, len } => {
                Some(&cached.content[*offset as usize..(*offset + *len) as usize])
            }
            BodyPlan::File { .. } | BodyPlan::Multipart { .. } => None,
        };
        let Some(body_bytes) = in_memory else {
            self.push_parts(head, body, tag);
            return Ok(());
        };
        let total = head_bytes + body_bytes.len();
        let slices = [IoSlice::new(head.status_line), IoSlice::new(&head.block), IoSlice::new(body_bytes)];
        let written = match nonblocking(|| transport.write_vectored(&slices)) {
            Ok(written) => written.unwrap_or(0),
            Err(error) => {
                trace!("{label} writev {error}");
                finished(&tag, Sent { head_bytes: head_bytes as u64, bytes: 0 });
                give_bytes(head.block);
                return Err(error);
            }
        };
        match written {
            0 => trace!("{label} writev WouldBlock"),
            _ => trace!("{label} writev {written}B"),
        }
        self.bytes_sent += written as u64;
        if written == total {
            finished(&tag, Sent { head_bytes: head_bytes as u64, bytes: total as u64 });
            give_bytes(head.block);
            return Ok(());
        }
        self.push_parts(head, body, tag);
        self.advance(written, finished);
        Ok(())
    }

    /// Queues a response's parts: its status line, its header block, then its body.
    fn push_parts(&mut self, head: Head, body: BodyPlan<FileBody>, tag: G) {
        if self.responses.capacity() == 0 {
            let spare = G::spare_queues().with(FreeList::take);
            self.responses = spare.unwrap_or_else(|| VecDeque::with_capacity(QUEUE_CAPACITY));
        }
        if self.segments.capacity() == 0 {
            let spare = SPARE_SEGMENTS.with(FreeList::take);
            self.segments = spare.unwrap_or_else(|| VecDeque::with_capacity(SEGMENTS_CAPACITY));
        }
        // The header block goes out as built, behind its static status line: nothing copied.
        let head_bytes = head.wire_len() as u64;
        let first = self.segments.len();
        self.segments.push_back(Segment::Static { bytes: head.status_line, sent: 0 });
        self.segments.push_back(Segment::Bytes { bytes: head.block, sent: 0 });
        let mut file = None;
        match body {
            BodyPlan::Empty => {}
            BodyPlan::Page(page) => self.push_bytes(page.as_bytes()),
            BodyPlan::File { file: body, offset, len } => {
                let cached = take_body(body, &mut file);
                self.push_file(&cached, offset, len);
            }
            BodyPlan::Multipart { file: body, parts, closing } => {
                let cached = take_body(body, &mut file);
                for part in parts {
                    self.push_bytes(part.head.as_bytes());
                    self.push_file(&cached, part.offset, part.len);
                }
                self.push_bytes(closing.as_bytes());
            }
        }
        let segments = self.segments.len() - first;
        let sent = Sent { head_bytes, bytes: 0 };
        self.responses.push_back(Pending {
            segments,
            file,
            copy_fallback: false,
            read_ahead_to: 0,
            sent,
            tag,
        });
    }

    /// Appends bytes to the response being queued (its last segment is its own: every
    /// response starts with its status line).
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
    fn push_file(&mut self, cached: &Option<Rc<CachedFile>>, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        match cached {
            Some(cached) => {
                let (start, end) = (offset as usize, (offset + len) as usize);
                self.segments.push_back(Segment::Shared { cached: Rc::clone(cached), start, end });
            }
            None => self.segments.push_back(Segment::File { offset, end: offset + len }),
        }
    }

    /// Responses queued and not finished yet.
    pub(crate) fn len(&self) -> usize {
        self.responses.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// Writes until the queue is empty or the socket would block. Hands each response that
    /// completes to `finished` with its tag, and logs each syscall outcome at trace level.
    pub(crate) fn send_some<T: Transport>(
        &mut self,
        transport: &mut T,
        label: &dyn Display,
        finished: &mut impl FnMut(&G, Sent),
    ) -> io::Result<Flushed> {
        let budget_end = self.bytes_sent + SEND_BUDGET_BYTES;
        while let Some(front) = self.segments.front() {
            if self.bytes_sent >= budget_end {
                return Ok(Flushed::Yielded);
            }
            let file_range = match *front {
                Segment::File { offset, end } => Some((offset, end)),
                _ => None,
            };
            let (result, syscall) = match (front, self.responses.front_mut()) {
                (&Segment::File { offset, end }, Some(owner)) => {
                    let result = send_file_range(owner, offset, end, transport);
                    (result, if owner.copy_fallback { "read+write" } else { "sendfile" })
                }
                _ => (self.write_bytes(transport), "writev"),
            };
            match result {
                // A file range that reads nothing: the file is shorter than when it was opened.
                Ok(0) if let Some((offset, end)) = file_range => {
                    let file = self.responses.front().and_then(|owner| owner.file.as_ref()).map(file_name);
                    let file = file.unwrap_or_else(|| "a file".to_owned());
                    warn!(
                        "{label} {file} shrank while it was sent: it ends before byte {offset} of {end}; the response is cut short"
                    );
                    return Err(io::Error::other(FileShrank));
                }
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

    /// One `writev` of every unsent byte segment from the front, across responses, up to the
    /// first file range.
    fn write_bytes<T: Transport>(&self, transport: &mut T) -> io::Result<usize> {
        // A lone response is a head and a body or two: setting up all MAX_IOVECS slices for it
        // was a fifth of the connection's user time. A pipelined batch gets the full array.
        match self.responses.len() {
            1 => self.gather::<T, FEW_IOVECS>(transport),
            _ => self.gather::<T, MAX_IOVECS>(transport),
        }
    }

    /// `write_bytes` with room for `N` slices (the rest go in the next call).
    fn gather<T: Transport, const N: usize>(&self, transport: &mut T) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); N];
        let mut count = 0;
        let mut file_follows = false;
        for segment in self.segments.iter().take(N) {
            slices[count] = match segment {
                Segment::Static { bytes, sent } => IoSlice::new(&bytes[*sent..]),
                Segment::Bytes { bytes, sent } => IoSlice::new(&bytes[*sent..]),
                Segment::Shared { cached, start, end } => IoSlice::new(&cached.content[*start..*end]),
                Segment::File { .. } => {
                    file_follows = true;
                    break;
                }
            };
            count += 1;
        }
        match file_follows {
            true => transport.write_vectored_more(&slices[..count]),
            false => transport.write_vectored(&slices[..count]),
        }
    }

    /// Moves cursors past `sent` bytes just written, finishing every response they complete.
    fn advance(&mut self, mut sent: usize, finished: &mut impl FnMut(&G, Sent)) {
        while let (Some(segment), Some(owner)) = (self.segments.front_mut(), self.responses.front_mut()) {
            let (taken, all_out) = segment.advance(sent);
            sent -= taken;
            owner.sent.bytes += taken as u64;
            if !all_out {
                break;
            }
            if let Some(Segment::Bytes { bytes, .. }) = self.segments.pop_front() {
                give_bytes(bytes);
            }
            owner.segments -= 1;
            if owner.segments == 0 {
                self.finish_front(finished);
            }
        }
    }

    /// Reports the front response, then drops it where it stands (its tag is lent, not moved).
    fn finish_front(&mut self, finished: &mut impl FnMut(&G, Sent)) {
        if let Some(done) = self.responses.front() {
            finished(&done.tag, done.sent);
        }
        self.responses.pop_front();
    }

    /// Drops what can no longer be sent, handing each response to `abandoned` with the bytes
    /// it got out, and gives the storage back.
    pub(crate) fn abandon(&mut self, abandoned: &mut impl FnMut(&G, Sent)) {
        for segment in self.segments.drain(..) {
            if let Segment::Bytes { bytes, .. } = segment {
                give_bytes(bytes);
            }
        }
        while !self.responses.is_empty() {
            self.finish_front(abandoned);
        }
        self.release_if_empty();
    }

    /// Gives the queue's storage back once it is empty, so an idle connection holds none.
    pub(crate) fn release_if_empty(&mut self) {
        if !self.responses.is_empty() {
            return;
        }
        if self.responses.capacity() > 0 {
            let storage = std::mem::take(&mut self.responses);
            if storage.capacity() <= MAX_SPARE_QUEUE_CAPACITY {
                G::spare_queues().with(|spares| spares.give(storage));
            }
        }
        if self.segments.capacity() > 0 {
            let storage = std::mem::take(&mut self.segments);
            if storage.capacity() <= MAX_SPARE_SEGMENTS_CAPACITY {
                SPARE_SEGMENTS.with(|spares| spares.give(storage));
            }
        }
    }

    /// Bytes written to the socket over the queue's life; a change means the client is reading.
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}

/// Keeps an open file in `file` for `Segment::File` to read; a cached body is returned as is.
fn take_body(body: FileBody, file: &mut Option<File>) -> Option<Rc<CachedFile>> {
    match body {
        FileBody::Open { file: open, .. } => {
            *file = Some(open);
            None
        }
        FileBody::Cached(cached) => Some(cached),
    }
}

/// The error that ends a response whose file shrank while it was sent (the connection
/// closes: the client was promised more bytes than there are).
#[derive(Debug)]
pub(crate) struct FileShrank;

impl std::fmt::Display for FileShrank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file being sent shrank")
    }
}

impl std::error::Error for FileShrank {}

/// The path of an open file, for a log line (`/proc/self/fd`; the file may have been renamed).
pub(crate) fn file_name(file: &File) -> String {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(path) => path.display().to_string(),
        Err(_) => "a file".to_owned(),
    }
}

/// Sends from `owner`'s file, bytes `offset..end`.
fn send_file_range<G, T: Transport>(
    owner: &mut Pending<G>,
    offset: u64,
    end: u64,
    transport: &mut T,
) -> io::Result<usize> {
    let Some(file) = &owner.file else {
        return Err(io::Error::other("a file range without its file"));
    };
    let len = usize::try_from(end - offset).unwrap_or(usize::MAX).min(MAX_SENDFILE_BYTES);
    read_ahead(file, &mut owner.read_ahead_to, offset, end);
    if !owner.copy_fallback {
        match transport.send_file(file, offset, len) {
            Err(error) if sendfile_unsupported(&error) => owner.copy_fallback = true,
            result => return result,
        }
    }
    copy_file_range_through(file, offset, len, transport)
}

/// How far ahead of what is sent the kernel is asked to read a file.
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// Keeps the file's next [`READ_AHEAD_BYTES`] (up to `end`) on their way into the page cache:
/// `posix_fadvise(WILLNEED)` starts the disk reads and returns, so by the time `sendfile`
/// gets there the pages are (mostly) in memory. Without it, a file that is not cached is read
/// by `sendfile` itself, synchronously, a readahead window at a time, and every other client
/// of the one-threaded loop waits meanwhile. Asked again when half the window is sent: one
/// call per 2 MiB. The trade, measured by `scripts/bench.sh --cold-cache`: a shorter tail for
/// everyone else, a slightly longer median while a cold file streams (README, Benchmarks).
fn read_ahead(file: &File, read_ahead_to: &mut u64, offset: u64, end: u64) {
    let Some((from, to)) = read_ahead_window(*read_ahead_to, offset, end) else { return };
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    {
        use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
        let (start, len) = (i64::try_from(from).unwrap_or(i64::MAX), i64::try_from(to - from).unwrap_or(0));
        let _ = posix_fadvise(file, start, len, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    let _ = (file, from);
    *read_ahead_to = to;
}

/// The bytes to ask the kernel to read ahead, sending from `offset` of a range ending at
/// `end`, when it was asked up to `read_ahead_to`: none while half a window is still ahead,
/// and none for what fits one send budget (`sendfile` reads that at once either way).
fn read_ahead_window(read_ahead_to: u64, offset: u64, end: u64) -> Option<(u64, u64)> {
    if read_ahead_to >= end.min(offset + READ_AHEAD_BYTES / 2) || end - offset <= SEND_BUDGET_BYTES {
        return None;
    }
    Some((read_ahead_to.max(offset), end.min(offset + READ_AHEAD_BYTES)))
}

/// The fallback: `len` bytes of `file` from `offset` through a buffer. Never inlined: its 16 KiB
/// buffer would otherwise enlarge the stack frame of every call that sends.
#[cold]
#[inline(never)]
fn copy_file_range_through<T: Transport>(
    file: &File,
    offset: u64,
    len: usize,
    transport: &mut T,
) -> io::Result<usize> {
    let mut chunk = [0u8; COPY_CHUNK_BYTES];
    let read = file.read_at(&mut chunk[..len.min(COPY_CHUNK_BYTES)], offset)?;
    if read == 0 {
        return Ok(0);
    }
    // Whatever the socket does not take is read again next time: simple, and only a fallback.
    transport.write(&chunk[..read])
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_are_read_ahead_a_window_at_a_time_and_small_ranges_not_at_all() {
        const MIB: u64 = 1 << 20;
        assert_eq!(read_ahead_window(0, 0, 300 * MIB), Some((0, 4 * MIB)));
        assert_eq!(read_ahead_window(4 * MIB, MIB, 300 * MIB), None, "more than half a window ahead");
        assert_eq!(read_ahead_window(4 * MIB, 2 * MIB, 300 * MIB), None, "exactly half a window ahead");
        assert_eq!(read_ahead_window(4 * MIB, 3 * MIB, 300 * MIB), Some((4 * MIB, 7 * MIB)));
        assert_eq!(read_ahead_window(0, 298 * MIB, 300 * MIB), Some((298 * MIB, 300 * MIB)));
        assert_eq!(read_ahead_window(300 * MIB, 299 * MIB, 300 * MIB), None, "asked to the end already");
        assert_eq!(read_ahead_window(0, 0, SEND_BUDGET_BYTES), None, "one send budget: no call");
    }

    use std::io::{Seek, SeekFrom, Write};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::http::{FileMeta, HttpError, Resource, Response, Version, respond};
    use crate::http1::{Parsed, parse_head};
    use crate::transport::fake::FakeSocket;

    /// A request that lives as long as the test (its head is leaked).
    fn get(fields: &str) -> crate::http::Request<'static> {
        match parse_head(format!("GET /f HTTP/1.1\r\nHost: x\r\n{fields}\r\n").leak().as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    /// Each output is tagged with a name, to see which finished.
    type Name = &'static str;

    thread_local! {
        static SPARE_NAMED: FreeList<VecDeque<Pending<Name>>> = const { FreeList::new(SPARE_QUEUES) };
    }

    impl super::Tag for Name {
        fn spare_queues() -> &'static LocalKey<FreeList<VecDeque<Pending<Name>>>> {
            &SPARE_NAMED
        }
    }

    /// A response's head and body, and its tag, as a connection queues them.
    type Output = (Head, BodyPlan<FileBody>, Name);

    /// `response` as HTTP/1.1 sends it, and its head's bytes.
    fn output(response: Response<FileBody>, tag: Name) -> (Output, Vec<u8>) {
        let head = Head::new(response.status, response.headers, Version::Http11, true);
        let bytes = head.to_vec();
        ((head, response.body, tag), bytes)
    }

    fn page_output(tag: Name) -> (Output, Vec<u8>) {
        let (output, mut expected) =
            output(respond(Some(&get("")), Err(HttpError::NotFound), UNIX_EPOCH), tag);
        let BodyPlan::Page(page) = &output.1 else { unreachable!() };
        expected.extend_from_slice(page.as_bytes());
        (output, expected)
    }

    fn open_file(content: &[u8]) -> FileBody {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        FileBody::Open { file, meta: Box::new(meta_of(content)) }
    }

    /// What `GET /f` serves for a file of `content`, open or cached alike.
    fn meta_of(content: &[u8]) -> FileMeta {
        FileMeta::plain(content.len() as u64, None, b"f.bin")
    }

    /// The response to `GET /f` with `fields`, for a file of `content` served from `body`.
    /// `content` as the file cache holds it, with the meta `file_output` gives it.
    fn cached(content: &[u8]) -> FileBody {
        FileBody::Cached(CachedFile::new(meta_of(content), content.into()))
    }

    fn file_output(content: &[u8], body: FileBody, fields: &str) -> (Output, Vec<u8>) {
        let (output, mut expected) =
            output(respond(Some(&get(fields)), Ok(Resource::File(body)), UNIX_EPOCH), "file");
        match &output.1 {
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
        (output, expected)
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
            queue.push(output.0, output.1, output.2);
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
                queue.push(output.0, output.1, output.2);
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
        queue.push(output.0, output.1, output.2);
        let mut socket = FakeSocket::writing(&[], true);
        send_all(&mut queue, &mut socket);
        assert_eq!((socket.calls, socket.written), (vec!["writev"], expected));
    }

    #[test]
    fn head_of_a_file_response_rides_with_earlier_bytes() {
        let mut queue = OutputQueue::default();
        let (page, _) = page_output("page");
        let (file, _) = file_output(b"hello", open_file(b"hello"), "");
        queue.push(page.0, page.1, page.2);
        queue.push(file.0, file.1, file.2);
        let mut socket = FakeSocket::writing(&[], true);
        send_all(&mut queue, &mut socket);
        assert_eq!(socket.calls, ["writev+more", "sendfile"]);
    }

    #[test]
    fn abandoning_reports_what_each_response_got_out() {
        let mut queue = OutputQueue::default();
        let (output, expected) = file_output(b"0123456789", open_file(b"0123456789"), "");
        queue.push(output.0, output.1, output.2);
        let (never, _) = page_output("never");
        queue.push(never.0, never.1, never.2);
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
