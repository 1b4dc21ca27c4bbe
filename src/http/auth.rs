//! HTTP Basic authentication (RFC 7617), sans-I/O: which paths it guards, what the
//! `Authorization` field says, and the challenge a `401` carries. Checking a password is the
//! site's business (`crate::auth`).

use base64::Engine;

/// The user and password of `Authorization: Basic <base64(user:password)>`, or `None` when
/// the field is another scheme or malformed (bad base64, no colon, not UTF-8).
pub(crate) fn basic_credentials(field: &str) -> Option<(String, String)> {
    let (scheme, token) = field.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The `WWW-Authenticate` value for `realm`: a quoted-string (RFC 9110 §5.6.4), saying that
/// credentials are UTF-8 (RFC 7617 §2.1).
pub(crate) fn challenge(realm: &str) -> String {
    let mut quoted = String::with_capacity(realm.len() + 2);
    for c in realm.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!("Basic realm=\"{quoted}\", charset=\"UTF-8\"")
}

/// Whether the decoded path lies under one of `prefixes` (whole segments: `/private` guards
/// `/private` and `/private/x`, not `/privateer`); no prefixes guard the whole site.
pub(crate) fn is_guarded(prefixes: &[String], decoded_path: &str) -> bool {
    prefixes.is_empty()
        || prefixes.iter().any(|prefix| {
            let prefix = prefix.trim_end_matches('/');
            match decoded_path.strip_prefix(prefix) {
                Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
                None => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_credentials() {
        let pair = |user: &str, password: &str| Some((user.to_owned(), password.to_owned()));
        assert_eq!(basic_credentials("Basic YWxpY2U6c2VjcmV0"), pair("alice", "secret"));
        assert_eq!(basic_credentials("basic  YWxpY2U6c2VjcmV0 "), pair("alice", "secret"));
        // A colon in the password is the password's (RFC 7617 §2: the user-id has none).
        assert_eq!(basic_credentials("Basic YWxpY2U6YTpi"), pair("alice", "a:b"));
        assert_eq!(basic_credentials("Basic w6lsaXNlOnDDqXRhbmNl"), pair("élise", "pétance"));
        assert_eq!(basic_credentials("Basic Og=="), pair("", ""));
        for malformed in
            ["Bearer abc", "Basic", "Basic !!!!", "Basic YWxpY2U=", "Basic /w==", "YWxpY2U6c2VjcmV0"]
        {
            assert_eq!(basic_credentials(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn the_challenge_quotes_the_realm() {
        assert_eq!(challenge("staff"), r#"Basic realm="staff", charset="UTF-8""#);
        assert_eq!(challenge("a \"b\" \\c\r\n"), r#"Basic realm="a \"b\" \\c", charset="UTF-8""#);
    }

    #[test]
    fn guards_whole_segments_under_a_prefix() {
        let prefixes = vec!["/private".to_owned(), "/admin/".to_owned()];
        for guarded in ["/private", "/private/", "/private/a.txt", "/admin", "/admin/x/y"] {
            assert!(is_guarded(&prefixes, guarded), "{guarded}");
        }
        for open in ["/", "/privateer", "/public/private", "/adminx"] {
            assert!(!is_guarded(&prefixes, open), "{open}");
        }
        assert!(is_guarded(&[], "/anything"));
        assert!(is_guarded(&["/".to_owned()], "/anything"));
    }
}
