//! The HTTP/1.1 codec (RFC 9112), sans-I/O: the wire format the HTTP/1.1 connection owns.
//!
//! Bytes in: [`parse_head`] finds a head and builds the protocol-neutral [`crate::http::Request`]
//! from it, with the [`Framing`] only this wire needs (body delimiting, persistence), and
//! [`BodyDiscard`] consumes a body exactly as framed. Plain values out: [`Head`] serializes the
//! status and fields `crate::http::respond` decided, adding the `Connection` field. Like
//! `crate::http`, it touches no socket, file, clock or logger.

mod body;
mod head;
mod parse;

#[cfg(test)]
mod properties;

pub use body::{BodyDiscard, DiscardProgress, MAX_BODY_BYTES};
pub use head::{Head, status_line};
pub use parse::{
    BodyFraming, Framing, MAX_HEAD_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES, Parsed, parse_head,
};
