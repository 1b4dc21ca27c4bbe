//! onepoll: a small, fast HTTP/1.1 static-file server built around one mio `Poll` loop.
//!
//! Data flows `engine` (sockets) → `http` (sans-I/O protocol core) → `files` (the filesystem
//! edge) → `output` (bytes and file ranges back to the socket).

pub mod http;
