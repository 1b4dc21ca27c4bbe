//! On-the-fly compression: which files get it, at which level, and the work itself, which
//! runs in a child process of the event loop (`service::compressor`), never in the loop.
//!
//! Levels were chosen by measurement (README, "Compression"; `examples/compression_levels.rs`
//! reruns it): a form is made once per file version and then served from memory, so the best
//! ratio is worth its CPU for the files a site is made of; above [`TOP_LEVELS_UP_TO`] the
//! levels drop to ones that compress megabytes in about a second.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::http::{ContentCoding, FileMeta, is_compressible};
use crate::sys;

/// Smaller bodies are sent as they are: the coding's framing would eat the saving.
pub const MIN_INPUT_BYTES: u64 = 256;
/// Larger files are never compressed on the fly (precompress them: `.br`, `.zst`, `.gz`).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Inputs up to this size get the highest levels.
pub const TOP_LEVELS_UP_TO: u64 = 256 * 1024;

/// Whether the server compresses this file itself (when it has no precompressed sibling).
pub fn worth_compressing(meta: &FileMeta) -> bool {
    meta.encoding.is_none()
        && (MIN_INPUT_BYTES..=MAX_INPUT_BYTES).contains(&meta.len)
        && is_compressible(meta.content_type)
}

/// The level (brotli quality, zstd level, gzip level) for an input of `len` bytes.
pub fn level(coding: ContentCoding, len: u64) -> u32 {
    let top = len <= TOP_LEVELS_UP_TO;
    match coding {
        ContentCoding::Brotli => {
            if top {
                11
            } else {
                9
            }
        }
        ContentCoding::Zstd => {
            if top {
                19
            } else {
                15
            }
        }
        ContentCoding::Gzip => {
            if top {
                9
            } else {
                6
            }
        }
    }
}

/// Runs `job` (in the compressor's child): reads the file, checks it is still the version the
/// A compression for the compressor to run: `coding` of `file`, as long as it is still the
/// version `identity` describes.
#[derive(Debug, Clone)]
pub struct CompressionJob {
    /// The cache key the result belongs to.
    pub key: String,
    pub file: PathBuf,
    pub coding: ContentCoding,
    pub identity: FileMeta,
}

/// job was queued for, and compresses it.
pub fn run(job: &CompressionJob) -> io::Result<Vec<u8>> {
    let file = sys::open_nonblocking(&job.file)?;
    let meta = file.metadata()?;
    let now = FileMeta::new(meta.ino(), meta.len(), meta.modified().ok(), b"", None);
    if now.etag != job.identity.etag {
        return Err(io::Error::other("the file changed since the compression was queued"));
    }
    let mut input = Vec::with_capacity(meta.len() as usize);
    (&file).take(meta.len()).read_to_end(&mut input)?;
    encode(job.coding, &input, level(job.coding, input.len() as u64))
}

/// `input` compressed with `coding` at `level`.
#[cfg(feature = "compression")]
pub fn encode(coding: ContentCoding, input: &[u8], level: u32) -> io::Result<Vec<u8>> {
    use std::io::Write;
    let mut output = Vec::with_capacity(input.len() / 3);
    match coding {
        ContentCoding::Brotli => {
            // A 4 MiB window (lgwin 22): what browsers decode, and more than our inputs need.
            let mut writer = brotli::CompressorWriter::new(&mut output, 64 * 1024, level, 22);
            writer.write_all(input)?;
            writer.flush()?;
        }
        ContentCoding::Zstd => {
            // The frame records the content size, so zstd fits its window to the input (and
            // stays within the 8 MiB HTTP clients must support, RFC 8878 §3.1.1.1.2).
            output = zstd::bulk::compress(input, level as i32)?;
        }
        ContentCoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(&mut output, flate2::Compression::new(level));
            encoder.write_all(input)?;
            encoder.finish()?;
        }
    }
    Ok(output)
}

/// Built without the `compression` feature: nothing is compressed on the fly.
#[cfg(not(feature = "compression"))]
pub fn encode(_coding: ContentCoding, _input: &[u8], _level: u32) -> io::Result<Vec<u8>> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(all(test, feature = "compression"))]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_coding_round_trips() {
        let input: Vec<u8> =
            (0..20_000).flat_map(|n: u32| format!("line {n} of some text\n").into_bytes()).collect();
        for coding in ContentCoding::ALL {
            let encoded = encode(coding, &input, level(coding, input.len() as u64)).unwrap();
            assert!(encoded.len() < input.len() / 4, "{coding:?}: {}", encoded.len());
            let mut decoded = Vec::new();
            match coding {
                ContentCoding::Brotli => {
                    brotli::Decompressor::new(&encoded[..], 4096).read_to_end(&mut decoded).unwrap();
                }
                ContentCoding::Zstd => decoded = zstd::stream::decode_all(&encoded[..]).unwrap(),
                ContentCoding::Gzip => {
                    flate2::read::GzDecoder::new(&encoded[..]).read_to_end(&mut decoded).unwrap();
                }
            }
            assert_eq!(decoded, input, "{coding:?}");
        }
    }

    #[test]
    fn only_mid_sized_text_is_worth_compressing() {
        let meta = |len, name: &[u8], coding| FileMeta::new(1, len, None, name, coding);
        assert!(worth_compressing(&meta(1000, b"app.js", None)));
        assert!(!worth_compressing(&meta(100, b"app.js", None)));
        assert!(!worth_compressing(&meta(MAX_INPUT_BYTES + 1, b"app.js", None)));
        assert!(!worth_compressing(&meta(1000, b"logo.png", None)));
        assert!(!worth_compressing(&meta(1000, b"app.js", Some(ContentCoding::Gzip))));
    }
}
