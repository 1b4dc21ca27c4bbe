//! Listening sockets: bound from `--listen` (or `--addr`/`--port`), or inherited from a service
//! manager that opened them (systemd socket activation, and onepoll's own `--workers`
//! supervisor, which hands its listeners to each worker the same way).
//!
//! Inheritance follows the `LISTEN_FDS` protocol (sd_listen_fds(3)) through the `listenfd`
//! crate: `LISTEN_FDS=n` descriptors from 3 (or `LISTEN_FDS_FIRST_FD`), and `LISTEN_PID`, when
//! set, must be our PID so a grandchild never takes descriptors meant for its parent.

use std::fmt;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::str::FromStr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Pending connections the kernel queues per listener before we accept them (the kernel caps
/// it at `net.core.somaxconn`). Like lighttpd's 1024: a burst of 1000 clients is not refused.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A `--listen` value: `ADDR:PORT`, `[V6]:PORT`, or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenAddr, String> {
        match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Ok(ListenAddr::Unix(PathBuf::from(path))),
            Some(_) => Err("a unix socket needs an absolute path: unix:/run/onepoll.sock".into()),
            None => {
                text.parse().map(ListenAddr::Tcp).map_err(|_| format!("not ADDR:PORT or unix:/path: {text}"))
            }
        }
    }
}

impl ListenAddr {
    /// How a client reaches it: `http://127.0.0.1:8080/`, or `unix:/run/onepoll.sock`.
    pub fn url(&self) -> String {
        match self {
            ListenAddr::Tcp(addr) => format!("http://{addr}/"),
            ListenAddr::Unix(_) => self.to_string(),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listening socket: TCP, or a Unix domain socket for a front server on the same machine.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Where it listens, as the log shows it.
    pub fn local(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(listener) => {
                let addr = listener.local_addr()?;
                let path = addr.as_pathname().ok_or_else(|| io::Error::other("unnamed unix socket"))?;
                Ok(ListenAddr::Unix(path.to_path_buf()))
            }
        }
    }

    /// The TCP listener, for the engines that serve TCP only.
    pub fn into_tcp(self) -> Option<TcpListener> {
        match self {
            Listener::Tcp(listener) => Some(listener),
            Listener::Unix(_) => None,
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(listener) => listener.as_fd(),
            Listener::Unix(listener) => listener.as_fd(),
        }
    }
}

/// Binds `addr`: TCP with [`bind_tcp`], or a Unix socket whose stale file (a socket left by a
/// previous run, nothing else) is replaced, readable and writable by every local user: it
/// serves what the TCP port serves.
pub fn bind(addr: &ListenAddr, reuse_port: bool) -> io::Result<Listener> {
    match addr {
        ListenAddr::Tcp(addr) => bind_tcp(*addr, reuse_port).map(Listener::Tcp),
        ListenAddr::Unix(path) => {
            if fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket()) {
                fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
            Ok(Listener::Unix(listener))
        }
    }
}

/// Binds one listener. IPv6 addresses listen on IPv6 only (`IPV6_V6ONLY`, as nginx does), so
/// `--listen 0.0.0.0:80 --listen [::]:80` is dual-stack without the two colliding.
/// `reuse_port` lets several workers bind the same address, each with its own accept queue
/// that the kernel balances (`SO_REUSEPORT`).
pub fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    // socket2 sets close-on-exec itself (SOCK_CLOEXEC, or FD_CLOEXEC where there is none).
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
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

/// What a listening socket serves. Passed descriptors say it by name (`LISTEN_FDNAMES`,
/// systemd's `FileDescriptorName=`): `https` is HTTPS, any other name plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    const HTTPS_NAME: &'static str = "https";

    fn from_fd_name(name: &str) -> Scheme {
        match name == Scheme::HTTPS_NAME {
            true => Scheme::Https,
            false => Scheme::Http,
        }
    }

    fn fd_name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => Scheme::HTTPS_NAME,
        }
    }
}

/// The listeners a service manager passed us, if it passed any, each with what it serves.
/// Every passed descriptor must be a TCP or Unix stream listening socket; anything else is an
/// error, not silently skipped.
pub fn inherited() -> io::Result<Option<Vec<(Listener, Scheme)>>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut passed = listenfd::ListenFd::from_env();
    if passed.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(passed.len());
    for index in 0..passed.len() {
        // A descriptor that is not TCP stays in place for the Unix attempt.
        let taken = match passed.take_tcp_listener(index) {
            Ok(tcp) => tcp.map(Listener::Tcp),
            Err(_) => passed.take_unix_listener(index)?.map(Listener::Unix),
        };
        let scheme = names.get(index).map_or(Scheme::Http, |name| Scheme::from_fd_name(name));
        match taken {
            Some(listener) => listeners.push((listener, scheme)),
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
pub fn pass_to_child(
    listeners: &[(Listener, Scheme)],
    pass: bool,
) -> io::Result<Vec<(&'static str, String)>> {
    for (listener, _) in listeners {
        SockRef::from(listener).set_cloexec(!pass)?;
    }
    let fds: Vec<i32> = listeners.iter().map(|(listener, _)| listener.as_fd().as_raw_fd()).collect();
    let first = fds.first().copied().unwrap_or(3);
    if fds.iter().enumerate().any(|(i, fd)| *fd != first + i as i32) {
        return Err(io::Error::other(format!("listener descriptors are not consecutive: {fds:?}")));
    }
    let names: Vec<&str> = listeners.iter().map(|(_, scheme)| scheme.fd_name()).collect();
    Ok(vec![
        ("LISTEN_FDS", fds.len().to_string()),
        ("LISTEN_FDS_FIRST_FD", first.to_string()),
        ("LISTEN_FDNAMES", names.join(":")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_listener_leaves_the_ipv4_port_free() {
        let Ok(v6) = bind_tcp("[::1]:0".parse().unwrap(), false) else {
            return; // no IPv6 on this machine: nothing to check
        };
        let port = v6.local_addr().unwrap().port();
        let v4 = bind_tcp(SocketAddr::from(([127, 0, 0, 1], port)), false);
        assert!(v4.is_ok(), "{v4:?}");
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_an_address() {
        let first = bind_tcp("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let second = bind_tcp(first.local_addr().unwrap(), true);
        assert!(second.is_ok(), "{second:?}");
        assert!(bind_tcp(first.local_addr().unwrap(), false).is_err());
    }

    #[test]
    fn listen_values_are_tcp_addresses_or_absolute_unix_paths() {
        assert_eq!("[::1]:80".parse(), Ok(ListenAddr::Tcp("[::1]:80".parse().unwrap())));
        assert_eq!("unix:/run/o.sock".parse(), Ok(ListenAddr::Unix("/run/o.sock".into())));
        assert!("unix:relative.sock".parse::<ListenAddr>().is_err());
        assert!("localhost:80".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn a_stale_unix_socket_is_replaced_but_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let addr = ListenAddr::Unix(path.clone());
        drop(bind(&addr, false).unwrap()); // leaves the socket file behind, like a crash
        assert!(bind(&addr, false).is_ok());
        let file = ListenAddr::Unix(dir.path().join("file"));
        fs::write(dir.path().join("file"), "keep me").unwrap();
        assert!(bind(&file, false).is_err());
        assert_eq!(fs::read_to_string(dir.path().join("file")).unwrap(), "keep me");
    }
}
