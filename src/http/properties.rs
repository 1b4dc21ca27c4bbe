//! Property tests over arbitrary input: the core never panics, never lets a path escape the
//! root, and gives the same answers however the bytes are split.

use proptest::prelude::*;

use super::conditional::Validators;
use super::range::{RangeOutcome, evaluate_range};
use super::*;

fn arbitrary_target() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "/", "//", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%", "%zz", "a", "b.txt", "?", "#",
        "\\", "é", "http://h", "%252e",
    ]);
    prop::collection::vec(pieces, 0..16).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn resolution_never_escapes_the_root(raw in arbitrary_target(), noise in "\\PC{0,12}") {
        for candidate in [raw.clone(), format!("/{raw}"), format!("/{raw}{noise}")] {
            if let Ok(path) = resolve_target(&candidate) {
                // Replaying the segments as a walk from the root never goes above it.
                for segment in path.segments() {
                    prop_assert!(!segment.is_empty());
                    prop_assert!(segment != b"." && segment != b"..");
                    prop_assert!(!segment.iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
                }
            }
        }
    }

    #[test]
    fn a_listing_entry_is_one_relative_link_whatever_its_name(
        name in prop::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..40),
        is_dir in any::<bool>(),
    ) {
        prop_assume!(!name.starts_with(b"."));
        let mut entries = vec![ListingEntry { name, is_dir, len: 1, modified: None }];
        let html = render_listing(b"/d/", &mut entries, false);
        let rows: Vec<&str> = html.lines().filter(|line| line.starts_with("<tr><td><a href=\"./")).collect();
        prop_assert_eq!(rows.len(), 1, "{}", html);
        // Exactly the markup we wrote: one link, its href quoted once, no tag from the name.
        let row = rows[0];
        prop_assert_eq!(row.matches('<').count(), 10, "{}", row);
        prop_assert_eq!(row.matches('"').count(), 2, "{}", row);
        prop_assert!(!row.contains('\n') && !row.contains('\'') , "{}", row);
    }

    #[test]
    fn ranges_stay_inside_the_file_sorted_and_disjoint(spec in "[0-9,=a-z -]{0,40}", len in 0u64..10_000) {
        let range = format!("bytes={spec}");
        let fields = RepresentationFields { range: Some(range.as_str().into()), ..Default::default() };
        let validators = Validators { etag: "\"t\"".into(), last_modified: None };
        if let RangeOutcome::Partial(ranges) = evaluate_range(&fields, &validators, len) {
            prop_assert!(!ranges.is_empty());
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].last + 1 < pair[1].first);
            }
            for range in &ranges {
                prop_assert!(range.first <= range.last && range.last < len);
            }
        }
    }
}
