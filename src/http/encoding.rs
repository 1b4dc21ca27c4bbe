//! Content codings (`br`, `zstd`, `gzip`), whether a file's type is worth compressing, and
//! which representation a request's `Accept-Encoding` gets (RFC 9110 §12.5.3).

/// A coding we can send: from a precompressed sibling, or compressed on the fly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    Brotli,
    Zstd,
    Gzip,
}

impl ContentCoding {
    /// Every coding, in our order of preference when the client has none (smallest first).
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

    /// Position in [`ContentCoding::ALL`], for arrays indexed by coding.
    pub fn index(self) -> usize {
        self as usize
    }

    fn is_named_by(self, token: &str) -> bool {
        token.eq_ignore_ascii_case(self.token())
            || (self == ContentCoding::Gzip && token.eq_ignore_ascii_case("x-gzip"))
    }
}

/// A request's `Accept-Encoding`, read once: the weight (q-value, in thousandths) it gives each
/// coding and the identity representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptEncoding {
    /// Per coding, in `ContentCoding::ALL` order; 0 is "not acceptable".
    codings: [u16; 3],
    /// `None` unless `identity` (or `*`) was weighed explicitly.
    identity: Option<u16>,
}

/// The representation a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Coded(ContentCoding),
    Identity,
    /// The client refuses identity and nothing it accepts is available: 406.
    NothingAcceptable,
}

impl AcceptEncoding {
    /// No `Accept-Encoding` field gets the identity representation (what every server does,
    /// though RFC 9110 would allow any coding); an unreadable weight counts as 0.
    pub fn parse(field: Option<&str>) -> AcceptEncoding {
        let mut accept = AcceptEncoding { codings: [0; 3], identity: None };
        let Some(field) = field else { return accept };
        let mut named = [false; 3];
        let mut wildcard = None;
        for item in field.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or_default().trim();
            if token.is_empty() {
                continue;
            }
            let weight = parts
                .filter_map(|param| param.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, value)| parse_qvalue(value.trim()))
                .unwrap_or(0);
            if token == "*" {
                wildcard = Some(weight);
            } else if token.eq_ignore_ascii_case("identity") {
                accept.identity = Some(weight);
            } else if let Some(coding) = ContentCoding::ALL.into_iter().find(|c| c.is_named_by(token)) {
                accept.codings[coding.index()] = weight;
                named[coding.index()] = true;
            }
        }
        // `*` weighs whatever is not named, identity included (§12.5.3).
        if let Some(weight) = wildcard {
            for (slot, named) in accept.codings.iter_mut().zip(named) {
                if !named {
                    *slot = weight;
                }
            }
            accept.identity = accept.identity.or(Some(weight));
        }
        accept
    }

    /// True when the client takes no coding and does take identity (no `Accept-Encoding` at
    /// all, as from most tools): the answer is the file itself, whatever else exists.
    pub fn is_identity_only(&self) -> bool {
        self.codings == [0; 3] && self.identity != Some(0)
    }

    /// Whether the client takes `coding` at all.
    pub fn accepts(&self, coding: ContentCoding) -> bool {
        self.codings[coding.index()] > 0
    }

    /// The acceptable coding the client weighs highest (ours breaking ties), whether or not
    /// it is available yet: the one worth making.
    pub fn most_wanted(&self) -> Option<ContentCoding> {
        self.ranked(|_| true)
    }

    /// What to send when `available` says which codings exist for this file right now: the
    /// acceptable coding weighed highest, unless the client weighs identity explicitly higher.
    pub fn choose(&self, available: impl Fn(ContentCoding) -> bool) -> Choice {
        let identity = self.identity.unwrap_or(1);
        match self.ranked(available) {
            Some(coding) if self.codings[coding.index()] >= identity => Choice::Coded(coding),
            _ if identity > 0 => Choice::Identity,
            Some(coding) => Choice::Coded(coding),
            None => Choice::NothingAcceptable,
        }
    }

    fn ranked(&self, available: impl Fn(ContentCoding) -> bool) -> Option<ContentCoding> {
        let mut best: Option<ContentCoding> = None;
        for coding in ContentCoding::ALL {
            let weight = self.codings[coding.index()];
            if weight > 0 && available(coding) && best.is_none_or(|b| weight > self.codings[b.index()]) {
                best = Some(coding);
            }
        }
        best
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2), in
/// thousandths.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Types whose bytes compress well: text, and the structured text formats served as
/// `application/*` or `image/svg+xml`. Images, audio, video, archives and woff fonts are
/// compressed already.
pub fn is_compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let (kind, subtype) = essence.split_once('/').unwrap_or((essence, ""));
    match kind {
        "text" => true,
        "application" => {
            matches!(
                subtype,
                "javascript"
                    | "json"
                    | "xml"
                    | "wasm"
                    | "x-javascript"
                    | "xhtml+xml"
                    | "rss+xml"
                    | "atom+xml"
                    | "manifest+json"
                    | "ld+json"
                    | "geo+json"
                    | "x-sh"
                    | "toml"
                    | "yaml"
                    | "vnd.ms-fontobject"
            ) || subtype.ends_with("+xml")
                || subtype.ends_with("+json")
        }
        "image" => matches!(subtype, "svg+xml" | "x-icon" | "vnd.microsoft.icon" | "bmp"),
        "font" => matches!(subtype, "ttf" | "otf"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::ContentCoding::{self, *};
    use super::*;

    fn accepted(field: Option<&str>) -> Vec<ContentCoding> {
        let accept = AcceptEncoding::parse(field);
        ContentCoding::ALL.into_iter().filter(|c| accept.accepts(*c)).collect()
    }

    #[test]
    fn reads_accept_encoding() {
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
        assert_eq!(accepted(Some("gzip;q=1.5, br;q=0.0001")), []);
    }

    #[test]
    fn q_values_rank_codings_and_ours_break_ties() {
        let wanted = |field: &str| AcceptEncoding::parse(Some(field)).most_wanted();
        assert_eq!(wanted("gzip, deflate, br, zstd"), Some(Brotli));
        assert_eq!(wanted("gzip;q=1, br;q=0.5"), Some(Gzip));
        assert_eq!(wanted("br;q=0.2, zstd;q=0.9, gzip;q=0.9"), Some(Zstd));
        assert_eq!(wanted("deflate"), None);
        assert_eq!(wanted("*;q=0.5, gzip;q=0.6"), Some(Gzip));
    }

    #[test]
    fn chooses_among_what_exists_and_respects_identity_q_0() {
        let choose = |field: Option<&str>, available: &[ContentCoding]| {
            AcceptEncoding::parse(field).choose(|c| available.contains(&c))
        };
        assert_eq!(choose(None, &[Brotli, Gzip]), Choice::Identity);
        assert_eq!(choose(Some("gzip, br"), &[Brotli, Gzip]), Choice::Coded(Brotli));
        assert_eq!(choose(Some("gzip, br"), &[Gzip]), Choice::Coded(Gzip));
        assert_eq!(choose(Some("gzip, br"), &[]), Choice::Identity);
        assert_eq!(choose(Some("br, identity;q=0"), &[]), Choice::NothingAcceptable);
        assert_eq!(choose(Some("br, *;q=0"), &[Gzip]), Choice::NothingAcceptable);
        assert_eq!(choose(Some("br, *;q=0"), &[Brotli]), Choice::Coded(Brotli));
        assert_eq!(choose(Some("*;q=0, identity"), &[Brotli]), Choice::Identity);
        assert_eq!(choose(Some("identity;q=1, br;q=0.5"), &[Brotli]), Choice::Identity);
        assert_eq!(choose(Some("identity;q=0.1, br;q=0.5"), &[Brotli]), Choice::Coded(Brotli));
        for (field, identity_only) in [
            (None, true),
            (Some("identity"), true),
            (Some("deflate"), true),
            (Some("br"), false),
            (Some("identity;q=0"), false),
        ] {
            let accept = AcceptEncoding::parse(field);
            assert_eq!(accept.is_identity_only(), identity_only, "{field:?}");
            if identity_only {
                assert_eq!(accept.choose(|_| true), Choice::Identity, "{field:?}");
            }
        }
    }

    #[test]
    fn compresses_text_formats_only() {
        for compressible in [
            "text/html; charset=utf-8",
            "text/css",
            "application/javascript",
            "application/json",
            "image/svg+xml",
            "application/wasm",
            "application/vnd.api+json",
        ] {
            assert!(is_compressible(compressible), "{compressible}");
        }
        for compressed in [
            "image/png",
            "image/jpeg",
            "font/woff2",
            "application/zip",
            "application/octet-stream",
            "video/mp4",
            "application/gzip",
        ] {
            assert!(!is_compressible(compressed), "{compressed}");
        }
    }
}
