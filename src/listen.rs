//! Listening sockets: bound from `--listen` (or `--addr`/`--port`), or inherited from a service
//! manager that opened them (systemd socket activation, and onepoll's own `--workers`
//! supervisor, which hands its listeners to each worker the same way).
//!
//! Inheritance follows the `LISTEN_FDS` protocol (sd_listen_fds(3)) through the `listenfd`
//! crate: `LISTEN_FDS=n` descriptors from 3 (or `LISTEN_FDS_FIRST_FD`), and `LISTEN_PID`, when
//! set, must be our PID so a grandchild never takes descriptors meant for its parent.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Pending connections the kernel queues per listener before we accept them (the kernel caps
/// it at `net.core.somaxconn`). Like lighttpd's 1024: a burst of 1000 clients is not refused.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Where listeners come from, for the log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Bound,
    Inherited,
}

/// Binds one listener. IPv6 addresses listen on IPv6 only (`IPV6_V6ONLY`, as nginx does), so
/// `--listen 0.0.0.0:80 --listen [::]:80` is dual-stack without the two colliding.
/// `reuse_port` lets several workers bind the same address, each with its own accept queue
/// that the kernel balances (`SO_REUSEPORT`).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?; // restart while old connections sit in TIME_WAIT
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The TCP listeners a service manager passed us, if it passed any. Every passed descriptor
/// must be a TCP listening socket; anything else is an error, not silently skipped.
pub fn inherited() -> io::Result<Option<Vec<TcpListener>>> {
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(passed.len());
    for index in 0..passed.len() {
        match passed.take_tcp_listener(index)? {
            Some(listener) => listeners.push(listener),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("inherited fd #{index} is taken"),
                ));
            }
        }
    }
    Ok(Some(listeners))
}

/// Lets `listeners` survive `exec` into a child (clears `FD_CLOEXEC`), or stops them doing so.
/// Returns the environment that tells the child where they are, in the `LISTEN_FDS` form
/// [`inherited`] reads; the descriptors must be consecutive.
pub fn pass_to_child(listeners: &[TcpListener], pass: bool) -> io::Result<Vec<(&'static str, String)>> {
    for listener in listeners {
        SockRef::from(listener).set_cloexec(!pass)?;
    }
    let fds: Vec<i32> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
    let first = fds.first().copied().unwrap_or(3);
    if fds.iter().enumerate().any(|(i, fd)| *fd != first + i as i32) {
        return Err(io::Error::other(format!("listener descriptors are not consecutive: {fds:?}")));
    }
    Ok(vec![("LISTEN_FDS", fds.len().to_string()), ("LISTEN_FDS_FIRST_FD", first.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_listener_leaves_the_ipv4_port_free() {
        let Ok(v6) = bind("[::1]:0".parse().unwrap(), false) else {
            return; // no IPv6 on this machine: nothing to check
        };
        let port = v6.local_addr().unwrap().port();
        let v4 = bind(SocketAddr::from(([127, 0, 0, 1], port)), false);
        assert!(v4.is_ok(), "{v4:?}");
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_an_address() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let second = bind(first.local_addr().unwrap(), true);
        assert!(second.is_ok(), "{second:?}");
        assert!(bind(first.local_addr().unwrap(), false).is_err());
    }
}
