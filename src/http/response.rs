//! The decision function: what to answer, as a status, header fields and a body plan.
//!
//! [`respond`] turns (request, what the filesystem found, `now`) into a [`Response`]: a status,
//! its header fields and a [`BodyPlan`]. A file travels through it as one value `B` that
//! carries both its metadata and its bytes (an open file or cached contents; to the core a
//! [`Representation`] it reads the metadata of and moves): a plan that reads a file owns that
//! file, so no plan can promise a body it does not carry. Every error status is produced here
//! and nowhere else.

use std::time::SystemTime;

use super::conditional::{EntityTag, Precondition, Validators, evaluate_preconditions, whole_seconds};
use super::date::http_date;
use super::encoding::ContentCoding;
use super::fields::{ExtraHeader, Headers};
use super::mime::content_type;
use super::range::{ByteRange, RangeOutcome, evaluate_range};
use super::{HttpError, Method, Request, SafePath, Status};

/// The `Server` field we send.
pub(crate) const SERVER_NAME: &str = concat!("onepoll/", env!("CARGO_PKG_VERSION"));

/// What the filesystem edge found for a path: plain values, and a file as `B`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<B> {
    /// A regular file to serve.
    File(B),
    /// A directory named without its trailing slash: redirect to `location`.
    DirectoryWithoutSlash { location: String },
    /// Plain HTTP under `--https-redirect`: the same resource at this HTTPS `location`.
    OnHttps { location: String },
    /// A generated HTML listing of a directory that has no index file (`--listing`).
    Listing(String),
    /// Nothing was found, and the operator's 404 page (`--404-page`) is this file.
    NotFoundPage(B),
    /// A text the server made for this request, never cached by anyone: the health check's
    /// `ok`, the status listener's reports.
    Report { body: String, format: TextFormat },
}

/// What a [`Resource::Report`] is written in. A byte, not the `Content-Type` text, so the
/// hot path's `Resource` stays the size of its largest other variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    Plain,
    /// Prometheus' text exposition format, version 0.0.4.
    Prometheus,
}

impl TextFormat {
    fn content_type(self) -> &'static str {
        match self {
            TextFormat::Plain => "text/plain; charset=utf-8",
            TextFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl<B> Resource<B> {
    /// `--health-path`: the server is up; nothing was looked up to say so.
    pub fn health() -> Resource<B> {
        Resource::Report { body: "ok\n".to_owned(), format: TextFormat::Plain }
    }
}

/// What a response needs to know about a file, derived once from its metadata when it is
/// opened or cached: a hot cached file formats no ETag and looks up no type per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// Size of the representation actually sent (the compressed sibling's, when there is one).
    pub len: u64,
    /// Modification time at one-second resolution (what `Last-Modified` can say).
    pub modified: Option<SystemTime>,
    /// The strong ETag of the file actually sent.
    pub etag: EntityTag,
    /// From the name asked for (after `index.html` substitution).
    pub content_type: &'static str,
    /// The coding of the precompressed sibling being sent instead of the file itself.
    pub encoding: Option<ContentCoding>,
    /// The file has precompressed siblings, so responses vary with `Accept-Encoding`.
    pub has_encoded_variants: bool,
}

impl FileMeta {
    /// The file with inode `inode`, `len` bytes, modified at `modified`, served as `name` (which
    /// sets its type) in `encoding`; `has_encoded_variants` is for the caller to set.
    pub fn new(
        inode: u64,
        len: u64,
        modified: Option<SystemTime>,
        name: &[u8],
        encoding: Option<ContentCoding>,
    ) -> FileMeta {
        FileMeta {
            len,
            modified: modified.map(whole_seconds),
            etag: EntityTag::for_file(inode, len, modified),
            content_type: content_type(name),
            encoding,
            has_encoded_variants: false,
        }
    }
}

#[cfg(test)]
impl FileMeta {
    /// A file with no siblings and inode 1.
    pub fn plain(len: u64, modified: Option<SystemTime>, name: &[u8]) -> FileMeta {
        FileMeta::new(1, len, modified, name, None)
    }
}

/// A file to serve, as the core sees it: its metadata, and maybe the representation fields of
/// its full responses rendered ahead (a cached file), so a hot hit copies them instead of
/// writing them field by field. Its bytes are the engine's business.
pub trait Representation {
    fn meta(&self) -> &FileMeta;

    /// What [`full_response_fields`] rendered for [`Self::meta`], if it was done ahead.
    fn full_response_fields(&self) -> Option<&[u8]> {
        None
    }
}

/// A file known by its metadata alone: the plans are what the core's tests look at.
#[cfg(test)]
impl Representation for FileMeta {
    fn meta(&self) -> &FileMeta {
        self
    }
}

/// `Content-Type` through `Vary` of a `200` for the file `meta` describes, as `respond` writes
/// them (rendered once per cached file; valid while its mtime is not in the future).
pub fn full_response_fields(meta: &FileMeta) -> Box<[u8]> {
    let mut headers = Headers::default();
    push_full_response_fields(&mut headers, meta, meta.modified);
    std::mem::take(&mut headers.lines).into_boxed_slice()
}

/// Where the response body comes from; `B` is the file's bytes, owned by the plan that reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan<B> {
    /// No body: HEAD, or a status that has none.
    Empty,
    /// A small generated page (errors, redirects).
    Page(String),
    /// `len` bytes of `file` from `offset`.
    File { file: B, offset: u64, len: u64 },
    /// `multipart/byteranges` (RFC 9110 §14.6): each part's head then its range of `file`,
    /// then the closing delimiter.
    Multipart { file: B, parts: Vec<MultipartPart>, closing: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartPart {
    /// Delimiter and part header fields.
    pub head: String,
    pub offset: u64,
    pub len: u64,
}

/// A response decided but not yet serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<B> {
    pub status: Status,
    /// Header fields in the order they are sent, `Date` and `Server` included.
    pub headers: Headers,
    pub body: BodyPlan<B>,
    /// The request was refused in a way that leaves the bytes after it untrustworthy (RFC
    /// 9112 §9.6): its connection must end with this response, whatever the request asked.
    pub ends_connection: bool,
}

impl<B> Response<B> {
    /// The value of the first field called `name` (ASCII case-insensitive), for tests and logs.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The status and field lines as text, for tests to compare whole answers by (a codec
    /// decides how they travel).
    #[cfg(test)]
    pub fn summary(&self) -> String {
        let mut text = format!("{} {}\r\n", self.status.code(), self.status.reason());
        text.push_str(std::str::from_utf8(&self.headers.lines).unwrap_or_default());
        text
    }
}

impl<B> Response<B> {
    /// Appends the operator's headers (to every response, errors included, so HSTS and CORS
    /// hold everywhere).
    pub fn add_headers(&mut self, extra: &[ExtraHeader]) {
        for header in extra {
            self.headers.push(header.name, &header.value);
        }
    }

    /// Appends the `--header-for` headers whose pattern matches `path` (the decoded path of
    /// the request), if this response is one they apply to.
    pub fn add_path_headers(&mut self, rules: &[super::PathHeader], path: &str) {
        let status = self.status.code();
        for rule in rules.iter().filter(|rule| rule.applies(path, status)) {
            self.headers.push(rule.header.name, &rule.header.value);
        }
    }
}

impl Request<'_> {
    /// The path this request may be served from: only GET and HEAD get as far as the
    /// filesystem; every other method is refused before the target is even looked at.
    pub fn servable_path(&self) -> Result<&SafePath, HttpError> {
        self.check_method().and_then(|()| self.target.path())
    }

    /// Only GET and HEAD are served: 405 for other standard methods, 501 for unknown ones.
    pub fn check_method(&self) -> Result<(), HttpError> {
        match self.method {
            Method::Get | Method::Head => Ok(()),
            Method::Standard(_) => Err(HttpError::MethodNotAllowed),
            Method::Unknown(_) => Err(HttpError::NotImplemented),
        }
    }
}

/// The decision function: what to answer to `request`, given what the filesystem found.
///
/// `request` is `None` when the head could not be parsed at all.
pub fn respond<B: Representation>(
    request: Option<&Request>,
    found: Result<Resource<B>, HttpError>,
    now: SystemTime,
) -> Response<B> {
    let Some(request) = request else {
        let error = found.err().unwrap_or(HttpError::BadRequest("no request"));
        return error_page(&error, None, now);
    };
    match found {
        Ok(Resource::File(file)) => file_response(request, file, now),
        Ok(Resource::DirectoryWithoutSlash { location }) => {
            redirect(Status::MOVED_PERMANENTLY, request, location, now)
        }
        // 308, not 301: a POST stays a POST (RFC 9110 §15.4.9).
        Ok(Resource::OnHttps { location }) => redirect(Status::PERMANENT_REDIRECT, request, location, now),
        Ok(Resource::Listing(html)) => generated(Status::OK, html, request, now),
        Ok(Resource::NotFoundPage(file)) => not_found_page(request, file, now),
        Ok(Resource::Report { body, format }) => report(request, format.content_type(), body, now),
        Err(error) => error_page(&error, Some(request), now),
    }
}

/// The operator's 404 page: the file's bytes under status 404, without validators or ranges
/// (they describe the page, not the missing resource).
fn not_found_page<B: Representation>(request: &Request, file: B, now: SystemTime) -> Response<B> {
    let meta = *file.meta();
    let mut headers = common_headers(now);
    headers.push(field!("Content-Type"), meta.content_type);
    headers.push(field!("Content-Length"), meta.len);
    let body = match request.method {
        Method::Head => BodyPlan::Empty,
        _ => BodyPlan::File { file, offset: 0, len: meta.len },
    };
    Response { status: Status::NOT_FOUND, headers, body, ends_connection: false }
}

fn file_response<B: Representation>(request: &Request, file: B, now: SystemTime) -> Response<B> {
    // Copied once: the file moves into the body plan while its facts are still needed.
    let meta = &{ *file.meta() };
    let validators = Validators::new(meta.etag, meta.modified, now);
    let mut headers = common_headers(now);
    let status = match evaluate_preconditions(&request.fields, &validators) {
        Precondition::Proceed => Status::OK,
        Precondition::NotModified => Status::NOT_MODIFIED,
        Precondition::Failed => {
            return error_page(&HttpError::PreconditionFailed, Some(request), now);
        }
    };
    let ranges = match (status, &request.method) {
        (Status::OK, Method::Get) => evaluate_range(&request.fields, &validators, meta.len),
        _ => RangeOutcome::Full, // §14.2: Range only applies to GET
    };
    let last_modified = validators.last_modified;
    // Fields are pushed in sending order: Content-Type, Content-Length, Content-Range, then
    // the validators and the coding.
    let (status, body) = match ranges {
        RangeOutcome::Unsatisfiable => {
            let mut response = error_page(&HttpError::RangeNotSatisfiable, Some(request), now);
            response.headers.push(field!("Content-Range"), format_args!("bytes */{}", meta.len));
            return response;
        }
        _ if status == Status::NOT_MODIFIED => {
            push_validators_and_coding(&mut headers, meta, last_modified, status);
            (status, BodyPlan::Empty)
        }
        RangeOutcome::Full => {
            match file.full_response_fields() {
                Some(rendered) if last_modified == meta.modified => headers.push_rendered(rendered),
                _ => push_full_response_fields(&mut headers, meta, last_modified),
            }
            (status, BodyPlan::File { file, offset: 0, len: meta.len })
        }
        RangeOutcome::Partial(ranges) => {
            let body = partial_body(file, &ranges, meta, &validators, &mut headers);
            push_validators_and_coding(&mut headers, meta, last_modified, Status::PARTIAL_CONTENT);
            (Status::PARTIAL_CONTENT, body)
        }
    };
    let body = if request.method == Method::Head { BodyPlan::Empty } else { body };
    Response { status, headers, body, ends_connection: false }
}

/// The representation fields of a `200`, `Last-Modified` saying `last_modified`.
fn push_full_response_fields(headers: &mut Headers, meta: &FileMeta, last_modified: Option<SystemTime>) {
    headers.push(field!("Content-Type"), meta.content_type);
    headers.push(field!("Content-Length"), meta.len);
    push_validators_and_coding(headers, meta, last_modified, Status::OK);
}

/// `Last-Modified`, `ETag`, `Accept-Ranges` (not on a 304) and what the coding implies.
fn push_validators_and_coding(
    headers: &mut Headers,
    meta: &FileMeta,
    last_modified: Option<SystemTime>,
    status: Status,
) {
    if let Some(modified) = last_modified {
        headers.push(field!("Last-Modified"), http_date(modified));
    }
    headers.push(field!("ETag"), meta.etag);
    if status != Status::NOT_MODIFIED {
        headers.push(field!("Accept-Ranges"), "bytes");
    }
    if let Some(coding) = meta.encoding {
        headers.push(field!("Content-Encoding"), coding.token());
    }
    if meta.has_encoded_variants {
        headers.push(field!("Vary"), "Accept-Encoding");
    }
}

/// The 206 body for `ranges`: one range as is, several as `multipart/byteranges`. Pushes
/// `Content-Type`, `Content-Length` and, for one range, `Content-Range`.
fn partial_body<B>(
    file: B,
    ranges: &[ByteRange],
    meta: &FileMeta,
    validators: &Validators,
    headers: &mut Headers,
) -> BodyPlan<B> {
    let len = meta.len;
    if let [range] = ranges {
        headers.push(field!("Content-Type"), meta.content_type);
        headers.push(field!("Content-Length"), range.byte_count());
        headers.push(field!("Content-Range"), format_args!("bytes {}-{}/{len}", range.first, range.last));
        return BodyPlan::File { file, offset: range.first, len: range.byte_count() };
    }
    let boundary = multipart_boundary(&validators.etag);
    let parts: Vec<MultipartPart> = ranges
        .iter()
        .enumerate()
        .map(|(index, range)| MultipartPart {
            head: format!(
                "{}--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                if index == 0 { "" } else { "\r\n" },
                meta.content_type,
                range.first,
                range.last
            ),
            offset: range.first,
            len: range.byte_count(),
        })
        .collect();
    let closing = format!("\r\n--{boundary}--\r\n");
    let total =
        parts.iter().map(|part| part.head.len() as u64 + part.len).sum::<u64>() + closing.len() as u64;
    headers.push(field!("Content-Type"), format_args!("multipart/byteranges; boundary={boundary}"));
    headers.push(field!("Content-Length"), total);
    BodyPlan::Multipart { file, parts, closing }
}

/// A boundary derived from the ETag (FNV-1a), so responses stay deterministic for tests; the
/// chance that 16 hex digits of it also appear in the file at a line start is negligible.
fn multipart_boundary(etag: &str) -> String {
    format!("onepoll-{:016x}", fnv1a(FNV1A_START, etag.as_bytes()))
}

/// The FNV-1a hash's starting value.
pub const FNV1A_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, continuing from `hash`: a few instructions a byte, for short keys
/// nobody can choose to collide.
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

fn redirect<B>(status: Status, request: &Request, location: String, now: SystemTime) -> Response<B> {
    let mut response = page(status, None, Some(request), false, now);
    response.headers.insert(2, field!("Location"), &location);
    response
}

fn error_page<B>(error: &HttpError, request: Option<&Request>, now: SystemTime) -> Response<B> {
    let mut response = page(error.status(), error.advice(), request, error.closes_connection(), now);
    match error {
        HttpError::MethodNotAllowed => response.headers.insert(2, field!("Allow"), "GET, HEAD"), // RFC 9110 §15.5.6
        HttpError::Unauthorized(challenge) => {
            response.headers.insert(2, field!("WWW-Authenticate"), &**challenge)
        }
        HttpError::AuthenticationBusy => response.headers.insert(2, field!("Retry-After"), "1"),
        _ => {}
    }
    response
}

/// A status with a small HTML page explaining it, and `advice` when there is some.
fn page<B>(
    status: Status,
    advice: Option<&str>,
    request: Option<&Request>,
    ends_connection: bool,
    now: SystemTime,
) -> Response<B> {
    let (code, reason) = (status.code(), status.reason());
    let advice = advice.map(|text| format!("<p>{text}</p>")).unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1>{advice}<hr><p>{SERVER_NAME}</p></body></html>\n"
    );
    html_response(status, html, request, ends_connection, now)
}

/// A page we generated for a request that succeeded (a directory listing).
fn generated<B>(status: Status, html: String, request: &Request, now: SystemTime) -> Response<B> {
    let mut response = html_response(status, html, Some(request), false, now);
    response.headers.insert(2, field!("Cache-Control"), "no-cache"); // it changes with the directory
    response
}

/// `200 ok`, never stored by a cache in between: a monitor must reach the server itself.
fn report<B>(request: &Request, content_type: &'static str, body: String, now: SystemTime) -> Response<B> {
    let mut headers = common_headers(now);
    headers.push(field!("Content-Type"), content_type);
    headers.push(field!("Content-Length"), body.len());
    headers.push(field!("Cache-Control"), "no-store");
    let body = match request.method {
        Method::Head => BodyPlan::Empty,
        _ => BodyPlan::Page(body),
    };
    Response { status: Status::OK, headers, body, ends_connection: false }
}

fn html_response<B>(
    status: Status,
    html: String,
    request: Option<&Request>,
    ends_connection: bool,
    now: SystemTime,
) -> Response<B> {
    let mut headers = common_headers(now);
    headers.push(field!("Content-Type"), "text/html; charset=utf-8");
    headers.push(field!("Content-Length"), html.len());
    let body = match request.map(|r| &r.method) {
        Some(Method::Head) => BodyPlan::Empty,
        _ => BodyPlan::Page(html),
    };
    Response { status, headers, body, ends_connection }
}

/// `Server`, `Date`, and `X-Content-Type-Options: nosniff` on every response: our types are
/// set on purpose (module scripts and wasm need them exact), so browsers must not guess others
/// (a `.txt` that looks like HTML stays text).
fn common_headers(now: SystemTime) -> Headers {
    /// The three lines, rendered once per second of `now`: every response in that second
    /// starts with the same bytes.
    /// (the time last asked for, its second, the lines): a turn's `now` is asked for again
    /// as the very same value, found without even working out the second.
    type Rendered = (SystemTime, u64, Vec<u8>);
    thread_local! {
        static RENDERED: std::cell::RefCell<Rendered> =
            const { std::cell::RefCell::new((std::time::UNIX_EPOCH, u64::MAX, Vec::new())) };
    }
    let mut headers = Headers::with_capacity();
    RENDERED.with_borrow_mut(|(asked, rendered_second, lines)| {
        if *asked != now || *rendered_second == u64::MAX {
            let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if second != *rendered_second {
                let mut fresh = Headers { lines: std::mem::take(lines) };
                fresh.lines.clear();
                fresh.push(field!("Server"), SERVER_NAME);
                fresh.push(field!("Date"), http_date(now));
                fresh.push_rendered(b"X-Content-Type-Options: nosniff\r\n");
                (*rendered_second, *lines) = (second, std::mem::take(&mut fresh.lines));
            }
            *asked = now;
        }
        headers.push_rendered(lines);
    });
    headers
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::http1::{Parsed, parse_head};

    /// The decision function with no file bytes to carry: the plans are what is tested.
    fn respond(
        request: Option<&Request>,
        found: Result<Resource<FileMeta>, HttpError>,
        now: SystemTime,
    ) -> Response<FileMeta> {
        super::respond(request, found, now)
    }

    /// 2026-11-22 04:45:00 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_322_700)
    }

    fn request(head: &str) -> Request<'_> {
        match parse_head(head.as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    fn file(len: u64, name: &[u8]) -> Result<Resource<FileMeta>, HttpError> {
        Ok(Resource::File(FileMeta::plain(len, Some(now() - Duration::from_secs(60)), name)))
    }

    #[test]
    fn serves_a_file_with_every_header() {
        let get = request("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = respond(Some(&get), file(1234, b"index.html"), now());
        assert_eq!(
            response.summary(),
            format!(
                "200 OK\r\nServer: {SERVER_NAME}\r\nDate: Sun, 22 Nov 2026 04:45:00 GMT\r\n\
                 X-Content-Type-Options: nosniff\r\n\
                 Content-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n\
                 Last-Modified: Sun, 22 Nov 2026 04:44:00 GMT\r\nETag: \"1-4d2-6b027310.0\"\r\n\
                 Accept-Ranges: bytes\r\n"
            )
        );
        assert!(matches!(response.body, BodyPlan::File { offset: 0, len: 1234, .. }));
        assert!(!response.ends_connection);
    }

    #[test]
    fn head_gets_the_same_fields_and_no_body() {
        let get = respond(Some(&request("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), file(10, b"a.css"), now());
        let head = respond(Some(&request("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")), file(10, b"a.css"), now());
        assert_eq!(head.headers, get.headers);
        assert_eq!(head.body, BodyPlan::Empty);
        let missing =
            respond(Some(&request("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")), Err(HttpError::NotFound), now());
        assert_eq!(missing.body, BodyPlan::Empty);
        assert_ne!(missing.header("Content-Length"), Some("0"));
    }

    #[test]
    fn the_date_follows_the_clock_across_and_within_seconds() {
        let get = request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let date_at = |time| respond(Some(&get), file(1, b"a"), time).header("Date").map(str::to_owned);
        let times = [now(), now() + Duration::from_millis(999), now() + Duration::from_secs(1), now()];
        let dates = times.map(date_at);
        let [first, same_second, next_second, back] = dates.each_ref().map(|date| date.as_deref());
        assert_eq!(first, Some("Sun, 22 Nov 2026 04:45:00 GMT"));
        assert_eq!(same_second, first);
        assert_eq!(next_second, Some("Sun, 22 Nov 2026 04:45:01 GMT"));
        assert_eq!(back, first);
    }

    #[test]
    fn never_claims_a_future_modification_time() {
        let get = request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let future = FileMeta::plain(1, Some(now() + Duration::from_secs(3600)), b"a");
        let response = respond(Some(&get), Ok(Resource::File(future)), now());
        assert_eq!(response.header("Last-Modified"), response.header("Date"));
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
            assert_eq!(response.ends_connection, !keep_alive, "{error}");
            let BodyPlan::Page(html) = &response.body else { panic!("no page for {error}") };
            assert!(html.contains(&format!("<title>{code} ")), "{html}");
            assert_eq!(response.header("Content-Length"), Some(html.len().to_string().as_str()));
            assert_eq!(response.header("Content-Type"), Some("text/html; charset=utf-8"));
        }
    }

    #[test]
    fn unparseable_heads_get_a_closing_error() {
        for error in [HttpError::UriTooLong, HttpError::HeaderFieldsTooLarge, HttpError::VersionNotSupported]
        {
            let response = respond(None, Err(error.clone()), now());
            assert_eq!(response.status, error.status());
            assert!(response.ends_connection);
        }
    }

    #[test]
    fn health_is_a_small_uncached_ok() {
        let get = respond(
            Some(&request("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")),
            Ok(Resource::health()),
            now(),
        );
        assert_eq!((get.status, get.body.clone()), (Status::OK, BodyPlan::Page("ok\n".to_owned())));
        assert_eq!(
            (get.header("Content-Length"), get.header("Cache-Control")),
            (Some("3"), Some("no-store"))
        );
        let head = respond(
            Some(&request("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")),
            Ok(Resource::health()),
            now(),
        );
        assert_eq!((head.headers, head.body), (get.headers, BodyPlan::Empty));
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_ones() {
        let post = request("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n");
        let response = respond(Some(&post), post.servable_path().map(|_| unreachable!()), now());
        assert_eq!(response.status, Status::METHOD_NOT_ALLOWED);
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
    }

    #[test]
    fn only_get_and_head_reach_the_filesystem() {
        let path = |head: &str| request(head).servable_path().cloned();
        assert!(path("GET /a HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert!(path("HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert_eq!(path("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), Err(HttpError::MethodNotAllowed));
        assert_eq!(path("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n"), Err(HttpError::NotImplemented));
        assert!(matches!(path("GET /.. HTTP/1.1\r\nHost: x\r\n\r\n"), Err(HttpError::BadRequest(_))));
    }

    #[test]
    fn redirects_directories_to_the_slashed_url() {
        let get = request("GET /docs?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        let location = get.servable_path().unwrap().directory_location();
        let response = respond(Some(&get), Ok(Resource::DirectoryWithoutSlash { location }), now());
        assert_eq!(response.status.code(), 301);
        assert_eq!(response.header("Location"), Some("/docs/?x=1"));
        assert!(!response.ends_connection);
    }

    /// A request that lives as long as the test (its head is leaked).
    fn with(head: &str, fields: &str) -> Request<'static> {
        request(format!("{head} HTTP/1.1\r\nHost: x\r\n{fields}\r\n").leak())
    }

    /// What a second codec needs from the core: every decided response reads back as (name,
    /// value) pairs that are tokens and field values, and none is connection-specific (RFC 9113
    /// §8.2.2 forbids them in HTTP/2; HTTP/1.1's `Connection` is its codec's to add).
    #[test]
    fn decided_responses_read_back_as_plain_fields_with_no_connection_specific_one() {
        let connection_specific =
            ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];
        let location = String::from("/docs/");
        let responses = [
            respond(Some(&with("GET /", "")), file(100, b"a.txt"), now()),
            respond(Some(&with("GET /", "Range: bytes=1-2\r\n")), file(100, b"a.txt"), now()),
            respond(Some(&with("GET /", "Range: bytes=1-2,5-6\r\n")), file(100, b"a.txt"), now()),
            respond(Some(&with("GET /", "Range: bytes=500-\r\n")), file(100, b"a.txt"), now()),
            respond(Some(&with("GET /", "If-Match: \"x\"\r\n")), file(100, b"a.txt"), now()),
            respond(Some(&with("GET /docs", "")), Ok(Resource::DirectoryWithoutSlash { location }), now()),
            respond(Some(&with("POST /", "Content-Length: 0\r\n")), Err(HttpError::MethodNotAllowed), now()),
            respond(Some(&with("GET /", "")), Err(HttpError::NotFound), now()),
            respond(None, Err(HttpError::BadRequest("x")), now()),
        ];
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        for response in &responses {
            let fields: Vec<(&str, &str)> = response.headers.iter().collect();
            let lines = std::str::from_utf8(&response.headers.lines).unwrap();
            assert_eq!(fields.len(), lines.matches("\r\n").count(), "{lines}");
            for (name, value) in fields {
                assert!(!name.is_empty() && name.bytes().all(is_tchar), "{name:?}");
                assert!(value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)), "{value:?}");
                assert!(!connection_specific.contains(&name.to_ascii_lowercase().as_str()), "{name}");
            }
        }
    }

    #[test]
    fn not_modified_carries_validators_and_no_body() {
        let etag =
            respond(Some(&with("GET /", "")), file(10, b"a.txt"), now()).header("ETag").unwrap().to_owned();
        for method in ["GET /", "HEAD /"] {
            let response = respond(
                Some(&with(method, &format!("If-None-Match: {etag}\r\n"))),
                file(10, b"a.txt"),
                now(),
            );
            assert_eq!(response.status, Status::NOT_MODIFIED, "{method}");
            assert_eq!(response.header("ETag"), Some(etag.as_str()));
            assert!(response.header("Date").is_some() && response.header("Last-Modified").is_some());
            assert_eq!((response.header("Content-Length"), response.header("Content-Type")), (None, None));
            assert_eq!(response.body, BodyPlan::Empty);
            assert!(!response.ends_connection);
        }
        let since = "If-Modified-Since: Sun, 22 Nov 2026 04:44:00 GMT\r\n";
        assert_eq!(respond(Some(&with("GET /", since)), file(10, b"a"), now()).status, Status::NOT_MODIFIED);
    }

    #[test]
    fn failed_preconditions_get_412() {
        let response = respond(Some(&with("GET /", "If-Match: \"nope\"\r\n")), file(10, b"a"), now());
        assert_eq!(response.status, Status::PRECONDITION_FAILED);
        assert!(!response.ends_connection);
        let stale = "If-Unmodified-Since: Sun, 22 Nov 2026 04:00:00 GMT\r\n";
        assert_eq!(
            respond(Some(&with("GET /", stale)), file(10, b"a"), now()).status,
            Status::PRECONDITION_FAILED
        );
    }

    #[test]
    fn a_single_range_gets_206_with_its_content_range() {
        let response = respond(Some(&with("GET /", "Range: bytes=10-19\r\n")), file(100, b"a.txt"), now());
        assert_eq!(response.status, Status::PARTIAL_CONTENT);
        assert_eq!(response.header("Content-Range"), Some("bytes 10-19/100"));
        assert_eq!(response.header("Content-Length"), Some("10"));
        assert_eq!(response.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert!(matches!(response.body, BodyPlan::File { offset: 10, len: 10, .. }));
        // HEAD ignores Range (RFC 9110 §14.2).
        let head = respond(Some(&with("HEAD /", "Range: bytes=10-19\r\n")), file(100, b"a.txt"), now());
        assert_eq!((head.status, head.header("Content-Length")), (Status::OK, Some("100")));
    }

    #[test]
    fn several_ranges_get_a_multipart_body_whose_length_adds_up() {
        let response = respond(Some(&with("GET /", "Range: bytes=0-1,5-6\r\n")), file(10, b"a.txt"), now());
        assert_eq!(response.status, Status::PARTIAL_CONTENT);
        let content_type = response.header("Content-Type").unwrap();
        let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").unwrap();
        let BodyPlan::Multipart { parts, closing, .. } = &response.body else {
            panic!("{:?}", response.body)
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].head,
            format!(
                "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/10\r\n\r\n"
            )
        );
        assert!(parts[1].head.starts_with(&format!("\r\n--{boundary}\r\n")));
        assert_eq!((parts[1].offset, parts[1].len), (5, 2));
        assert_eq!(closing, &format!("\r\n--{boundary}--\r\n"));
        let total: u64 =
            parts.iter().map(|p| p.head.len() as u64 + p.len).sum::<u64>() + closing.len() as u64;
        assert_eq!(response.header("Content-Length"), Some(total.to_string().as_str()));
        assert_eq!(response.header("Content-Range"), None);
    }

    #[test]
    fn unsatisfiable_ranges_get_416_with_the_length() {
        let response = respond(Some(&with("GET /", "Range: bytes=100-\r\n")), file(100, b"a"), now());
        assert_eq!(response.status, Status::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.header("Content-Range"), Some("bytes */100"));
        assert!(!response.ends_connection);
    }

    #[test]
    fn a_stale_if_range_gets_the_whole_file() {
        let fields = "Range: bytes=0-0\r\nIf-Range: \"stale\"\r\n";
        let response = respond(Some(&with("GET /", fields)), file(100, b"a"), now());
        assert_eq!(response.status, Status::OK);
        assert!(matches!(response.body, BodyPlan::File { offset: 0, len: 100, .. }));
    }

    /// A file carrying fields rendered ahead, as a cached file does.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Rendered(FileMeta, Box<[u8]>);

    impl Representation for Rendered {
        fn meta(&self) -> &FileMeta {
            &self.0
        }
        fn full_response_fields(&self) -> Option<&[u8]> {
            Some(&self.1)
        }
    }

    #[test]
    fn fields_rendered_ahead_give_the_very_head_rendered_per_response() {
        let minute_ago = Some(now() - Duration::from_secs(60));
        let in_an_hour = Some(now() + Duration::from_secs(3600)); // Last-Modified says `now`
        let metas = [
            FileMeta::plain(100, minute_ago, b"a.txt"),
            FileMeta::plain(0, None, b"empty"),
            FileMeta::plain(5, in_an_hour, b"future.css"),
            FileMeta::new(7, 40, minute_ago, b"app.js", Some(ContentCoding::Brotli)),
            FileMeta { has_encoded_variants: true, ..FileMeta::plain(90, minute_ago, b"app.js") },
        ];
        let heads = [
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nRange: bytes=1-2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 22 Nov 2026 04:45:00 GMT\r\n\r\n",
        ];
        for meta in metas {
            let rendered = Rendered(meta, full_response_fields(&meta));
            for head in heads {
                let get = request(head);
                let per_response = respond(Some(&get), Ok(Resource::File(meta)), now());
                let ahead = super::respond(Some(&get), Ok(Resource::File(rendered.clone())), now());
                assert_eq!(ahead.summary(), per_response.summary(), "{meta:?} {head}");
            }
        }
    }

    #[test]
    fn precompressed_representations_say_so() {
        let get = with("GET /app.js", "");
        let gzipped = FileMeta {
            encoding: Some(ContentCoding::Gzip),
            has_encoded_variants: true,
            ..FileMeta::plain(40, None, b"app.js")
        };
        let response = respond(Some(&get), Ok(Resource::File(gzipped)), now());
        assert_eq!(response.header("Content-Encoding"), Some("gzip"));
        assert_eq!(response.header("Content-Type"), Some("text/javascript; charset=utf-8"));
        assert_eq!(response.header("Vary"), Some("Accept-Encoding"));
        let identity = FileMeta { has_encoded_variants: true, ..FileMeta::plain(90, None, b"app.js") };
        let response = respond(Some(&get), Ok(Resource::File(identity)), now());
        assert_eq!(
            (response.header("Content-Encoding"), response.header("Vary")),
            (None, Some("Accept-Encoding"))
        );
        let lone = respond(Some(&get), file(90, b"app.js"), now());
        assert_eq!(lone.header("Vary"), None);
    }
}
