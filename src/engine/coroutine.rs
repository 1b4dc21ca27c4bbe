//! One task per connection on tokio's `current_thread` runtime: the seeds' gevent server in
//! Rust terms. Tasks are coroutines: each runs the same non-blocking connection state machine
//! as the event loop, and where the loop would go back to `epoll_wait`, the task `await`s its
//! socket's readiness (or its deadline, from tokio's timer) and lets the others run. One
//! thread; the runtime's epoll and timer wheel do what the event loop's slab and deadline
//! list do by hand.
//!
//! Behind the cargo feature `coroutine`: a build without it has no tokio at all.

use std::fs::File;
use std::future;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use log::{debug, warn};
use rustls::ServerConfig;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use super::ACCEPT_RETRY;
use super::blocking::{BlockingListener, label_for};
use crate::drive::{Client, CloseReason, ConnLabel, Now, Verdict};
use crate::service::Service;
use crate::service::http::HttpClient;
use crate::sys;
use crate::transport::Transport;

pub fn run(listeners: Vec<BlockingListener>, service: Service) -> ! {
    // Tasks must be 'static; the service lives as long as the process anyway.
    let service: &'static Service = Box::leak(Box::new(service));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("onepoll: cannot start the coroutine runtime: {error}");
            std::process::exit(1)
        }
    };
    // A LocalSet: connections hold per-thread buffer pools, so their tasks never move thread.
    let tasks = tokio::task::LocalSet::new();
    tasks.block_on(&runtime, async move {
        for listener in listeners {
            tokio::task::spawn_local(accept_forever(listener, service));
        }
        future::pending::<()>().await
    });
    unreachable!("accepting never ends")
}

async fn accept_forever(listener: BlockingListener, service: &'static Service) {
    let BlockingListener { listener, tls } = listener;
    let listener = match listener.set_nonblocking(true).and_then(|()| TcpListener::from_std(listener)) {
        Ok(listener) => listener,
        Err(error) => {
            warn!("cannot register a listener with the runtime: {error}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let label = label_for(&stream);
                tokio::task::spawn_local(serve(stream, label, peer, service, tls.clone()));
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(error) => {
                warn!("accept failed: {error}; retrying in {ACCEPT_RETRY:?}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// One connection's task, from accept to close.
async fn serve(
    stream: TcpStream,
    label: ConnLabel,
    peer: SocketAddr,
    service: &'static Service,
    tls: Option<Arc<ServerConfig>>,
) {
    debug!("{label} accept {peer}");
    if let Err(error) = stream.set_nodelay(true) {
        debug!("{label} socket options: {error}");
        return;
    }
    match HttpClient::accept(TaskSocket(stream), tls.as_ref(), label, Some(peer), Now::read()) {
        Ok(client) => drive_until_closed(Box::new(client), service).await,
        Err(error) => warn!("{label} TLS session refused: {error}"),
    }
}

/// The event loop's turn, as a coroutine: drive until the connection would block, then wait
/// for the readiness it asked for or for its deadline, whichever comes first.
async fn drive_until_closed(mut connection: Box<HttpClient<TaskSocket>>, service: &Service) {
    let mut cx = service.live_context();
    let reason = loop {
        match connection.drive(&mut cx) {
            Verdict::Close(reason) => break reason,
            // It did a fair share: let the other tasks run before it goes on.
            Verdict::Yield => tokio::task::yield_now().await,
            Verdict::Wait { writable } => {
                let (deadline, timeout) = connection.deadline(&service.limits);
                let socket = &connection.socket_mut().0;
                let interest = if writable { Interest::WRITABLE } else { Interest::READABLE };
                match tokio::time::timeout_at(deadline.into(), socket.ready(interest)).await {
                    Err(_) => break CloseReason::Timeout(timeout),
                    Ok(Err(error)) => break CloseReason::from_io(&error),
                    Ok(Ok(_)) => {}
                }
            }
        }
    };
    connection.close(reason, &mut cx);
}

/// A task's socket: tokio's, read and written without waiting. Each call goes through
/// `try_io`, so a `WouldBlock` clears the readiness tokio holds and the next `ready()` waits
/// for a new event, as the event loop's edge-triggered epoll does.
pub struct TaskSocket(TcpStream);

impl Read for TaskSocket {
    /// A read shorter than the buffer proves the socket empty (edge-triggered epoll's rule,
    /// which tokio's own `poll_read` applies too): tokio is told `WouldBlock` so that it clears
    /// the readiness, and we keep the bytes. A hang-up stays ready in tokio, so the EOF after
    /// it is still read.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let socket = &self.0;
        let mut short_read = None;
        let result = socket.try_io(Interest::READABLE, || {
            let read = (&*SockRef::from(socket)).read(buf)?;
            if read > 0 && read < buf.len() {
                short_read = Some(read);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(read)
        });
        short_read.map_or(result, Ok)
    }
}

impl Write for TaskSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for TaskSocket {
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        let socket = &self.0;
        socket.try_io(Interest::WRITABLE, || sys::sendfile(socket.as_raw_fd(), file, offset, len))
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        Ok(()) // tokio's sockets never block
    }

    fn local_port(&self) -> Option<u16> {
        self.0.local_addr().ok().map(|addr| addr.port())
    }

    fn short_read_drains(&self) -> bool {
        true
    }

    fn write_vectored_more(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let socket = &self.0;
        socket.try_io(Interest::WRITABLE, || {
            SockRef::from(socket).send_vectored_with_flags(slices, crate::sys::MSG_MORE)
        })
    }
}
