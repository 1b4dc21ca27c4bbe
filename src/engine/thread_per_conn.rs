//! One OS thread per connection, each blocking on its own socket: the classic design whose
//! memory and scheduling cost grows with the number of clients.

use std::thread;

use log::warn;

use super::ACCEPT_RETRY;
use super::blocking::{BlockingListener, accept, label_for, serve_blocking};
use crate::service::Service;

/// Stack size per connection thread; our frames are shallow, so 64 KiB is plenty and keeps a
/// thousand idle clients from reserving 2 GiB of address space.
const THREAD_STACK_BYTES: usize = 64 * 1024;

pub fn run(listeners: Vec<BlockingListener>, service: &Service) -> ! {
    let mut listeners = listeners.into_iter();
    let first = listeners.next().expect("at least one listener");
    thread::scope(|scope| {
        // Each further listener gets an accepting thread of its own; this one takes the first.
        for listener in listeners {
            scope.spawn(move || accept_forever(&listener, service, scope));
        }
        accept_forever(&first, service, scope);
    });
    unreachable!("accepting never ends")
}

fn accept_forever<'scope>(
    listener: &BlockingListener,
    service: &'scope Service,
    scope: &'scope thread::Scope<'scope, '_>,
) {
    loop {
        let (stream, peer) = accept(&listener.listener);
        let (tls, label) = (listener.tls.clone(), label_for(&stream));
        let spawned = thread::Builder::new()
            .stack_size(THREAD_STACK_BYTES)
            .spawn_scoped(scope, move || serve_blocking(stream, label, peer, service, tls.as_ref()));
        if let Err(error) = spawned {
            // Out of threads: the client is dropped (closed) and we back off.
            warn!("cannot start a thread: {error}; retrying in {ACCEPT_RETRY:?}");
            thread::sleep(ACCEPT_RETRY);
        }
    }
}
