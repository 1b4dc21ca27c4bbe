//! When to renew, and when to try again: pure arithmetic over Unix seconds, so every rule is
//! a unit test.
//!
//! - A CA that offers renewal information (ARI, RFC 9773) suggests a window; the helper picks
//!   a moment in it at random (§4.2), so a fleet renewing at once is spread out, and renews at
//!   once if the window has begun. Otherwise a certificate is renewed when a third of its
//!   lifetime is left (30 days of a 90-day one, 2 of a 6-day one).
//! - The helper looks again at least every [`CHECK_EVERY`] (a CA may move a window earlier
//!   for a revocation), and at the time the CA's `Retry-After` names.
//! - A failed attempt waits [`FIRST_RETRY`], doubling each time up to [`LONGEST_RETRY`], or
//!   as long as a `Retry-After` says if that is longer (a rate limit).

use serde_json::Value;

use crate::tls::expiry::days_from_civil;

use super::jws::b64;

/// Longest between two looks at a certificate.
pub const CHECK_EVERY: i64 = 12 * 3600;
/// The wait after a first failure.
pub const FIRST_RETRY: i64 = 60;
/// The longest wait between failed attempts.
pub const LONGEST_RETRY: i64 = 6 * 3600;

/// A CA's suggested renewal window (RFC 9773 §4.2), Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// The ARI certificate identifier (RFC 9773 §4.1): the authority key identifier and the
/// serial number, each base64url, joined by a dot. `None` without an authority key identifier.
pub fn cert_id(der: &[u8]) -> Option<String> {
    let key_id = crate::tls::expiry::authority_key_id(der)?;
    let serial = crate::tls::expiry::serial(der)?;
    Some(format!("{}.{}", b64(key_id), b64(serial)))
}

/// A `renewalInfo` response's window, if it is well-formed (start before end).
pub fn parse_window(body: &Value) -> Option<Window> {
    let window = body.get("suggestedWindow")?;
    let start = rfc3339(window.get("start")?.as_str()?)?;
    let end = rfc3339(window.get("end")?.as_str()?)?;
    (start < end).then_some(Window { start, end })
}

/// When a certificate valid from `not_before` to `not_after` is renewed: in `window` (at
/// `random`, 0 to 1, of the way through it) when the CA gave one, else with a third of its
/// lifetime left.
pub fn renew_at(not_before: i64, not_after: i64, window: Option<Window>, random: f64) -> i64 {
    match window {
        Some(Window { start, end }) => start + ((end - start) as f64 * random.clamp(0.0, 1.0)) as i64,
        None => not_after - (not_after - not_before).max(0) / 3,
    }
}

/// When the helper looks at a certificate next, now that it is `now` and renewal is due at
/// `due`: at `due`, or after [`CHECK_EVERY`] or the CA's `retry_after` if those come first.
pub fn next_check(now: i64, due: i64, retry_after: Option<i64>) -> i64 {
    let look_again = now + retry_after.map_or(CHECK_EVERY, |seconds| seconds.clamp(60, CHECK_EVERY));
    due.max(now).min(look_again)
}

/// The wait after the `failures`th failure in a row (1 for the first), at least the CA's
/// `retry_after`.
pub fn backoff(failures: u32, retry_after: Option<i64>) -> i64 {
    let doubled = FIRST_RETRY.saturating_mul(1i64 << failures.saturating_sub(1).min(20));
    doubled.min(LONGEST_RETRY).max(retry_after.unwrap_or(0))
}

/// An RFC 3339 timestamp (`2025-01-02T04:00:00Z`, fractions and offsets allowed), as Unix
/// seconds (fractions dropped).
pub fn rfc3339(text: &str) -> Option<i64> {
    let field = |range: std::ops::Range<usize>| text.get(range).and_then(|digits| digits.parse::<i64>().ok());
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = 86_400;

    #[test]
    fn without_ari_a_third_of_the_lifetime_is_left() {
        assert_eq!(renew_at(0, 90 * DAY, None, 0.5), 60 * DAY);
        assert_eq!(renew_at(1000, 1000 + 6 * DAY, None, 0.0), 1000 + 4 * DAY); // short-lived profile
        assert_eq!(renew_at(500, 100, None, 0.0), 100); // nonsense validity: at once
    }

    #[test]
    fn with_ari_a_random_moment_in_the_window() {
        let window = Some(Window { start: 1000, end: 2000 });
        assert_eq!(renew_at(0, 90 * DAY, window, 0.0), 1000);
        assert_eq!(renew_at(0, 90 * DAY, window, 0.25), 1250);
        assert_eq!(renew_at(0, 90 * DAY, window, 1.0), 2000);
        assert_eq!(renew_at(0, 90 * DAY, window, 7.0), 2000);
    }

    #[test]
    fn the_renewal_info_window_is_parsed_from_rfc_9773s_example() {
        let body = json!({
            "suggestedWindow": { "start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z" },
            "explanationURL": "https://acme.example.com/docs/ari"
        });
        let start = days_from_civil(2025, 1, 2) * DAY + 4 * 3600;
        assert_eq!(parse_window(&body), Some(Window { start, end: start + DAY }));
        let backwards =
            json!({ "suggestedWindow": { "start": "2025-01-03T04:00:00Z", "end": "2025-01-02T04:00:00Z" } });
        assert_eq!(parse_window(&backwards), None);
        assert_eq!(parse_window(&json!({ "suggestedWindow": { "start": "soon" } })), None);
        assert_eq!(parse_window(&json!({})), None);
    }

    #[test]
    fn rfc3339_with_fractions_and_offsets() {
        let base = days_from_civil(2025, 1, 2) * DAY + 4 * 3600;
        assert_eq!(rfc3339("2025-01-02T04:00:00Z"), Some(base));
        assert_eq!(rfc3339("2025-01-02T04:00:00.123456789Z"), Some(base));
        assert_eq!(rfc3339("2025-01-02T06:30:00+02:30"), Some(base));
        assert_eq!(rfc3339("2025-01-02T00:00:00-04:00"), Some(base));
        for bad in
            ["2025-01-02", "2025-13-02T04:00:00Z", "2025-01-02T04:00:00", "2025-01-02T04:00:00+0200", "x"]
        {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn checks_come_at_least_twice_a_day_and_when_the_ca_says() {
        assert_eq!(next_check(0, 30 * DAY, None), CHECK_EVERY);
        assert_eq!(next_check(0, 3600, None), 3600);
        assert_eq!(next_check(5000, 10, None), 5000); // due already: now
        assert_eq!(next_check(0, 30 * DAY, Some(7200)), 7200);
        assert_eq!(next_check(0, 30 * DAY, Some(1)), 60);
        assert_eq!(next_check(0, 30 * DAY, Some(10 * DAY)), CHECK_EVERY);
    }

    #[test]
    fn failures_back_off_doubling_up_to_a_cap_and_honour_retry_after() {
        let waits: Vec<i64> = (1..=6).map(|failures| backoff(failures, None)).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920]);
        assert_eq!(backoff(40, None), LONGEST_RETRY);
        assert_eq!(backoff(1, Some(3600)), 3600); // a rate limit's Retry-After
        assert_eq!(backoff(9, Some(10)), LONGEST_RETRY.min(60 << 8));
    }

    #[test]
    fn the_ari_cert_id_is_the_key_id_and_the_serial() {
        let issuer_key = rcgen::KeyPair::generate().unwrap();
        let mut issuer_params = rcgen::CertificateParams::new(vec!["ca.test".to_owned()]).unwrap();
        issuer_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // RFC 9773 §4.1's example: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
        // serial 00:87:65:43:21 -> "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
        let key_id = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C,
            0xDE, 0x01, 0xC8, 0xD4,
        ];
        issuer_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_id.to_vec());
        let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
        let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x87, 0x65, 0x43, 0x21]));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap();
        assert_eq!(cert_id(cert.der()).as_deref(), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
    }
}
