//! HTTP's semantics (RFC 9110), sans-I/O: a request as plain values in, a response decided as
//! plain values out (a status, header fields, a body plan).
//!
//! No wire format lives here: the HTTP/1.1 codec (`crate::http1`) turns bytes into a
//! [`Request`] and a [`Response`] into bytes, and a second protocol's codec would do the same
//! around the same functions. Nothing here touches a socket, a file, the clock or the logger,
//! nor the codec outside tests (`scripts/check-layering.sh` enforces both), so every rule is
//! unit-tested with fixed inputs and a fixed `now`.

pub(crate) mod auth;
pub(crate) mod conditional;
pub(crate) mod date;
pub(crate) mod encoding;
pub(crate) mod error;
#[macro_use]
pub(crate) mod fields;
pub mod forwarded;
pub mod host;
pub(crate) mod listing;
pub(crate) mod mime;
pub(crate) mod path_glob;
pub(crate) mod range;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod target;

#[cfg(test)]
mod properties;

pub use date::{ImfDate, http_date};
pub use encoding::{AcceptEncoding, Choice, ContentCoding, is_compressible};
pub use error::HttpError;
pub use fields::ExtraHeader;
pub use listing::{ListingEntry, MAX_LISTED_ENTRIES, render_listing};
pub use mime::content_type;
pub use path_glob::{PathGlob, PathHeader};
pub use request::{Credentials, Method, RepresentationFields, Request, Version, https_location};
pub use response::{
    BodyPlan, FNV1A_START, FileMeta, Representation, Resource, Response, TextFormat, fnv1a,
    full_response_fields, respond,
};
pub use target::{SafePath, Target, is_hidden_name, resolve_target};

/// Every status onepoll sends, with its reason phrase: `with_statuses!(table!(args))` calls
/// `table!(args; 200 "OK", ...)`, so each table of them (reason phrases here, HTTP/1.1's
/// status lines in the codec) is built from this one list.
macro_rules! with_statuses {
    ($table:ident!($($args:tt)*)) => {
        $table!($($args)*;
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
            421 "Misdirected Request",
            431 "Request Header Fields Too Large",
            501 "Not Implemented",
            503 "Service Unavailable",
            505 "HTTP Version Not Supported",
        )
    };
}

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
    pub const MISDIRECTED_REQUEST: Status = Status(421);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);

    pub fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase (RFC 9110 §15), from the one table of statuses we send.
    pub fn reason(self) -> &'static str {
        macro_rules! reasons {
            ($code:expr; $($number:literal $reason:literal),* $(,)?) => {
                match $code {
                    $($number => $reason,)*
                    _ => "Internal Server Error",
                }
            };
        }
        with_statuses!(reasons!(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn statuses_carry_their_reason() {
        assert_eq!(Status::OK.reason(), "OK");
        assert_eq!(Status::HEADER_FIELDS_TOO_LARGE.reason(), "Request Header Fields Too Large");
        assert_eq!(Status::VERSION_NOT_SUPPORTED.reason(), "HTTP Version Not Supported");
        assert_eq!(Status(599).reason(), "Internal Server Error");
    }
}
