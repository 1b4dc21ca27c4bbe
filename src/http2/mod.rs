//! HTTP/2's wire format (RFC 9113), sans-I/O: header compression ([`hpack`]), frames, and the
//! connection's state machine: bytes in, frames out, no sockets.

pub mod connection;
pub mod frame;
pub mod hpack;
mod huffman;
pub mod request;
