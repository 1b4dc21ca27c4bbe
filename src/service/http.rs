//! The one place an accepted HTTP or HTTPS stream socket gets its client, for every engine:
//! HTTP/1.1 on the socket itself, or inside a TLS session. A second protocol (HTTP/2, chosen by
//! ALPN or by its connection preface) is one more variant here, and no engine changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::ServerConfig;

use crate::connection::Connection;
use crate::drive::{Client, CloseReason, ConnLabel, Context, Limits, Now, Phase, Timeout, Verdict};
use crate::tls::TlsTransport;
use crate::transport::Transport;

/// An HTTP client on a socket `T`, whatever is layered on the socket.
pub enum HttpClient<T> {
    Plain(Connection<T>),
    /// Boxed: a TLS session is several times a plain connection, and every plain one would
    /// carry that room otherwise.
    Tls(Box<Connection<TlsTransport<T>>>),
}

impl<T: Transport> HttpClient<T> {
    /// The client for `socket`, accepted from `peer` on a listener whose TLS configuration is
    /// `tls` (none: plain HTTP).
    pub fn accept(
        socket: T,
        tls: Option<&Arc<ServerConfig>>,
        label: ConnLabel,
        peer: Option<SocketAddr>,
        now: Now,
    ) -> Result<HttpClient<T>, rustls::Error> {
        Ok(match tls {
            None => HttpClient::Plain(Connection::new(socket, label, peer, now)),
            Some(config) => {
                let transport = TlsTransport::new(socket, config)?;
                HttpClient::Tls(Box::new(Connection::new(transport, label, peer, now)))
            }
        })
    }

    /// The client for a socket accepted on the status listener: plain HTTP, the reports only.
    pub fn accept_status(socket: T, label: ConnLabel, peer: Option<SocketAddr>, now: Now) -> HttpClient<T> {
        HttpClient::Plain(Connection::new(socket, label, peer, now).serving_status())
    }

    /// The socket under every layer, for an engine to register or wait on.
    pub fn socket_mut(&mut self) -> &mut T {
        match self {
            HttpClient::Plain(connection) => connection.transport_mut(),
            HttpClient::Tls(connection) => connection.transport_mut().inner_mut(),
        }
    }
}

/// Every call goes to the connection inside.
macro_rules! each {
    ($client:expr, $connection:ident => $call:expr) => {
        match $client {
            HttpClient::Plain($connection) => $call,
            HttpClient::Tls($connection) => $call,
        }
    };
}

impl<T: Transport> Client for HttpClient<T> {
    fn label(&self) -> ConnLabel {
        each!(self, connection => connection.label())
    }

    fn drive(&mut self, cx: &mut Context<'_>) -> Verdict {
        each!(self, connection => connection.drive(cx))
    }

    fn deadline(&self, limits: &Limits) -> (Instant, Timeout) {
        each!(self, connection => connection.deadline(limits))
    }

    fn is_idle(&self) -> bool {
        each!(self, connection => connection.is_idle())
    }

    fn phase(&self) -> Phase {
        each!(self, connection => connection.phase())
    }

    fn note_hang_up(&mut self) {
        each!(self, connection => connection.note_hang_up())
    }

    fn begin_draining(&mut self) {
        each!(self, connection => connection.begin_draining())
    }

    fn close(self: Box<Self>, reason: CloseReason, cx: &mut Context<'_>) {
        let mut client = *self;
        each!(&mut client, connection => connection.finish(reason, cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stream::Stream;

    /// Why the TLS variant is boxed: a plain connection pays at most the variant's tag for
    /// the choice, not a TLS session's room.
    #[test]
    fn a_plain_client_costs_its_connection_and_a_tag_at_most() {
        let connection = size_of::<Connection<Stream>>();
        assert!(size_of::<HttpClient<Stream>>() <= connection + size_of::<usize>());
        assert!(size_of::<Connection<TlsTransport<Stream>>>() > 2 * connection);
    }
}
