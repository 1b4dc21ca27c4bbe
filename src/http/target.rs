//! Request-target resolution (RFC 9112 §3.2, RFC 3986 §5.2.4): from the raw target to a
//! [`SafePath`], a list of decoded path segments that by construction cannot name anything
//! above the served root. The filesystem edge (`files`) only ever joins these segments.

use percent_encoding::{AsciiSet, CONTROLS, percent_encode};

use super::HttpError;

/// A decoded, normalised request path. Invariant: no segment is empty, `.` or `..`, and none
/// contains `/`, `\` or NUL, so joining them under a directory stays inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    segments: Vec<Vec<u8>>,
    /// The target named a directory (`/docs/`, `/docs/.`), so no 301 is due for it.
    names_directory: bool,
    /// The query as sent, kept only to carry it into a redirect.
    query: Option<String>,
}

impl SafePath {
    /// The decoded segments, root first; empty for `/`.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.segments.iter().map(Vec::as_slice)
    }

    pub fn names_directory(&self) -> bool {
        self.names_directory
    }

    /// Whether a segment is a dotfile or dot-directory (`/.env`, `/.git/config`) outside
    /// `/.well-known/`, which RFC 8615 reserves for things meant to be fetched (ACME HTTP-01
    /// challenges, security.txt).
    pub fn is_hidden(&self) -> bool {
        let mut segments = self.segments();
        match segments.next() {
            Some(b".well-known") => false,
            Some(first) => is_hidden_name(first) || segments.any(is_hidden_name),
            None => false,
        }
    }

    /// The decoded path, `/` joined, with a trailing `/` for a directory: what `--header-for`
    /// patterns are matched against (bytes that are not UTF-8 become U+FFFD).
    pub fn decoded(&self) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(segment));
        }
        if self.names_directory || path.is_empty() {
            path.push('/');
        }
        path
    }

    /// Where to send a client that asked for a directory without the trailing slash: the same
    /// path, re-encoded from the normalised segments (so `//host` can never become an open
    /// redirect), with a slash and the original query.
    pub fn directory_location(&self) -> String {
        let mut location = String::from("/");
        for segment in &self.segments {
            location.extend(percent_encode(segment, PATH_SEGMENT));
            location.push('/');
        }
        if let Some(query) = &self.query {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// A file or directory name that is hidden unless `--hidden`: it starts with a dot.
pub fn is_hidden_name(name: &[u8]) -> bool {
    name.starts_with(b".")
}

/// Bytes that must be percent-encoded inside one path segment (RFC 3986 §3.3).
pub(crate) const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A request-target as sent, and its resolution once someone asked for it: a request's path
/// is resolved at most once (the lookup, `--auth-path` and `--header-for` all read the same
/// one), and not at all when nothing needs it (a hit in the file cache goes by the raw path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'t> {
    pub raw: &'t str,
    resolved: std::cell::OnceCell<Result<SafePath, HttpError>>,
}

impl<'t> Target<'t> {
    pub fn new(raw: &'t str) -> Target<'t> {
        Target { raw, resolved: std::cell::OnceCell::new() }
    }

    /// The decoded, normalised path, or why the target names none.
    pub fn path(&self) -> Result<&SafePath, HttpError> {
        self.resolved.get_or_init(|| resolve_target(self.raw)).as_ref().map_err(Clone::clone)
    }
}

/// Resolves an origin-form (`/a/b?q`) or absolute-form (`http://host/a/b?q`) request-target.
pub fn resolve_target(raw: &str) -> Result<SafePath, HttpError> {
    let path_and_query = if raw.starts_with('/') { raw } else { absolute_form_path(raw)? };
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (path_and_query, None),
    };
    if path.contains('#') {
        return Err(HttpError::BadRequest("fragment in request-target"));
    }

    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut names_directory = true;
    for raw_segment in path.split('/').skip(1) {
        let segment = percent_decode_strict(raw_segment)?;
        // Decoding first means `%2e%2e` counts as `..`: the filesystem would read it so.
        names_directory = matches!(segment.as_slice(), b"" | b"." | b"..");
        match segment.as_slice() {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(HttpError::BadRequest("path climbs above the root"));
                }
            }
            name if name.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) => {
                return Err(HttpError::BadRequest("slash, backslash or NUL in a path segment"));
            }
            _ => segments.push(segment),
        }
    }
    Ok(SafePath { segments, names_directory, query })
}

/// `http://authority/path?q` → `/path?q` (the authority chooses the site: `host.rs`).
fn absolute_form_path(raw: &str) -> Result<&str, HttpError> {
    let (authority, path) =
        split_absolute_form(raw).ok_or(HttpError::BadRequest("unsupported request-target form"))?;
    if authority.is_empty() {
        return Err(HttpError::BadRequest("absolute-form target without a host"));
    }
    match path {
        "" => Ok("/"),
        path if path.starts_with('?') => Err(HttpError::BadRequest("absolute-form target without a path")),
        path => Ok(path),
    }
}

/// An absolute-form target (`http://` or `https://`, in any case) as its authority and the
/// rest (`/path?q`, or empty); `None` for any other form.
pub(crate) fn split_absolute_form(raw: &str) -> Option<(&str, &str)> {
    let scheme_len = ["http://", "https://"]
        .iter()
        // Compared as bytes: a `str` slice at `scheme.len()` could split a UTF-8 character.
        .find(|scheme| {
            raw.as_bytes()
                .get(..scheme.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(scheme.as_bytes()))
        })?
        .len();
    let rest = &raw[scheme_len..];
    Some(rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len())))
}

/// Percent-decoding that refuses `%` not followed by two hex digits (nginx answers those with
/// 400 too) instead of passing them through as `percent_encoding` would.
fn percent_decode_strict(segment: &str) -> Result<Vec<u8>, HttpError> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes.get(at + 1..at + 3).ok_or(HttpError::BadRequest("truncated percent-encoding"))?;
            let text =
                std::str::from_utf8(hex).map_err(|_| HttpError::BadRequest("invalid percent-encoding"))?;
            let value = u8::from_str_radix(text, 16)
                .map_err(|_| HttpError::BadRequest("invalid percent-encoding"))?;
            decoded.push(value);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(raw: &str) -> Vec<String> {
        let path = resolve_target(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        path.segments().map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }

    #[test]
    fn dot_segments_are_hidden_outside_well_known() {
        let hidden = |raw: &str| resolve_target(raw).unwrap().is_hidden();
        for raw in ["/.env", "/%2Eenv", "/.git/config", "/.git/", "/a/.b/c", "/a/b/.c", "/x/../.env"] {
            assert!(hidden(raw), "{raw}");
        }
        for raw in
            ["/", "/a.b", "/a/b.", "/.well-known/acme-challenge/t", "/.well-known/.x", "/./a", "/a/..."]
        {
            assert_eq!(hidden(raw), raw == "/a/...", "{raw}");
        }
    }

    #[test]
    fn resolves_and_normalises() {
        let cases: [(&str, &[&str]); 12] = [
            ("/", &[]),
            ("/index.html", &["index.html"]),
            ("/a/b/c.txt?x=1&y", &["a", "b", "c.txt"]),
            ("//a///b/", &["a", "b"]),
            ("/a/./b/../c", &["a", "c"]),
            ("/a/%2e%2e/b", &["b"]),
            ("/a/%2E/b", &["a", "b"]),
            ("/space%20name.txt", &["space name.txt"]),
            ("/%252e%252e/x", &["%2e%2e", "x"]),
            ("/caf%C3%A9", &["café"]),
            ("http://example.com/a/b?q", &["a", "b"]),
            ("HTTP://example.com", &[]),
        ];
        for (raw, expected) in cases {
            assert_eq!(segments(raw), expected, "{raw}");
        }
    }

    #[test]
    fn knows_when_a_directory_was_named() {
        for (raw, names_directory) in [
            ("/", true),
            ("/docs", false),
            ("/docs/", true),
            ("/docs/.", true),
            ("/docs/sub/..", true),
            ("/docs/%2e", true),
            ("/docs?x=/", false),
            ("http://h", true),
        ] {
            assert_eq!(resolve_target(raw).unwrap().names_directory(), names_directory, "{raw}");
        }
    }

    #[test]
    fn refuses_targets_that_could_escape_or_confuse() {
        for raw in [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2e%2fetc%2fpasswd",
            "/a%2f..%2f..%2fetc",
            "/..%5c..%5cwindows",
            "/a\\b",
            "/a%00.html",
            "/a%",
            "/a%2",
            "/a%zz",
            "/a#frag",
            "*",
            "example.com:80",
            "ftp://host/a",
            "http:///a",
            "http://host?q",
            "aaaaaa\u{e9}",
            "http:/\u{e9}/x",
            "\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert!(
                matches!(resolve_target(raw), Err(HttpError::BadRequest(_))),
                "{raw} should be refused, got {:?}",
                resolve_target(raw)
            );
        }
    }

    #[test]
    fn a_target_is_resolved_once_however_often_its_path_is_asked_for() {
        let target = Target::new("/a/%62/../c?q");
        let first = target.path().unwrap();
        assert!(std::ptr::eq(first, target.path().unwrap()), "the same resolution, not a second one");
        assert_eq!(first.decoded(), "/a/c");
        let bad = Target::new("/%2e%2e/etc");
        assert_eq!(bad.path().unwrap_err(), resolve_target("/%2e%2e/etc").unwrap_err());
    }

    #[test]
    fn directory_location_is_re_encoded_and_keeps_the_query() {
        let location = |raw: &str| resolve_target(raw).unwrap().directory_location();
        assert_eq!(location("/docs"), "/docs/");
        assert_eq!(location("/docs?page=2&x"), "/docs/?page=2&x");
        assert_eq!(location("//evil.com"), "/evil.com/");
        assert_eq!(location("/a%20b/c%3Fd"), "/a%20b/c%3Fd/");
        assert_eq!(location("/caf%c3%a9"), "/caf%C3%A9/");
    }

    #[test]
    fn never_escapes_the_root_for_any_short_target() {
        let alphabet = ["/", ".", "..", "%2e", "%2f", "a", "%", "%5c", "?", "%00"];
        for seed in 0u32..50_000 {
            let mut raw = String::from("/");
            let mut x = seed.wrapping_mul(2_654_435_761) | 1;
            for _ in 0..(seed % 10) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                raw.push_str(alphabet[x as usize % alphabet.len()]);
            }
            if let Ok(path) = resolve_target(&raw) {
                for segment in path.segments() {
                    assert!(!segment.is_empty() && segment != b"." && segment != b"..", "{raw}");
                    assert!(!segment.iter().any(|b| matches!(b, b'/' | b'\\' | 0)), "{raw}");
                }
            }
        }
    }
}
