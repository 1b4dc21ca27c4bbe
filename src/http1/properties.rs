//! Property tests over arbitrary bytes: parsing never panics or overreads, finds a head at the
//! same place however the bytes are split, and a chunked body ends where it ends.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_never_panics_and_never_overreads(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Parsed::Complete { head_len, .. }) = parse_head(&bytes) {
            prop_assert!(head_len <= bytes.len());
        }
    }

    #[test]
    fn a_complete_head_is_found_at_the_same_place_in_any_longer_buffer(
        target in "/[a-z0-9/._%-]{0,40}",
        fields in prop::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,30}"), 0..6),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        split in 0usize..400,
    ) {
        let mut head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
        for (name, value) in &fields {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut buf = head.clone().into_bytes();
        buf.extend_from_slice(&tail);
        let whole = parse_head(&buf);
        let split = split.min(head.len());
        match parse_head(&buf[..split]) {
            Ok(Parsed::Partial) => {}
            Ok(Parsed::Complete { head_len, .. }) => {
                prop_assert_eq!(head_len, split);
                let whole_len = match &whole {
                    Ok(Parsed::Complete { head_len, .. }) => Some(*head_len),
                    _ => None,
                };
                prop_assert_eq!(whole_len, Some(split));
            }
            Err(error) => prop_assert_eq!(Some(&error), whole.as_ref().err()),
        }
        if let Ok(Parsed::Complete { head_len, .. }) = whole {
            prop_assert_eq!(head_len, head.len());
        }
    }

    #[test]
    fn chunked_discard_does_not_depend_on_how_bytes_arrive(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6),
        cuts in prop::collection::vec(1usize..17, 1..40),
    ) {
        let mut body = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let body_len = body.len();
        body.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let mut discard = BodyDiscard::for_framing(BodyFraming::Chunked).unwrap().unwrap();
        let (mut at, mut cut) = (0, cuts.iter().cycle());
        loop {
            let end = (at + cut.next().unwrap()).min(body.len());
            let progress = discard.consume(&body[at..end]).unwrap();
            at += progress.consumed;
            if progress.finished {
                break;
            }
            prop_assert!(at < body.len());
        }
        prop_assert_eq!(at, body_len);
    }
}
