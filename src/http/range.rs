//! Byte ranges (RFC 9110 §14): parse `Range`, check `If-Range`, clamp, coalesce, cap.

use super::RepresentationFields;
use super::conditional::{Validators, parse_date};

/// Most ranges served in one multipart response after coalescing; more and the `Range` field
/// is ignored (a full 200), as nginx's `max_ranges` does, so no client can make us send a
/// thousand tiny parts.
pub(crate) const MAX_RANGES: usize = 16;

/// An inclusive range of byte offsets, `first <= last < len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub(crate) fn byte_count(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What to send in answer to a GET's `Range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeOutcome {
    /// The whole representation, 200.
    Full,
    /// 206: one range, or several (ascending, disjoint, non-adjacent) as multipart.
    Partial(Vec<ByteRange>),
    /// 416: a valid `Range` none of whose ranges overlaps the representation.
    Unsatisfiable,
}

/// Decides ranges for a GET of a representation of `len` bytes.
#[inline] // most requests have no Range: the answer is one test
pub(crate) fn evaluate_range(
    fields: &RepresentationFields,
    validators: &Validators,
    len: u64,
) -> RangeOutcome {
    let Some(range) = &fields.range else {
        return RangeOutcome::Full;
    };
    if let Some(if_range) = &fields.if_range
        && !if_range_holds(if_range, validators)
    {
        return RangeOutcome::Full; // §13.1.5: stale validator, send everything
    }
    let Some(specs) = parse_range(range) else {
        return RangeOutcome::Full; // §14.2: ignore a Range we cannot parse or whose unit we do not know
    };
    let mut ranges: Vec<ByteRange> = specs.into_iter().filter_map(|spec| spec.resolve(len)).collect();
    if ranges.is_empty() {
        return RangeOutcome::Unsatisfiable;
    }
    ranges.sort_by_key(|range| range.first);
    let mut coalesced: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match coalesced.last_mut() {
            Some(previous) if range.first <= previous.last.saturating_add(1) => {
                previous.last = previous.last.max(range.last);
            }
            _ => coalesced.push(range),
        }
    }
    if coalesced.len() > MAX_RANGES {
        return RangeOutcome::Full;
    }
    RangeOutcome::Partial(coalesced)
}

/// §13.1.5: an entity tag must match strongly; a date must equal Last-Modified exactly.
fn if_range_holds(if_range: &str, validators: &Validators) -> bool {
    let value = if_range.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return !value.starts_with("W/") && value == validators.etag.as_str();
    }
    matches!((parse_date(Some(value)), validators.last_modified), (Some(date), Some(modified)) if date == modified)
}

/// One `range-spec` as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// Clamps to a representation of `len` bytes; `None` when unsatisfiable.
    fn resolve(self, len: u64) -> Option<ByteRange> {
        match self {
            RangeSpec::From { first, .. } if first >= len => None,
            RangeSpec::From { first, last } => {
                Some(ByteRange { first, last: last.map_or(len - 1, |last| last.min(len - 1)) })
            }
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(_) if len == 0 => None,
            RangeSpec::Suffix(suffix) => Some(ByteRange { first: len.saturating_sub(suffix), last: len - 1 }),
        }
    }
}

/// `bytes=` followed by a comma list of range-specs; `None` on any syntax error.
fn parse_range(value: &str) -> Option<Vec<RangeSpec>> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (first, last) = item.split_once('-')?;
        let spec = match (first.trim(), last.trim()) {
            ("", suffix) => RangeSpec::Suffix(digits(suffix)?),
            (first, "") => RangeSpec::From { first: digits(first)?, last: None },
            (first, last) => {
                let (first, last) = (digits(first)?, digits(last)?);
                if last < first {
                    return None; // §14.1.1: invalid, so the whole field is ignored
                }
                RangeSpec::From { first, last: Some(last) }
            }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Absurdly large numbers still mean "to the end" / "everything", not a syntax error.
    Some(text.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn validators() -> Validators {
        Validators {
            etag: "\"t\"".into(),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_795_322_700)),
        }
    }

    fn outcome(range: &str, len: u64) -> RangeOutcome {
        let fields = RepresentationFields { range: Some(range.into()), ..Default::default() };
        evaluate_range(&fields, &validators(), len)
    }

    fn partial(pairs: &[(u64, u64)]) -> RangeOutcome {
        RangeOutcome::Partial(pairs.iter().map(|&(first, last)| ByteRange { first, last }).collect())
    }

    #[test]
    fn single_ranges_are_clamped() {
        let cases = [
            ("bytes=0-0", partial(&[(0, 0)])),
            ("bytes=0-99", partial(&[(0, 99)])),
            ("bytes=10-", partial(&[(10, 99)])),
            ("bytes=-10", partial(&[(90, 99)])),
            ("bytes=-1000", partial(&[(0, 99)])),
            ("bytes=50-1000", partial(&[(50, 99)])),
            ("bytes=99-99", partial(&[(99, 99)])),
            ("BYTES = 1-2", partial(&[(1, 2)])),
            ("bytes=0-99999999999999999999999", partial(&[(0, 99)])),
        ];
        for (range, expected) in cases {
            assert_eq!(outcome(range, 100), expected, "{range}");
        }
    }

    #[test]
    fn several_ranges_are_sorted_and_coalesced() {
        let cases = [
            ("bytes=0-9,20-29", partial(&[(0, 9), (20, 29)])),
            ("bytes=20-29,0-9", partial(&[(0, 9), (20, 29)])),
            ("bytes=0-9,5-14", partial(&[(0, 14)])),
            ("bytes=0-9,10-19", partial(&[(0, 19)])),
            ("bytes=0-9, 200-300, -5", partial(&[(0, 9), (95, 99)])),
            ("bytes=0-,0-", partial(&[(0, 99)])),
            ("bytes=1-1,3-3,5-5", partial(&[(1, 1), (3, 3), (5, 5)])),
        ];
        for (range, expected) in cases {
            assert_eq!(outcome(range, 100), expected, "{range}");
        }
    }

    #[test]
    fn too_many_ranges_means_the_whole_file() {
        let many: Vec<String> = (0..=MAX_RANGES as u64).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(outcome(&format!("bytes={}", many.join(",")), 1000), RangeOutcome::Full);
        let just: Vec<String> = (0..MAX_RANGES as u64).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert!(
            matches!(outcome(&format!("bytes={}", just.join(",")), 1000), RangeOutcome::Partial(r) if r.len() == MAX_RANGES)
        );
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        for range in ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=500-600,700-"] {
            assert_eq!(outcome(range, 100), RangeOutcome::Unsatisfiable, "{range}");
        }
        assert_eq!(outcome("bytes=0-", 0), RangeOutcome::Unsatisfiable);
        assert_eq!(outcome("bytes=-5", 0), RangeOutcome::Unsatisfiable);
        for range in [
            "items=0-1",
            "bytes=",
            "bytes=5",
            "bytes=9-1",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=-",
            "bytes=+1-2",
            "0-5",
            "bytes=0-1,x",
        ] {
            assert_eq!(outcome(range, 100), RangeOutcome::Full, "{range}");
        }
    }

    #[test]
    fn if_range_gates_the_range() {
        let with = |if_range: &str| {
            let fields = RepresentationFields {
                range: Some("bytes=0-0".into()),
                if_range: Some(if_range.into()),
                ..Default::default()
            };
            evaluate_range(&fields, &validators(), 100)
        };
        assert_eq!(with("\"t\""), partial(&[(0, 0)]));
        assert_eq!(with("W/\"t\""), RangeOutcome::Full);
        assert_eq!(with("\"stale\""), RangeOutcome::Full);
        assert_eq!(with("Sun, 22 Nov 2026 04:45:00 GMT"), partial(&[(0, 0)]));
        assert_eq!(with("Sun, 22 Nov 2026 04:45:01 GMT"), RangeOutcome::Full);
        assert_eq!(with("not a date"), RangeOutcome::Full);
    }

    #[test]
    fn ranges_beyond_four_gibibytes() {
        let len = (1u64 << 32) + 1024;
        assert_eq!(outcome("bytes=2147483647-2147483648", len), partial(&[(2_147_483_647, 2_147_483_648)]));
        assert_eq!(outcome("bytes=4294967295-4294967296", len), partial(&[(4_294_967_295, 4_294_967_296)]));
        assert_eq!(outcome("bytes=-1024", len), partial(&[(1 << 32, len - 1)]));
    }
}
