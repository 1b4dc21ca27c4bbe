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
pub enum PollListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl PollListener {
    /// Takes over a bound listener, non-blocking from now on.
    pub fn from_listener(listener: Listener) -> io::Result<PollListener> {
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
    pub fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            PollListener::Tcp(listener) => {
                listener.accept().map(|(stream, peer)| (Stream::Tcp(stream), Some(peer)))
            }
            PollListener::Unix(listener) => listener.accept().map(|(stream, _)| (Stream::Unix(stream), None)),
        }
    }
}

/// A client socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Head and body leave in separate syscalls; Nagle would hold the second back for an ACK.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    pub fn tcp(self) -> Option<TcpStream> {
        match self {
            Stream::Tcp(stream) => Some(stream),
            Stream::Unix(_) => None,
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> i32 {
        match self {
            Stream::Tcp(stream) => stream.as_raw_fd(),
            Stream::Unix(stream) => stream.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write_vectored(bufs),
            Stream::Unix(stream) => stream.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Stream {
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        // mio's `try_io` is the documented way to run a raw syscall on its socket.
        match self {
            Stream::Tcp(stream) => stream.try_io(|| sys::sendfile(stream.as_raw_fd(), file, offset, len)),
            Stream::Unix(stream) => stream.try_io(|| sys::sendfile(stream.as_raw_fd(), file, offset, len)),
        }
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        Ok(()) // mio sockets never block
    }

    fn short_read_drains(&self) -> bool {
        true
    }

    fn write_vectored_more(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => {
                stream.try_io(|| SockRef::from(&*stream).send_vectored_with_flags(slices, libc::MSG_MORE))
            }
            Stream::Unix(stream) => stream.write_vectored(slices), // no packets to merge
        }
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.register(registry, token, interests),
            Stream::Unix(stream) => stream.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.reregister(registry, token, interests),
            Stream::Unix(stream) => stream.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.deregister(registry),
            Stream::Unix(stream) => stream.deregister(registry),
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
