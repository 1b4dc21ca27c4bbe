//! HPACK (RFC 7541): header blocks in, a [`HeaderList`] out (the decoder), and response fields
//! in, a header block out (the encoder).
//!
//! In-tree rather than a crate: the maintained HPACK crates were slow (hundreds of µs per
//! browser header block) or unmaintained, and this is the small part of RFC 7541 a server
//! needs. Both sides are checked against the RFC's Appendix C examples.
//!
//! A header block that decodes huge (an "HPACK bomb": one indexed field repeated thousands of
//! times) costs table look-ups only: fields past `max_list_size` are decoded, to keep the
//! table in step with the peer's, but not copied.

use std::collections::VecDeque;

use super::huffman;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The first static-table index with this (lowercase) name, or 0: a `match` the compiler turns
/// into a length switch, where a scan of the table cost a comparison per entry per field.
fn static_name_index(name: &[u8]) -> usize {
    match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => 0,
    }
}

/// What each table entry costs beyond its octets (RFC 7541 §4.1), and each header list field
/// (RFC 9113 §6.5.2).
const ENTRY_OVERHEAD: usize = 32;
/// The dynamic table size both sides start with (SETTINGS_HEADER_TABLE_SIZE's default).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Why a header block could not be decoded: all are COMPRESSION_ERROR for the connection
/// (RFC 9113 §4.3), since the table may now differ from the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a field.
    Truncated,
    /// An integer longer than any size we accept.
    IntegerOverflow,
    /// An index past both tables, or 0.
    BadIndex,
    /// A Huffman string with EOS or bad padding.
    Huffman,
    /// A table size update over the size we allow, or after the first field.
    BadSizeUpdate,
}

impl std::fmt::Display for HpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HpackError::Truncated => "header block ends inside a field",
            HpackError::IntegerOverflow => "integer too large",
            HpackError::BadIndex => "index outside the tables",
            HpackError::Huffman => "invalid Huffman string",
            HpackError::BadSizeUpdate => "invalid dynamic table size update",
        })
    }
}

/// The dynamic table (RFC 7541 §2.3.2): newest first, each entry one allocation of name then
/// value.
#[derive(Debug, Default)]
struct DynamicTable {
    entries: VecDeque<Entry>,
    /// Octets plus overheads of the entries.
    size: usize,
    max_size: usize,
}

#[derive(Debug)]
struct Entry {
    field: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.field[..self.name_len]
    }

    fn value(&self) -> &[u8] {
        &self.field[self.name_len..]
    }

    fn size(&self) -> usize {
        self.field.len() + ENTRY_OVERHEAD
    }
}

impl DynamicTable {
    fn new(max_size: usize) -> DynamicTable {
        DynamicTable { entries: VecDeque::new(), size: 0, max_size }
    }

    /// Entry `index` of both tables together (1-based: the static table's 61, then these).
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::BadIndex),
            1..=61 => {
                let (name, value) = STATIC_TABLE[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .entries
                .get(index - 62)
                .map(|entry| (entry.name(), entry.value()))
                .ok_or(HpackError::BadIndex),
        }
    }

    /// Adds a field, evicting the oldest until it fits; one larger than the table empties it
    /// (RFC 7541 §4.4).
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        self.evict_to(self.max_size.saturating_sub(size));
        if size <= self.max_size {
            let field = [name, value].concat().into_boxed_slice();
            self.entries.push_front(Entry { field, name_len: name.len() });
            self.size += size;
        }
    }

    fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some(oldest) = self.entries.pop_back() else { break };
            self.size -= oldest.size();
        }
        if self.entries.is_empty() {
            self.entries = VecDeque::new(); // an idle connection keeps no room for entries
        }
    }
}

/// A decoded header list: every field's name and value in one buffer.
#[derive(Debug, Default)]
pub struct HeaderList {
    bytes: Vec<u8>,
    /// Per field: where its name starts, where its value starts, where it ends.
    fields: Vec<(u32, u32, u32)>,
    /// RFC 9113 §6.5.2's size: octets plus 32 per field, counted also past the limit.
    size: usize,
    /// Fields were dropped for going over the limit.
    overflowed: bool,
}

impl HeaderList {
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter().map(|&(name, value, end)| {
            (&self.bytes[name as usize..value as usize], &self.bytes[value as usize..end as usize])
        })
    }

    /// The list was larger than the limit it was decoded with (its fields are incomplete).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Empties it for the next block, keeping its room.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
        (self.size, self.overflowed) = (0, false);
    }

    #[cfg(test)]
    pub fn push_for_test(&mut self, name: &[u8], value: &[u8]) {
        self.push(name, value, usize::MAX);
    }

    fn push(&mut self, name: &[u8], value: &[u8], limit: usize) {
        self.size += name.len() + value.len() + ENTRY_OVERHEAD;
        if self.size > limit {
            self.overflowed = true;
            return;
        }
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        let value_start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.fields.push((start, value_start, self.bytes.len() as u32));
    }
}

/// The decoding side of one connection.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The most the peer may size the table to: our SETTINGS_HEADER_TABLE_SIZE.
    limit: usize,
    /// Huffman-decoded strings, reused.
    scratch: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(DEFAULT_TABLE_SIZE)
    }
}

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder { table: DynamicTable::new(limit), limit, scratch: Vec::new() }
    }

    /// Drops the room kept for Huffman-decoded strings (the next block grows it again).
    pub fn release_scratch(&mut self) {
        self.scratch = Vec::new();
    }

    /// Decodes one whole header block into `list`, keeping at most `max_list_size` of it.
    pub fn decode(
        &mut self,
        block: &[u8],
        list: &mut HeaderList,
        max_list_size: usize,
    ) -> Result<(), HpackError> {
        let mut rest = block;
        let mut first = true;
        while let [byte, ..] = *rest {
            if byte & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field (RFC 7541 §4.2).
                let (size, after) = integer(rest, 5)?;
                if !first || size > self.limit {
                    return Err(HpackError::BadSizeUpdate);
                }
                self.table.resize(size);
                rest = after;
                continue;
            }
            first = false;
            if byte & 0x80 != 0 {
                let (index, after) = integer(rest, 7)?;
                let (name, value) = self.table.get(index)?;
                list.push(name, value, max_list_size);
                rest = after;
                continue;
            }
            // A literal: with incremental indexing (01), without (0000) or never (0001). Name
            // then value are gathered in the scratch buffer, whichever table or string each
            // comes from.
            let (indexed, prefix) = if byte & 0x40 != 0 { (true, 6) } else { (false, 4) };
            let (index, after) = integer(rest, prefix)?;
            self.scratch.clear();
            let after = match index {
                0 => string(after, &mut self.scratch)?,
                index => {
                    self.scratch.extend_from_slice(self.table.get(index)?.0);
                    after
                }
            };
            let name_len = self.scratch.len();
            rest = string(after, &mut self.scratch)?;
            let (name, value) = self.scratch.split_at(name_len);
            list.push(name, value, max_list_size);
            if indexed {
                self.table.insert(name, value);
            }
        }
        Ok(())
    }
}

/// An integer with an `prefix`-bit prefix (RFC 7541 §5.1), and the bytes after it. Values past
/// 2^28, or more than five continuation octets (zero-valued ones would grow the shift, not the
/// value), are refused: no size or index we accept comes near.
fn integer(bytes: &[u8], prefix: u32) -> Result<(usize, &[u8]), HpackError> {
    let (&first, mut rest) = bytes.split_first().ok_or(HpackError::Truncated)?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, rest));
    }
    let mut shift = 0;
    loop {
        let (&byte, after) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = after;
        value += usize::from(byte & 0x7f) << shift;
        if value > 1 << 28 || shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            return Ok((value, rest));
        }
        shift += 7;
    }
}

/// A string literal (RFC 7541 §5.2), appended to `out` (Huffman-decoded if it is coded);
/// returns the bytes after it.
fn string<'b>(bytes: &'b [u8], out: &mut Vec<u8>) -> Result<&'b [u8], HpackError> {
    let huffman = bytes.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, rest) = integer(bytes, 7)?;
    if rest.len() < len {
        return Err(HpackError::Truncated);
    }
    let (text, rest) = rest.split_at(len);
    match huffman {
        true => huffman::decode(text, out).map_err(|_| HpackError::Huffman)?,
        false => out.extend_from_slice(text),
    }
    Ok(rest)
}

/// Appends an integer with a `prefix`-bit prefix, `flags` in the first octet's high bits.
fn write_integer(out: &mut Vec<u8>, flags: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a string literal, Huffman-coded when that is shorter.
fn write_string(out: &mut Vec<u8>, text: &[u8]) {
    let coded = huffman::encoded_len(text);
    if coded < text.len() {
        write_integer(out, 0x80, 7, coded);
        huffman::encode(text, out);
    } else {
        write_integer(out, 0, 7, text.len());
        out.extend_from_slice(text);
    }
}

/// The encoding side of one connection. Fields that repeat from response to response
/// (`server`, `content-type`, `cache-control`, an operator's headers, and `date` within its
/// second, a file's validators) go into the dynamic table and cost one octet after the first
/// time; fields that differ from response to response (`content-length`, ranges) are sent as
/// literals that are never indexed, so they do not push the repeating ones out.
#[derive(Debug)]
pub struct Encoder {
    table: DynamicTable,
    /// A table size to announce at the start of the next block (the peer lowered its limit).
    pending_resize: Option<usize>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder { table: DynamicTable::new(DEFAULT_TABLE_SIZE), pending_resize: None }
    }
}

/// Response fields whose value is different nearly every time. A file's validators are not
/// among them: they repeat on every request for it (a reload's 304s, a benchmark's loop), and
/// a page of distinct files cycles them through the table without harm.
fn changes_every_time(name: &[u8]) -> bool {
    matches!(name, b"content-length" | b"content-range" | b"expires" | b"location")
}

impl Encoder {
    /// The peer's SETTINGS_HEADER_TABLE_SIZE: our table stays within it (and within the 4 KiB
    /// default however large the peer allows).
    pub fn set_peer_limit(&mut self, limit: usize) {
        let size = limit.min(DEFAULT_TABLE_SIZE);
        if size != self.table.max_size {
            self.table.resize(size);
            self.pending_resize = Some(size);
        }
    }

    /// Appends the block for `status` then `fields`, their names lowercased as HTTP/2 requires
    /// (§8.2.1; our fields are written for HTTP/1.1, in title case).
    pub fn encode<'f>(
        &mut self,
        status: u16,
        fields: impl Iterator<Item = (&'f [u8], &'f [u8])>,
        out: &mut Vec<u8>,
    ) {
        if let Some(size) = self.pending_resize.take() {
            write_integer(out, 0x20, 5, size);
        }
        let indexed_status = match status {
            200 => Some(8),
            204 => Some(9),
            206 => Some(10),
            304 => Some(11),
            400 => Some(12),
            404 => Some(13),
            500 => Some(14),
            _ => None,
        };
        match indexed_status {
            Some(index) => write_integer(out, 0x80, 7, index),
            None => {
                let mut digits = itoa_status(status);
                write_integer(out, 0x00, 4, 8); // :status, literal without indexing
                write_string(out, digits.as_mut_slice());
            }
        }
        for (name, value) in fields {
            self.field(name, value, out);
        }
    }

    fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let mut lowered = [0u8; MAX_LOWERED_NAME];
        let owned;
        let name = match name.len() <= MAX_LOWERED_NAME {
            true => {
                let lowered = &mut lowered[..name.len()];
                lowered.copy_from_slice(name);
                lowered.make_ascii_lowercase();
                &*lowered
            }
            false => {
                owned = name.to_ascii_lowercase();
                &owned[..]
            }
        };
        // Response fields never match a static entry's value (only `:status`, done above,
        // and request fields have values there), so the static table gives a name at most.
        let static_index = static_name_index(name);
        let mut name_index = static_index;
        let field_len = name.len() + value.len();
        for (offset, entry) in self.table.entries.iter().enumerate() {
            // Lengths first: most entries differ in them, and they need no memory read.
            if entry.name_len != name.len() {
                continue;
            }
            if entry.field.len() == field_len && entry.value() == value && entry.name() == name {
                return write_integer(out, 0x80, 7, 62 + offset);
            }
            if name_index == 0 && entry.name() == name {
                name_index = 62 + offset;
            }
        }
        let index = changes_every_time(name) || field_len + ENTRY_OVERHEAD > self.table.max_size;
        match index {
            true => write_integer(out, 0x00, 4, name_index),
            false => write_integer(out, 0x40, 6, name_index),
        }
        if name_index == 0 {
            write_string(out, name);
        }
        write_string(out, value);
        if !index {
            self.table.insert(name, value);
        }
    }
}

/// Field names up to this long are lowercased on the stack.
const MAX_LOWERED_NAME: usize = 64;

/// A status code's three digits.
fn itoa_status(status: u16) -> [u8; 3] {
    [b'0' + (status / 100 % 10) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect()
    }

    fn decoded(decoder: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut list = HeaderList::default();
        decoder.decode(&hex(block), &mut list, 1 << 20).unwrap();
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        list.iter().map(|(name, value)| (text(name), text(value))).collect()
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    fn table(decoder: &Decoder) -> (Vec<(String, String)>, usize) {
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        let entries = decoder.table.entries.iter().map(|entry| (text(entry.name()), text(entry.value())));
        (entries.collect(), decoder.table.size)
    }

    /// RFC 7541 C.2.1 to C.2.4: one field each way of coding it.
    #[test]
    fn appendix_c2_field_representations() {
        let mut decoder = Decoder::default();
        let block = "400a637573746f6d2d6b65790d637573746f6d2d686561646572";
        assert_eq!(decoded(&mut decoder, block), fields(&[("custom-key", "custom-header")]));
        assert_eq!(table(&decoder).1, 55);
        let mut decoder = Decoder::default();
        assert_eq!(
            decoded(&mut decoder, "040c2f73616d706c652f70617468"),
            fields(&[(":path", "/sample/path")])
        );
        assert_eq!(table(&decoder).1, 0);
        let block = "100870617373776f726406736563726574";
        assert_eq!(decoded(&mut decoder, block), fields(&[("password", "secret")]));
        assert_eq!(table(&decoder).1, 0);
        assert_eq!(decoded(&mut decoder, "82"), fields(&[(":method", "GET")]));
    }

    const REQUEST_FIELDS: [&[(&str, &str)]; 3] = [
        &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
    ];

    /// C.3 (raw strings) and C.4 (Huffman): three requests on one connection, the table after
    /// each as the RFC lists it.
    #[test]
    fn appendix_c3_and_c4_requests() {
        let raw = [
            "828684410f7777772e6578616d706c652e636f6d",
            "828684be58086e6f2d6361636865",
            "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        ];
        let huffman = [
            "828684418cf1e3c2e5f23a6ba0ab90f4ff",
            "828684be5886a8eb10649cbf",
            "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
        ];
        for blocks in [raw, huffman] {
            let mut decoder = Decoder::default();
            for (block, expected) in blocks.iter().zip(REQUEST_FIELDS) {
                assert_eq!(decoded(&mut decoder, block), fields(expected));
            }
            let (entries, size) = table(&decoder);
            assert_eq!(size, 164);
            assert_eq!(
                entries,
                fields(&[
                    ("custom-key", "custom-value"),
                    ("cache-control", "no-cache"),
                    (":authority", "www.example.com")
                ])
            );
        }
    }

    /// C.5 (raw) and C.6 (Huffman): three responses through a 256-octet table, with evictions.
    #[test]
    fn appendix_c5_and_c6_responses_with_eviction() {
        let raw = [
            "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
            "4803333037c1c0bf",
            "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31",
        ];
        let huffman = [
            "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
            "4883640effc1c0bf",
            "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
        ];
        let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        for blocks in [raw, huffman] {
            let mut decoder = Decoder::new(256);
            decoded(&mut decoder, blocks[0]);
            assert_eq!(table(&decoder).1, 222);
            assert_eq!(
                decoded(&mut decoder, blocks[1]),
                fields(&[
                    (":status", "307"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                    ("location", "https://www.example.com"),
                ])
            );
            assert_eq!(table(&decoder).1, 222);
            assert_eq!(
                decoded(&mut decoder, blocks[2]),
                fields(&[
                    (":status", "200"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                    ("location", "https://www.example.com"),
                    ("content-encoding", "gzip"),
                    ("set-cookie", cookie),
                ])
            );
            let (entries, size) = table(&decoder);
            assert_eq!(size, 215);
            assert_eq!(
                entries,
                fields(&[
                    ("set-cookie", cookie),
                    ("content-encoding", "gzip"),
                    ("date", "Mon, 21 Oct 2013 20:13:22 GMT")
                ])
            );
        }
    }

    #[test]
    fn broken_blocks_are_errors_not_panics() {
        let mut decoder = Decoder::default();
        let mut list = HeaderList::default();
        for (block, error) in [
            ("80", HpackError::BadIndex),
            ("ff00", HpackError::BadIndex), // 127 + 0: past an empty dynamic table
            ("ffffffffff7f", HpackError::IntegerOverflow),
            // Zero-valued continuation octets: the value stays small while the shift grows (fuzz).
            ("ff808080808080808080808001", HpackError::IntegerOverflow),
            ("ff", HpackError::Truncated),
            ("400a6375", HpackError::Truncated),
            ("3fe21f", HpackError::BadSizeUpdate), // 4097 > our 4096
            ("82 20".replace(' ', "").as_str(), HpackError::BadSizeUpdate), // after a field
            ("4081ff0161", HpackError::Huffman),
        ] {
            assert_eq!(decoder.decode(&hex(block), &mut list, 1 << 20), Err(error), "{block}");
        }
    }

    /// An indexed 4 KiB entry repeated: the list stops growing at the limit, and says so.
    #[test]
    fn a_bomb_is_counted_not_copied() {
        let mut decoder = Decoder::default();
        let mut block = vec![0x40, 0x01, b'x'];
        write_integer(&mut block, 0, 7, 4000);
        block.extend(std::iter::repeat_n(b'a', 4000));
        block.extend(std::iter::repeat_n(0xbe, 10_000)); // index 62, ten thousand times
        let mut list = HeaderList::default();
        decoder.decode(&block, &mut list, 16 * 1024).unwrap();
        assert!(list.overflowed());
        assert!(list.size() > 40_000_000);
        assert!(list.bytes.len() <= 16 * 1024);
    }

    #[test]
    fn static_name_index_is_the_first_entry_with_the_name() {
        for (name, _) in STATIC_TABLE {
            let first = STATIC_TABLE.iter().position(|(known, _)| *known == name).unwrap() + 1;
            assert_eq!(static_name_index(name.as_bytes()), first, "{name}");
        }
        assert_eq!(static_name_index(b"x-custom"), 0);
        assert_eq!(static_name_index(b"Server"), 0, "names arrive lowercased");
    }

    /// Our encoder's blocks decode to what went in; repeated fields shrink to an octet.
    #[test]
    fn encoded_responses_decode_and_repeat_cheaply() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::default();
        let response = [
            ("server", "onepoll"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", "128"),
            ("x-custom", "yes"),
        ];
        let mut sizes = Vec::new();
        for status in [200, 200, 418] {
            let mut block = Vec::new();
            encoder.encode(status, response.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut block);
            sizes.push(block.len());
            let mut list = HeaderList::default();
            decoder.decode(&block, &mut list, 1 << 20).unwrap();
            let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
            let got: Vec<(String, String)> = list.iter().map(|(n, v)| (text(n), text(v))).collect();
            let mut expected = vec![(":status".to_string(), status.to_string())];
            expected.extend(fields(&response));
            assert_eq!(got, expected);
        }
        // Second time: status, server, content-type, x-custom one octet each; date and length literal.
        assert!(sizes[1] < sizes[0] / 2, "{sizes:?}");
        encoder.set_peer_limit(0);
        let mut block = Vec::new();
        encoder.encode(200, response.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), &mut block);
        assert_eq!(block[0], 0x20, "a size update first");
        let mut list = HeaderList::default();
        decoder.decode(&block, &mut list, 1 << 20).unwrap();
        assert_eq!(table(&decoder).1, 0);
    }
}
