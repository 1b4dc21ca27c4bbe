//! The event loop's sockets for HTTP: TCP, or Unix domain stream sockets (a front server on
//! the same machine, `--listen unix:/path`). The loop and the connection code see one type
//! each; these enums only forward to mio's.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::listen::Listener;
use crate::sys;
use crate::transport::Transport;

/// A listening socket registered with the loop.
pub(crate) enum PollListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl PollListener {
    /// Takes over a bound listener, non-blocking from now on.
    pub(crate) fn from_listener(listener: Listener) -> io::Result<PollListener> {
        Ok(match listener {
            Listener::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                PollListener::Tcp(TcpListener::from_std(listener))
            }
            Listener::Unix(listener) => {
                listener.set_nonblocking(true)?;
                PollListener::Unix(UnixListener::from_std(listener))
            }
        })
    }

    /// The next client and, for TCP, its address (Unix peers have none worth logging).
    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            PollListener::Tcp(listener) => {
                listener.accept().map(|(stream, peer)| (Stream::from(Socket::Tcp(stream)), Some(peer)))
            }
            PollListener::Unix(listener) => {
                listener.accept().map(|(stream, _)| (Stream::from(Socket::Unix(stream)), None))
            }
        }
    }
}

/// A client socket, and whether its peer hung up.
pub struct Stream {
    pub socket: Socket,
    /// A readiness event reported a hang-up: short reads no longer prove it empty.
    hung_up: bool,
}

pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl From<Socket> for Stream {
    fn from(socket: Socket) -> Stream {
        Stream { socket, hung_up: false }
    }
}

impl Stream {
    /// Head and body leave in separate syscalls; Nagle would hold the second back for an ACK.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match &self.socket {
            Socket::Tcp(stream) => stream.set_nodelay(true),
            Socket::Unix(_) => Ok(()),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> i32 {
        match &self.socket {
            Socket::Tcp(stream) => stream.as_raw_fd(),
            Socket::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream.read(buf),
            Socket::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream.write(buf),
            Socket::Unix(stream) => stream.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream.write_vectored(bufs),
            Socket::Unix(stream) => stream.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Stream {
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        // mio's `try_io` is the documented way to run a raw syscall on its socket.
        match &mut self.socket {
            Socket::Tcp(stream) => stream.try_io(|| sys::sendfile(stream.as_raw_fd(), file, offset, len)),
            Socket::Unix(stream) => stream.try_io(|| sys::sendfile(stream.as_raw_fd(), file, offset, len)),
        }
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        Ok(()) // mio sockets never block
    }

    fn local_port(&self) -> Option<u16> {
        match &self.socket {
            Socket::Tcp(stream) => stream.local_addr().ok().map(|addr| addr.port()),
            Socket::Unix(_) => None,
        }
    }

    fn short_read_drains(&self) -> bool {
        !self.hung_up
    }

    fn note_hang_up(&mut self) {
        self.hung_up = true;
    }

    fn write_vectored_more(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream
                .try_io(|| SockRef::from(&*stream).send_vectored_with_flags(slices, crate::sys::MSG_MORE)),
            Socket::Unix(stream) => stream.write_vectored(slices), // no packets to merge
        }
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream.register(registry, token, interests),
            Socket::Unix(stream) => stream.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream.reregister(registry, token, interests),
            Socket::Unix(stream) => stream.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.socket {
            Socket::Tcp(stream) => stream.deregister(registry),
            Socket::Unix(stream) => stream.deregister(registry),
        }
    }
}

impl Source for PollListener {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            PollListener::Tcp(listener) => listener.register(registry, token, interests),
            PollListener::Unix(listener) => listener.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            PollListener::Tcp(listener) => listener.reregister(registry, token, interests),
            PollListener::Unix(listener) => listener.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            PollListener::Tcp(listener) => listener.deregister(registry),
            PollListener::Unix(listener) => listener.deregister(registry),
        }
    }
}
