//! Request-head parsing: bytes in, a [`Request`] that borrows them out, and how its message
//! is framed on the connection.
//!
//! `httparse` does the tokenising; this module adds the rules httparse leaves to us: size
//! limits (414/431), version errors (505), `Host` on HTTP/1.1, and message framing
//! (`Content-Length` / `Transfer-Encoding`, RFC 9112 §6) strict enough that no body can be
//! mistaken for the next request.

use crate::http::host::is_valid_host;
use crate::http::request::{CommonFields, parse_content_length};
use crate::http::{HttpError, Method, Request, Target, Version};

/// Longest request line we accept; longer gets 414 (nginx uses 8 KiB too).
pub const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
/// Longest request head (request line + header fields + blank line); longer gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one head; more gets 431.
pub const MAX_HEADERS: usize = 64;

/// How the request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// What the head says about the connection around the request: where its body ends, and
/// whether another request may follow it (RFC 9112 §6, §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyFraming,
    pub keep_alive: bool,
}

/// The outcome of parsing the start of a buffer.
// Returned by value and consumed at once: boxing the request would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'h> {
    /// A whole head; `head_len` bytes of the buffer belong to it.
    Complete { request: Request<'h>, framing: Framing, head_len: usize },
    /// Not an error: the head has not all arrived yet.
    Partial,
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<Parsed<'_>, HttpError> {
    let request_line = |buf: &[u8]| -> usize { buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len()) };
    // Only a buffer longer than the limit can hold a request line that is (checked even on
    // a partial head, so a client cannot stream an endless line).
    if buf.len() > MAX_REQUEST_LINE_BYTES && request_line(buf) > MAX_REQUEST_LINE_BYTES {
        return Err(HttpError::UriTooLong);
    }
    // Uninitialised slots: httparse fills only those it uses, so no request pays for zeroing
    // all MAX_HEADERS of them (2 KiB).
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => Err(HttpError::HeaderFieldsTooLarge),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Ok(httparse::Status::Complete(head_len)) if head_len > MAX_HEAD_BYTES => {
            Err(HttpError::HeaderFieldsTooLarge)
        }
        Ok(httparse::Status::Complete(head_len)) => complete(&parsed, head_len),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => Err(version_error(&buf[..request_line(buf)])),
        Err(httparse::Error::HeaderName) => Err(HttpError::BadRequest("invalid header name")),
        Err(httparse::Error::HeaderValue) => Err(HttpError::BadRequest("invalid header value")),
        Err(httparse::Error::NewLine) => Err(HttpError::BadRequest("invalid line ending")),
        Err(httparse::Error::Token) => Err(HttpError::BadRequest("invalid token")),
        Err(_) => Err(HttpError::BadRequest("malformed request head")),
    }
}

/// httparse rejects every version but 1.0 and 1.1 alike; RFC 9110 §15.6.6 wants 505 only for a
/// well-formed version we do not support, and 400 for garbage.
fn version_error(request_line: &[u8]) -> HttpError {
    let line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    // RFC 9112 §3: `method SP request-target SP HTTP-version`. httparse stops at the first
    // space after the target, so a raw space inside the target (`GET /a b HTTP/1.1`) reaches
    // us as a bad version; the line has more than three parts and is malformed.
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return HttpError::BadRequest("malformed request line");
    }
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let well_formed = match version.strip_prefix(b"HTTP/") {
        Some([major]) => major.is_ascii_digit(),
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    };
    if well_formed { HttpError::VersionNotSupported } else { HttpError::BadRequest("malformed HTTP version") }
}

/// The whole outcome, built where it is returned: a request is a few hundred bytes, and
/// wrapping it afterwards would copy it.
fn complete<'h>(parsed: &httparse::Request<'_, 'h>, head_len: usize) -> Result<Parsed<'h>, HttpError> {
    // httparse only returns Complete with all three set.
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(HttpError::BadRequest("incomplete request line"));
    };
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };

    let mut hosts = 0;
    let mut host: Option<&[u8]> = None;
    let mut content_length: Option<u64> = None;
    let mut transfer_codings: Vec<String> = Vec::new();
    let (mut saw_close, mut saw_keep_alive) = (false, false);
    let mut common = CommonFields::default();
    for field in parsed.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = Some(field.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            // nginx's rule, stricter than RFC 9110 §8.6 allows: any repeat is refused, so
            // no two parties can disagree about which one counts.
            if content_length.is_some() {
                return Err(HttpError::BadFraming("duplicate Content-Length"));
            }
            content_length = Some(parse_content_length(field.value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in list_items(field.value)? {
                transfer_codings.push(coding.to_ascii_lowercase());
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_items(field.value)? {
                saw_close |= option.eq_ignore_ascii_case("close");
                saw_keep_alive |= option.eq_ignore_ascii_case("keep-alive");
            }
        } else {
            common.absorb(name, field.value);
        }
    }

    if hosts > 1 {
        return Err(HttpError::BadRequest("duplicate Host"));
    }
    if host.is_some_and(|value| !is_valid_host(value)) {
        return Err(HttpError::BadRequest("invalid Host"));
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(HttpError::BadRequest("missing Host")); // RFC 9112 §3.2
    }
    let body = framing(version, content_length, &transfer_codings)?;
    let keep_alive = match version {
        Version::Http10 => saw_keep_alive && !saw_close,
        Version::Http11 | Version::Http2 => !saw_close,
    };
    let request = common.into_request(Method::from_token(method), Target::new(target), version, host);
    Ok(Parsed::Complete { request, framing: Framing { body, keep_alive }, head_len })
}

/// RFC 9112 §6.3: decide how the body is delimited, refusing every ambiguous combination.
fn framing(
    version: Version,
    content_length: Option<u64>,
    transfer_codings: &[String],
) -> Result<BodyFraming, HttpError> {
    if transfer_codings.is_empty() {
        return Ok(match content_length {
            None | Some(0) => BodyFraming::None,
            Some(len) => BodyFraming::Length(len),
        });
    }
    if version == Version::Http10 {
        return Err(HttpError::BadFraming("Transfer-Encoding in HTTP/1.0"));
    }
    if content_length.is_some() {
        return Err(HttpError::BadFraming("Content-Length with Transfer-Encoding"));
    }
    match transfer_codings {
        [only] if only == "chunked" => Ok(BodyFraming::Chunked),
        [.., last] if last != "chunked" => Err(HttpError::BadFraming("chunked is not the final coding")),
        codings if codings.iter().filter(|c| *c == "chunked").count() > 1 => {
            Err(HttpError::BadFraming("chunked applied twice"))
        }
        _ => Err(HttpError::UnsupportedTransferCoding),
    }
}

/// The non-empty elements of a comma-separated field value (RFC 9110 §5.6.1).
fn list_items(value: &[u8]) -> Result<impl Iterator<Item = &str>, HttpError> {
    let text = std::str::from_utf8(value).map_err(|_| HttpError::BadRequest("non-ASCII list"))?;
    Ok(text.split(',').map(str::trim).filter(|item| !item.is_empty()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_and_the_logged_fields_are_kept_on_the_request() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nuser-AGENT: curl/8\r\nReferer: http://a/\r\n\r\n";
        let (request, ..) = complete(head);
        assert_eq!((request.referer, request.user_agent), (Some(&b"http://a/"[..]), Some(&b"curl/8"[..])));
        assert_eq!(request.host, Some(&b"x"[..]));
        let (bare, ..) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!((bare.referer, bare.user_agent, bare.host), (None, None, None));
    }

    use super::*;

    fn complete(bytes: &[u8]) -> (Request<'_>, Framing, usize) {
        match parse_head(bytes) {
            Ok(Parsed::Complete { request, framing, head_len }) => (request, framing, head_len),
            other => {
                panic!("expected a complete head for {:?}, got {other:?}", String::from_utf8_lossy(bytes))
            }
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let head = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
        let (request, framing, head_len) = complete(head);
        assert_eq!(head_len, head.len());
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.target.raw, "/index.html");
        assert_eq!(request.version, Version::Http11);
        assert!(framing.keep_alive);
        assert_eq!(framing.body, BodyFraming::None);
    }

    #[test]
    fn every_strict_prefix_is_partial_and_the_whole_is_complete() {
        for head in [
            &b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            &b"HEAD /b?q=1 HTTP/1.0\nUser-Agent: t\n\n"[..],
        ] {
            for end in 0..head.len() {
                assert_eq!(parse_head(&head[..end]), Ok(Parsed::Partial), "prefix {end}");
            }
            assert_eq!(complete(head).2, head.len());
        }
    }

    #[test]
    fn reports_only_the_first_head_of_a_pipelined_buffer() {
        let first = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
        let (request, _, head_len) = complete(&buf);
        assert_eq!((request.target.raw, head_len), ("/1", first.len()));
    }

    #[test]
    fn ignores_empty_lines_before_the_request_line() {
        assert_eq!(complete(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").0.target.raw, "/");
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: foo,  Keep-Alive \r\n\r\n", true),
        ];
        for (head, keep_alive) in cases {
            assert_eq!(complete(head).1.keep_alive, keep_alive, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn tells_methods_apart() {
        let method = |token: &str| {
            complete(format!("{token} / HTTP/1.1\r\nHost: x\r\n\r\n").leak().as_bytes()).0.method
        };
        assert_eq!(method("GET"), Method::Get);
        assert_eq!(method("HEAD"), Method::Head);
        assert_eq!(method("DELETE"), Method::Standard("DELETE"));
        assert_eq!(method("get"), Method::Unknown("get"));
        assert_eq!(method("BREW"), Method::Unknown("BREW"));
    }

    #[test]
    fn keeps_representation_fields_joining_lists_and_voiding_repeats() {
        let (request, ..) = complete(
            b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nif-none-match: W/\"b\" \r\n\
              Range: bytes=0-1\r\nIf-Modified-Since: Sun, 22 Nov 2026 04:45:00 GMT\r\n\
              If-Unmodified-Since: x\r\nIf-Unmodified-Since: y\r\nAccept-Encoding: gzip\r\n\r\n",
        );
        let fields = request.fields;
        assert_eq!(fields.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
        assert_eq!(fields.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(fields.if_modified_since.as_deref(), Some("Sun, 22 Nov 2026 04:45:00 GMT"));
        assert_eq!(fields.if_unmodified_since.as_deref(), Some(""));
        assert_eq!(fields.accept_encoding.as_deref(), Some("gzip"));
        assert_eq!((fields.if_match, fields.if_range), (None, None));
    }

    #[test]
    fn frames_bodies() {
        let cases: [(&[u8], BodyFraming); 4] = [
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", BodyFraming::Length(12)),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", BodyFraming::None),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", BodyFraming::Chunked),
            (b"POST / HTTP/1.0\r\nContent-Length:  7 \r\n\r\n", BodyFraming::Length(7)),
        ];
        for (head, body) in cases {
            assert_eq!(complete(head).1.body, body, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn refuses_bad_heads_with_the_right_error() {
        use HttpError::*;
        let cases: Vec<(&[u8], HttpError)> = vec![
            (b"GET / HTTP/1.1\r\n\r\n", BadRequest("missing Host")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BadRequest("duplicate Host")),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", BadRequest("invalid header name")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", BadRequest("invalid header name")),
            (b"GET / HTTP/1.1\r\nHo\rst: x\r\n\r\n", BadRequest("invalid header name")),
            (b"GET / HTTP/1.1\rHost: x\r\n\r\n", BadRequest("invalid line ending")),
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", BadRequest("invalid token")),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", VersionNotSupported),
            (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", VersionNotSupported),
            (b"PRI * HTTP/2.0\r\n\r\n", VersionNotSupported),
            (b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", BadRequest("invalid line ending")),
            (b"GET / http/1.1\r\nHost: x\r\n\r\n", BadRequest("malformed HTTP version")),
            // RFC 9112 §3: a raw space inside the target makes a malformed request line, not a
            // version we do not support.
            (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", BadRequest("malformed request line")),
            (b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n", BadRequest("malformed request line")),
            (b"GET /a HTTP/1.1 HTTP/1.1\r\nHost: x\r\n\r\n", BadRequest("invalid line ending")),
            // RFC 9110 §7.2: Host = uri-host [ ":" port ].
            (b"GET / HTTP/1.1\r\nHost: bad/host\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: user@host\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: host:80x\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: host:8:0\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: [nothex]\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: a%41:8x\r\n\r\n", BadRequest("invalid Host")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", BadFraming("invalid Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n", BadFraming("invalid Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", BadFraming("invalid Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", BadFraming("invalid Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", BadFraming("Content-Length overflows")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", BadFraming("duplicate Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", BadFraming("duplicate Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", BadFraming("Content-Length with Transfer-Encoding")),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadFraming("Transfer-Encoding in HTTP/1.0")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadFraming("chunked is not the final coding")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", BadFraming("chunked applied twice")),
            (b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferCoding),
        ];
        for (head, error) in cases {
            assert_eq!(parse_head(head), Err(error), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn accepts_every_form_of_host() {
        for host in [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com.",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::ffff:192.0.2.1]",
            "xn--bcher-kva.example",
            "a-b_c~d!$&'()*+,;=%41",
            "%41b:8080",
            "host:",
            "",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(matches!(parse_head(head.as_bytes()), Ok(Parsed::Complete { .. })), "{host:?}");
        }
    }

    #[test]
    fn enforces_size_limits_even_on_partial_heads() {
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_REQUEST_LINE_BYTES));
        assert_eq!(parse_head(long_line.as_bytes()), Err(HttpError::UriTooLong));
        let unfinished_line = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE_BYTES));
        assert_eq!(parse_head(unfinished_line.as_bytes()), Err(HttpError::UriTooLong));

        let big_field = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "v".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_head(big_field.as_bytes()), Err(HttpError::HeaderFieldsTooLarge));
        let unfinished_field = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}", "v".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_head(unfinished_field.as_bytes()), Err(HttpError::HeaderFieldsTooLarge));

        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS));
        assert_eq!(parse_head(many.as_bytes()), Err(HttpError::HeaderFieldsTooLarge));

        let just_fits = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS - 1));
        assert!(matches!(parse_head(just_fits.as_bytes()), Ok(Parsed::Complete { .. })));
    }

    #[test]
    fn never_panics_on_any_short_byte_string() {
        let alphabet = b"GET /HTP1.\r\n:0 \x00\xff";
        let mut buf = Vec::new();
        for seed in 0u32..20_000 {
            buf.clear();
            let mut x = seed.wrapping_mul(2_654_435_761);
            for _ in 0..(seed % 24) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(alphabet[x as usize % alphabet.len()]);
            }
            let _ = parse_head(&buf);
        }
    }
}
