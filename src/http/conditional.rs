//! Validators and preconditions (RFC 9110 §8.8, §13).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::RepresentationFields;

/// The validators of the representation being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validators {
    /// A strong entity tag, quotes included.
    pub etag: EntityTag,
    /// Modification time at one-second resolution, never later than `now` (§8.8.2.1).
    pub last_modified: Option<SystemTime>,
}

impl Validators {
    /// The validators of a file with this `etag`, modified at `modified` (whole seconds, as
    /// `FileMeta` keeps it), served at `now`.
    pub(crate) fn new(etag: EntityTag, modified: Option<SystemTime>, now: SystemTime) -> Validators {
        // A whole second no later than `now` is no later than `now`'s whole second either.
        let last_modified = modified.map(|m| if m <= now { m } else { whole_seconds(now) });
        Validators { etag, last_modified }
    }
}

impl EntityTag {
    /// A strong ETag from inode, size and modification time to the nanosecond, so any change
    /// to the file, or its replacement by another file, changes the tag.
    pub fn for_file(inode: u64, len: u64, modified: Option<SystemTime>) -> EntityTag {
        use std::fmt::Write;
        let since_epoch = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
        let mut etag = EntityTag::default();
        let (secs, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
        let _ = write!(etag, "\"{inode:x}-{len:x}-{secs:x}.{nanos:x}\"");
        etag
    }

    /// The tag of this file's representation in `coding` made by the server (`"…-br"`): each
    /// representation has its own strong tag (RFC 9110 §8.8.3), derived, so it changes with
    /// the file.
    pub fn for_coding(&self, coding: super::ContentCoding) -> EntityTag {
        use std::fmt::Write;
        let mut etag = EntityTag::default();
        let opaque = self.as_str().trim_end_matches('"');
        let _ = write!(etag, "{opaque}-{}\"", coding.token());
        etag
    }
}

/// An entity-tag held inline, so computing one per response allocates nothing. Ours are at
/// most 65 bytes (three 64-bit and one 32-bit number in hex, and a coding); longer input is cut.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EntityTag {
    bytes: [u8; 72],
    len: usize,
}

impl Default for EntityTag {
    fn default() -> EntityTag {
        EntityTag { bytes: [0; 72], len: 0 }
    }
}

impl EntityTag {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::ops::Deref for EntityTag {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Write for EntityTag {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl std::fmt::Display for EntityTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for EntityTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for EntityTag {
    fn from(text: &str) -> EntityTag {
        let mut tag = EntityTag::default();
        let _ = std::fmt::Write::write_str(&mut tag, text);
        tag
    }
}

pub(crate) fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// What the preconditions say about a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: a precondition the client set does not hold.
    Failed,
}

/// RFC 9110 §13.2.2, steps 1–4, for a GET or HEAD of an existing representation.
pub(crate) fn evaluate_preconditions(fields: &RepresentationFields, validators: &Validators) -> Precondition {
    if let Some(if_match) = &fields.if_match {
        if !list_matches(if_match, &validators.etag, Comparison::Strong) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) =
        (parse_date(fields.if_unmodified_since.as_deref()), validators.last_modified)
        && modified > since
    {
        return Precondition::Failed;
    }
    if let Some(if_none_match) = &fields.if_none_match {
        if list_matches(if_none_match, &validators.etag, Comparison::Weak) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) =
        (parse_date(fields.if_modified_since.as_deref()), validators.last_modified)
        && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// An HTTP-date, or `None` for anything invalid (which §13.1.3/§13.1.4 say to ignore).
pub(crate) fn parse_date(field: Option<&str>) -> Option<SystemTime> {
    field.and_then(|text| httpdate::parse_http_date(text).ok())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// Both tags strong and identical (§8.8.3.2).
    Strong,
    /// Identical opaque tags, weak or not.
    Weak,
}

/// Whether `current` (a strong tag) matches a field value that is `*` or a list of entity
/// tags. A malformed list matches nothing.
pub(crate) fn list_matches(list: &str, current: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let (weak, tagged) = match rest.strip_prefix("W/") {
            Some(tagged) => (true, tagged),
            None => (false, rest),
        };
        let Some(end) = tagged.strip_prefix('"').and_then(|t| t.find('"')) else {
            return false;
        };
        let tag = &tagged[..end + 2];
        if tag == current && (comparison == Comparison::Weak || !weak) {
            return true;
        }
        rest = &tagged[end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validators of a file with this inode, size and mtime, served at `now`.
    fn validators_of(inode: u64, len: u64, modified: Option<SystemTime>, now: SystemTime) -> Validators {
        Validators::new(EntityTag::for_file(inode, len, modified), modified.map(whole_seconds), now)
    }

    const TAG: &str = "\"1-2-3.4\"";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn validators() -> Validators {
        Validators { etag: TAG.into(), last_modified: Some(at(1_795_322_700)) }
    }

    fn fields<'a>(pairs: &[(&str, &'a str)]) -> RepresentationFields<'a> {
        let mut fields = RepresentationFields::default();
        for (name, value) in pairs {
            let slot = match *name {
                "If-Match" => &mut fields.if_match,
                "If-None-Match" => &mut fields.if_none_match,
                "If-Modified-Since" => &mut fields.if_modified_since,
                "If-Unmodified-Since" => &mut fields.if_unmodified_since,
                other => panic!("{other}"),
            };
            *slot = Some((*value).into());
        }
        fields
    }

    #[test]
    fn etag_changes_with_every_input_and_is_strong() {
        let base = validators_of(1, 2, Some(at(3) + Duration::from_nanos(4)), at(10)).etag;
        assert_eq!(base.as_str(), "\"1-2-3.4\"");
        for other in [
            validators_of(9, 2, Some(at(3) + Duration::from_nanos(4)), at(10)),
            validators_of(1, 9, Some(at(3) + Duration::from_nanos(4)), at(10)),
            validators_of(1, 2, Some(at(3) + Duration::from_nanos(5)), at(10)),
        ] {
            assert_ne!(other.etag, base);
        }
        let brotli = base.for_coding(crate::http::ContentCoding::Brotli);
        assert_eq!(brotli.as_str(), "\"1-2-3.4-br\"");
        let longest = EntityTag::for_file(
            u64::MAX,
            u64::MAX,
            Some(at(u64::MAX >> 2) + Duration::from_nanos(999_999_999)),
        );
        assert!(longest.for_coding(crate::http::ContentCoding::Zstd).ends_with("-zstd\""));
    }

    #[test]
    fn last_modified_is_whole_seconds_and_never_after_now() {
        let v = validators_of(1, 1, Some(at(5) + Duration::from_millis(700)), at(10));
        assert_eq!(v.last_modified, Some(at(5)));
        assert_eq!(validators_of(1, 1, Some(at(50)), at(10)).last_modified, Some(at(10)));
    }

    #[test]
    fn matches_entity_tag_lists() {
        use Comparison::*;
        let cases = [
            ("*", Strong, true),
            (TAG, Strong, true),
            ("\"x\", \"1-2-3.4\"", Strong, true),
            ("\"x\",\"1-2-3.4\"", Strong, true),
            ("W/\"1-2-3.4\"", Strong, false),
            ("W/\"1-2-3.4\"", Weak, true),
            ("\"x\", W/\"1-2-3.4\"", Weak, true),
            ("\"1-2-3.4", Weak, false),
            ("1-2-3.4", Weak, false),
            ("\"other\"", Weak, false),
            ("", Weak, false),
        ];
        for (list, comparison, expected) in cases {
            assert_eq!(list_matches(list, TAG, comparison), expected, "{list} {comparison:?}");
        }
    }

    #[test]
    fn preconditions_follow_rfc_9110_order() {
        use Precondition::*;
        let earlier = "Sun, 22 Nov 2026 04:44:59 GMT";
        let same = "Sun, 22 Nov 2026 04:45:00 GMT";
        let later = "Sun, 22 Nov 2026 04:45:01 GMT";
        let cases: Vec<(Vec<(&str, &str)>, Precondition)> = vec![
            (vec![], Proceed),
            (vec![("If-None-Match", TAG)], NotModified),
            (vec![("If-None-Match", "W/\"1-2-3.4\"")], NotModified),
            (vec![("If-None-Match", "\"other\"")], Proceed),
            (vec![("If-None-Match", "*")], NotModified),
            (vec![("If-Modified-Since", same)], NotModified),
            (vec![("If-Modified-Since", later)], NotModified),
            (vec![("If-Modified-Since", earlier)], Proceed),
            (vec![("If-Modified-Since", "yesterday")], Proceed),
            // If-None-Match wins over If-Modified-Since (§13.1.3).
            (vec![("If-None-Match", "\"other\""), ("If-Modified-Since", later)], Proceed),
            (vec![("If-Match", TAG)], Proceed),
            (vec![("If-Match", "*")], Proceed),
            (vec![("If-Match", "\"other\"")], Failed),
            (vec![("If-Match", "W/\"1-2-3.4\"")], Failed),
            (vec![("If-Unmodified-Since", same)], Proceed),
            (vec![("If-Unmodified-Since", earlier)], Failed),
            (vec![("If-Unmodified-Since", "garbage")], Proceed),
            // If-Match wins over If-Unmodified-Since (§13.1.4).
            (vec![("If-Match", TAG), ("If-Unmodified-Since", earlier)], Proceed),
            (vec![("If-Match", "\"other\""), ("If-None-Match", TAG)], Failed),
        ];
        for (pairs, expected) in cases {
            assert_eq!(evaluate_preconditions(&fields(&pairs), &validators()), expected, "{pairs:?}");
        }
    }
}
