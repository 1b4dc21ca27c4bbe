//! When a certificate stops being valid: its `notAfter`, read from the DER (RFC 5280 §4.1),
//! for the status report's seconds-until-expiry. Only the path to that one field is walked:
//! `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
//! signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }`.

/// `notAfter` as seconds since the Unix epoch, or `None` if `der` is not shaped so.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, certificate, _) = element(der)?;
    let (_, mut tbs, _) = element(certificate)?;
    let (tag, _, rest) = element(tbs)?;
    if tag == 0xA0 {
        tbs = rest; // the explicit version
    }
    for _ in 0..3 {
        tbs = element(tbs)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = element(tbs)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    let time = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSS, years 1950 to 2049 (RFC 5280 §4.1.2.5.1).
        0x17 if time.len() == 12 => {
            let yy: i64 = time[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &time[2..])
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        0x18 if time.len() == 14 => (time[..4].parse().ok()?, &time[4..]),
        _ => return None,
    };
    let field = |at: usize| rest.get(at..at + 2).and_then(|digits| digits.parse::<i64>().ok());
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// One DER element of `input`: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let count = usize::from(first & 0x7f);
            let bytes = rest.get(..count)?;
            (bytes.iter().fold(0usize, |len, &byte| len << 8 | usize::from(byte)), &rest[count..])
        }
        _ => return None,
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days from 1970-01-01 to the proleptic Gregorian `year-month-day` (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_not_after_in_both_time_forms() {
        for (year, expected) in [(2040, 2_233_267_200), (2051, 2_580_336_000), (1999, 939_340_800)] {
            let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, 10, 8);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let seconds = not_after(cert.der()).unwrap();
            assert_eq!(seconds, expected, "{year}"); // UTCTime before 2050, GeneralizedTime after
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(not_after(b"\x30\x03\x02\x01"), None);
        assert_eq!(not_after(&[]), None);
    }
}
