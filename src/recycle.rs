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
