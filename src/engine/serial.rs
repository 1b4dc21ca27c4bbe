//! The one-at-a-time engine: accept a client, serve it until it closes, then the next. Every
//! other client waits in the listen backlog meanwhile; this is the baseline the others beat.
//! It serves one listener: waiting on two would already need a poller.

use super::blocking::{BlockingListener, accept, serve_blocking};
use crate::drive::Site;

pub fn run(listener: BlockingListener, site: &Site) -> ! {
    loop {
        let (stream, peer) = accept(&listener.listener);
        serve_blocking(stream, peer, site, listener.tls.as_ref());
    }
}
