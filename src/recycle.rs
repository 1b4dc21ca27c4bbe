//! Per-thread free lists for the buffers every request needs, so the hot path allocates
//! nothing once warm. Memory reuse only: nothing a buffer held is ever read after it comes back.

use std::cell::RefCell;

/// A bounded stack of spare values, meant to live in a `thread_local!`.
pub struct FreeList<T> {
    spares: RefCell<Vec<T>>,
    /// Most spares kept; beyond it, returned values are simply dropped.
    limit: usize,
}

impl<T> FreeList<T> {
    pub const fn new(limit: usize) -> FreeList<T> {
        FreeList { spares: RefCell::new(Vec::new()), limit }
    }

    pub fn take(&self) -> Option<T> {
        self.spares.borrow_mut().pop()
    }

    pub fn give(&self, spare: T) {
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
pub fn take_bytes() -> Vec<u8> {
    BYTES.with(FreeList::take).unwrap_or_else(|| Vec::with_capacity(256))
}

/// Gives a head buffer back to the pool (emptied), unless it grew large.
pub fn give_bytes(mut bytes: Vec<u8>) {
    if (1..=MAX_SPARE_BYTES).contains(&bytes.capacity()) {
        bytes.clear();
        BYTES.with(|spares| spares.give(bytes));
    }
}

/// Most spare strings a thread keeps, and the largest it keeps (a long target is rare).
const SPARE_STRINGS: usize = 64;
const MAX_SPARE_STRING_BYTES: usize = 1024;

thread_local! {
    static STRINGS: FreeList<String> = const { FreeList::new(SPARE_STRINGS) };
}

/// Text copied out of a request (its target), in a `String` taken from a per-thread pool and
/// given back when dropped, so a warm thread answers requests without allocating for it.
#[derive(Default)]
pub struct PooledString(String);

impl PooledString {
    pub fn copy_of(text: &str) -> PooledString {
        let mut string = STRINGS.with(FreeList::take).unwrap_or_default();
        string.push_str(text);
        PooledString(string)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn push_str(&mut self, text: &str) {
        self.0.push_str(text);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl From<&str> for PooledString {
    fn from(text: &str) -> PooledString {
        PooledString::copy_of(text)
    }
}

impl Drop for PooledString {
    fn drop(&mut self) {
        let mut string = std::mem::take(&mut self.0);
        if (1..=MAX_SPARE_STRING_BYTES).contains(&string.capacity()) {
            string.clear();
            STRINGS.with(|spares| spares.give(string));
        }
    }
}

impl std::ops::Deref for PooledString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Clone for PooledString {
    fn clone(&self) -> PooledString {
        PooledString::copy_of(&self.0)
    }
}

impl PartialEq for PooledString {
    fn eq(&self, other: &PooledString) -> bool {
        self.0 == other.0
    }
}

impl Eq for PooledString {}

impl PartialEq<&str> for PooledString {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Debug for PooledString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for PooledString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
