//! onepoll: a small, fast HTTP/1.1 static-file server built around one mio `Poll` loop.
//!
//! A request flows: `engine` (socket readiness; the `drive` contract) → `service` (which
//! client an accepted socket gets, and what it is lent: the `site`, the access log, the file
//! cache) → `connection` (per-connection state machine) → `http1` (HTTP/1.1's wire format:
//! parse a head, frame a body, write a head) and `http` (HTTP's meaning, sans-I/O: resolve,
//! decide) → `files` (the filesystem edge) → `output` (head bytes and file ranges back to the
//! socket).

// `unsafe` lives in `sys`, one syscall wrapper at a time, each with its SAFETY line.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access_log;
#[cfg(feature = "acme")]
pub mod acme;
pub mod auth;
pub mod config;
pub mod connection;
pub mod connection_h2;
pub mod daemon;
pub mod drive;
pub mod engine;
pub mod exchange;
pub mod files;
#[macro_use]
pub mod http;
pub mod http1;
pub mod http2;
pub mod listen;
pub mod logging;
pub(crate) mod output;
pub(crate) mod recycle;
pub mod seed;
pub mod service;
pub mod site;
pub mod status;
pub mod supervisor;
#[allow(unsafe_code)]
mod sys;
pub mod tls;
pub mod transport;
