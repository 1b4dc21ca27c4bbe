//! Arbitrary frames after a valid preface and SETTINGS, through the sans-I/O HTTP/2 connection:
//! it must never panic, never consume more than it was given, keep its queued output bounded
//! and answer every request it accepts through the same `respond` HTTP/1.1 uses. The first
//! byte sets how the rest is cut into reads, so frames split across reads are covered too.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use onepoll::http::{BodyPlan, FileMeta, Representation, Resource, respond};
use onepoll::http2::connection::{BodySource, Connection, MAX_QUEUED_OUTPUT, PREFACE, ReadFailed, Reply};

/// A file known by its metadata alone.
struct Meta(FileMeta);

impl Representation for Meta {
    fn meta(&self) -> &FileMeta {
        &self.0
    }
}

/// A body of `left` octets.
struct Body {
    left: u64,
}

impl BodySource for Body {
    fn remaining(&self) -> u64 {
        self.left
    }

    fn fill(&mut self, payloads: &mut [&mut [u8]]) -> Result<(), ReadFailed> {
        let want: u64 = payloads.iter().map(|payload| payload.len() as u64).sum();
        assert!(want <= self.left, "asked for {want} of a body with {} left", self.left);
        self.left -= want;
        for payload in payloads {
            payload.fill(b'x');
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, frames)) = data.split_first() else { return };
    let now = UNIX_EPOCH + Duration::from_secs(1_795_322_700);
    let mut connection: Connection<Body> = Connection::new();
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS
    let chunk = usize::from(cut).max(1) * 7;
    let mut pieces = std::iter::once(&input[..]).chain(frames.chunks(chunk));
    let mut pending = Vec::new();
    while let Some(piece) = pieces.next() {
        pending.extend_from_slice(piece);
        let consumed = connection.handle(&pending, &mut |_, request| {
            let meta = FileMeta::new(7, 70_000, Some(now), b"file.txt", None);
            let response = match request {
                Ok(request) => respond(Some(request), Ok(Resource::File(Meta(meta))), now),
                Err(error) => respond::<Meta>(None, Err(error), now),
            };
            let left = match response.body {
                BodyPlan::Empty => 0,
                BodyPlan::Page(text) => text.len() as u64,
                BodyPlan::File { len, .. } => len,
                BodyPlan::Multipart { parts, closing, .. } => {
                    parts.iter().map(|part| part.head.len() as u64 + part.len).sum::<u64>() + closing.len() as u64
                }
            };
            Some(Reply { status: response.status.code(), fields: response.headers, body: Body { left } })
        });
        assert!(consumed <= pending.len());
        pending.drain(..consumed);
        connection.produce();
        assert!(connection.output().len() <= 2 * MAX_QUEUED_OUTPUT + 64 * 1024);
        // The socket takes everything every other read, nothing otherwise.
        if cut % 2 == 0 || pieces.size_hint().0 % 2 == 0 {
            let taken = connection.output().len();
            connection.advance_output(taken);
        }
        let _ = connection.take_ended().count();
        if connection.closing().is_some() {
            return;
        }
    }
});
