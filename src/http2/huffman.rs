//! HPACK's Huffman code (RFC 7541 Appendix B). The code is canonical: codes of one length are
//! consecutive, shorter lengths first and symbols in order within a length. So the 257 code
//! lengths are all the table there is; codes and the decoder's tables are derived from them
//! at compile time.

/// The code length of each symbol, the octets 0 to 255 then EOS (256), from Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7,
    8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7,
    15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24,
    23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23,
    23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26,
    26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20,
    21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27,
    27, 27, 26, 30,
];

const EOS: u16 = 256;
const LONGEST: usize = 30;

/// The decoder's view of the code: per length, how many codes it has, the first of them, and
/// where its symbols start in `SYMBOLS` (all symbols ordered by code).
struct Canonical {
    count: [u32; LONGEST + 1],
    first_code: [u32; LONGEST + 1],
    first_index: [u16; LONGEST + 1],
    symbols: [u16; 257],
    codes: [u32; 257],
}

const CANONICAL: Canonical = {
    let mut count = [0u32; LONGEST + 1];
    let mut symbol = 0;
    while symbol < 257 {
        count[LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let (mut first_code, mut first_index) = ([0u32; LONGEST + 1], [0u16; LONGEST + 1]);
    let (mut code, mut index) = (0u32, 0u16);
    let mut length = 1;
    while length <= LONGEST {
        first_code[length] = code;
        first_index[length] = index;
        code = (code + count[length]) << 1;
        index += count[length] as u16;
        length += 1;
    }
    let mut symbols = [0u16; 257];
    let mut codes = [0u32; 257];
    let mut next = first_code;
    let mut slot = first_index;
    let mut symbol = 0;
    while symbol < 257 {
        let length = LENGTHS[symbol] as usize;
        codes[symbol] = next[length];
        next[length] += 1;
        symbols[slot[length] as usize] = symbol as u16;
        slot[length] += 1;
        symbol += 1;
    }
    Canonical { count, first_code, first_index, symbols, codes }
};

/// A Huffman string that is not one: EOS inside it, or padding longer than 7 bits or not
/// all ones (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InvalidHuffman;

/// For each value of the next 8 bits: the symbol whose code they start with and its length, if
/// that code is 8 bits or shorter (length 0: a longer code). Most octets of a path or a header
/// value (letters, digits, `/.-_=`) have such codes, so they take one lookup each.
const SHORT_CODES: [(u8, u8); 256] = {
    let mut table = [(0u8, 0u8); 256];
    let mut symbol = 0;
    while symbol < 256 {
        let length = LENGTHS[symbol] as usize;
        if length <= 8 {
            let first = (CANONICAL.codes[symbol] as usize) << (8 - length);
            let mut next = 0;
            while next < 1 << (8 - length) {
                table[first + next] = (symbol as u8, length as u8);
                next += 1;
            }
        }
        symbol += 1;
    }
    table
};

/// Decodes `encoded`, appending the octets to `out`. Bits are taken into a 64-bit window; a
/// code of up to 8 bits is found with one lookup in [`SHORT_CODES`], a longer one against the
/// canonical tables, length by length from 9.
pub(super) fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidHuffman> {
    let table = &CANONICAL;
    let mut input = encoded.iter();
    // `bits` valid bits at the low end of `window`, oldest first.
    let (mut window, mut bits) = (0u64, 0u32);
    loop {
        while bits <= 56 {
            let Some(&byte) = input.next() else { break };
            window = (window << 8) | u64::from(byte);
            bits += 8;
        }
        if bits == 0 {
            return Ok(());
        }
        // The next 8 bits; past the end, ones (what padding is made of, and no short code).
        let next = match bits >= 8 {
            true => (window >> (bits - 8)) as u8,
            false => ((window << (8 - bits)) as u8) | ((1u16 << (8 - bits)) - 1) as u8,
        };
        let (symbol, length) = SHORT_CODES[usize::from(next)];
        if length != 0 && u32::from(length) <= bits {
            out.push(symbol);
            bits -= u32::from(length);
            continue;
        }
        let mut length = 9;
        loop {
            if length > bits {
                // What is left must be a prefix of EOS (all ones) and shorter than an octet.
                let rest = window & ((1 << bits) - 1);
                return match bits < 8 && rest == (1 << bits) - 1 {
                    true => Ok(()),
                    false => Err(InvalidHuffman),
                };
            }
            let code = ((window >> (bits - length)) & ((1 << length) - 1)) as u32;
            let offset = code.wrapping_sub(table.first_code[length as usize]);
            if offset < table.count[length as usize] {
                let symbol = table.symbols[usize::from(table.first_index[length as usize]) + offset as usize];
                if symbol == EOS {
                    return Err(InvalidHuffman);
                }
                out.push(symbol as u8);
                bits -= length;
                break;
            }
            if length as usize == LONGEST {
                return Err(InvalidHuffman);
            }
            length += 1;
        }
    }
}

/// How many octets `text` takes Huffman-coded.
pub(super) fn encoded_len(text: &[u8]) -> usize {
    let bits: usize = text.iter().map(|&byte| usize::from(LENGTHS[usize::from(byte)])).sum();
    bits.div_ceil(8)
}

/// Appends `text` Huffman-coded, padded with ones.
pub(super) fn encode(text: &[u8], out: &mut Vec<u8>) {
    let (mut pending, mut bits) = (0u64, 0u32);
    for &byte in text {
        let length = u32::from(LENGTHS[usize::from(byte)]);
        pending = (pending << length) | u64::from(CANONICAL.codes[usize::from(byte)]);
        bits += length;
        while bits >= 8 {
            bits -= 8;
            out.push((pending >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((pending << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spot checks of the derived codes against Appendix B's listing.
    #[test]
    fn derived_codes_are_the_rfcs() {
        assert_eq!((CANONICAL.codes[usize::from(b'0')], LENGTHS[usize::from(b'0')]), (0x0, 5));
        assert_eq!((CANONICAL.codes[usize::from(b'a')], LENGTHS[usize::from(b'a')]), (0x3, 5));
        assert_eq!((CANONICAL.codes[usize::from(b' ')], LENGTHS[usize::from(b' ')]), (0x14, 6));
        assert_eq!((CANONICAL.codes[0], LENGTHS[0]), (0x1ff8, 13));
        assert_eq!((CANONICAL.codes[255], LENGTHS[255]), (0x3ffffee, 26));
        assert_eq!((CANONICAL.codes[256], LENGTHS[256]), (0x3fffffff, 30));
    }

    /// RFC 7541 C.4.1's authority, both ways.
    #[test]
    fn www_example_com_round_trips() {
        let encoded = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut out = Vec::new();
        decode(&encoded, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        let mut again = Vec::new();
        encode(b"www.example.com", &mut again);
        assert_eq!(again, encoded);
        assert_eq!(encoded_len(b"www.example.com"), encoded.len());
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut encoded = Vec::new();
        encode(&all, &mut encoded);
        let mut decoded = Vec::new();
        decode(&encoded, &mut decoded).unwrap();
        assert_eq!(decoded, all);
    }

    /// The decoder this file had before the lookup table, one bit at a time against the
    /// canonical tables: the reference the fast one must agree with on any input.
    fn decode_bit_by_bit(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidHuffman> {
        let table = &CANONICAL;
        let (mut code, mut length) = (0u32, 0usize);
        for &byte in encoded {
            for shift in (0..8).rev() {
                code = (code << 1) | u32::from(byte >> shift & 1);
                length += 1;
                let offset = code.wrapping_sub(table.first_code[length]);
                if offset < table.count[length] {
                    let symbol = table.symbols[usize::from(table.first_index[length]) + offset as usize];
                    if symbol == EOS {
                        return Err(InvalidHuffman);
                    }
                    out.push(symbol as u8);
                    (code, length) = (0, 0);
                } else if length == LONGEST {
                    return Err(InvalidHuffman);
                }
            }
        }
        match length < 8 && code == (1 << length) - 1 {
            true => Ok(()),
            false => Err(InvalidHuffman),
        }
    }

    /// Random octet strings (mostly invalid) and the codes of random texts (valid, some with
    /// a byte flipped), decoded both ways: same result, same octets.
    #[test]
    fn the_table_decoder_agrees_with_the_bit_by_bit_one() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..50_000 {
            let len = (random() % 24) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| random() as u8).collect();
            if round % 2 == 0 {
                // Text biased to what headers hold, Huffman-coded.
                let text: Vec<u8> = input.iter().map(|&b| if b < 200 { b' ' + b % 95 } else { b }).collect();
                input.clear();
                encode(&text, &mut input);
                if round % 6 == 0 && !input.is_empty() {
                    let at = (random() as usize) % input.len();
                    input[at] ^= 1 << (random() % 8);
                }
            }
            let (mut fast, mut reference) = (Vec::new(), Vec::new());
            let results = (decode(&input, &mut fast), decode_bit_by_bit(&input, &mut reference));
            assert_eq!(results.0, results.1, "{input:02x?}");
            if results.0.is_ok() {
                assert_eq!(fast, reference, "{input:02x?}");
            }
        }
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        // 'a' (00011) then three zero bits of padding: padding must be ones.
        assert_eq!(decode(&[0b0001_1000], &mut out), Err(InvalidHuffman));
        // A whole octet of ones after 'a' is more than 7 bits of padding.
        assert_eq!(decode(&[0b0001_1111, 0xff], &mut out), Err(InvalidHuffman));
        // EOS itself (30 ones) inside the string.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out), Err(InvalidHuffman));
        out.clear();
        assert_eq!(decode(&[0b0001_1111], &mut out), Ok(()));
        assert_eq!(out, b"a");
    }
}
