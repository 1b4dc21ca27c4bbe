//! The loop's helper processes (the compressor, the ACME helper): forked with a socket pair,
//! the child's half kept, everything else of the loop's shed before the child's own work.
//!
//! The child puts back the default actions of the signals the loop handles (blocked around
//! `fork`, so none arrives in between), closes every descriptor the loop owns (a client socket
//! the loop closes must really close), dies with the loop (`PR_SET_PDEATHSIG`), and runs at the
//! lowest priority (`SCHED_IDLE`), so it never takes a slice the loop wants.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};

use log::warn;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::sys;

/// The signals the loop handles (through its self-pipe).
const LOOP_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// Forks a child named `name` (for its log lines) that runs `work` with its end of a socket
/// pair and exits with the status `work` returns (2 if it panics). Returns the child's pid
/// and the loop's end of the socket, still blocking.
pub(crate) fn fork_helper(name: &str, work: impl FnOnce(UnixStream) -> i32) -> io::Result<(Pid, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let blocked: SigSet = LOOP_SIGNALS.into_iter().collect();
    let _ = blocked.thread_block();
    let forked = sys::fork();
    if let Ok(ForkResult::Child) = forked {
        drop(ours);
        shed_the_loop(name, &theirs);
        // A panic must not unwind into the loop's stack frames copied into this child.
        let status = panic::catch_unwind(AssertUnwindSafe(|| work(theirs))).unwrap_or(2);
        sys::exit_child(status);
    }
    let _ = blocked.thread_unblock();
    drop(theirs);
    match forked? {
        ForkResult::Parent { child } => Ok((child, ours)),
        ForkResult::Child => unreachable!("the child never returns"),
    }
}

fn shed_the_loop(name: &str, kept: &UnixStream) {
    let keep = kept.as_raw_fd();
    let steps: [(&str, &dyn Fn() -> io::Result<()>); 5] = [
        ("default signal actions", &|| sys::default_signal_actions(&LOOP_SIGNALS)),
        ("unblocking signals", &|| {
            LOOP_SIGNALS.into_iter().collect::<SigSet>().thread_unblock().map_err(io::Error::from)
        }),
        ("closing the loop's descriptors", &|| sys::close_descriptors_except(keep)),
        ("PR_SET_PDEATHSIG", &|| sys::signal_when_parent_dies(Signal::SIGKILL)),
        ("lowest priority", &sys::lowest_priority),
    ];
    for (step, run) in steps {
        if let Err(error) = run() {
            warn!("{name} child: {step}: {error}");
            sys::exit_child(3);
        }
    }
}
