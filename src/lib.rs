//! onepoll: a small, fast HTTP/1.1 static-file server built around one mio `Poll` loop.
//!
//! A request flows: `engine` (socket readiness; the `drive` contract) → `service` (which
//! client an accepted socket gets, and what it is lent: the `site`, the access log, the file
//! cache) → `connection` (per-connection state machine) → `http` (sans-I/O protocol core:
//! parse, resolve, decide) → `files` (the filesystem edge) → `output` (head bytes and file
//! ranges back to the socket).

// `unsafe` lives in `sys`, one syscall wrapper at a time, each with its SAFETY line.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access_log;
pub mod auth;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod drive;
pub mod engine;
pub mod files;
pub mod http;
pub mod listen;
pub mod output;
pub mod recycle;
pub mod seed;
pub mod service;
pub mod site;
pub mod supervisor;
#[allow(unsafe_code)]
mod sys;
pub mod tls;
pub mod transport;
