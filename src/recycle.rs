//! Per-thread free lists for the buffers every request needs, so the hot path allocates
//! nothing once warm. Memory reuse only: nothing a buffer held is ever read after it comes back.

use std::cell::RefCell;

/// A bounded stack of spare values, meant to live in a `thread_local!`.
pub(crate) struct FreeList<T> {
    spares: RefCell<Vec<T>>,
    /// Most spares kept; beyond it, returned values are simply dropped.
    limit: usize,
}

impl<T> FreeList<T> {
    pub(crate) const fn new(limit: usize) -> FreeList<T> {
        FreeList { spares: RefCell::new(Vec::new()), limit }
    }

    pub(crate) fn take(&self) -> Option<T> {
        self.spares.borrow_mut().pop()
    }

    pub(crate) fn give(&self, spare: T) {
        let mut spares = self.spares.borrow_mut();
        if spares.len() < self.limit {
            spares.push(spare);
        }
    }
}

/// Most spare byte buffers a thread keeps, and the largest kept (heads are a few hundred
/// bytes; a big error page or a multipart delimiter run is let go).
const SPARE_BYTE_BUFFERS: usize = 64;
const MAX_SPARE_BYTES: usize = 4096;

thread_local! {
    static BYTES: FreeList<Vec<u8>> = const { FreeList::new(SPARE_BYTE_BUFFERS) };
}

/// An empty byte buffer for a response head, from the per-thread pool when it has one.
pub(crate) fn take_bytes() -> Vec<u8> {
    BYTES.with(FreeList::take).unwrap_or_else(|| Vec::with_capacity(256))
}

/// Gives a head buffer back to the pool (emptied), unless it grew large.
pub(crate) fn give_bytes(mut bytes: Vec<u8>) {
    if (1..=MAX_SPARE_BYTES).contains(&bytes.capacity()) {
        bytes.clear();
        BYTES.with(|spares| spares.give(bytes));
    }
}

/// HTTP/2 output: a connection lets its buffer go whenever nothing is in flight (an idle
/// connection holds none) and takes one for its next batch of frames, already large enough
/// for the four DATA frames it queues ahead of the socket, so a batch of streams costs no
/// allocation and no regrowth.
const SPARE_FRAME_BUFFERS: usize = 8;
const FRAME_BUFFER_BYTES: usize = 80 * 1024;

thread_local! {
    static FRAMES: FreeList<Vec<u8>> = const { FreeList::new(SPARE_FRAME_BUFFERS) };
}

/// An empty buffer for a connection's frames, from the per-thread pool when it has one.
pub(crate) fn take_frame_buffer() -> Vec<u8> {
    FRAMES.with(FreeList::take).unwrap_or_else(|| Vec::with_capacity(FRAME_BUFFER_BYTES))
}

/// Gives a frames buffer back (emptied), unless it grew past twice its size.
pub(crate) fn give_frame_buffer(mut frames: Vec<u8>) {
    if (FRAME_BUFFER_BYTES..=2 * FRAME_BUFFER_BYTES).contains(&frames.capacity()) {
        frames.clear();
        FRAMES.with(|spares| spares.give(frames));
    }
}
