//! The raw syscalls (and syscall flags) that std and mio do not wrap.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens for reading without following a FIFO into a blocking open (`O_NONBLOCK` is harmless
/// for regular files).
pub fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

/// `sendfile(2)`: copies up to `len` bytes of `file` from `offset` to the socket `socket_fd`
/// inside the kernel, without the offset of `file` moving. Returns the bytes sent.
#[cfg(target_os = "linux")]
pub fn sendfile(socket_fd: RawFd, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both descriptors are open for the duration of the call (`file` is borrowed, the
    // caller owns the socket) and `offset` is a valid, exclusively borrowed off_t.
    let sent = unsafe { libc::sendfile(socket_fd, file.as_raw_fd(), &mut offset, len) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
}

/// Elsewhere there is no `sendfile(2)` with Linux's semantics: callers fall back to read+write.
#[cfg(not(target_os = "linux"))]
pub fn sendfile(_socket_fd: RawFd, _file: &File, _offset: u64, _len: usize) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
