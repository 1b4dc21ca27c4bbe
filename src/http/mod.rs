//! The HTTP/1.1 protocol core, sans-I/O: bytes and plain values in, plain values out.
//!
//! Nothing here touches a socket, a file, the clock or the logger (`scripts/check-layering.sh`
//! enforces it), so every rule is unit-tested with fixed inputs and a fixed `now`. Engines are
//! thin shells that move bytes between sockets and these functions.

pub mod auth;
pub mod body;
pub mod conditional;
pub mod date;
pub mod encoding;
pub mod error;
#[macro_use]
pub mod fields;
pub mod listing;
pub mod mime;
pub mod path_glob;
pub mod range;
pub mod request;
pub mod response;
pub mod target;

#[cfg(test)]
mod properties;

pub use body::{BodyDiscard, DiscardProgress};
pub use date::{ImfDate, http_date};
pub use encoding::{AcceptEncoding, Choice, ContentCoding, is_compressible};
pub use error::HttpError;
pub use fields::ExtraHeader;
pub use listing::{ListingEntry, MAX_LISTED_ENTRIES, render_listing};
pub use mime::content_type;
pub use path_glob::{PathGlob, PathHeader};
pub use request::{
    BodyFraming, Credentials, Method, Parsed, RepresentationFields, Request, Version, https_location,
    parse_head,
};
pub use response::{
    BodyPlan, FNV1A_START, FileMeta, Representation, Resource, Response, fnv1a, full_response_fields, respond,
};
pub use target::{SafePath, Target, is_hidden_name, resolve_target};

/// Longest request line we accept; longer gets 414 (nginx uses 8 KiB too).
pub const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
/// Longest request head (request line + header fields + blank line); longer gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one head; more gets 431.
pub const MAX_HEADERS: usize = 64;
/// Largest request body we read and throw away; larger gets 413 and a close.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// An HTTP status code with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const PERMANENT_REDIRECT: Status = Status(308);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const NOT_ACCEPTABLE: Status = Status(406);
    pub const PRECONDITION_FAILED: Status = Status(412);
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);

    pub fn code(self) -> u16 {
        self.0
    }

    /// The status line as sent, `HTTP/1.1 200 OK\r\n` (RFC 9112 §4): one static string per
    /// status, so no response formats it.
    pub fn line(self) -> &'static str {
        macro_rules! lines {
            ($($code:literal $reason:literal),* $(,)?) => {
                match self.0 {
                    $($code => concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n"),)*
                    _ => "HTTP/1.1 500 Internal Server Error\r\n",
                }
            };
        }
        lines!(
            200 "OK",
            206 "Partial Content",
            301 "Moved Permanently",
            304 "Not Modified",
            308 "Permanent Redirect",
            400 "Bad Request",
            401 "Unauthorized",
            403 "Forbidden",
            404 "Not Found",
            405 "Method Not Allowed",
            406 "Not Acceptable",
            412 "Precondition Failed",
            413 "Content Too Large",
            414 "URI Too Long",
            416 "Range Not Satisfiable",
            431 "Request Header Fields Too Large",
            501 "Not Implemented",
            503 "Service Unavailable",
            505 "HTTP Version Not Supported",
        )
    }

    /// The reason phrase: the status line between the code and the CRLF.
    pub fn reason(self) -> &'static str {
        let line = self.line();
        &line["HTTP/1.1 200 ".len()..line.len() - 2]
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn status_lines_carry_their_code_and_reason() {
        for status in [Status::OK, Status::NOT_MODIFIED, Status::NOT_FOUND, Status::HEADER_FIELDS_TOO_LARGE] {
            let expected = format!("HTTP/1.1 {} {}\r\n", status.code(), status.reason());
            assert_eq!(status.line(), expected);
        }
        assert_eq!(Status::HEADER_FIELDS_TOO_LARGE.reason(), "Request Header Fields Too Large");
        assert_eq!(Status(599).line(), "HTTP/1.1 500 Internal Server Error\r\n");
    }
}
