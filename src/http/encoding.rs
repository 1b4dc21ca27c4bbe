//! Content codings we can serve from precompressed siblings (`name.br`, `name.zst`,
//! `name.gz`), and which
//! of them a request's `Accept-Encoding` allows (RFC 9110 §12.5.3).

/// A coding with a precompressed sibling file, in our order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    Brotli,
    Zstd,
    Gzip,
}

impl ContentCoding {
    /// Every coding we look for, best first.
    pub const ALL: [ContentCoding; 3] = [ContentCoding::Brotli, ContentCoding::Zstd, ContentCoding::Gzip];

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            ContentCoding::Brotli => "br",
            ContentCoding::Zstd => "zstd",
            ContentCoding::Gzip => "gzip",
        }
    }

    /// The suffix of the sibling file holding this coding.
    pub fn file_suffix(self) -> &'static str {
        match self {
            ContentCoding::Brotli => ".br",
            ContentCoding::Zstd => ".zst",
            ContentCoding::Gzip => ".gz",
        }
    }

    /// Whether `accept_encoding` allows this coding: named (or matched by `*`) with q > 0.
    /// No `Accept-Encoding` at all gets the identity representation.
    pub fn is_accepted(self, accept_encoding: Option<&str>) -> bool {
        let Some(accept) = accept_encoding else {
            return false;
        };
        let mut wildcard = None;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|param| param.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, value)| value.trim().parse::<f32>().ok());
            let positive = q.is_some_and(|q| q > 0.0);
            let names_us = coding.eq_ignore_ascii_case(self.token())
                || (self == ContentCoding::Gzip && coding.eq_ignore_ascii_case("x-gzip"));
            if names_us {
                return positive;
            }
            if coding == "*" {
                wildcard = Some(positive);
            }
        }
        wildcard.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::ContentCoding::{self, *};

    #[test]
    fn reads_accept_encoding() {
        let accepted = |header: Option<&str>| -> Vec<ContentCoding> {
            ContentCoding::ALL.into_iter().filter(|c| c.is_accepted(header)).collect()
        };
        assert_eq!(accepted(None), []);
        assert_eq!(accepted(Some("")), []);
        assert_eq!(accepted(Some("identity")), []);
        assert_eq!(accepted(Some("gzip, deflate, br")), [Brotli, Gzip]);
        assert_eq!(accepted(Some("gzip, deflate, br, zstd")), [Brotli, Zstd, Gzip]);
        assert_eq!(accepted(Some("zstd")), [Zstd]);
        assert_eq!(accepted(Some("GZIP")), [Gzip]);
        assert_eq!(accepted(Some("x-gzip")), [Gzip]);
        assert_eq!(accepted(Some("br;q=0, gzip;q=0.5")), [Gzip]);
        assert_eq!(accepted(Some("br; q=0.0")), []);
        assert_eq!(accepted(Some("*")), [Brotli, Zstd, Gzip]);
        assert_eq!(accepted(Some("*;q=0, gzip")), [Gzip]);
        assert_eq!(accepted(Some("br;q=0, *")), [Zstd, Gzip]);
        assert_eq!(accepted(Some("gzip;q=bogus")), []);
    }
}
