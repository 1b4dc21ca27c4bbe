//! A request as plain values: what was asked (method, target, authority) and the fields that
//! select, validate and authorise the answer, whatever wire format carried them. The
//! HTTP/1.1 codec (`crate::http1`) builds one from a head; a second protocol would build the
//! same from its own frames.

use std::borrow::Cow;

use super::host::without_port;
use super::{HttpError, Target};

/// The request methods we tell apart. Only GET and HEAD are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method<'h> {
    Get,
    Head,
    /// A method registered for HTTP (RFC 9110 §9, RFC 5789) that a static server refuses with 405.
    Standard(&'static str),
    /// A token we do not know; refused with 501.
    Unknown(&'h str),
}

impl<'h> Method<'h> {
    pub(crate) fn from_token(token: &'h str) -> Method<'h> {
        const STANDARD: [&str; 7] = ["POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            other => match STANDARD.iter().find(|m| **m == other) {
                Some(standard) => Method::Standard(standard),
                None => Method::Unknown(other),
            },
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Standard(name) => name,
            Method::Unknown(name) => name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// Every HTTP/2 stream's request.
    Http2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2.0",
        }
    }
}

/// A request head: everything later steps need, borrowed from the bytes it was parsed from
/// (the connection's input buffer), so answering a request copies none of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'h> {
    pub method: Method<'h>,
    /// The request-target exactly as sent (`raw`), and its path once resolved.
    pub target: Target<'h>,
    pub version: Version,
    /// The fields that select and validate the representation.
    pub fields: RepresentationFields<'h>,
    /// `Authorization`, for `--auth-file` (a repeated field is kept empty: malformed).
    pub authorization: Option<Credentials<'h>>,
    /// The authority (`Host`, checked: a name, IPv4 or `[IPv6]`, and a port), if sent: what a
    /// root per host and the responses that name this server go by.
    /// ASCII, as `is_valid_host` accepts nothing else; kept as bytes, since most requests
    /// never read it as text.
    pub host: Option<&'h [u8]>,
    /// `Referer` and `User-Agent` as sent (the first of each), for the access log.
    pub referer: Option<&'h [u8]>,
    pub user_agent: Option<&'h [u8]>,
    /// Every `X-Forwarded-For` line, joined: the access log's client behind a trusted proxy.
    pub forwarded_for: Option<Cow<'h, str>>,
}

/// An `Authorization` value as sent. Its `Debug` shows nothing of it, so no log of a request
/// can carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials<'h>(pub Cow<'h, str>);

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// Request fields about the representation: preconditions (RFC 9110 §13), ranges (§14) and
/// content codings (§12.5.3). Kept as sent (borrowed; owned only when a list field came on
/// several lines and was joined, or held bytes that are not UTF-8); `conditional`, `range` and
/// `encoding` interpret them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepresentationFields<'h> {
    pub if_match: Option<Cow<'h, str>>,
    pub if_none_match: Option<Cow<'h, str>>,
    pub if_modified_since: Option<Cow<'h, str>>,
    pub if_unmodified_since: Option<Cow<'h, str>>,
    pub if_range: Option<Cow<'h, str>>,
    pub range: Option<Cow<'h, str>>,
    pub accept_encoding: Option<Cow<'h, str>>,
}

impl<'h> RepresentationFields<'h> {
    /// Takes the field if it is one of ours. List fields sent on several lines are joined with
    /// commas (RFC 9110 §5.3); a repeated single-valued field becomes empty, i.e. invalid, so
    /// it is ignored rather than guessed at.
    pub(crate) fn absorb(&mut self, name: &str, value: &'h [u8]) {
        let (slot, is_list) = match name.len() {
            5 if name.eq_ignore_ascii_case("range") => (&mut self.range, false),
            8 if name.eq_ignore_ascii_case("if-match") => (&mut self.if_match, true),
            8 if name.eq_ignore_ascii_case("if-range") => (&mut self.if_range, false),
            13 if name.eq_ignore_ascii_case("if-none-match") => (&mut self.if_none_match, true),
            15 if name.eq_ignore_ascii_case("accept-encoding") => (&mut self.accept_encoding, true),
            17 if name.eq_ignore_ascii_case("if-modified-since") => (&mut self.if_modified_since, false),
            19 if name.eq_ignore_ascii_case("if-unmodified-since") => (&mut self.if_unmodified_since, false),
            _ => return,
        };
        let value = String::from_utf8_lossy(value.trim_ascii());
        match slot {
            Some(repeated) if !is_list => *repeated = Cow::Borrowed(""),
            _ => join_list(slot, value),
        }
    }
}

/// The fields every protocol reads the same way, from HTTP/1.1 lines or HTTP/2 header lists:
/// what selects and validates the representation, `Authorization`, and the access log's.
#[derive(Debug, Default)]
pub(crate) struct CommonFields<'h> {
    pub fields: RepresentationFields<'h>,
    pub authorization: Option<Credentials<'h>>,
    pub referer: Option<&'h [u8]>,
    pub user_agent: Option<&'h [u8]>,
    pub forwarded_for: Option<Cow<'h, str>>,
}

impl<'h> CommonFields<'h> {
    /// Takes the field `name` (any case) if it is one of these.
    pub(crate) fn absorb(&mut self, name: &str, value: &'h [u8]) {
        if name.eq_ignore_ascii_case("authorization") {
            self.authorization = Some(Credentials(match self.authorization {
                None => String::from_utf8_lossy(value.trim_ascii()),
                Some(_) => Cow::Borrowed(""), // repeated: malformed
            }));
        } else if name.len() == 7 && name.eq_ignore_ascii_case("referer") {
            self.referer.get_or_insert(value);
        } else if name.len() == 10 && name.eq_ignore_ascii_case("user-agent") {
            self.user_agent.get_or_insert(value);
        } else if name.len() == 15 && name.eq_ignore_ascii_case("x-forwarded-for") {
            join_list(&mut self.forwarded_for, String::from_utf8_lossy(value.trim_ascii()));
        } else {
            self.fields.absorb(name, value);
        }
    }

    /// The request these fields belong to.
    pub(crate) fn into_request(
        self,
        method: Method<'h>,
        target: Target<'h>,
        version: Version,
        host: Option<&'h [u8]>,
    ) -> Request<'h> {
        let CommonFields { fields, authorization, referer, user_agent, forwarded_for } = self;
        Request { method, target, version, fields, authorization, host, referer, user_agent, forwarded_for }
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6); no sign, no list, no overflow.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadFraming("invalid Content-Length"));
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(HttpError::BadFraming("Content-Length overflows"))
}

/// A list field's line added to the lines before it (RFC 9110 §5.3: several lines mean the
/// same as one, joined with commas); borrowed until a second line comes.
pub(crate) fn join_list<'h>(slot: &mut Option<Cow<'h, str>>, value: Cow<'h, str>) {
    match slot {
        None => *slot = Some(value),
        Some(joined) => {
            let joined = joined.to_mut();
            joined.push_str(", ");
            joined.push_str(&value);
        }
    }
}

/// Where `--https-redirect` sends a plain-HTTP request: the same host and target on HTTPS
/// at `https_port`. `None` for ACME HTTP-01 challenges (RFC 8555 §8.3: they must be served
/// over plain HTTP) and when there is no `Host` to name.
pub fn https_location(request: &Request<'_>, https_port: u16) -> Option<String> {
    // A name, an IPv4 address or a bracketed IPv6 one (the parser checked), its port dropped.
    let name = request.host.and_then(without_port).and_then(|name| std::str::from_utf8(name).ok());
    let name = name.filter(|name| !name.is_empty())?;
    // The target as a path: origin-form as is, absolute-form without its scheme and authority.
    let target = request.target.raw;
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        None if target.starts_with('/') => target,
        None => "/",
    };
    if path.starts_with("/.well-known/acme-challenge/") {
        return None;
    }
    Some(match https_port {
        443 => format!("https://{name}{path}"),
        port => format!("https://{name}:{port}{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{Parsed, parse_head};

    fn request(head: &str) -> Request<'_> {
        match parse_head(head.as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn https_locations_keep_host_and_target_and_spare_acme_challenges() {
        let at = |target: &str| request(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").leak());
        let cases = [
            ("/a/b?c=d", Some("example.org:8080"), 443, Some("https://example.org/a/b?c=d")),
            ("/", Some("example.org"), 8443, Some("https://example.org:8443/")),
            ("/x", Some("[::1]:8080"), 443, Some("https://[::1]/x")),
            ("/x", Some("127.0.0.1"), 4443, Some("https://127.0.0.1:4443/x")),
            ("http://other.example/p?q", Some("h"), 443, Some("https://h/p?q")),
            ("//evil.example/", Some("h"), 443, Some("https://h//evil.example/")),
            ("/.well-known/acme-challenge/token", Some("h"), 443, None),
            ("/.well-known/security.txt", Some("h"), 443, Some("https://h/.well-known/security.txt")),
            ("/x", None, 443, None),
            ("/x", Some(""), 443, None),
        ];
        for (target, host, port, expected) in cases {
            let request = Request { host: host.map(str::as_bytes), ..at(target) };
            assert_eq!(https_location(&request, port).as_deref(), expected, "{target} {host:?}");
        }
    }
}
