//! `--workers N`: N onepoll processes, each one single-threaded event loop, under a parent
//! that owns the listening sockets. Cores are used by processes, not threads, so each worker
//! stays the simple one-`Poll` program the rest of this crate describes.
//!
//! The parent binds, per worker, its own set of `SO_REUSEPORT` listeners (the kernel spreads
//! new connections over the workers' accept queues), or shares the sockets systemd passed it.
//! A worker is the same binary started with `ONEPOLL_WORKER=<index>` and its listeners passed
//! the `LISTEN_FDS` way. Because the parent keeps every socket open, connections that arrive
//! while a crashed worker restarts wait in its queue instead of being refused. The parent
//! forwards SIGTERM/SIGINT (graceful drain) and SIGHUP (log reopen) and exits when every
//! worker has.

use crate::listen::{Listener, Scheme};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::SIGHUP;
use signal_hook_mio::v1_0::Signals;

use crate::config::AcmeHelperSettings;
use crate::daemon;
use crate::http::{
    BodyPlan, FileMeta, HttpError, Method, Representation, Resource, Response, TextFormat, Version, respond,
};
use crate::http1::{Head, MAX_HEAD_BYTES, Parsed, parse_head};
use crate::listen;
use crate::status;
use crate::tls::TicketSecret;

/// The environment variable that makes a process a worker: its index.
pub const WORKER_ENV: &str = "ONEPOLL_WORKER";
/// With `--status-listen`: the Unix socket a worker serves its own reports on, for the
/// supervisor to sum.
pub const WORKER_STATUS_ENV: &str = "ONEPOLL_WORKER_STATUS";
/// The status listener's token in the supervisor's `Poll` (the signals have 0).
const STATUS: Token = Token(1);
/// The ACME helper's socket.
#[cfg(feature = "acme")]
const ACME_HELPER: Token = Token(2);
/// How long the supervisor waits on a status client or a worker's report.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// The supervisor's PID, so a worker can tell whether its parent is still the one that
/// started it.
const SUPERVISOR_ENV: &str = "ONEPOLL_SUPERVISOR";
/// How often exited workers are looked for when no signal wakes the parent.
const CHILD_CHECK: Duration = Duration::from_millis(100);
/// A worker that dies sooner than this after starting is restarted only after this long, so a
/// worker that cannot start does not spin the parent.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Which listeners each worker gets.
pub enum WorkerListeners {
    /// Worker `i` gets set `i` (bound here with `SO_REUSEPORT`).
    PerWorker(Vec<Vec<(Listener, Scheme)>>),
    /// Every worker gets the same sockets (inherited from systemd).
    Shared(Vec<(Listener, Scheme)>),
}

impl WorkerListeners {
    fn for_worker(&self, index: usize) -> &[(Listener, Scheme)] {
        match self {
            WorkerListeners::PerWorker(sets) => &sets[index],
            WorkerListeners::Shared(set) => set,
        }
    }

    fn count(&self, workers: usize) -> usize {
        match self {
            WorkerListeners::PerWorker(sets) => sets.len(),
            WorkerListeners::Shared(_) => workers,
        }
    }
}

struct Worker {
    child: Option<Child>,
    started: Instant,
    /// When a crashed worker may be started again.
    restart_at: Option<Instant>,
}

/// Runs `workers` worker processes until a signal ends them all. Returns true when every
/// worker exited cleanly after a graceful shutdown.
/// With HTTPS, `ticket_secret` goes to every worker (on its stdin), so a session ticket one
/// worker issued resumes on any other.
/// With `--status-listen`, `status` answers there with every worker's counts summed.
pub fn run(
    listeners: WorkerListeners,
    workers: usize,
    signals: Signals,
    ticket_secret: Option<TicketSecret>,
    status: Option<StatusRelay>,
    acme: Vec<AcmeHelperSettings>,
) -> io::Result<bool> {
    let mut poll = Poll::new()?;
    let mut signals = signals;
    poll.registry().register(&mut signals, Token(0), Interest::READABLE)?;
    if let Some(relay) = &status {
        poll.registry().register(&mut SourceFd(&relay.fd()), STATUS, Interest::READABLE)?;
    }
    // One ACME helper for the group; each certificate it installs is a SIGHUP to every worker.
    #[cfg(feature = "acme")]
    let mut acme_helper = match acme.is_empty() {
        true => None,
        false => match crate::acme::helper::AcmeHelper::start(&acme, poll.registry(), ACME_HELPER) {
            Ok(helper) => Some(helper),
            Err(error) => {
                error!("acme: cannot start the helper: {error}; certificates are not renewed");
                None
            }
        },
    };
    #[cfg(not(feature = "acme"))]
    let _ = acme;
    let count = listeners.count(workers);
    let start = |index: usize, listeners: &WorkerListeners| {
        let socket = status.as_ref().map(|relay| relay.worker_socket(index));
        spawn(index, listeners.for_worker(index), ticket_secret.as_ref(), socket.as_deref())
    };
    let mut pool: Vec<Worker> = Vec::with_capacity(count);
    for index in 0..count {
        pool.push(Worker {
            child: Some(start(index, &listeners)?),
            started: Instant::now(),
            restart_at: None,
        });
    }
    info!("supervisor: {count} workers started");
    // `None` once stopping: our copies of the sockets are closed, so new clients are refused
    // instead of queued, and no worker is restarted.
    let mut listeners = Some(listeners);
    daemon::notify(sd_notify::NotifyState::Ready);
    let mut all_clean = true;
    let mut events = Events::with_capacity(8);
    loop {
        match poll.poll(&mut events, Some(CHILD_CHECK)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
        if let Some(relay) = &status
            && events.iter().any(|event| event.token() == STATUS)
        {
            relay.answer_waiting(count);
        }
        #[cfg(feature = "acme")]
        if let Some(helper) = &mut acme_helper
            && events.iter().any(|event| event.token() == ACME_HELPER)
            && helper.read(poll.registry()) > 0
        {
            info!("acme: new certificate installed; every worker reloads (SIGHUP)");
            for worker in pool.iter().filter_map(|worker| worker.child.as_ref()) {
                let _ = kill(Pid::from_raw(worker.id() as i32), Signal::SIGHUP);
            }
        }
        for signal in signals.pending() {
            let forward = match signal {
                SIGHUP => Signal::SIGHUP,
                _ => {
                    if listeners.take().is_some() {
                        info!("supervisor: stopping {count} workers");
                        daemon::notify(sd_notify::NotifyState::Stopping);
                    }
                    Signal::SIGTERM // a second one makes workers exit at once, as it would us
                }
            };
            for worker in &pool {
                if let Some(child) = &worker.child {
                    let _ = kill(Pid::from_raw(child.id() as i32), forward);
                }
            }
        }
        let now = Instant::now();
        for (index, worker) in pool.iter_mut().enumerate() {
            if let Some(status) = worker.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                worker.child = None;
                if listeners.is_none() {
                    // Killed by the TERM we forwarded before it could catch it: stopped as asked.
                    let stopped_early = status.signal() == Some(Signal::SIGTERM as i32);
                    all_clean &= status.success() || stopped_early;
                    info!("supervisor: worker {index} exited ({})", describe(status));
                    continue;
                }
                warn!("supervisor: worker {index} died ({}); restarting it", describe(status));
                let quick = now.duration_since(worker.started) < RESTART_DELAY;
                worker.restart_at = Some(if quick { now + RESTART_DELAY } else { now });
            }
            let Some(listeners) = &listeners else { continue };
            if worker.child.is_none() && worker.restart_at.is_some_and(|at| at <= now) {
                match start(index, listeners) {
                    Ok(child) => {
                        *worker = Worker { child: Some(child), started: now, restart_at: None };
                    }
                    Err(error) => {
                        error!("supervisor: cannot restart worker {index}: {error}");
                        worker.restart_at = Some(now + RESTART_DELAY);
                    }
                }
            }
        }
        if listeners.is_none() && pool.iter().all(|worker| worker.child.is_none()) {
            #[cfg(feature = "acme")]
            if let Some(helper) = &mut acme_helper {
                helper.stop();
            }
            info!("supervisor: all workers exited");
            return Ok(all_clean);
        }
    }
}

/// Called first thing in a worker: if the supervisor dies, even by SIGKILL, the kernel sends
/// this worker SIGTERM, so it drains and exits instead of serving on unsupervised.
pub fn bind_to_supervisor() -> io::Result<()> {
    crate::sys::signal_when_parent_dies(Signal::SIGTERM)?;
    let expected = std::env::var(SUPERVISOR_ENV).ok().and_then(|pid| pid.parse::<i32>().ok());
    if expected != Some(nix::unistd::getppid().as_raw()) {
        return Err(io::Error::other("the supervisor exited before this worker started"));
    }
    Ok(())
}

/// Starts worker `index` with `listeners` as its inherited sockets, and the ticket secret, if
/// any, written to its stdin (never in its environment, which `/proc` shows).
fn spawn(
    index: usize,
    listeners: &[(Listener, Scheme)],
    ticket_secret: Option<&TicketSecret>,
    status: Option<&Path>,
) -> io::Result<Child> {
    // Only this one child may inherit these sockets: CLOEXEC comes back right after the spawn.
    let environment = listen::pass_to_child(listeners, true)?;
    let spawned = Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .process_group(0) // a terminal's Ctrl-C reaches the parent only; it forwards one TERM
        .env(WORKER_ENV, index.to_string())
        .env(SUPERVISOR_ENV, std::process::id().to_string())
        .env_remove("LISTEN_PID")
        .env_remove("NOTIFY_SOCKET") // only the parent talks to systemd
        .envs(environment)
        .envs(status.map(|path| (WORKER_STATUS_ENV, path)))
        .stdin(if ticket_secret.is_some() { Stdio::piped() } else { Stdio::null() })
        .spawn();
    listen::pass_to_child(listeners, false)?;
    let mut child = spawned?;
    if let (Some(secret), Some(mut stdin)) = (ticket_secret, child.stdin.take()) {
        stdin.write_all(secret)?; // 32 bytes: well within a pipe's buffer, so this never waits
    }
    Ok(child)
}

/// `--status-listen` with workers: the supervisor's status listener, and the private directory
/// of the workers' own (Unix sockets), whose `/metrics` it reads and sums for every request.
/// Each worker's counts stay plain integers on its loop's thread; only a report request costs
/// the supervisor a read from each worker.
pub struct StatusRelay {
    listener: Listener,
    dir: PathBuf,
}

impl StatusRelay {
    /// `listener`, and a fresh directory (mode 0700) for the workers' sockets.
    pub fn new(listener: Listener) -> io::Result<StatusRelay> {
        let dir = std::env::temp_dir().join(format!("onepoll-status-{}", std::process::id()));
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        match &listener {
            Listener::Tcp(listener) => listener.set_nonblocking(true)?,
            Listener::Unix(listener) => listener.set_nonblocking(true)?,
        }
        Ok(StatusRelay { listener, dir })
    }

    /// Where its listener listens.
    pub fn local(&self) -> io::Result<crate::listen::ListenAddr> {
        self.listener.local()
    }

    fn fd(&self) -> RawFd {
        match &self.listener {
            Listener::Tcp(listener) => listener.as_raw_fd(),
            Listener::Unix(listener) => listener.as_raw_fd(),
        }
    }

    fn worker_socket(&self, index: usize) -> PathBuf {
        self.dir.join(format!("worker-{index}.sock"))
    }

    /// Answers every client waiting to be accepted, each in turn, none for longer than
    /// `STATUS_TIMEOUT` per read or write (the supervisor also forwards signals).
    fn answer_waiting(&self, workers: usize) {
        loop {
            let accepted: io::Result<Box<dyn ReadWrite>> = match &self.listener {
                Listener::Tcp(listener) => {
                    listener.accept().map(|(stream, _)| Box::new(stream) as Box<dyn ReadWrite>)
                }
                Listener::Unix(listener) => {
                    listener.accept().map(|(stream, _)| Box::new(stream) as Box<dyn ReadWrite>)
                }
            };
            match accepted {
                Ok(mut client) => {
                    if let Err(error) = self.answer(&mut *client, workers) {
                        debug!("supervisor: status client: {error}");
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: none left (or EMFILE: the next event retries)
            }
        }
    }

    fn answer(&self, client: &mut dyn ReadWrite, workers: usize) -> io::Result<()> {
        client.set_timeouts(STATUS_TIMEOUT)?;
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        let request = loop {
            let read = client.read(&mut buffer)?;
            if read == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buffer[..read]);
            match parse_head(&head) {
                Ok(Parsed::Partial) if head.len() < MAX_HEAD_BYTES => continue,
                Ok(Parsed::Complete { request, .. }) => break Ok(request),
                Ok(Parsed::Partial) => break Err(HttpError::HeaderFieldsTooLarge),
                Err(error) => break Err(error),
            }
        };
        let reports: Vec<String> = (0..workers).filter_map(|index| self.worker_metrics(index).ok()).collect();
        let metrics = status::sum_metrics(&reports);
        let found = request.as_ref().map_err(Clone::clone).and_then(|request| {
            let path = request.target.raw.split('?').next().unwrap_or_default();
            let report = match path {
                "/status" => Resource::Report {
                    body: status::stub_status_from_metrics(&metrics),
                    format: TextFormat::Plain,
                },
                "/metrics" => Resource::Report { body: metrics, format: TextFormat::Prometheus },
                _ => return Err(HttpError::NotFound),
            };
            match request.method {
                Method::Get | Method::Head => Ok(report),
                _ => Err(HttpError::MethodNotAllowed),
            }
        });
        let response = respond::<NoFile>(request.as_ref().ok(), found, std::time::SystemTime::now());
        let version = request.as_ref().map_or(Version::Http11, |request| request.version);
        let Response { status, headers, body, .. } = response;
        client.write_all(&Head::new(status, headers, version, false).to_vec())?;
        if let BodyPlan::Page(page) = body {
            client.write_all(page.as_bytes())?;
        }
        Ok(())
    }

    /// Worker `index`'s `/metrics`, from its socket.
    fn worker_metrics(&self, index: usize) -> io::Result<String> {
        let mut socket = UnixStream::connect(self.worker_socket(index))?;
        socket.set_timeouts(STATUS_TIMEOUT)?;
        socket.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
        let mut response = String::new();
        socket.read_to_string(&mut response)?;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => {
                Ok(body.to_owned())
            }
            _ => Err(io::Error::other("no report")),
        }
    }
}

impl Drop for StatusRelay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A status client's socket, TCP or Unix.
trait ReadWrite: Read + Write {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
}

impl ReadWrite for std::net::TcpStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl ReadWrite for UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

/// The relay's responses have no file body.
#[derive(Debug)]
struct NoFile;

impl Representation for NoFile {
    fn meta(&self) -> &FileMeta {
        unreachable!("a report has no file")
    }
}

/// In a worker: the ticket secret the supervisor wrote to our stdin.
pub fn ticket_secret_from_supervisor() -> io::Result<TicketSecret> {
    let mut secret = [0u8; 32];
    io::stdin().lock().read_exact(&mut secret)?;
    Ok(secret)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}
