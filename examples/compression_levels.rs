//! The measurement behind onepoll's compression levels (README, "Compression"): each file
//! compressed with each coding at several levels, through the same `encode` the compressor's
//! child runs, with bytes out and milliseconds per run (the mean of runs lasting 0.3 s at
//! least). `cargo run --release --example compression_levels -- FILE...`

use std::time::Instant;

use onepoll::files::compress::encode;
use onepoll::http::ContentCoding;

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: compression_levels FILE...");
        std::process::exit(2);
    }
    let levels = [
        (ContentCoding::Brotli, &[1, 4, 5, 6, 7, 9, 10, 11][..]),
        (ContentCoding::Zstd, &[3, 9, 15, 19][..]),
        (ContentCoding::Gzip, &[1, 6, 9][..]),
    ];
    println!("| file | bytes | coding | level | bytes out | ms |");
    println!("|---|---|---|---|---|---|");
    for file in &files {
        let input = std::fs::read(file).unwrap_or_else(|error| panic!("{file}: {error}"));
        for (coding, levels) in levels {
            for &level in levels {
                let started = Instant::now();
                let (mut runs, mut out) = (0u32, 0);
                while runs < 2 || started.elapsed().as_secs_f64() < 0.3 {
                    out = encode(coding, &input, level).expect("encode").len();
                    runs += 1;
                }
                let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
                println!("| {file} | {} | {} | {level} | {out} | {ms:.2} |", input.len(), coding.token());
            }
        }
    }
}
