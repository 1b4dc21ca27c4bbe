//! The response head as HTTP/1.1 sends it (RFC 9112 §4, §5, §9.3): the status line, the field
//! lines the semantics decided, `Connection` where persistence needs saying, the blank line.

use crate::http::fields::Headers;
use crate::http::{Status, Version};

/// A response head ready for the socket: its status line (one static string per status, so no
/// response formats one) and the field block that follows it, blank line included.
#[derive(Debug)]
pub struct Head {
    pub status_line: &'static [u8],
    pub block: Vec<u8>,
}

impl Head {
    /// Serializes `status` and `headers` for a `version` client; `keep_alive` says whether the
    /// connection carries another request after this one.
    pub fn new(status: Status, mut headers: Headers, version: Version, keep_alive: bool) -> Head {
        // RFC 9112 §9.3: say `close` whenever we will close; echo `keep-alive` to HTTP/1.0
        // clients that asked for it, since for them persistence is opt-in.
        match (keep_alive, version) {
            (false, _) => headers.push(field!("Connection"), "close"),
            (true, Version::Http10) => headers.push(field!("Connection"), "keep-alive"),
            (true, Version::Http11 | Version::Http2) => {}
        }
        let mut block = headers.into_lines();
        block.extend_from_slice(b"\r\n");
        Head { status_line: status_line(status).as_bytes(), block }
    }

    /// The bytes it takes on the wire (never zero: every head has its status line).
    pub fn wire_len(&self) -> usize {
        self.status_line.len() + self.block.len()
    }

    /// The head as one buffer (tests, and the supervisor's status relay, which writes a
    /// report through a blocking socket).
    pub fn to_vec(&self) -> Vec<u8> {
        [self.status_line, &self.block].concat()
    }
}

/// `HTTP/1.1 200 OK\r\n`: HTTP/1.1 names its own version on every response, whatever the
/// request's (RFC 9110 §6.2).
pub fn status_line(status: Status) -> &'static str {
    macro_rules! lines {
        ($code:expr; $($number:literal $reason:literal),* $(,)?) => {
            match $code {
                $($number => concat!("HTTP/1.1 ", $number, " ", $reason, "\r\n"),)*
                _ => "HTTP/1.1 500 Internal Server Error\r\n",
            }
        };
    }
    with_statuses!(lines!(status.code()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::http::{FileMeta, HttpError, Resource, respond};
    use crate::http1::{Parsed, parse_head};

    #[test]
    fn status_lines_carry_their_code_and_reason() {
        for status in [Status::OK, Status::NOT_MODIFIED, Status::NOT_FOUND, Status::HEADER_FIELDS_TOO_LARGE] {
            let expected = format!("HTTP/1.1 {} {}\r\n", status.code(), status.reason());
            assert_eq!(status_line(status), expected);
        }
    }

    /// The head of the answer to `head` (a file, or `error`), as the connection would send it.
    fn answer(head: &str, error: Option<HttpError>) -> String {
        let Ok(Parsed::Complete { request, framing, .. }) = parse_head(head.as_bytes()) else {
            panic!("{head}")
        };
        let found = match error {
            Some(error) => Err(error),
            None => Ok(Resource::File(FileMeta::plain(1, None, b"a"))),
        };
        let response = respond(Some(&request), found, UNIX_EPOCH + Duration::from_secs(1_795_322_700));
        let keep_alive = framing.keep_alive && !response.ends_connection;
        let head = Head::new(response.status, response.headers, request.version, keep_alive);
        String::from_utf8(head.to_vec()).unwrap()
    }

    #[test]
    fn the_connection_field_follows_keep_alive() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, None),
            ("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", None, Some("close")),
            ("GET / HTTP/1.0\r\n\r\n", None, Some("close")),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", None, Some("keep-alive")),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", Some(HttpError::NotFound), None),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", Some(HttpError::ContentTooLarge), Some("close")),
            (
                "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                Some(HttpError::BadFraming("x")),
                Some("close"),
            ),
        ];
        for (head, error, connection) in cases {
            let text = answer(head, error.clone());
            let fields: Vec<&str> = text.lines().filter(|line| line.starts_with("Connection:")).collect();
            let expected: Vec<String> =
                connection.map(|value| format!("Connection: {value}")).into_iter().collect();
            assert_eq!(fields, expected, "{head} {error:?}");
            assert!(text.starts_with("HTTP/1.1 ") && text.ends_with("\r\n\r\n"), "{text}");
        }
    }
}
