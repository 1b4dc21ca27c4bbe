//! The event loop's compressor: the file cache's compressions run in a forked child process,
//! one at a time, so a file that takes a second to compress at brotli's best level never
//! stalls the loop. The loop pays for a `fork` and for reading the result, which arrives on
//! a socket registered with the same `Poll` as every client: readable events, reads until
//! `WouldBlock`, EOF when the child is done.
//!
//! The child sheds the loop as every helper does ([`super::child`]: `SCHED_IDLE`, none of the
//! loop's descriptors, dies with the loop), and exits 0 only after writing the whole result;
//! anything else is a failure and the file is sent uncompressed until it changes. A child
//! that runs longer than [`TIME_LIMIT`] is killed.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::child::fork_helper;
use crate::files::{CompressionJob, FileCache, compress};
use crate::sys;
use crate::transport::nonblocking;

/// Longest a compression may take before its child is killed.
pub(crate) const TIME_LIMIT: Duration = Duration::from_secs(60);
/// How often the loop looks for the child's exit status once its output has ended, where no
/// pidfd tells it (before Linux 5.3, or elsewhere).
const EXIT_POLL: Duration = Duration::from_millis(1);

/// At most one compression in flight.
pub(crate) struct Compressor {
    /// The token of the result socket.
    token: Token,
    /// The token of the child's pidfd, readable once it exits.
    exit_token: Token,
    running: Option<Running>,
}

struct Running {
    job: CompressionJob,
    pid: Pid,
    /// The child's end of the result; `None` once it reached EOF.
    output: Option<mio::net::UnixStream>,
    received: Vec<u8>,
    started: Instant,
    /// Readable when the child has exited (registered under `exit_token`), if the kernel
    /// has pidfds.
    exited: Option<OwnedFd>,
}

impl Compressor {
    /// A compressor whose result sockets get `token` in the loop's `Poll`, and its children's
    /// pidfds `exit_token`.
    pub(crate) fn new(token: Token, exit_token: Token) -> Compressor {
        Compressor { token, exit_token, running: None }
    }

    /// When the loop must wake up for the compressor without an event: to collect the child's
    /// exit status, or to kill it at its time limit.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let running = self.running.as_ref()?;
        // The output's EOF, and then (with a pidfd) the exit, come as events.
        let exit_is_an_event = running.output.is_some() || running.exited.is_some();
        Some(if exit_is_an_event { running.started + TIME_LIMIT } else { Instant::now() + EXIT_POLL })
    }

    /// The result socket is readable: takes what the child wrote, until `WouldBlock` or EOF.
    pub(crate) fn read_output(&mut self, registry: &Registry) {
        let Some(running) = self.running.as_mut() else { return };
        let Some(output) = running.output.as_mut() else { return };
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match nonblocking(|| output.read(&mut buffer)) {
                Ok(Some(0)) => {
                    let _ = registry.deregister(output);
                    running.output = None;
                    return;
                }
                Ok(Some(read)) => running.received.extend_from_slice(&buffer[..read]),
                Ok(None) => return,
                Err(error) => {
                    warn!("compressor: reading the result of {}: {error}", running.job.key);
                    let _ = registry.deregister(output);
                    running.output = None;
                    running.received.clear();
                    return;
                }
            }
        }
    }

    /// Once per loop turn: finishes the compression whose child has exited, kills one past its
    /// time limit, and starts the next job the cache queued.
    pub(crate) fn turn(&mut self, cache: &mut FileCache, registry: &Registry) {
        if let Some(running) = &self.running {
            let overdue = running.started.elapsed() >= TIME_LIMIT;
            if running.output.is_some() && !overdue {
                return; // its EOF comes as an event
            }
            if overdue {
                warn!(
                    "compressor: {} took longer than {TIME_LIMIT:?}; killing child {}",
                    running.job.key, running.pid
                );
                let _ = kill(running.pid, Signal::SIGKILL);
            }
            // Still alive: its exit comes as a pidfd event (or the next EXIT_POLL).
            match waitpid(running.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => return,
                Ok(status) => self.finish(cache, registry, status),
                Err(error) => {
                    warn!("compressor: waiting for child {}: {error}", running.pid);
                    self.finish(cache, registry, WaitStatus::StillAlive);
                }
            }
        }
        if let Some(job) = cache.next_compression_job() {
            self.start(job, cache, registry);
        }
    }

    fn finish(&mut self, cache: &mut FileCache, registry: &Registry, status: WaitStatus) {
        let Some(mut running) = self.running.take() else { return };
        if let Some(mut output) = running.output.take() {
            // Exited with output unread: what is left is in the socket buffer.
            let _ = registry.deregister(&mut output);
            let _ = output.read_to_end(&mut running.received);
        }
        if let Some(exited) = running.exited.take() {
            let _ = registry.deregister(&mut SourceFd(&exited.as_raw_fd()));
        }
        let (key, coding) = (&running.job.key, running.job.coding.token());
        let took = running.started.elapsed();
        let result = match status {
            WaitStatus::Exited(_, 0) => {
                debug!(
                    "compressor: {key} {coding}: {} -> {} bytes in {took:.1?} (child {})",
                    running.job.identity.len,
                    running.received.len(),
                    running.pid
                );
                Some(running.received)
            }
            other => {
                warn!("compressor: {key} {coding} failed after {took:.1?}: {other:?}; sent uncompressed");
                None
            }
        };
        cache.install_compressed(&running.job, result);
    }

    fn start(&mut self, job: CompressionJob, cache: &mut FileCache, registry: &Registry) {
        let started = Instant::now();
        let forked = fork_helper("compressor", |output| run_child(&job, output)).and_then(|(pid, ours)| {
            ours.set_nonblocking(true)?;
            let mut output = mio::net::UnixStream::from_std(ours);
            if let Err(error) = registry.register(&mut output, self.token, Interest::READABLE) {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(error);
            }
            Ok((pid, output))
        });
        match forked {
            Ok((pid, output)) => {
                debug!(
                    "compressor: {} {} in child {pid} (level {}, fork took {:.0?})",
                    job.key,
                    job.coding.token(),
                    compress::level(job.coding, job.identity.len),
                    started.elapsed()
                );
                let received = Vec::with_capacity(job.identity.len as usize / 3);
                let exited = self.watch_exit(pid, registry);
                self.running = Some(Running { job, pid, output: Some(output), received, started, exited });
            }
            Err(error) => {
                warn!("compressor: cannot start a child for {}: {error}; sent uncompressed", job.key);
                cache.install_compressed(&job, None);
            }
        }
    }

    /// A pidfd for `pid`, registered so that its exit wakes the loop; `None` where the kernel
    /// has none (the exit is then looked for every EXIT_POLL).
    fn watch_exit(&self, pid: Pid, registry: &Registry) -> Option<OwnedFd> {
        let exited = sys::pidfd_open(pid).ok()?;
        registry.register(&mut SourceFd(&exited.as_raw_fd()), self.exit_token, Interest::READABLE).ok()?;
        Some(exited)
    }

    /// The loop is ending: the child is killed and reaped (it is ours, started by PID).
    pub(crate) fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = kill(running.pid, Signal::SIGKILL);
            let _ = waitpid(running.pid, None);
        }
    }
}

/// The child's work: compress, write; its exit status.
fn run_child(job: &CompressionJob, mut output: std::os::unix::net::UnixStream) -> i32 {
    match compress::run(job).and_then(|bytes| output.write_all(&bytes)) {
        Ok(()) => 0,
        Err(error) => {
            debug!("compressor child: {}: {error}", job.key);
            1
        }
    }
}
