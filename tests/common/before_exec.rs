//! What a parent sets up in its child between `fork` and `exec`, for tests that stand in for
//! the shell or the service manager that would do it in production: a descriptor limit
//! (`ulimit -n`), and systemd's socket activation (sd_listen_fds(3)).
//!
//! The child of a multi-threaded test process may only make async-signal-safe calls before
//! `exec`: everything that allocates is done here, before the fork.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command` start with at most `max_fds` open descriptors (RLIMIT_NOFILE).
pub fn limit_descriptors(command: &mut Command, max_fds: libc::rlim_t) {
    let limit = libc::rlimit { rlim_cur: max_fds, rlim_max: max_fds };
    // SAFETY: setrlimit is async-signal-safe and reads only `limit`, copied into the closure.
    unsafe {
        command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        });
    }
}

/// The most arguments plus environment variables [`activate`] passes on.
const MAX_EXEC_STRINGS: usize = 512;
/// The most sockets [`activate`] passes.
const MAX_SOCKETS: usize = 8;
/// `SD_LISTEN_FDS_START`: passed sockets begin at descriptor 3.
const FIRST_PASSED_FD: RawFd = 3;

/// Makes `command` start as systemd starts a socket-activated service: `sockets` become
/// descriptors 3, 4, … in the same order, `LISTEN_FDS` counts them, `LISTEN_FDNAMES` names
/// them (`name:name`), and `LISTEN_PID` is the child's own PID. Only the child knows that PID,
/// so the child execs itself, as systemd does, with the program, arguments and environment
/// `command` has now: call this after its last `arg` and `env`.
pub fn activate(command: &mut Command, sockets: &[(&dyn AsFd, &str)]) {
    assert!(sockets.len() <= MAX_SOCKETS, "at most {MAX_SOCKETS} sockets");
    let c_string = |bytes: &[u8]| CString::new(bytes).expect("no NUL in an argument or variable");
    let program = c_string(command.get_program().as_bytes());
    let argv: Vec<CString> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| c_string(arg.as_bytes()))
        .collect();
    let mut environment: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::env::vars_os()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect();
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => environment.insert(name.as_bytes().to_vec(), value.as_bytes().to_vec()),
            None => environment.remove(name.as_bytes()),
        };
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_FDS_FIRST_FD"] {
        environment.remove(name.as_bytes());
    }
    let names: Vec<&str> = sockets.iter().map(|(_, name)| *name).collect();
    environment.insert(b"LISTEN_FDS".to_vec(), sockets.len().to_string().into_bytes());
    environment.insert(b"LISTEN_FDNAMES".to_vec(), names.join(":").into_bytes());
    let envp: Vec<CString> =
        environment.iter().map(|(name, value)| c_string(&[&name[..], b"=", &value[..]].concat())).collect();
    assert!(argv.len() + envp.len() + 3 <= MAX_EXEC_STRINGS, "too many arguments and variables");
    // Copies the closure owns (close-on-exec, so only the dup2'd ones below reach the program).
    let passed: Vec<OwnedFd> = sockets
        .iter()
        .map(|(socket, _)| socket.as_fd().try_clone_to_owned().expect("dup a socket"))
        .collect();
    // SAFETY: between fork and exec the child only calls getpid, fcntl, dup2 and execve
    // (async-signal-safe) and writes to its own stack; every string was allocated before.
    unsafe {
        command.pre_exec(move || {
            let mut listen_pid = *b"LISTEN_PID=\0\0\0\0\0\0\0\0\0\0\0\0";
            let mut pid = libc::getpid() as u32;
            let digits = 1 + pid.checked_ilog10().unwrap_or(0) as usize;
            for slot in listen_pid[11..11 + digits].iter_mut().rev() {
                *slot = b'0' + (pid % 10) as u8;
                pid /= 10;
            }
            // First out of the way of 3, 4, …, then into place: a socket may sit where another
            // must go. dup2 clears close-on-exec on the copy it makes.
            let mut moved = [0 as RawFd; MAX_SOCKETS];
            let beyond = FIRST_PASSED_FD + passed.len() as RawFd;
            for (slot, socket) in moved.iter_mut().zip(&passed) {
                *slot = libc::fcntl(socket.as_raw_fd(), libc::F_DUPFD_CLOEXEC, beyond);
                if *slot < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (index, fd) in moved[..passed.len()].iter().enumerate() {
                if libc::dup2(*fd, FIRST_PASSED_FD + index as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let mut argv_pointers = [std::ptr::null(); MAX_EXEC_STRINGS];
            for (slot, arg) in argv_pointers.iter_mut().zip(&argv) {
                *slot = arg.as_ptr();
            }
            let mut envp_pointers = [std::ptr::null(); MAX_EXEC_STRINGS];
            envp_pointers[0] = listen_pid.as_ptr().cast();
            for (slot, variable) in envp_pointers[1..].iter_mut().zip(&envp) {
                *slot = variable.as_ptr();
            }
            libc::execve(program.as_ptr(), argv_pointers.as_ptr(), envp_pointers.as_ptr());
            Err(io::Error::last_os_error())
        });
    }
}
