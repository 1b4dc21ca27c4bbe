//! Arbitrary bytes as a request head: parsing must never panic, never claim more bytes than it
//! was given, and a head it accepts must be decided (respond) without panicking either.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use onepoll::http::{FileMeta, Representation, Resource, respond};
use onepoll::http1::{BodyDiscard, Parsed, parse_head};

/// A file known by its metadata alone: the decision reads nothing else.
struct Meta(FileMeta);

impl Representation for Meta {
    fn meta(&self) -> &FileMeta {
        &self.0
    }
}

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_795_322_700);
    match parse_head(data) {
        Ok(Parsed::Complete { request, framing, head_len }) => {
            assert!(head_len <= data.len());
            if let Ok(Some(mut discard)) = BodyDiscard::for_framing(framing.body) {
                let _ = discard.consume(&data[head_len..]);
            }
            let _ = request.servable_path();
            let meta = FileMeta {
                has_encoded_variants: true,
                ..FileMeta::new(7, 1 << 33, Some(now), b"file.txt", None)
            };
            let _ = respond(Some(&request), Ok(Resource::File(Meta(meta))), now);
        }
        Ok(Parsed::Partial) => {}
        Err(error) => {
            let _ = respond::<Meta>(None, Err(error), now);
        }
    }
});
