//! Request bodies, read only to be thrown away: a static server has no use for them, but it must
//! consume exactly the bytes the framing says belong to the body, or they would be parsed as the
//! next request (request smuggling).

use super::{BodyFraming, MAX_HEAD_BYTES};
use crate::http::HttpError;

/// Largest request body we read and throw away; larger gets 413 and a close.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// A body still being consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyDiscard {
    /// `Content-Length` framing: this many bytes are still to come.
    Length { remaining: u64 },
    /// Chunked framing, decoded byte by byte so no size is ever trusted blindly. Boxed: it is
    /// rare, and every connection's state is as large as its largest variant.
    Chunked(Box<ChunkedDecoder>),
}

/// What one call to [`BodyDiscard::consume`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscardProgress {
    /// Bytes of the input that belonged to the body.
    pub consumed: usize,
    /// True once the whole body, trailers included, has been consumed.
    pub finished: bool,
}

impl BodyDiscard {
    /// The discarder for a body, or `None` when the request has none. Refuses (413) a declared
    /// length over `MAX_BODY_BYTES` before a byte of it is read.
    pub fn for_framing(framing: BodyFraming) -> Result<Option<BodyDiscard>, HttpError> {
        match framing {
            BodyFraming::None => Ok(None),
            BodyFraming::Length(len) if len > MAX_BODY_BYTES => Err(HttpError::ContentTooLarge),
            BodyFraming::Length(len) => Ok(Some(BodyDiscard::Length { remaining: len })),
            BodyFraming::Chunked => Ok(Some(BodyDiscard::Chunked(Box::default()))),
        }
    }

    /// Consumes the body bytes at the start of `input`.
    pub fn consume(&mut self, input: &[u8]) -> Result<DiscardProgress, HttpError> {
        match self {
            BodyDiscard::Length { remaining } => {
                let consumed = (*remaining).min(input.len() as u64);
                *remaining -= consumed;
                Ok(DiscardProgress { consumed: consumed as usize, finished: *remaining == 0 })
            }
            BodyDiscard::Chunked(decoder) => decoder.consume(input),
        }
    }
}

/// Longest chunk extension or trailer section we skip over before calling it abuse.
const MAX_CHUNK_METADATA_BYTES: usize = MAX_HEAD_BYTES;

/// RFC 9112 §7.1 `chunked-body`, as a state machine over single bytes and data runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Sum of all chunk sizes so far, held under `MAX_BODY_BYTES`.
    data_total: u64,
    /// Extension and trailer bytes so far, held under `MAX_CHUNK_METADATA_BYTES`.
    metadata_total: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Reading further hex digits; `size` is the value so far.
    Size {
        size: u64,
    },
    /// After the size: whitespace and `;ext=val` up to CR.
    Extension {
        size: u64,
    },
    SizeLineFeed {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    DataCarriageReturn,
    DataLineFeed,
    /// At the start of a trailer line, or of the final empty line.
    TrailerLineStart,
    TrailerLine,
    TrailerLineFeed,
    FinalLineFeed,
    Done,
}

impl ChunkedDecoder {
    fn consume(&mut self, input: &[u8]) -> Result<DiscardProgress, HttpError> {
        let mut at = 0;
        while at < input.len() && self.state != ChunkState::Done {
            if let ChunkState::Data { remaining } = &mut self.state {
                let run = (*remaining).min((input.len() - at) as u64);
                *remaining -= run;
                at += run as usize;
                if *remaining == 0 {
                    self.state = ChunkState::DataCarriageReturn;
                }
                continue;
            }
            self.step(input[at])?;
            at += 1;
        }
        Ok(DiscardProgress { consumed: at, finished: self.state == ChunkState::Done })
    }

    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        use ChunkState::*;
        let malformed = || HttpError::BadFraming("malformed chunked body");
        self.state = match (self.state, byte) {
            (SizeStart, _) => Size { size: hex_value(byte).ok_or_else(malformed)? },
            (Size { size }, b'\r') => SizeLineFeed { size },
            (Size { size }, b';' | b' ' | b'\t') => Extension { size },
            (Size { size }, _) => {
                let digit = hex_value(byte).ok_or_else(malformed)?;
                let size = size.checked_mul(16).and_then(|s| s.checked_add(digit));
                Size { size: size.ok_or(HttpError::ContentTooLarge)? }
            }
            (Extension { size }, b'\r') => SizeLineFeed { size },
            (Extension { .. }, b'\n') => return Err(malformed()),
            (Extension { size }, _) => {
                self.count_metadata()?;
                Extension { size }
            }
            (SizeLineFeed { size: 0 }, b'\n') => TrailerLineStart,
            (SizeLineFeed { size }, b'\n') => {
                self.data_total = self.data_total.saturating_add(size);
                if self.data_total > MAX_BODY_BYTES {
                    return Err(HttpError::ContentTooLarge);
                }
                Data { remaining: size }
            }
            (DataCarriageReturn, b'\r') => DataLineFeed,
            (DataLineFeed, b'\n') => SizeStart,
            (TrailerLineStart, b'\r') => FinalLineFeed,
            (TrailerLineStart | TrailerLine, b'\n') => return Err(malformed()),
            (TrailerLineStart | TrailerLine, _) => {
                self.count_metadata()?;
                if byte == b'\r' { TrailerLineFeed } else { TrailerLine }
            }
            (TrailerLineFeed, b'\n') => TrailerLineStart,
            (FinalLineFeed, b'\n') => Done,
            _ => return Err(malformed()),
        };
        Ok(())
    }

    fn count_metadata(&mut self) -> Result<(), HttpError> {
        self.metadata_total += 1;
        if self.metadata_total > MAX_CHUNK_METADATA_BYTES {
            return Err(HttpError::BadFraming("chunk extensions or trailers too long"));
        }
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u64> {
    (byte as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discard_all(framing: BodyFraming, input: &[u8], step: usize) -> Result<DiscardProgress, HttpError> {
        let mut discard = BodyDiscard::for_framing(framing)?.expect("a body");
        let mut consumed = 0;
        while consumed < input.len() {
            let end = (consumed + step).min(input.len());
            let progress = discard.consume(&input[consumed..end])?;
            consumed += progress.consumed;
            if progress.finished {
                return Ok(DiscardProgress { consumed, finished: true });
            }
        }
        Ok(DiscardProgress { consumed, finished: false })
    }

    #[test]
    fn no_body_needs_no_discard() {
        assert_eq!(BodyDiscard::for_framing(BodyFraming::None), Ok(None));
    }

    #[test]
    fn length_stops_exactly_at_the_end() {
        for step in [1, 3, 100] {
            let progress = discard_all(BodyFraming::Length(5), b"helloGET / HTTP/1.1", step).unwrap();
            assert_eq!(progress, DiscardProgress { consumed: 5, finished: true });
        }
    }

    #[test]
    fn refuses_declared_lengths_over_the_limit() {
        assert_eq!(
            BodyDiscard::for_framing(BodyFraming::Length(MAX_BODY_BYTES + 1)),
            Err(HttpError::ContentTooLarge)
        );
        assert!(BodyDiscard::for_framing(BodyFraming::Length(MAX_BODY_BYTES)).is_ok());
    }

    #[test]
    fn chunked_stops_exactly_after_the_last_chunk_in_any_split() {
        let body = b"5\r\nhello\r\n1A;name=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for step in [1, 2, 7, input.len()] {
            let progress = discard_all(BodyFraming::Chunked, &input, step).unwrap();
            assert_eq!(progress, DiscardProgress { consumed: body.len(), finished: true }, "step {step}");
        }
    }

    #[test]
    fn chunked_without_trailers() {
        let progress = discard_all(BodyFraming::Chunked, b"0\r\n\r\nrest", 1).unwrap();
        assert_eq!(progress, DiscardProgress { consumed: 5, finished: true });
    }

    #[test]
    fn chunked_refuses_malformed_framing() {
        let malformed = Err(HttpError::BadFraming("malformed chunked body"));
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nTrailer\n\r\n",
            b"-1\r\n",
        ] {
            assert_eq!(
                discard_all(BodyFraming::Chunked, bad, 1),
                malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunked_counts_against_the_body_limit() {
        let over = format!("{:x}\r\n", MAX_BODY_BYTES + 1);
        assert_eq!(discard_all(BodyFraming::Chunked, over.as_bytes(), 1), Err(HttpError::ContentTooLarge));
        let overflow = b"fffffffffffffffff\r\n";
        assert_eq!(discard_all(BodyFraming::Chunked, overflow, 1), Err(HttpError::ContentTooLarge));
        let endless_extension = format!("1;{}", "x".repeat(MAX_CHUNK_METADATA_BYTES + 1));
        assert_eq!(
            discard_all(BodyFraming::Chunked, endless_extension.as_bytes(), 64),
            Err(HttpError::BadFraming("chunk extensions or trailers too long"))
        );
    }
}
