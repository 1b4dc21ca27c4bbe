//! Which host a request is for, as a name to choose a site by (RFC 9110 §7.2, RFC 9112 §3.2.2).
//!
//! The authority comes from an absolute-form target when there is one (the `Host` field is
//! then ignored), else from `Host`. It is normalised the way names are compared (port gone,
//! ASCII lowercase, one trailing dot dropped), and anything that is not a plain DNS name or IP
//! address (empty labels, `%`, `_`, non-ASCII, userinfo) normalises to nothing, so it can
//! never match a configured site. The name is only ever compared, never joined into a path.

use super::Request;
use super::target::split_absolute_form;

/// The longest host name DNS carries (RFC 1035 §2.3.4), so the longest worth looking up.
pub const MAX_HOST_NAME: usize = 253;

/// A normalised host name, kept in place: choosing a site allocates nothing.
#[derive(Clone, Copy)]
pub struct HostName {
    bytes: [u8; MAX_HOST_NAME],
    len: u8,
}

impl HostName {
    pub fn as_str(&self) -> &str {
        // Only ASCII letters, digits, `-`, `.`, `:` and brackets are ever written.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The name without its first label (`a.example.org` → `example.org`), for matching a
    /// one-label wildcard.
    pub fn parent(&self) -> Option<&str> {
        let name = self.as_str();
        name.split_once('.').map(|(_, parent)| parent).filter(|parent| !parent.is_empty())
    }
}

impl std::fmt::Debug for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostName({:?})", self.as_str())
    }
}

impl PartialEq<&str> for HostName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The authority `request` names: its absolute-form target's, else its `Host` field.
pub fn request_authority<'h>(request: &Request<'h>) -> Option<&'h [u8]> {
    match split_absolute_form(request.target.raw) {
        Some((authority, _)) => Some(authority.as_bytes()),
        None => request.host,
    }
}

/// `authority` as a name to compare: the port stripped, ASCII lowercase, one trailing dot
/// dropped; `None` when it is not a plain DNS name, IPv4 address or bracketed IPv6 literal.
pub fn normalise_host(authority: &[u8]) -> Option<HostName> {
    let host = without_port(authority)?;
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_NAME {
        return None;
    }
    let bracketed = host[0] == b'[';
    let mut name = HostName { bytes: [0; MAX_HOST_NAME], len: host.len() as u8 };
    for (slot, &byte) in name.bytes.iter_mut().zip(host) {
        let allowed = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.')
            || (bracketed && matches!(byte, b':' | b'[' | b']'));
        if !allowed {
            return None;
        }
        *slot = byte.to_ascii_lowercase();
    }
    // No empty label: no leading dot, no `..`, no second trailing dot.
    let empty_label = host[0] == b'.' || host.ends_with(b".") || host.windows(2).any(|pair| pair == b"..");
    (bracketed || !empty_label).then_some(name)
}

/// `authority` without its `:port` (an IPv6 literal keeps its brackets), or `None` when what
/// follows the host is not a port.
pub fn without_port(authority: &[u8]) -> Option<&[u8]> {
    match authority.strip_prefix(b"[") {
        Some(literal) => {
            let end = literal.iter().position(|&b| b == b']')? + 2;
            is_port_or_nothing(&authority[end..]).then_some(&authority[..end])
        }
        None => match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => is_port_or_nothing(&authority[colon..]).then_some(&authority[..colon]),
            None => Some(authority),
        },
    }
}

/// `""` or `:digits` (RFC 3986 §3.2.3: the port may be empty).
fn is_port_or_nothing(rest: &[u8]) -> bool {
    match rest {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name, an IPv4
/// address (a reg-name syntactically) or a bracketed IPv6 literal, then optional port digits.
/// Empty is allowed (RFC 9112 §3.2: a target without an authority).
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(literal) => {
            let Some(close) = literal.iter().position(|&b| b == b']') else { return false };
            let address = std::str::from_utf8(&literal[..close]).ok();
            if address.and_then(|text| text.parse::<core::net::Ipv6Addr>().ok()).is_none() {
                return false;
            }
            match &literal[close + 1..] {
                [] => return true,
                [b':', port @ ..] => (&b""[..], port),
                _ => return false,
            }
        }
        // Most hosts are plain names or addresses: one pass over the name's bytes reaches the
        // port's colon, or the end. Anything else (percent-encoding) takes the general path.
        None => match value.iter().position(|&b| !REG_NAME_BYTES[b as usize]) {
            None => return true,
            Some(colon) if value[colon] == b':' => (&b""[..], &value[colon + 1..]),
            Some(_) => match value.iter().position(|&b| b == b':') {
                Some(colon) => (&value[..colon], &value[colon + 1..]),
                None => (value, &b""[..]),
            },
        },
    };
    port.iter().all(u8::is_ascii_digit) && is_reg_name(host)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn is_reg_name(name: &[u8]) -> bool {
    let mut rest = name;
    while let [first, tail @ ..] = rest {
        rest = match first {
            b'%' => match tail {
                [high, low, after @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => after,
                _ => return false,
            },
            &b if REG_NAME_BYTES[b as usize] => tail,
            _ => return false,
        };
    }
    true
}

/// The unreserved and sub-delims bytes a reg-name may hold as they are, as a table: every
/// request's `Host` goes through it, a byte at a time.
const REG_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=');
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{Parsed, parse_head};

    fn normalised(authority: &str) -> Option<String> {
        normalise_host(authority.as_bytes()).map(|name| name.as_str().to_owned())
    }

    #[test]
    fn names_lose_their_port_case_and_one_trailing_dot() {
        let cases = [
            ("example.org", "example.org"),
            ("Example.ORG:8080", "example.org"),
            ("example.org.", "example.org"),
            ("example.org.:443", "example.org"),
            ("example.org:", "example.org"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("[::1]:8080", "[::1]"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ];
        for (authority, expected) in cases {
            assert_eq!(normalised(authority).as_deref(), Some(expected), "{authority}");
        }
    }

    #[test]
    fn what_is_not_a_plain_name_never_names_a_site() {
        let long = format!("{}.org", "a".repeat(250));
        let bad = [
            "",
            ".",
            ":80",
            "example..org",
            ".example.org",
            "example.org..",
            "exa_mple.org",
            "ex%41mple.org",
            "exämple.org",
            "user@example.org",
            "example.org:80x",
            "a:b:80",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "exa mple.org",
            "example.org/x",
            &long,
        ];
        for authority in bad {
            assert_eq!(normalised(authority), None, "{authority:?}");
        }
        assert!(normalised(&"a".repeat(MAX_HOST_NAME)).is_some());
    }

    #[test]
    fn an_absolute_form_target_outranks_the_host_field() {
        let authority = |head: &'static str| match parse_head(head.as_bytes()) {
            Ok(Parsed::Complete { request, .. }) => request_authority(&request).map(<[u8]>::to_vec),
            other => panic!("{other:?}"),
        };
        let absolute = "GET HTTP://A.example:8080/x HTTP/1.1\r\nHost: b.example\r\n\r\n";
        assert_eq!(authority(absolute), Some(b"A.example:8080".to_vec()));
        assert_eq!(authority("GET /x HTTP/1.1\r\nHost: b.example\r\n\r\n"), Some(b"b.example".to_vec()));
        assert_eq!(authority("GET /x HTTP/1.0\r\n\r\n"), None);
    }

    #[test]
    fn the_parent_drops_one_label() {
        let name = |text: &str| normalise_host(text.as_bytes()).unwrap();
        assert_eq!(name("a.example.org").parent(), Some("example.org"));
        assert_eq!(name("org").parent(), None);
    }
}
