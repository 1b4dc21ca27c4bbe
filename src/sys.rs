//! The raw syscalls (and syscall flags) that std and mio do not wrap.

use std::fs::{File, OpenOptions};
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// Opens for reading without following a FIFO into a blocking open (`O_NONBLOCK` is harmless
/// for regular files).
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

/// `sendfile(2)`: copies up to `len` bytes of `file` from `offset` to the socket `socket_fd`
/// inside the kernel, without the offset of `file` moving. Returns the bytes sent.
#[cfg(target_os = "linux")]
pub(crate) fn sendfile(socket_fd: RawFd, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both descriptors are open for the duration of the call (`file` is borrowed, the
    // caller owns the socket) and `offset` is a valid, exclusively borrowed off_t.
    let sent = unsafe { libc::sendfile(socket_fd, file.as_raw_fd(), &mut offset, len) };
    if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
}

/// Elsewhere there is no `sendfile(2)` with Linux's semantics: callers fall back to read+write.
#[cfg(not(target_os = "linux"))]
pub(crate) fn sendfile(_socket_fd: RawFd, _file: &File, _offset: u64, _len: usize) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// `fork(2)`, for the process-per-connection engine and the event loop's compressor.
pub(crate) fn fork() -> io::Result<nix::unistd::ForkResult> {
    // SAFETY: only the process-per-connection engine and the event loop fork, and each runs
    // in a process with one thread (they start none), so the child inherits no lock another
    // thread held.
    unsafe { nix::unistd::fork() }.map_err(io::Error::from)
}

/// `pidfd_open(2)` (Linux 5.3): a descriptor that turns readable when child `pid` exits, so
/// a poller learns of the exit as an event instead of asking `waitpid` on a timer.
#[cfg(target_os = "linux")]
pub(crate) fn pidfd_open(pid: nix::unistd::Pid) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the call takes a PID and flags, reads no memory of ours, and returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just made this descriptor for us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Elsewhere callers look for the exit on a timer.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pidfd_open(_pid: nix::unistd::Pid) -> io::Result<std::os::fd::OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The socket a process-per-connection child serves, for its SIGTERM handler.
static SERVED_SOCKET: AtomicI32 = AtomicI32::new(-1);

extern "C" fn stop_reading(_signal: libc::c_int) {
    // SAFETY: shutdown(2) is async-signal-safe and touches nothing of ours.
    unsafe { libc::shutdown(SERVED_SOCKET.load(Ordering::Relaxed), libc::SHUT_RD) };
}

/// In a child that serves the one connection on `socket`: SIGTERM and SIGINT shut its reading
/// side, so the blocked read returns EOF, the response in flight still finishes and no new
/// request is read; SIGHUP and SIGCHLD, which the parent catches, get their default actions.
pub(crate) fn stop_reading_on_sigterm(socket: RawFd) -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    SERVED_SOCKET.store(socket, Ordering::Relaxed);
    let stop = SigAction::new(SigHandler::Handler(stop_reading), SaFlags::SA_RESTART, SigSet::empty());
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for (signal, action) in [
        (Signal::SIGTERM, &stop),
        (Signal::SIGINT, &stop),
        (Signal::SIGHUP, &default),
        (Signal::SIGCHLD, &default),
    ] {
        // SAFETY: `stop_reading` only calls shutdown(2), which is async-signal-safe; SIG_DFL is
        // always a valid disposition.
        unsafe { sigaction(signal, action) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// `_exit(2)`: ends a forked child without running the parent's exit handlers or flushing
/// buffers it copied from the parent (which would then be written twice).
pub(crate) fn exit_child(status: i32) -> ! {
    // SAFETY: _exit takes no pointer and never returns.
    unsafe { libc::_exit(status) }
}

/// In a forked child: the actions of `signals` back to their defaults, so the parent's
/// handlers (which write to the parent's self-pipe) never run here.
pub(crate) fn default_signal_actions(signals: &[nix::sys::signal::Signal]) -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in signals {
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { sigaction(*signal, &default) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// `send` flag: more follows at once, so the head and the `sendfile` body after it leave in
/// full packets. Linux only; elsewhere nothing (the packets are just smaller).
#[cfg(target_os = "linux")]
pub(crate) const MSG_MORE: libc::c_int = libc::MSG_MORE;
#[cfg(not(target_os = "linux"))]
pub(crate) const MSG_MORE: libc::c_int = 0;

/// `signal` for this process when its parent dies, even by SIGKILL (`PR_SET_PDEATHSIG`).
/// Linux only; elsewhere a child outlives a killed parent until its own work ends.
pub(crate) fn signal_when_parent_dies(signal: nix::sys::signal::Signal) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return nix::sys::prctl::set_pdeathsig(signal).map_err(io::Error::from);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = signal;
        Ok(())
    }
}

/// In a forked child: closes every descriptor from 3 up except `keep`, so the child holds no
/// client socket, listener or log file of the parent open (a socket the parent closes must
/// close for real, not linger in the child).
#[cfg(target_os = "linux")]
pub(crate) fn close_descriptors_except(keep: RawFd) -> io::Result<()> {
    let keep = u32::try_from(keep).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    for (first, last) in [(3, keep.saturating_sub(1)), (keep + 1, u32::MAX)] {
        if first > last {
            continue;
        }
        // SAFETY: close_range(2) takes plain integers; closing descriptors this child does not
        // use (it owns none of the parent's objects that would later use them) is sound.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Elsewhere: one `close` per possible descriptor below the process's limit.
#[cfg(not(target_os = "linux"))]
pub(crate) fn close_descriptors_except(keep: RawFd) -> io::Result<()> {
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(256, 1 << 20) as RawFd;
    for fd in (3..limit).filter(|fd| *fd != keep) {
        // SAFETY: closing descriptors this child does not use; EBADF for unused numbers.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// The lowest scheduling class for this process: on Linux `SCHED_IDLE`, which runs only when
/// nothing else wants the CPU and is preempted at once when the event loop it was forked
/// from wakes up (nice 19 still takes slices of a few milliseconds from a busy loop on the
/// same core); nice 19 elsewhere, or where `SCHED_IDLE` is refused (qemu-user has no
/// sched_setscheduler).
pub(crate) fn lowest_priority() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_param is plain integers (musl's has more fields than glibc's), for
        // which all zeros (priority 0, what SCHED_IDLE requires) is valid; it outlives the
        // call, and pid 0 is this process.
        let result = unsafe {
            let param: libc::sched_param = std::mem::zeroed();
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
        };
        if result == 0 {
            return Ok(());
        }
    }
    // SAFETY: setpriority(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The supplementary groups of the user `name`, plus `gid` (`initgroups(3)`).
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn initgroups(name: &std::ffi::CStr, gid: nix::unistd::Gid) -> io::Result<()> {
    nix::unistd::initgroups(name, gid).map_err(io::Error::from)
}

/// nix leaves Apple's `initgroups(3)` out (its group id is an int there).
#[cfg(target_vendor = "apple")]
pub(crate) fn initgroups(name: &std::ffi::CStr, gid: nix::unistd::Gid) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::initgroups(name.as_ptr(), gid.as_raw() as libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
