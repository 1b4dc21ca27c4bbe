//! The decision function and the response-head serializer.
//!
//! [`respond`] turns (request, what the filesystem found, `now`) into a [`Response`]: a status,
//! its header fields and a [`BodyPlan`]. It never sees a file handle; the engine pairs the plan
//! with the file it opened. Every error status is produced here and nowhere else.

use std::time::SystemTime;

use super::{HttpError, Method, Request, SafePath, Status, Version};

/// The `Server` field we send.
pub const SERVER_NAME: &str = concat!("onepoll/", env!("CARGO_PKG_VERSION"));

/// What the filesystem edge found for a path, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A regular file to serve.
    File(FileMeta<'a>),
    /// A directory named without its trailing slash: redirect to `location`.
    DirectoryWithoutSlash { location: String },
}

/// The facts about a file that the response depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta<'a> {
    pub len: u64,
    pub modified: Option<SystemTime>,
    /// The file's own name (after `index.html` substitution), for `Content-Type`.
    pub name: &'a [u8],
}

/// Where the response body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body: HEAD, or a status that has none.
    Empty,
    /// A small generated page (errors, redirects).
    Page(String),
    /// `len` bytes of the opened file from `offset`.
    File { offset: u64, len: u64 },
}

/// A response decided but not yet serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    /// Header fields in the order they are sent, `Date` and `Server` included.
    pub headers: Vec<(&'static str, String)>,
    pub body: BodyPlan,
    /// False when the connection must close after this response.
    pub keep_alive: bool,
}

impl Response {
    /// The value of the first field called `name` (ASCII case-insensitive), for tests and logs.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Serializes the status line and header section (RFC 9112 §4, §5).
    pub fn write_head(&self, out: &mut Vec<u8>) {
        let code = self.status.code();
        let digits = [code / 100, code / 10 % 10, code % 10].map(|digit| b'0' + digit as u8);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&digits);
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl Request {
    /// The path this request may be served from: only GET and HEAD get as far as the
    /// filesystem; every other method is refused before the target is even looked at.
    pub fn servable_path(&self) -> Result<SafePath, HttpError> {
        match self.method {
            Method::Get | Method::Head => super::resolve_target(&self.target),
            Method::Standard(_) => Err(HttpError::MethodNotAllowed),
            Method::Unknown(_) => Err(HttpError::NotImplemented),
        }
    }
}

/// The decision function: what to answer to `request`, given what the filesystem found.
///
/// `request` is `None` when the head could not be parsed at all.
pub fn respond(
    request: Option<&Request>,
    found: Result<Resource<'_>, HttpError>,
    now: SystemTime,
) -> Response {
    let Some(request) = request else {
        let error = found.err().unwrap_or(HttpError::BadRequest("no request"));
        return error_page(&error, None, now);
    };
    match found {
        Ok(Resource::File(meta)) => file_response(request, &meta, now),
        Ok(Resource::DirectoryWithoutSlash { location }) => redirect(request, location, now),
        Err(error) => error_page(&error, Some(request), now),
    }
}

fn file_response(request: &Request, meta: &FileMeta<'_>, now: SystemTime) -> Response {
    let mut headers = common_headers(now);
    headers.push(("Content-Type", content_type(meta.name).to_owned()));
    headers.push(("Content-Length", meta.len.to_string()));
    if let Some(modified) = meta.modified {
        // RFC 9110 §8.8.2.1: never claim a modification time in the future.
        headers.push(("Last-Modified", httpdate::fmt_http_date(modified.min(now))));
    }
    push_connection(&mut headers, request.version, request.keep_alive);
    let body = match request.method {
        Method::Head => BodyPlan::Empty,
        _ => BodyPlan::File {
            offset: 0,
            len: meta.len,
        },
    };
    Response {
        status: Status::OK,
        headers,
        body,
        keep_alive: request.keep_alive,
    }
}

fn redirect(request: &Request, location: String, now: SystemTime) -> Response {
    let mut response = page(
        Status::MOVED_PERMANENTLY,
        Some(request),
        request.keep_alive,
        now,
    );
    response.headers.insert(2, ("Location", location));
    response
}

fn error_page(error: &HttpError, request: Option<&Request>, now: SystemTime) -> Response {
    let keep_alive = request.is_some_and(|r| r.keep_alive) && !error.closes_connection();
    let mut response = page(error.status(), request, keep_alive, now);
    if *error == HttpError::MethodNotAllowed {
        response
            .headers
            .insert(2, ("Allow", "GET, HEAD".to_owned())); // RFC 9110 §15.5.6
    }
    response
}

/// A status with a small HTML page explaining it.
fn page(status: Status, request: Option<&Request>, keep_alive: bool, now: SystemTime) -> Response {
    let (code, reason) = (status.code(), status.reason());
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><hr><p>{SERVER_NAME}</p></body></html>\n"
    );
    let mut headers = common_headers(now);
    headers.push(("Content-Type", "text/html; charset=utf-8".to_owned()));
    headers.push(("Content-Length", html.len().to_string()));
    push_connection(
        &mut headers,
        request.map_or(Version::Http11, |r| r.version),
        keep_alive,
    );
    let body = match request.map(|r| &r.method) {
        Some(Method::Head) => BodyPlan::Empty,
        _ => BodyPlan::Page(html),
    };
    Response {
        status,
        headers,
        body,
        keep_alive,
    }
}

fn common_headers(now: SystemTime) -> Vec<(&'static str, String)> {
    vec![
        ("Server", SERVER_NAME.to_owned()),
        ("Date", httpdate::fmt_http_date(now)),
    ]
}

/// RFC 9112 §9.3: say `close` whenever we will close; echo `keep-alive` to HTTP/1.0 clients
/// that asked for it, since for them persistence is opt-in.
fn push_connection(headers: &mut Vec<(&'static str, String)>, version: Version, keep_alive: bool) {
    match (keep_alive, version) {
        (false, _) => headers.push(("Connection", "close".to_owned())),
        (true, Version::Http10) => headers.push(("Connection", "keep-alive".to_owned())),
        (true, Version::Http11) => {}
    }
}

/// `Content-Type` from the file name: our own table for the types browsers are strict about
/// (module scripts, wasm streaming compile), then `mime_guess`; text gets an explicit charset.
pub fn content_type(name: &[u8]) -> &'static str {
    let extension = name
        .rsplit(|&b| b == b'.')
        .next()
        .filter(|ext| ext.len() < name.len())
        .and_then(|ext| std::str::from_utf8(ext).ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "" => "application/octet-stream",
        other => mime_guess::from_ext(other)
            .first_raw()
            .unwrap_or("application/octet-stream"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::http::{BodyFraming, Parsed, parse_head};

    /// 2026-11-22 04:45:00 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_322_700)
    }

    fn request(head: &str) -> Request {
        match parse_head(head.as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    fn file(len: u64, name: &[u8]) -> Result<Resource<'_>, HttpError> {
        Ok(Resource::File(FileMeta {
            len,
            modified: Some(now() - Duration::from_secs(60)),
            name,
        }))
    }

    fn head_text(response: &Response) -> String {
        let mut out = Vec::new();
        response.write_head(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn serves_a_file_with_every_header() {
        let get = request("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = respond(Some(&get), file(1234, b"index.html"), now());
        assert_eq!(
            head_text(&response),
            format!(
                "HTTP/1.1 200 OK\r\nServer: {SERVER_NAME}\r\nDate: Sun, 22 Nov 2026 04:45:00 GMT\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n\
                 Last-Modified: Sun, 22 Nov 2026 04:44:00 GMT\r\n\r\n"
            )
        );
        assert_eq!(
            response.body,
            BodyPlan::File {
                offset: 0,
                len: 1234
            }
        );
        assert!(response.keep_alive);
    }

    #[test]
    fn head_gets_the_same_fields_and_no_body() {
        let get = respond(
            Some(&request("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
            file(10, b"a.css"),
            now(),
        );
        let head = respond(
            Some(&request("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")),
            file(10, b"a.css"),
            now(),
        );
        assert_eq!(head.headers, get.headers);
        assert_eq!(head.body, BodyPlan::Empty);
        let missing = respond(
            Some(&request("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")),
            Err(HttpError::NotFound),
            now(),
        );
        assert_eq!(missing.body, BodyPlan::Empty);
        assert_ne!(missing.header("Content-Length"), Some("0"));
    }

    #[test]
    fn never_claims_a_future_modification_time() {
        let get = request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let future = FileMeta {
            len: 1,
            modified: Some(now() + Duration::from_secs(3600)),
            name: b"a",
        };
        let response = respond(Some(&get), Ok(Resource::File(future)), now());
        assert_eq!(response.header("Last-Modified"), response.header("Date"));
    }

    #[test]
    fn connection_field_follows_keep_alive() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, true),
            (
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Some("close"),
                false,
            ),
            ("GET / HTTP/1.0\r\n\r\n", Some("close"), false),
            (
                "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                Some("keep-alive"),
                true,
            ),
        ];
        for (head, field, keep_alive) in cases {
            let response = respond(Some(&request(head)), file(1, b"a"), now());
            assert_eq!(
                (response.header("Connection"), response.keep_alive),
                (field, keep_alive),
                "{head}"
            );
        }
    }

    #[test]
    fn errors_become_small_pages_with_the_right_status_and_close() {
        let get = request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let cases = [
            (HttpError::NotFound, 404, true),
            (HttpError::Forbidden, 403, true),
            (HttpError::MethodNotAllowed, 405, true),
            (HttpError::NotImplemented, 501, true),
            (HttpError::BadRequest("x"), 400, false),
            (HttpError::ContentTooLarge, 413, false),
            (HttpError::UnsupportedTransferCoding, 501, false),
        ];
        for (error, code, keep_alive) in cases {
            let response = respond(Some(&get), Err(error.clone()), now());
            assert_eq!(response.status.code(), code, "{error}");
            assert_eq!(response.keep_alive, keep_alive, "{error}");
            assert_eq!(
                response.header("Connection"),
                (!keep_alive).then_some("close")
            );
            let BodyPlan::Page(html) = &response.body else {
                panic!("no page for {error}")
            };
            assert!(html.contains(&format!("<title>{code} ")), "{html}");
            assert_eq!(
                response.header("Content-Length"),
                Some(html.len().to_string().as_str())
            );
            assert_eq!(
                response.header("Content-Type"),
                Some("text/html; charset=utf-8")
            );
        }
    }

    #[test]
    fn unparseable_heads_get_a_closing_error() {
        for error in [
            HttpError::UriTooLong,
            HttpError::HeaderFieldsTooLarge,
            HttpError::VersionNotSupported,
        ] {
            let response = respond(None, Err(error.clone()), now());
            assert_eq!(response.status, error.status());
            assert_eq!(response.header("Connection"), Some("close"));
            assert!(!response.keep_alive);
        }
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_ones() {
        let post = request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(post.body, BodyFraming::Length(1));
        let response = respond(
            Some(&post),
            post.servable_path().map(|_| unreachable!()),
            now(),
        );
        assert_eq!(response.status, Status::METHOD_NOT_ALLOWED);
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
    }

    #[test]
    fn only_get_and_head_reach_the_filesystem() {
        let path = |head: &str| request(head).servable_path();
        assert!(path("GET /a HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert!(path("HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert_eq!(
            path("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HttpError::MethodNotAllowed)
        );
        assert_eq!(
            path("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HttpError::NotImplemented)
        );
        assert!(matches!(
            path("GET /.. HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HttpError::BadRequest(_))
        ));
    }

    #[test]
    fn redirects_directories_to_the_slashed_url() {
        let get = request("GET /docs?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        let location = get.servable_path().unwrap().directory_location();
        let response = respond(
            Some(&get),
            Ok(Resource::DirectoryWithoutSlash { location }),
            now(),
        );
        assert_eq!(response.status.code(), 301);
        assert_eq!(response.header("Location"), Some("/docs/?x=1"));
        assert!(response.keep_alive);
    }

    #[test]
    fn content_types() {
        for (name, expected) in [
            (&b"index.html"[..], "text/html; charset=utf-8"),
            (b"STYLE.CSS", "text/css; charset=utf-8"),
            (b"app.js", "text/javascript; charset=utf-8"),
            (b"mod.mjs", "text/javascript; charset=utf-8"),
            (b"logo.svg", "image/svg+xml"),
            (b"pic.png", "image/png"),
            (b"clip.mp4", "video/mp4"),
            (b"code.wasm", "application/wasm"),
            (b"README", "application/octet-stream"),
            (b"archive.unknownext", "application/octet-stream"),
            (b".hidden", "application/octet-stream"),
        ] {
            assert_eq!(
                content_type(name),
                expected,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }
}
