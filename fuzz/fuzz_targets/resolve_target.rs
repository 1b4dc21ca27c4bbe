//! Arbitrary request-targets: resolution must never panic, and a path it accepts must never
//! contain a segment that could leave the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onepoll::http::resolve_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = resolve_target(raw) {
        for segment in path.segments() {
            assert!(!segment.is_empty() && segment != b"." && segment != b"..");
            assert!(!segment.iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
        }
        let _ = path.directory_location();
    }
});
