//! The default engine: one thread, one `mio::Poll`, every socket non-blocking.
//!
//! This file knows mio and slab, and nothing of what it serves: a [`Handler`] (the service)
//! makes the client for each accepted socket, owns its own event sources (file changes, the
//! compressor, datagrams), and gets a turn before the loop sleeps and on SIGHUP (redis' `ae.c`
//! with its handler table and `beforeSleep`). Every client, whatever it speaks, is a
//! [`Polled`] [`Client`] behind one interface, and the loop never asks which. Each listener and
//! the signal pipe have their own tokens; each client lives in a `Slab` whose key is its
//! `Token`. On every event the loop calls the client's `drive` and obeys the verdict: arm
//! WRITABLE only while output is pending (so a response that fits the socket buffer costs no
//! `epoll_ctl`), yield, or close. Closed clients leave the slab only after the whole event
//! batch, so a key reused by `accept` can never receive an event that was meant for its
//! previous owner.
//!
//! Readiness is edge-triggered (mio registers `EPOLLET`): an event says the state *changed*, not
//! that it holds, and no new event comes while it stays the same. Hence the rules from mio's
//! [`Poll`](https://docs.rs/mio/latest/mio/struct.Poll.html) docs ("Draining readiness",
//! "Spurious events") that every socket here follows: accept, read and write until
//! `WouldBlock` (or a short read, which proves a TCP socket empty; epoll(7)); treat every event
//! as a hint, letting the result of the I/O decide; and retry `poll` on `Interrupted`.
//!
//! Timers: every client has one entry in an ordered set, never later than its real deadline
//! (header, idle or send, whichever applies now); `epoll_wait` sleeps until the nearest. An entry
//! that fires early is re-armed at the real deadline, so progress costs no set update. The clock
//! is read once per loop turn (one vDSO `clock_gettime`; see [`TurnClock`]).

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error, info, trace, warn};
use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::drive::{Client, CloseReason, ConnLabel, Context, Limits, Now, Phase, TurnClock, Verdict};
use crate::listen::Listener;
use crate::status::Census;

use super::stream::{PollListener, Socket};
use super::{ACCEPT_RETRY, Exit};

/// The self-pipe that signal-hook writes to from its signal handler. Client tokens are slab
/// keys, which never reach this top range.
const SIGNALS: Token = Token(usize::MAX);
/// Most listening sockets one loop serves.
pub const MAX_LISTENERS: usize = 64;
/// Listener `i` has token `FIRST_LISTENER + i`.
const FIRST_LISTENER: usize = usize::MAX - MAX_LISTENERS;
/// Tokens the handler may give its own event sources, below the listeners'.
pub const HANDLER_TOKENS: usize = 128;
const FIRST_HANDLER_TOKEN: usize = FIRST_LISTENER - HANDLER_TOKENS;

/// Most events taken from one `epoll_wait`.
const EVENTS_PER_POLL: usize = 1024;

/// The signals the loop handles: SIGTERM/SIGINT (graceful stop), SIGHUP (reload).
pub fn shutdown_signals() -> io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

/// A client the loop polls: the engine contract, and the socket whose interest it changes.
pub trait Polled: Client {
    fn source(&mut self) -> &mut dyn Source;

    /// It has work before any readiness event (a protocol whose server speaks first): driven
    /// in the turn it was accepted.
    fn speaks_first(&self) -> bool {
        false
    }
}

/// What the loop serves: everything but the poller, the listeners, the clients and their
/// timers. Each hook is called from the loop's one thread.
pub trait Handler {
    /// What a listener's clients speak, as the handler tells listeners apart.
    type Kind: Copy;

    /// The client for a socket accepted on a listener of `kind` (already registered for
    /// READABLE under `label.token`); `None` refuses it, and dropping the socket closes it.
    fn accept(
        &mut self,
        kind: Self::Kind,
        socket: Socket,
        label: ConnLabel,
        peer: Option<SocketAddr>,
        now: Now,
    ) -> Option<Box<dyn Polled>>;

    /// Registers the handler's own event sources, each under a token from `tokens`.
    fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()>;

    /// One of its sources is ready. A turn's handler events come before its clients' events,
    /// so (for example) a change on disk is known before any request of the batch is answered.
    fn ready(&mut self, token: Token, registry: &Registry, now: Now);

    /// The end of every turn, just before the loop sleeps.
    fn before_sleep(&mut self, registry: &Registry, now: Now);

    /// The nearest instant the handler needs a turn without an event, if any (`now.mono`
    /// for at once).
    fn next_wakeup(&self, now: Now) -> Option<Instant>;

    /// SIGHUP.
    fn reload(&mut self);

    /// A graceful shutdown begins: take no new work (the loop closes the listeners).
    fn begin_shutdown(&mut self, registry: &Registry);

    /// The loop has ended: whatever the handler started (a child process) is stopped.
    fn end(&mut self);

    /// What a client is lent for one call.
    fn context(&mut self, now: Now) -> Context<'_>;

    /// Each client's time limits.
    fn limits(&self) -> &Limits;
}

/// Engine settings that are not per connection.
#[derive(Debug)]
pub struct Options {
    /// Most open client connections; beyond it new ones wait in the listen backlog.
    pub max_conns: usize,
    /// How long responses in flight may take to finish after SIGTERM/SIGINT.
    pub grace_period: Duration,
    /// Called once when a graceful shutdown begins (to tell the service manager).
    pub on_shutdown: fn(),
    /// Count open clients by phase (a status listener reports them): one more call per
    /// `drive`, so only when something reads the count.
    pub census: bool,
}

/// A slab entry: one client and the loop's bookkeeping for it.
struct Slot {
    client: Box<dyn Polled>,
    /// Whether WRITABLE is part of the registered interest.
    writable_armed: bool,
    /// Closed during the current turn; removed from the slab after it.
    closed: bool,
    /// The deadline this client has in the timer set.
    timer: Instant,
    /// Its phase as `census` counts it.
    phase: Phase,
}

/// Why accepting is paused, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    Open,
    /// `max_conns` reached: resume when a client leaves.
    AtLimit,
    /// Out of descriptors: retry at this instant, or sooner when a client leaves.
    OutOfDescriptors {
        retry_at: Instant,
    },
}

struct EventLoop<'a, H: Handler> {
    poll: Poll,
    /// Emptied once shutdown has begun (the sockets close, so new clients are refused).
    listeners: Vec<(PollListener, H::Kind)>,
    signals: Signals,
    clients: Slab<Slot>,
    /// (deadline, slab key) for every open client.
    timers: BTreeSet<(Instant, usize)>,
    /// Clients closed this turn, with why.
    closed: Vec<(usize, CloseReason)>,
    /// Clients that yielded with output still to send: driven again next turn.
    yielded: Vec<usize>,
    accepting: Accepting,
    /// Set by the first SIGTERM/SIGINT: when the grace period ends.
    shutdown_deadline: Option<Instant>,
    handler: &'a mut H,
    options: Options,
    /// Accepts and open clients by phase, for the status report.
    census: Census,
}

/// Serves `listeners` from this thread until a signal ends it, `handler` deciding what each
/// client is. `signals` comes from [`shutdown_signals`], created before the server says it is
/// ready, so no early SIGTERM can meet the default action and kill it mid-start.
pub fn run<H: Handler>(
    listeners: Vec<(Listener, H::Kind)>,
    signals: Signals,
    handler: &mut H,
    options: Options,
) -> io::Result<Exit> {
    if listeners.len() > MAX_LISTENERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("more than {MAX_LISTENERS} listening sockets"),
        ));
    }
    let poll = Poll::new()?;
    let mut registered = Vec::with_capacity(listeners.len());
    for (index, (listener, kind)) in listeners.into_iter().enumerate() {
        let mut listener = PollListener::from_listener(listener)?;
        poll.registry().register(&mut listener, Token(FIRST_LISTENER + index), Interest::READABLE)?;
        registered.push((listener, kind));
    }
    let mut signals = signals;
    poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
    handler.register(poll.registry(), FIRST_HANDLER_TOKEN..FIRST_LISTENER)?;
    let mut event_loop = EventLoop {
        poll,
        listeners: registered,
        signals,
        clients: Slab::new(),
        timers: BTreeSet::new(),
        closed: Vec::new(),
        yielded: Vec::new(),
        accepting: Accepting::Open,
        shutdown_deadline: None,
        handler,
        options,
        census: Census::default(),
    };
    let exit = event_loop.run();
    event_loop.handler.end();
    exit
}

impl<H: Handler> EventLoop<'_, H> {
    fn run(&mut self) -> io::Result<Exit> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut clock = TurnClock::new();
        let mut now = clock.read();
        loop {
            // Measured from the start of this turn, not read again: a wake-up comes late by
            // at most the turn's own work, and a timer that fires early is re-armed anyway.
            let timeout = match self.yielded.is_empty() {
                true => self.next_wakeup(now).map(|at| at.saturating_duration_since(now.mono)),
                false => Some(Duration::ZERO), // yielded clients are waiting: just collect events
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                // A signal arrived while waiting (mio `Poll::poll` docs): not an error.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            now = clock.read(); // the clock is read once per loop turn
            // The handler's own sources first (see `Handler::ready`).
            for event in events.iter() {
                if (FIRST_HANDLER_TOKEN..FIRST_LISTENER).contains(&event.token().0) {
                    self.handler.ready(event.token(), self.poll.registry(), now);
                }
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        if self.handle_signals(now) == Some(Exit::Forced) {
                            return Ok(Exit::Forced);
                        }
                    }
                    Token(token) if token >= FIRST_LISTENER => self.accept_from(token - FIRST_LISTENER, now),
                    Token(token) if token >= FIRST_HANDLER_TOKEN => {}
                    Token(key) => {
                        if (event.is_read_closed() || event.is_error())
                            && let Some(slot) = self.clients.get_mut(key)
                        {
                            slot.client.note_hang_up();
                        }
                        self.drive(key, now)
                    }
                }
            }
            for key in std::mem::take(&mut self.yielded) {
                self.drive(key, now);
            }
            self.expire_timers(now);
            if let Accepting::OutOfDescriptors { retry_at } = self.accepting
                && retry_at <= now.mono
            {
                self.resume_accepting(now);
            }
            self.remove_closed(now);
            self.handler.before_sleep(self.poll.registry(), now);
            if let Some(deadline) = self.shutdown_deadline {
                if self.clients.is_empty() {
                    info!("shutdown complete");
                    return Ok(Exit::Graceful);
                }
                if deadline <= now.mono {
                    warn!("grace period over: closing {} connections", self.clients.len());
                    return Ok(Exit::Graceful);
                }
            }
        }
    }

    /// The nearest instant something must happen without an event: a client deadline, an
    /// accept retry, the end of the grace period, or the handler's.
    fn next_wakeup(&self, now: Now) -> Option<Instant> {
        let retry = match self.accepting {
            Accepting::OutOfDescriptors { retry_at } => Some(retry_at),
            _ => None,
        };
        let first_timer = self.timers.first().map(|(at, _)| *at);
        [first_timer, retry, self.shutdown_deadline, self.handler.next_wakeup(now)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Drains every listener once accepting was paused: their edges may have passed meanwhile.
    fn resume_accepting(&mut self, now: Now) {
        for index in 0..self.listeners.len() {
            self.accept_from(index, now);
        }
    }

    /// Accepts until `WouldBlock`: with edge-triggered readiness a pending connection left in
    /// the backlog would get no further event. Pauses at `max_conns` or out of descriptors.
    fn accept_from(&mut self, index: usize, now: Now) {
        let Some(&(ref listener, kind)) = self.listeners.get(index) else {
            return; // shut down since the event was queued
        };
        loop {
            if self.clients.len() >= self.options.max_conns {
                if self.accepting != Accepting::AtLimit {
                    debug!("accept paused: {} connections open", self.clients.len());
                    self.census.paused_at_limit += 1;
                }
                self.accepting = Accepting::AtLimit;
                return;
            }
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.accepting = Accepting::Open;
                    return;
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    // EMFILE/ENFILE and the like: leave clients in the backlog instead of
                    // spinning on a listener that stays readable.
                    if !matches!(self.accepting, Accepting::OutOfDescriptors { .. }) {
                        warn!(
                            "accept paused: {error}; retrying every {ACCEPT_RETRY:?} and whenever a client leaves"
                        );
                        self.census.paused_out_of_descriptors += 1;
                    }
                    self.accepting = Accepting::OutOfDescriptors { retry_at: now.mono + ACCEPT_RETRY };
                    return;
                }
            };
            self.census.accepted += 1;
            let entry = self.clients.vacant_entry();
            let key = entry.key();
            let label = ConnLabel { token: key, fd: stream.as_raw_fd() };
            if let Err(error) = stream.set_nodelay() {
                trace!("{label} set_nodelay: {error}");
            }
            if let Err(error) = self.poll.registry().register(&mut stream, Token(key), Interest::READABLE) {
                warn!("{label} register failed: {error}");
                continue;
            }
            let Some(client) = self.handler.accept(kind, stream.socket, label, peer, now) else {
                continue;
            };
            if client.speaks_first() {
                self.yielded.push(key); // driven this turn, with no event to wait for
            }
            let (deadline, _) = client.deadline(self.handler.limits());
            self.timers.insert((deadline, key));
            let phase = if self.options.census { client.phase() } else { Phase::Waiting };
            self.census.opened(phase);
            entry.insert(Slot { client, writable_armed: false, closed: false, timer: deadline, phase });
        }
    }

    fn drive(&mut self, key: usize, now: Now) {
        let Some(slot) = self.clients.get_mut(key).filter(|slot| !slot.closed) else {
            return;
        };
        // A bug that panics while serving one client must not take down the others: that
        // connection is closed and the loop goes on (tests fail on any "panicked" log line).
        let mut cx = self.handler.context(now);
        cx.census = Some(&self.census);
        let driven = panic::catch_unwind(AssertUnwindSafe(|| slot.client.drive(&mut cx)));
        let driven = driven.unwrap_or_else(|_| {
            error!("{} panicked while being served; closing it", slot.client.label());
            Verdict::Close(CloseReason::Panicked)
        });
        if self.options.census {
            let phase = slot.client.phase();
            if phase != slot.phase {
                self.census.moved(slot.phase, phase);
                slot.phase = phase;
            }
        }
        let verdict = match driven {
            Verdict::Wait { .. } if self.shutdown_deadline.is_some() && slot.client.is_idle() => {
                Verdict::Close(CloseReason::ShuttingDown)
            }
            verdict => verdict,
        };
        let reason = match verdict {
            Verdict::Close(reason) => Some(reason),
            Verdict::Yield => {
                self.yielded.push(key);
                None
            }
            Verdict::Wait { writable } if writable == slot.writable_armed => None,
            Verdict::Wait { writable } => {
                let interest =
                    if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                match self.poll.registry().reregister(slot.client.source(), Token(key), interest) {
                    Ok(()) => {
                        let sign = if writable { "+" } else { "-" };
                        trace!("{} epoll_ctl {sign}WRITABLE", slot.client.label());
                        slot.writable_armed = writable;
                        None
                    }
                    Err(error) => Some(CloseReason::from_io(&error)),
                }
            }
        };
        if let Some(reason) = reason {
            slot.closed = true;
            self.closed.push((key, reason));
            return;
        }
        // Re-arm only when the deadline moved earlier. A later one (the usual case: progress
        // pushed it back) is found when the armed timer fires early, so a busy keep-alive
        // connection costs no timer-set update per request.
        let (deadline, _) = slot.client.deadline(self.handler.limits());
        if deadline < slot.timer {
            self.rearm(key, deadline);
        }
    }

    fn rearm(&mut self, key: usize, deadline: Instant) {
        let slot = &mut self.clients[key];
        self.timers.remove(&(slot.timer, key));
        self.timers.insert((deadline, key));
        slot.timer = deadline;
    }

    fn expire_timers(&mut self, now: Now) {
        while let Some(&(deadline, key)) = self.timers.first() {
            if deadline > now.mono {
                break;
            }
            let slot = &mut self.clients[key];
            if slot.closed {
                self.timers.pop_first();
                continue;
            }
            let (actual, timeout) = slot.client.deadline(self.handler.limits());
            if actual > now.mono {
                self.rearm(key, actual); // it fired early: the connection made progress since
                continue;
            }
            self.timers.pop_first();
            slot.closed = true;
            self.closed.push((key, CloseReason::Timeout(timeout)));
        }
    }

    fn remove_closed(&mut self, now: Now) {
        if self.closed.is_empty() {
            return;
        }
        let mut cx = self.handler.context(now);
        for (key, reason) in self.closed.drain(..) {
            self.yielded.retain(|yielded| *yielded != key); // the key may soon be reused
            let slot = self.clients.remove(key);
            self.timers.remove(&(slot.timer, key));
            self.census.closed(slot.phase);
            slot.client.close(reason, &mut cx);
        }
        if self.accepting != Accepting::Open {
            self.resume_accepting(now); // a slot or a descriptor just came free
        }
    }

    /// SIGHUP reloads what the handler serves; the first SIGTERM/SIGINT starts a graceful
    /// shutdown, a second one ends the process at once.
    fn handle_signals(&mut self, now: Now) -> Option<Exit> {
        let signals: Vec<i32> = self.signals.pending().collect();
        for signal in signals {
            match signal {
                SIGHUP => self.handler.reload(),
                _ if self.shutdown_deadline.is_some() => {
                    warn!("second signal: exiting now with {} connections open", self.clients.len());
                    return Some(Exit::Forced);
                }
                _ => self.begin_shutdown(now),
            }
        }
        None
    }

    /// Stops accepting (the listening socket closes, so new clients are refused rather than
    /// left waiting), closes idle connections, and lets the rest finish what they were asked.
    fn begin_shutdown(&mut self, now: Now) {
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.handler.begin_shutdown(self.poll.registry());
        self.shutdown_deadline = Some(now.mono + self.options.grace_period);
        (self.options.on_shutdown)();
        info!(
            "shutting down: finishing {} connections within {:?}",
            self.clients.len(),
            self.options.grace_period
        );
        for (key, slot) in self.clients.iter_mut() {
            slot.client.begin_draining();
            if slot.client.is_idle() && !slot.closed {
                slot.closed = true;
                self.closed.push((key, CloseReason::ShuttingDown));
            } else if !slot.closed && !self.yielded.contains(&key) {
                // Draining may have queued bytes (HTTP/2's GOAWAY) that no event will ask for.
                self.yielded.push(key);
            }
        }
    }
}
