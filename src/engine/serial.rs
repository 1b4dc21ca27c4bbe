//! The one-at-a-time engine: accept a client, serve it until it closes, then the next. Every
//! other client waits in the listen backlog meanwhile; this is the baseline the others beat.
//! It serves one listener: waiting on two would already need a poller.

use super::blocking::{BlockingListener, accept, label_for, serve_blocking};
use crate::service::Service;

pub fn run(listener: BlockingListener, service: &Service) -> ! {
    loop {
        let (stream, peer) = accept(&listener.listener);
        let label = label_for(&stream);
        serve_blocking(stream, label, peer, service, listener.tls.as_ref());
    }
}
