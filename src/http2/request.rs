//! A stream's decoded header list as the [`Request`] every protocol answers (RFC 9113 §8.2,
//! §8.3): pseudo-header fields for the request line, the rest read as HTTP/1.1's are.

use crate::http::host::is_valid_host;
use crate::http::request::{CommonFields, parse_content_length};
use crate::http::{HttpError, Method, Request, Target, Version};

use super::hpack::HeaderList;

/// Why a header list is not a request to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (§8.1.1): the stream is reset with PROTOCOL_ERROR, no response.
    Malformed(&'static str),
    /// Well-formed HTTP/2 but a request we answer with an error status.
    Answer(HttpError),
}

/// The request `list` carries, borrowing from it, and the body length it declares
/// (`content-length`), which its DATA must then add up to (§8.1.1).
pub fn request_from(list: &HeaderList) -> Result<(Request<'_>, Option<u64>), Refusal> {
    if list.overflowed() {
        return Err(Refusal::Answer(HttpError::HeaderFieldsTooLarge));
    }
    let (mut method, mut scheme, mut path, mut authority) = (None, None, None, None);
    let mut host = None;
    let mut content_length = None;
    let mut common = CommonFields::default();
    let mut regular_seen = false;
    for (name, value) in list.iter() {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular_seen {
                return Err(Refusal::Malformed("pseudo-header field after a regular one"));
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"path" => &mut path,
                b"authority" => &mut authority,
                _ => return Err(Refusal::Malformed("unknown or response pseudo-header field")),
            };
            if slot.replace(value).is_some() {
                return Err(Refusal::Malformed("repeated pseudo-header field"));
            }
            continue;
        }
        regular_seen = true;
        if !name.iter().all(|&b| FIELD_NAME_BYTES[b as usize]) || name.is_empty() {
            return Err(Refusal::Malformed("field name not a lowercase token"));
        }
        if value.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
            || value.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
            || value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        {
            return Err(Refusal::Malformed("field value with NUL, CR, LF or edge whitespace"));
        }
        // Only ASCII token bytes passed: the name is text.
        let name = std::str::from_utf8(name).unwrap_or_default();
        match name {
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" => {
                return Err(Refusal::Malformed("connection-specific field")); // §8.2.2
            }
            "te" if value != b"trailers" => return Err(Refusal::Malformed("te other than trailers")),
            "host" => {
                if host.replace(value).is_some() {
                    return Err(Refusal::Answer(HttpError::BadRequest("duplicate Host")));
                }
            }
            "content-length" => {
                let length =
                    parse_content_length(value).map_err(|_| Refusal::Malformed("invalid content-length"))?;
                if content_length.replace(length).is_some() {
                    return Err(Refusal::Malformed("repeated content-length")); // as HTTP/1.1's rule
                }
            }
            _ => common.absorb(name, value),
        }
    }
    let method = method.ok_or(Refusal::Malformed("no :method"))?;
    let method = std::str::from_utf8(method).map_err(|_| Refusal::Malformed(":method not a token"))?;
    let method = Method::from_token(method);
    let path = match (&method, path, scheme) {
        // §8.5: CONNECT names only an authority; refused with 405 like any method we do not serve.
        (Method::Standard("CONNECT"), None, None) if authority.is_some() => b"".as_slice(),
        (Method::Standard("CONNECT"), None, None) => {
            return Err(Refusal::Malformed("CONNECT without :authority"));
        }
        (_, None, _) | (_, _, None) => return Err(Refusal::Malformed("no :path or :scheme")),
        (_, Some(b""), _) => return Err(Refusal::Malformed("empty :path")),
        (_, Some(path), Some(_)) => path,
    };
    let target =
        std::str::from_utf8(path).map_err(|_| Refusal::Answer(HttpError::BadRequest("invalid target")))?;
    // §8.3.1: `:authority` is the host; a `Host` beside it naming another is malformed.
    let host = match (authority, host) {
        (Some(authority), Some(host)) if authority != host => {
            return Err(Refusal::Malformed("host differs from :authority"));
        }
        (authority, host) => authority.or(host),
    };
    if host.is_some_and(|value| !is_valid_host(value)) {
        return Err(Refusal::Answer(HttpError::BadRequest("invalid Host")));
    }
    let request = common.into_request(method, Target::new(target), Version::Http2, host);
    Ok((request, content_length))
}

/// Trailers end a request (§8.1): regular fields only, which we read and drop.
pub fn check_trailers(list: &HeaderList) -> Result<(), Refusal> {
    match list.iter().any(|(name, _)| name.starts_with(b":")) {
        true => Err(Refusal::Malformed("pseudo-header field in trailers")),
        false => Ok(()),
    }
}

/// The bytes of a field name in HTTP/2: a token (RFC 9110 §5.6.2) in lowercase (§8.2.1).
const FIELD_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::hpack::HeaderList;

    fn list(fields: &[(&str, &str)]) -> HeaderList {
        let mut list = HeaderList::default();
        for (name, value) in fields {
            list.push_for_test(name.as_bytes(), value.as_bytes());
        }
        list
    }

    const GET: [(&str, &str); 4] =
        [(":method", "GET"), (":scheme", "https"), (":path", "/a?b"), (":authority", "example.org")];

    #[test]
    fn pseudo_headers_make_the_request_line_and_the_rest_are_read_as_fields() {
        let mut fields = GET.to_vec();
        fields.extend([
            ("accept-encoding", "gzip"),
            ("accept-encoding", "br"),
            ("user-agent", "curl"),
            ("range", "bytes=0-1"),
        ]);
        let list = list(&fields);
        let (request, declared) = request_from(&list).unwrap();
        assert_eq!(declared, None);
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.target.raw, "/a?b");
        assert_eq!(request.version, Version::Http2);
        assert_eq!(request.host, Some(&b"example.org"[..]));
        assert_eq!(request.fields.accept_encoding.as_deref(), Some("gzip, br"));
        assert_eq!(request.fields.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(request.user_agent, Some(&b"curl"[..]));
    }

    #[test]
    fn host_stands_in_for_a_missing_authority_and_must_agree_with_one() {
        let without = list(&[GET[0], GET[1], GET[2], ("host", "h.example")]);
        assert_eq!(request_from(&without).unwrap().0.host, Some(&b"h.example"[..]));
        let differing = list(&[GET[0], GET[1], GET[2], GET[3], ("host", "other")]);
        assert!(matches!(request_from(&differing), Err(Refusal::Malformed(_))), "§8.3.1");
        let bad = list(&[GET[0], GET[1], GET[2], (":authority", "user@evil")]);
        assert!(matches!(request_from(&bad), Err(Refusal::Answer(HttpError::BadRequest(_)))));
    }

    #[test]
    fn malformed_lists_are_refused_as_the_rfc_lists_them() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![GET[1], GET[2]],
            vec![GET[0], GET[2]],
            vec![GET[0], GET[1]],
            vec![GET[0], GET[1], (":path", "")],
            vec![GET[0], GET[0], GET[1], GET[2]],
            vec![GET[0], GET[1], ("accept", "*/*"), GET[2]],
            vec![GET[0], GET[1], GET[2], (":status", "200")],
            vec![GET[0], GET[1], GET[2], ("Accept", "*/*")],
            vec![GET[0], GET[1], GET[2], ("connection", "keep-alive")],
            vec![GET[0], GET[1], GET[2], ("transfer-encoding", "chunked")],
            vec![GET[0], GET[1], GET[2], ("te", "gzip")],
            vec![GET[0], GET[1], GET[2], ("x", " padded")],
            vec![GET[0], GET[1], GET[2], ("x", "a\r\nb")],
            vec![(":method", "CONNECT")],
            vec![GET[0], GET[1], GET[2], ("content-length", "1, 1")],
            vec![GET[0], GET[1], GET[2], ("content-length", "1"), ("content-length", "1")],
        ];
        for fields in cases {
            assert!(matches!(request_from(&list(&fields)), Err(Refusal::Malformed(_))), "{fields:?}");
        }
        let with_length = list(&[GET[0], GET[1], GET[2], ("content-length", "12")]);
        assert_eq!(request_from(&with_length).unwrap().1, Some(12));
        let trailers = list(&[GET[0], GET[1], GET[2], ("te", "trailers")]);
        assert!(request_from(&trailers).is_ok());
        let connect = list(&[(":method", "CONNECT"), (":authority", "example.org:443")]);
        assert_eq!(request_from(&connect).unwrap().0.method, Method::Standard("CONNECT"));
    }
}
