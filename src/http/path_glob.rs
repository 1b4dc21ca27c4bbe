//! Path patterns for `--header-for GLOB 'Name: value'`: headers for the responses to some
//! paths only, such as `Cache-Control: immutable` for fingerprinted assets.
//!
//! A pattern is matched against the request's path after decoding and dot-segment removal
//! ([`crate::http::SafePath`]), so `/assets/%61pp.js` and `/x/../assets/app.js` match
//! `/assets/*.js` exactly as `/assets/app.js` does. `*` matches any run of characters within
//! one segment, `**` any run across segments, `?` one character other than `/`; everything
//! else matches itself.

use super::fields::ExtraHeader;

/// A checked pattern: it starts with `/`, as every path it is matched with does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob(String);

impl PathGlob {
    pub fn parse(text: &str) -> Result<PathGlob, &'static str> {
        if !text.starts_with('/') {
            return Err("a path pattern starts with / (e.g. '/assets/*.js')");
        }
        Ok(PathGlob(text.to_owned()))
    }

    pub fn matches(&self, path: &str) -> bool {
        glob_match(self.0.as_bytes(), path.as_bytes())
    }
}

/// Backtracking match, linear in practice: patterns are short and written by the operator.
fn glob_match(pattern: &[u8], path: &[u8]) -> bool {
    match pattern {
        [] => path.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|skip| glob_match(rest, &path[skip..])),
        [b'*', rest @ ..] => {
            let segment_end = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
            (0..=segment_end).any(|skip| glob_match(rest, &path[skip..]))
        }
        [b'?', rest @ ..] => matches!(path, [first, tail @ ..] if *first != b'/' && glob_match(rest, tail)),
        [literal, rest @ ..] => {
            matches!(path, [first, tail @ ..] if first == literal && glob_match(rest, tail))
        }
    }
}

/// `--header-for`: a header for the successful and redirect responses to the paths a pattern
/// matches. Errors are left out, as nginx's `add_header` leaves them out: a 404 must not be
/// cached for a year because its path looks like an asset's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHeader {
    pub pattern: PathGlob,
    pub header: ExtraHeader,
}

impl PathHeader {
    /// Whether the response to `path` with `status` gets this header.
    pub fn applies(&self, path: &str, status: u16) -> bool {
        (200..400).contains(&status) && self.pattern.matches(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> PathGlob {
        PathGlob::parse(text).unwrap()
    }

    #[test]
    fn stars_stay_in_their_segment_double_stars_cross_them() {
        let cases = [
            ("/assets/*.js", "/assets/app.3f9a.js", true),
            ("/assets/*.js", "/assets/app.js.map", false),
            ("/assets/*.js", "/assets/sub/app.js", false),
            ("/assets/**.js", "/assets/sub/app.js", true),
            ("/assets/**", "/assets/", true),
            ("/assets/**", "/assetsX", false),
            ("/*.html", "/index.html", true),
            ("/*.html", "/docs/index.html", false),
            ("/**/*.css", "/a/b/site.css", true),
            ("/**/*.css", "/site.css", false), // `/**/` needs a segment between the slashes
            ("/img/?.png", "/img/a.png", true),
            ("/img/?.png", "/img/ab.png", false),
            ("/img/?.png", "/img//.png", false),
            ("/exact", "/exact", true),
            ("/exact", "/exact/", false),
            ("/**", "/", true),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(glob(pattern).matches(path), expected, "{pattern} on {path}");
        }
    }

    #[test]
    fn patterns_must_be_paths() {
        assert!(PathGlob::parse("*.js").is_err());
        assert!(PathGlob::parse("").is_err());
        assert!(PathGlob::parse("/ok/*").is_ok());
    }

    #[test]
    fn only_success_and_redirects_get_path_headers() {
        let rule = PathHeader {
            pattern: glob("/assets/*"),
            header: ExtraHeader::parse("Cache-Control: public, max-age=31536000, immutable").unwrap(),
        };
        for (status, expected) in
            [(200, true), (206, true), (304, true), (308, true), (404, false), (500, false)]
        {
            assert_eq!(rule.applies("/assets/a.js", status), expected, "{status}");
        }
        assert!(!rule.applies("/other/a.js", 200));
    }
}
