//! The seam between a socket and the connection that speaks HTTP over it.
//!
//! A [`Transport`] is a byte stream (read, write, writev, and `flush` for bytes a layer
//! still holds) that can also take a file range (`sendfile`). Every engine's socket implements it: the event loop's non-blocking
//! `crate::engine::stream::Stream`, the blocking engines' `std::net::TcpStream`, and the
//! unit tests' scripted fake. It is the one place another byte layer goes: a TLS session
//! wrapping a socket is a `Transport` too (its `send_file` encrypts file bytes instead of
//! handing the kernel a file), so the connection, the output queue and every engine above
//! it stay as they are.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;

use socket2::SockRef;

use crate::sys;

/// Runs one non-blocking call, again when a signal interrupted it (`EINTR`): `Ok(Some(_))` it
/// did something, `Ok(None)` it would block (wait for readiness: mio's "Draining readiness"),
/// `Err` it failed. Every loop here that drains a descriptor reads its calls through this.
pub fn nonblocking<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<Option<T>> {
    loop {
        match call() {
            Ok(done) => return Ok(Some(done)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// A byte stream we can also `sendfile(2)` into.
pub trait Transport: Read + Write {
    /// Sends up to `len` bytes of `file` from `offset`, returning how many went out.
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize>;

    /// Makes reads return `WouldBlock` instead of waiting, for the last reads before a close.
    fn stop_blocking(&mut self) -> io::Result<()>;

    /// Whether a read that returns less than asked proves the socket empty until the next
    /// readiness event: true for edge-triggered, non-blocking sockets, until the peer hung up.
    fn short_read_drains(&self) -> bool;

    /// The readiness event reported a hang-up or error (EPOLLRDHUP, EPOLLERR): no further
    /// event will come, so reads must go on to the EOF or the error however short they are.
    fn note_hang_up(&mut self) {}

    /// Writes `slices` saying more follows at once (`MSG_MORE`), so a response head and the
    /// `sendfile` body after it leave in full packets instead of a small head packet first.
    fn write_vectored_more(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored(slices)
    }

    /// A layer under HTTP (TLS) is still setting up: the header deadline already runs.
    fn is_handshaking(&self) -> bool {
        false
    }

    /// The bytes travel encrypted (TLS), so a request on it is already on HTTPS.
    fn is_encrypted(&self) -> bool {
        false
    }

    /// Whether the site `id` ([`crate::site::Site::id`]) may be served on this connection: over
    /// TLS, only if the certificate the handshake sent is one of that site's.
    fn certificate_covers(&self, _site: &str) -> bool {
        true
    }

    /// The TLS handshake agreed on HTTP/2 (ALPN `h2`): the client's first bytes are its
    /// connection preface.
    fn negotiated_http2(&self) -> bool {
        false
    }

    /// The client spoke plain HTTP to a TLS port: every request gets a plain-text `400`.
    fn is_plain_http_on_tls_port(&self) -> bool {
        false
    }

    /// Bytes this layer took but has not yet sent (TLS records the socket refused); the
    /// connection waits for WRITABLE while there are.
    fn has_unsent_output(&self) -> bool {
        false
    }

    /// Says goodbye below HTTP before the socket closes (TLS `close_notify`), if it can
    /// without blocking.
    fn finish(&mut self) {}

    /// The port the connection came in on (`getsockname`: a listener bound to a wildcard
    /// address does not say which of its addresses); none for a Unix socket.
    fn local_port(&self) -> Option<u16> {
        None
    }
}

impl Transport for std::net::TcpStream {
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
        sys::sendfile(self.as_raw_fd(), file, offset, len)
    }

    fn local_port(&self) -> Option<u16> {
        self.local_addr().ok().map(|addr| addr.port())
    }

    fn stop_blocking(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)
    }

    fn short_read_drains(&self) -> bool {
        false
    }

    fn write_vectored_more(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(&*self).send_vectored_with_flags(slices, crate::sys::MSG_MORE)
    }
}

/// A scripted socket for unit tests of everything above the transport.
#[cfg(test)]
pub mod fake {
    use std::collections::VecDeque;
    use std::fs::File;
    use std::io::{self, IoSlice, Read, Write};
    use std::os::unix::fs::FileExt;

    use super::Transport;

    /// Reads take what the peer "sent" (`WouldBlock` when nothing is there, EOF once the
    /// peer closed); the i-th write takes at most `write_budgets[i]` bytes (0 = `WouldBlock`),
    /// then everything, unless `reset` (every write fails as on a reset connection);
    /// `sendfile` works only when `sendfile_works`. Non-blocking and
    /// edge-triggered like the event loop's sockets, so a short read drains it.
    #[derive(Debug, Default)]
    pub struct FakeSocket {
        /// Bytes the peer sent that have not been read yet.
        pub incoming: VecDeque<u8>,
        /// The peer shut its sending side: reads return 0 once `incoming` is empty.
        pub peer_closed: bool,
        /// Everything written so far, in order.
        pub written: Vec<u8>,
        pub write_budgets: VecDeque<usize>,
        /// The name of every write-side call, in order.
        pub calls: Vec<&'static str>,
        pub sendfile_works: bool,
        /// The peer reset the connection: every write fails with `ConnectionReset`.
        pub reset: bool,
    }

    impl FakeSocket {
        pub fn writing(budgets: &[usize], sendfile_works: bool) -> FakeSocket {
            FakeSocket {
                write_budgets: budgets.iter().copied().collect(),
                sendfile_works,
                ..FakeSocket::default()
            }
        }

        /// The peer sends `bytes`.
        pub fn send(&mut self, bytes: &[u8]) {
            self.incoming.extend(bytes);
        }

        /// What was written and not yet taken by [`FakeSocket::take_written`].
        pub fn take_written(&mut self) -> Vec<u8> {
            std::mem::take(&mut self.written)
        }

        fn take(&mut self, offered: usize) -> io::Result<usize> {
            if self.reset {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            match self.write_budgets.pop_front() {
                Some(0) => Err(io::ErrorKind::WouldBlock.into()),
                Some(budget) => Ok(budget.min(offered)),
                None => Ok(offered),
            }
        }
    }

    impl Read for FakeSocket {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.incoming.is_empty() {
                return if self.peer_closed { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            let count = buf.len().min(self.incoming.len());
            for (slot, byte) in buf.iter_mut().zip(self.incoming.drain(..count)) {
                *slot = byte;
            }
            Ok(count)
        }
    }

    impl Write for FakeSocket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls.push("write");
            let n = self.take(buf.len())?;
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls.push("writev");
            let n = self.take(bufs.iter().map(|buf| buf.len()).sum())?;
            let mut left = n;
            for buf in bufs {
                let taken = left.min(buf.len());
                self.written.extend_from_slice(&buf[..taken]);
                left -= taken;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for FakeSocket {
        fn stop_blocking(&mut self) -> io::Result<()> {
            Ok(())
        }

        /// A closed peer is what a hang-up event reports, and the engine tells the transport.
        fn short_read_drains(&self) -> bool {
            !self.peer_closed
        }

        fn write_vectored_more(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let result = self.write_vectored(bufs);
            if let Some(last) = self.calls.last_mut() {
                *last = "writev+more";
            }
            result
        }

        fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
            self.calls.push("sendfile");
            if !self.sendfile_works {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let n = self.take(len)?;
            let mut buf = vec![0; n];
            let read = file.read_at(&mut buf, offset)?;
            self.written.extend_from_slice(&buf[..read]);
            Ok(read)
        }
    }
}
