//! What a certificate says about its own life, read from the DER (RFC 5280 §4.1): its
//! `notBefore` and `notAfter` (the status report's seconds-until-expiry, the ACME helper's
//! renewal time), its serial number and authority key identifier (the ACME renewal-info
//! certificate ID, RFC 9773 §4.1). Only the paths to those fields are walked:
//! `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
//! signature, issuer, validity SEQUENCE { notBefore, notAfter }, subject, subjectPublicKeyInfo,
//! [1] [2] OPTIONAL, [3] extensions }, ... }`.

/// `notAfter` as seconds since the Unix epoch, or `None` if `der` is not shaped so.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    validity(der).map(|(_, after)| after)
}

/// `notBefore` and `notAfter`, as seconds since the Unix epoch.
pub(crate) fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let mut tbs = tbs_after_version(der)?;
    for _ in 0..3 {
        tbs = element(tbs)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = element(tbs)?;
    let (tag, before, after_not_before) = element(validity)?;
    let not_before = time(tag, before)?;
    let (tag, after, _) = element(after_not_before)?;
    Some((not_before, time(tag, after)?))
}

#[cfg(any(test, feature = "acme"))]
/// The serial number's content bytes, as the DER has them (a leading zero included).
pub(crate) fn serial(der: &[u8]) -> Option<&[u8]> {
    let (tag, serial, _) = element(tbs_after_version(der)?)?;
    (tag == 0x02).then_some(serial)
}

#[cfg(any(test, feature = "acme"))]
/// The keyIdentifier of the authorityKeyIdentifier extension (OID 2.5.29.35), if any.
pub(crate) fn authority_key_id(der: &[u8]) -> Option<&[u8]> {
    let mut tbs = tbs_after_version(der)?;
    for _ in 0..6 {
        tbs = element(tbs)?.2; // serialNumber .. subjectPublicKeyInfo
    }
    while !tbs.is_empty() {
        let (tag, contents, rest) = element(tbs)?;
        tbs = rest;
        if tag != 0xA3 {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let (_, mut extensions, _) = element(contents)?;
        while !extensions.is_empty() {
            let (_, extension, rest) = element(extensions)?;
            extensions = rest;
            let (_, oid, mut fields) = element(extension)?;
            if oid != [0x55, 0x1d, 0x23] {
                continue;
            }
            let (mut tag, mut value, rest) = element(fields)?;
            if tag == 0x01 {
                fields = rest; // critical
                (tag, value, _) = element(fields)?;
            }
            if tag != 0x04 {
                return None;
            }
            // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING OPTIONAL, ... }
            let (_, identifier, _) = element(value)?;
            let (tag, key_id, _) = element(identifier)?;
            return (tag == 0x80).then_some(key_id);
        }
    }
    None
}

/// The tbsCertificate's fields from serialNumber on.
fn tbs_after_version(der: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = element(der)?;
    let (_, tbs, _) = element(certificate)?;
    let (tag, _, rest) = element(tbs)?;
    Some(if tag == 0xA0 { rest } else { tbs })
}

/// A UTCTime or GeneralizedTime, as seconds since the Unix epoch.
fn time(tag: u8, time: &[u8]) -> Option<i64> {
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
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
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
        assert_eq!(serial(&[]), None);
        assert_eq!(not_after(&[]), None);
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn reads_not_before_the_serial_and_the_authority_key_id() {
        let issuer_key = rcgen::KeyPair::generate().unwrap();
        let mut issuer_params = rcgen::CertificateParams::new(vec!["ca.test".to_owned()]).unwrap();
        issuer_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        issuer_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![0xAB; 20]);
        let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
        let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 4, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x87, 0x65, 0x43, 0x21]));
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let der = cert.der();
        let jan_1_2030 = days_from_civil(2030, 1, 1) * 86_400;
        assert_eq!(validity(der), Some((jan_1_2030, jan_1_2030 + 90 * 86_400)));
        assert_eq!(serial(der), Some(&[0x00, 0x87, 0x65, 0x43, 0x21][..]));
        assert_eq!(authority_key_id(der), Some(&[0xAB; 20][..]));
        let self_signed =
            rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(authority_key_id(self_signed.der()), None);
    }
}
