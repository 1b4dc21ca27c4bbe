//! Engines: the shells that move bytes between sockets and a client (for HTTP, the
//! [`crate::service::http::HttpClient`] every engine gets from the same place).
//! All of them share the protocol core, the connection state machine and the output code; they
//! differ only in how they wait. The event loop is the default and the point of the project.

pub mod blocking;
#[cfg(feature = "coroutine")]
pub mod coroutine;
pub mod event_loop;
pub mod process_per_conn;
pub mod serial;
pub(crate) mod stream;
pub mod thread_per_conn;
pub mod thread_pool;

use std::time::Duration;

/// How long accepting pauses after it failed for want of a resource (EMFILE, ENFILE, ENOMEM)
/// before it is tried again, in every engine: long enough not to spin, short enough that
/// clients in the backlog barely notice.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(250);

/// How an engine that stops on signals ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// After SIGTERM/SIGINT, once in-flight responses finished or the grace period ran out.
    Graceful,
    /// A second SIGTERM/SIGINT during the grace period.
    Forced,
}

/// Which engine serves (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// One mio `Poll` loop on one thread (default).
    EventLoop,
    /// Blocking, one client at a time.
    Serial,
    /// Blocking, one thread per connection.
    ThreadPerConn,
    /// Blocking, a fixed pool of `--threads` workers fed by a bounded queue.
    ThreadPool,
    /// Blocking, one forked process per connection.
    ProcessPerConn,
    /// One tokio task per connection on a single-threaded runtime.
    #[cfg(feature = "coroutine")]
    Coroutine,
}
