//! The default engine: one thread, one `mio::Poll`, every socket non-blocking.
//!
//! This file knows mio and slab and nothing of HTTP. The listener has its own token; each
//! client lives in a `Slab` whose key is its `Token`. On every event the loop calls the
//! connection's `drive` and obeys the verdict: arm WRITABLE only while output is pending (so a
//! response that fits the socket buffer costs no `epoll_ctl`), or close. Closed clients leave
//! the slab only after the whole event batch, so a key reused by `accept` can never receive an
//! event that was meant for its previous owner.

use std::io;
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use log::{debug, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use crate::connection::{CloseReason, ConnLabel, Connection, Site, Verdict};

/// The listener's token; client tokens are slab keys, which never reach it.
const LISTENER: Token = Token(usize::MAX);
/// Most events taken from one `epoll_wait`.
const EVENTS_PER_POLL: usize = 1024;

struct Client {
    conn: Connection<TcpStream>,
    /// Whether WRITABLE is part of the registered interest.
    writable_armed: bool,
    /// Closed during the current event batch; removed from the slab after it.
    closed: bool,
}

/// Serves `listener` forever from this thread.
pub fn run(listener: std::net::TcpListener, site: &Site) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut clients: Slab<Client> = Slab::new();
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut closed: Vec<(usize, CloseReason)> = Vec::new();

    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            // A signal arrived while waiting (mio `Poll::poll` docs): not an error.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        let now = SystemTime::now(); // the clock is read once per loop turn
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &mut clients, poll.registry());
                continue;
            }
            let key = event.token().0;
            let Some(client) = clients.get_mut(key).filter(|client| !client.closed) else {
                continue;
            };
            let verdict = client.conn.drive(site, now);
            if let Some(reason) = apply(verdict, key, client, poll.registry()) {
                client.closed = true;
                closed.push((key, reason));
            }
        }
        for (key, reason) in closed.drain(..) {
            clients.remove(key).conn.close(reason);
        }
    }
}

/// Accepts until `WouldBlock`: with edge-triggered readiness a pending connection left in the
/// backlog would get no further event.
fn accept_all(listener: &TcpListener, clients: &mut Slab<Client>, registry: &Registry) {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                warn!("accept failed: {error}");
                return;
            }
        };
        let entry = clients.vacant_entry();
        let label = ConnLabel {
            token: entry.key(),
            fd: stream.as_raw_fd(),
        };
        // Head and body leave in separate syscalls; Nagle would hold the second back for an ACK.
        if let Err(error) = stream.set_nodelay(true) {
            trace!("{label} set_nodelay: {error}");
        }
        if let Err(error) = registry.register(&mut stream, Token(entry.key()), Interest::READABLE) {
            warn!("{label} register failed: {error}");
            continue;
        }
        debug!("{label} accept {peer}");
        entry.insert(Client {
            conn: Connection::new(stream, label, Some(peer)),
            writable_armed: false,
            closed: false,
        });
    }
}

/// Changes the registered interest when the verdict asks for different readiness; returns the
/// reason when the client must close.
fn apply(
    verdict: Verdict,
    key: usize,
    client: &mut Client,
    registry: &Registry,
) -> Option<CloseReason> {
    match verdict {
        Verdict::Close(reason) => Some(reason),
        Verdict::Wait { writable } if writable == client.writable_armed => None,
        Verdict::Wait { writable } => {
            let interest = if writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match registry.reregister(client.conn.transport_mut(), Token(key), interest) {
                Ok(()) => {
                    let sign = if writable { "+" } else { "-" };
                    trace!("{} epoll_ctl {sign}WRITABLE", client.conn.label());
                    client.writable_armed = writable;
                    None
                }
                Err(error) => Some(CloseReason::Io(error.kind())),
            }
        }
    }
}
