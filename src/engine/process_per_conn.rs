//! A process per connection: the seeds' `multiprocessing` server, done the way a daemon
//! must. The parent only accepts and forks; each child serves its one connection with the
//! blocking connection code every comparison engine shares, then leaves with `_exit`.
//!
//! The parent waits in `poll(2)` on its listeners and on three self-pipes its signal handlers
//! write to, not in mio: a forked child would share the parent's epoll set. It
//! - closes its copy of each client socket at once (the child holds the connection);
//! - reaps children on SIGCHLD with `waitpid(-1, WNOHANG)` until none is left to reap, since
//!   signals coalesce: one SIGCHLD may stand for many exits;
//! - stops polling its listeners while `--max-conns` children live (clients wait in the
//!   backlog), and after accept or fork failed for want of a resource (for `ACCEPT_RETRY`);
//! - on SIGTERM/SIGINT closes its listeners, sends each child SIGTERM (which shuts the
//!   child's reading side: the response in flight finishes, nothing new is read) and waits up
//!   to `--grace-period` before it kills what is left; a second signal kills them at once;
//! - on SIGHUP reopens the access log and reloads the certificates, for children forked
//!   from then on.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

use super::ACCEPT_RETRY;
use super::Exit;
use super::blocking::{BlockingListener, label_for, serve_blocking};
use crate::service::Service;
use crate::sys;
use crate::tls::Https;

/// The self-pipes the parent's signal handlers write a byte to, read ends only.
pub struct Signals {
    /// SIGTERM, SIGINT: stop.
    stop: UnixStream,
    /// SIGCHLD: children to reap.
    child_exited: UnixStream,
    /// SIGHUP: reopen and reload.
    reload: UnixStream,
}

impl Signals {
    /// Catches the signals from now on (before the ready line, so an early SIGTERM counts).
    pub fn catch() -> io::Result<Signals> {
        let pipe = |signals: &[i32]| -> io::Result<UnixStream> {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            for &signal in signals {
                signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
            }
            Ok(read)
        };
        Ok(Signals {
            stop: pipe(&[SIGTERM, SIGINT])?,
            child_exited: pipe(&[SIGCHLD])?,
            reload: pipe(&[SIGHUP])?,
        })
    }
}

/// The signals whose handlers write to the parent's pipes: blocked around `fork` until the
/// child has replaced them, so a child never runs the parent's.
fn handled_by_parent() -> SigSet {
    [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP].into_iter().collect()
}

/// Empties a self-pipe: how many wake-ups it held does not matter (signals coalesce).
fn drain(pipe: &UnixStream) {
    let mut bytes = [0u8; 64];
    while matches!((&*pipe).read(&mut bytes), Ok(n) if n > 0) {}
}

/// What the parent knows: its listeners (none once stopping), its children, its limits.
struct Parent<'a> {
    listeners: Vec<BlockingListener>,
    signals: Signals,
    service: &'a Service,
    https: Option<Https>,
    children: HashSet<Pid>,
    max_children: usize,
    grace_period: Duration,
    /// Accepting waits until then after accept or fork failed for want of a resource.
    retry_at: Option<Instant>,
    /// Set by the first SIGTERM/SIGINT: when the children left get killed.
    kill_at: Option<Instant>,
    /// `--max-conns` children live, so the listeners are not polled.
    paused_at_limit: bool,
    /// Called once when a graceful shutdown begins (to tell the service manager).
    on_shutdown: fn(),
}

pub fn run(
    listeners: Vec<BlockingListener>,
    signals: Signals,
    service: &Service,
    https: Option<Https>,
    max_children: usize,
    grace_period: Duration,
    on_shutdown: fn(),
) -> io::Result<Exit> {
    for listener in &listeners {
        // Readiness comes from poll; a client gone between poll and accept must not block us.
        listener.listener.set_nonblocking(true)?;
    }
    let mut parent = Parent {
        listeners,
        signals,
        service,
        https,
        children: HashSet::new(),
        max_children: max_children.max(1),
        grace_period,
        retry_at: None,
        kill_at: None,
        paused_at_limit: false,
        on_shutdown,
    };
    parent.run()
}

impl Parent<'_> {
    fn run(&mut self) -> io::Result<Exit> {
        loop {
            let now = Instant::now();
            if self.retry_at.is_some_and(|at| at <= now) {
                self.retry_at = None;
            }
            let at_limit = self.children.len() >= self.max_children;
            if at_limit && !self.paused_at_limit {
                debug!("accept paused: {} connections open", self.children.len());
            }
            self.paused_at_limit = at_limit;
            let accepting = self.kill_at.is_none() && self.retry_at.is_none() && !at_limit;
            let listening = if accepting { self.listeners.len() } else { 0 };
            let wake_at = [self.retry_at, self.kill_at].into_iter().flatten().min();
            let timeout = match wake_at {
                None => PollTimeout::NONE,
                // Rounded up, so poll never wakes just before the time and spins.
                Some(at) => {
                    PollTimeout::from((at.saturating_duration_since(now).as_millis() + 1).min(60_000) as u16)
                }
            };
            let readable = PollFlags::POLLIN;
            let mut fds: Vec<PollFd<'_>> =
                [&self.signals.stop, &self.signals.child_exited, &self.signals.reload]
                    .into_iter()
                    .map(|pipe| PollFd::new(pipe.as_fd(), readable))
                    .chain(
                        self.listeners[..listening].iter().map(|l| PollFd::new(l.listener.as_fd(), readable)),
                    )
                    .collect();
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
            let ready: Vec<bool> =
                fds.iter().map(|fd| fd.revents().is_some_and(|events| !events.is_empty())).collect();
            drop(fds);
            if ready[1] {
                drain(&self.signals.child_exited);
            }
            self.reap(); // cheap, and SIGCHLD may have come between two polls
            if ready[2] {
                drain(&self.signals.reload);
                self.reload();
            }
            if ready[0] {
                drain(&self.signals.stop);
                if self.kill_at.is_some() {
                    warn!("second signal: killing {} children", self.children.len());
                    self.kill_children(Signal::SIGKILL);
                    return Ok(Exit::Forced);
                }
                self.begin_shutdown();
            }
            // A stop signal in the same wake-up has closed the listeners: nothing to accept.
            let still_listening = if self.kill_at.is_none() { listening } else { 0 };
            for index in (0..still_listening).filter(|&index| ready[3 + index]) {
                self.accept_and_fork(index);
            }
            if let Some(kill_at) = self.kill_at {
                if self.children.is_empty() {
                    info!("all children finished");
                    return Ok(Exit::Graceful);
                }
                if Instant::now() >= kill_at {
                    warn!("grace period over: killing {} children", self.children.len());
                    self.kill_children(Signal::SIGKILL);
                    return Ok(Exit::Graceful);
                }
            }
        }
    }

    /// Accepts one client on listener `index` and forks a child to serve it.
    fn accept_and_fork(&mut self, index: usize) {
        let (stream, peer) = match self.listeners[index].listener.accept() {
            Ok(accepted) => accepted,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(error)
                if matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) =>
            {
                return;
            }
            Err(error) => {
                warn!("accept failed: {error}; retrying in {ACCEPT_RETRY:?}");
                self.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                return;
            }
        };
        let label = label_for(&stream);
        let stop_signals = handled_by_parent();
        let _ = stop_signals.thread_block();
        match sys::fork() {
            Ok(ForkResult::Child) => self.serve_in_child(stream, label, peer, index),
            Ok(ForkResult::Parent { child }) => {
                let _ = stop_signals.thread_unblock();
                debug!("{label} accept {peer}: child {child}");
                self.children.insert(child);
                drop(stream); // the child has it; our copy would keep the connection open
            }
            Err(error) => {
                let _ = stop_signals.thread_unblock();
                warn!("{label} cannot fork: {error}; closing it, retrying in {ACCEPT_RETRY:?}");
                self.retry_at = Some(Instant::now() + ACCEPT_RETRY);
            }
        }
    }

    /// The child's whole life: close what belongs to the parent, serve, leave without running
    /// the parent's destructors (its pid file, its buffers).
    fn serve_in_child(
        &mut self,
        stream: std::net::TcpStream,
        label: crate::drive::ConnLabel,
        peer: SocketAddr,
        index: usize,
    ) -> ! {
        let tls = self.listeners[index].tls.clone();
        self.listeners.clear();
        let prepared = sys::stop_reading_on_sigterm(stream.as_raw_fd()).and_then(|()| {
            // If the parent dies, even by SIGKILL, the child drains as on SIGTERM.
            sys::signal_when_parent_dies(Signal::SIGTERM)
        });
        let stop_signals = handled_by_parent();
        let _ = stop_signals.thread_unblock();
        let status = match prepared {
            // A panic must not unwind out of the child's `main` into the parent's destructors
            // (the pid file's would delete the parent's file): it ends this child only.
            Ok(()) => match panic::catch_unwind(AssertUnwindSafe(|| {
                serve_blocking(stream, label, peer, self.service, tls.as_ref())
            })) {
                Ok(()) => 0,
                Err(_) => {
                    error!("{label} panicked while serving; its child exits");
                    1
                }
            },
            Err(error) => {
                error!("{label} child set-up failed: {error}");
                1
            }
        };
        self.service.access_log.flush();
        sys::exit_child(status)
    }

    /// Collects every child that exited, without waiting for the ones still serving.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.children.remove(&pid);
                    }
                    match status {
                        WaitStatus::Exited(_, 0) => {}
                        WaitStatus::Signaled(pid, Signal::SIGKILL, _) if self.kill_at.is_some() => {
                            debug!("child {pid} killed at the end of the grace period")
                        }
                        other => warn!("child ended abnormally: {other:?}"),
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return, // ECHILD: none left
            }
        }
    }

    fn reload(&mut self) {
        self.service.reload();
        if let Some(https) = &mut self.https {
            match https.reload(None) {
                Ok(()) => {
                    for listener in self.listeners.iter_mut().filter(|listener| listener.tls.is_some()) {
                        listener.tls = Some(Arc::clone(https.config()));
                    }
                    info!("SIGHUP: certificates reloaded; new connections use them")
                }
                Err(error) => error!("SIGHUP: certificates kept as they were: {error}"),
            }
        }
    }

    /// Stops accepting (closing the listeners refuses new clients rather than leaving them
    /// waiting) and tells every child to finish what it was asked.
    fn begin_shutdown(&mut self) {
        self.listeners.clear();
        self.kill_at = Some(Instant::now() + self.grace_period);
        (self.on_shutdown)();
        info!("shutting down: {} children finish within {:?}", self.children.len(), self.grace_period);
        self.kill_children(Signal::SIGTERM);
    }

    fn kill_children(&mut self, signal: Signal) {
        for &child in &self.children {
            let _ = kill(child, signal);
        }
        if signal == Signal::SIGKILL {
            for child in self.children.drain() {
                let _ = waitpid(child, None);
            }
        }
    }
}
