//! Every way a request can fail, as one type that knows its status code and whether the
//! connection can survive it. Nothing outside `src/http/` picks a status: a connection hands
//! the error to [`super::respond`], whose error page is the one place that turns it into a
//! response.

use super::Status;

/// Why a request cannot be served as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The head is not valid HTTP/1.x (the reason is for logs only, never sent).
    BadRequest(&'static str),
    /// The message body is framed in a way we refuse to guess at (RFC 9112 §6.3).
    BadFraming(&'static str),
    /// A transfer coding we do not implement (RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// The target names nothing servable.
    NotFound,
    /// The target exists but must not be served (outside the root, not a regular file, EACCES).
    Forbidden,
    /// An `If-Match` or `If-Unmodified-Since` precondition does not hold (RFC 9110 §13.1).
    PreconditionFailed,
    /// A valid `Range` none of whose ranges overlaps the file (RFC 9110 §14.1.1).
    RangeNotSatisfiable,
    /// The path needs credentials (`--auth-file`) and the request has none that verify; the
    /// `WWW-Authenticate` challenge to send.
    Unauthorized(std::sync::Arc<str>),
    /// Too many passwords to check this second (a flood): try again in a second.
    AuthenticationBusy,
    /// The client refuses the identity representation and accepts no coding we have
    /// (`Accept-Encoding: br, identity;q=0`, RFC 9110 §12.5.3).
    NotAcceptable,
    /// The server ran out of a resource (descriptors) opening the file; try again later.
    ServiceUnavailable,
    /// A standard method that a static server does not allow.
    MethodNotAllowed,
    /// A method token we do not know at all.
    NotImplemented,
    /// The declared or decoded body exceeds `MAX_BODY_BYTES`.
    ContentTooLarge,
    /// The request line exceeds `MAX_REQUEST_LINE_BYTES`.
    UriTooLong,
    /// The head exceeds `MAX_HEAD_BYTES` or `MAX_HEADERS`.
    HeaderFieldsTooLarge,
    /// A well-formed `HTTP/x.y` other than 1.0 and 1.1.
    VersionNotSupported,
    /// Plain HTTP sent to a port that speaks HTTPS (answered in plain text, as nginx does).
    PlainHttpOnHttpsPort,
    /// Over TLS, the request names a site the negotiated certificate is not one of (RFC 9110
    /// §15.5.20): the client should ask again on a connection made for that name.
    Misdirected,
}

impl HttpError {
    pub fn status(&self) -> Status {
        match self {
            HttpError::BadRequest(_) | HttpError::BadFraming(_) | HttpError::PlainHttpOnHttpsPort => {
                Status::BAD_REQUEST
            }
            HttpError::UnsupportedTransferCoding | HttpError::NotImplemented => Status::NOT_IMPLEMENTED,
            HttpError::NotFound => Status::NOT_FOUND,
            HttpError::Forbidden => Status::FORBIDDEN,
            HttpError::NotAcceptable => Status::NOT_ACCEPTABLE,
            HttpError::Unauthorized(_) => Status::UNAUTHORIZED,
            HttpError::AuthenticationBusy => Status::SERVICE_UNAVAILABLE,
            HttpError::ServiceUnavailable => Status::SERVICE_UNAVAILABLE,
            HttpError::PreconditionFailed => Status::PRECONDITION_FAILED,
            HttpError::RangeNotSatisfiable => Status::RANGE_NOT_SATISFIABLE,
            HttpError::MethodNotAllowed => Status::METHOD_NOT_ALLOWED,
            HttpError::ContentTooLarge => Status::CONTENT_TOO_LARGE,
            HttpError::UriTooLong => Status::URI_TOO_LONG,
            HttpError::HeaderFieldsTooLarge => Status::HEADER_FIELDS_TOO_LARGE,
            HttpError::VersionNotSupported => Status::VERSION_NOT_SUPPORTED,
            HttpError::Misdirected => Status::MISDIRECTED_REQUEST,
        }
    }

    /// True when the bytes after this request can no longer be trusted to start a new one,
    /// so the response must carry `Connection: close` (RFC 9112 §9.6).
    pub fn closes_connection(&self) -> bool {
        match self {
            HttpError::NotFound
            | HttpError::Forbidden
            | HttpError::NotAcceptable
            | HttpError::Unauthorized(_)
            | HttpError::AuthenticationBusy
            | HttpError::PreconditionFailed
            | HttpError::RangeNotSatisfiable
            | HttpError::ServiceUnavailable
            | HttpError::MethodNotAllowed
            | HttpError::NotImplemented
            | HttpError::Misdirected => false,
            HttpError::BadRequest(_)
            | HttpError::BadFraming(_)
            | HttpError::UnsupportedTransferCoding
            | HttpError::ContentTooLarge
            | HttpError::UriTooLong
            | HttpError::HeaderFieldsTooLarge
            | HttpError::VersionNotSupported
            | HttpError::PlainHttpOnHttpsPort => true,
        }
    }

    /// A sentence for the error page when the status alone would leave the client guessing.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            HttpError::PlainHttpOnHttpsPort => Some("This port speaks HTTPS: use an https:// URL."),
            _ => None,
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status();
        match self {
            HttpError::BadRequest(why) | HttpError::BadFraming(why) => {
                write!(f, "{} {}: {why}", status.code(), status.reason())
            }
            HttpError::PlainHttpOnHttpsPort => {
                write!(f, "{} {}: plain HTTP on an HTTPS port", status.code(), status.reason())
            }
            _ => write!(f, "{} {}", status.code(), status.reason()),
        }
    }
}
