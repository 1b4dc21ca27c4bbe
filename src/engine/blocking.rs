//! What the three comparison engines share: serving one connection on a blocking socket, and
//! accepting with the same back-off the event loop uses when descriptors run out.
//!
//! A blocking engine hands the whole connection to [`Client::drive`] once: with blocking
//! sockets every read and write waits, so `drive` only returns when the connection is done or
//! a socket timeout fired (`SO_RCVTIMEO` = idle timeout, `SO_SNDTIMEO` = send timeout, which
//! the kernel reports as `EAGAIN`, i.e. the same `WouldBlock` verdict the event loop waits on).
//! There is no header deadline: the read timeout restarts with every byte, which is exactly
//! the weakness the event loop's timers fix.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use log::{debug, warn};

use rustls::ServerConfig;

use super::ACCEPT_RETRY;
use crate::drive::{Client, CloseReason, ConnLabel, Now, Timeout, Verdict};
use crate::service::Service;
use crate::service::http::HttpClient;

/// A listening socket of a blocking engine, and the TLS configuration its clients get, if it
/// is an HTTPS one.
pub struct BlockingListener {
    pub listener: TcpListener,
    pub tls: Option<Arc<ServerConfig>>,
}

/// Labels for connections outside the event loop: a counter stands in for the slab key.
static NEXT_CONNECTION: AtomicUsize = AtomicUsize::new(0);

/// Accepts the next connection, sleeping and retrying on errors (EMFILE, ECONNABORTED, ...),
/// so a full descriptor table neither spins nor ends the engine.
pub fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept() {
            Ok(accepted) => return accepted,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                warn!("accept failed: {error}; retrying in {ACCEPT_RETRY:?}");
                thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

/// The label of a newly accepted connection. Taken where it was accepted: a forked child's
/// counter would never move.
pub fn label_for(stream: &impl AsRawFd) -> ConnLabel {
    ConnLabel { token: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed), fd: stream.as_raw_fd() }
}

/// Serves one client on this thread until it leaves: over TLS when the listener it came from
/// is an HTTPS one (`tls` is then its configuration).
pub fn serve_blocking(
    stream: TcpStream,
    label: ConnLabel,
    peer: SocketAddr,
    service: &Service,
    tls: Option<&Arc<ServerConfig>>,
) {
    debug!("{label} accept {peer}");
    let limits = service.limits;
    let configured = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(limits.idle_timeout).filter(|t| !t.is_zero())))
        .and_then(|()| stream.set_write_timeout(Some(limits.send_timeout).filter(|t| !t.is_zero())));
    if let Err(error) = configured {
        debug!("{label} socket options: {error}");
        return;
    }
    match HttpClient::accept(stream, tls, label, Some(peer), Now::read()) {
        Ok(client) => drive_until_closed(Box::new(client), service),
        Err(error) => warn!("{label} TLS session refused: {error}"),
    }
}

/// Drives `client` on this thread, blocking in its socket calls, until it closes.
fn drive_until_closed(mut client: Box<impl Client>, service: &Service) {
    let mut cx = service.live_context();
    let reason = loop {
        match client.drive(&mut cx) {
            Verdict::Yield => {} // the thread is this connection's alone: carry on
            Verdict::Close(reason) => break reason,
            Verdict::Wait { writable: true } => break CloseReason::Timeout(Timeout::Send),
            Verdict::Wait { writable: false } => break CloseReason::Timeout(Timeout::Idle),
        }
    };
    client.close(reason, &mut cx);
}
