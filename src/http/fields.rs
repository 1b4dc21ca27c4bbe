//! A response's header fields, the names and values written into them, and the fields an
//! operator adds (`--header`).
//!
//! The fields are kept as field lines, `Name: value` each (RFC 9110 §5's field syntax, CRLF
//! between): the cheapest list to build, which HTTP/1.1 then sends as it is, while any other
//! codec reads it back as (name, value) pairs with [`Headers::iter`]. No wire framing is in
//! it: the status line, `Connection` and the blank line are the HTTP/1.1 codec's.

use super::conditional::EntityTag;
use super::date::ImfDate;
use crate::recycle::{give_bytes, take_bytes};

/// A header field the operator adds to every response (`--header 'Name: value'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHeader {
    /// Leaked once at start-up: the configuration lives as long as the process, and field
    /// names are static everywhere else.
    pub(super) name: FieldName,
    pub(super) value: String,
}

/// Fields that frame the message or the connection: only onepoll may set them, or a client
/// could be told a wrong length.
const FRAMING_FIELDS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "content-range",
];

impl ExtraHeader {
    /// Parses `Name: value`: the name must be a token (RFC 9110 §5.1), the value visible
    /// characters, spaces and tabs only (no CR/LF: no header injection), and framing fields
    /// are refused.
    pub fn parse(text: &str) -> Result<ExtraHeader, &'static str> {
        let (name, value) = text.split_once(':').ok_or("expected 'Name: value'")?;
        let value = value.trim_matches([' ', '\t']);
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err("the header name must be a token (letters, digits, -)");
        }
        if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err("the header value must be printable ASCII");
        }
        if FRAMING_FIELDS.iter().any(|field| name.eq_ignore_ascii_case(field)) {
            return Err("onepoll sets that header itself");
        }
        Ok(ExtraHeader {
            name: FieldName(Box::leak(format!("{name}: ").into_boxed_str())),
            value: value.to_owned(),
        })
    }
}

/// The header fields, as `Name: value\r\n` lines in one buffer (pooled, so a warm thread
/// allocates nothing for it), with values written as bytes, not through `fmt`. There is no index beside it: only tests and
/// the rare `insert` look fields up, and they read the lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every field line in sending order; ASCII (we write them, or `--header` checked them).
    pub(super) lines: Vec<u8>,
}

/// A value a header field can take, written straight into the field buffer.
pub trait HeaderValue {
    fn write_to(self, out: &mut Vec<u8>);
}

impl HeaderValue for &str {
    fn write_to(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl HeaderValue for &String {
    fn write_to(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl HeaderValue for u64 {
    /// Decimal digits without `fmt` (lengths are on every response).
    fn write_to(self, out: &mut Vec<u8>) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = self;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[at..]);
    }
}

impl HeaderValue for usize {
    fn write_to(self, out: &mut Vec<u8>) {
        (self as u64).write_to(out);
    }
}

impl HeaderValue for ImfDate {
    fn write_to(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl HeaderValue for EntityTag {
    fn write_to(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl HeaderValue for std::fmt::Arguments<'_> {
    /// The rare composed values (`Content-Range`, the multipart type).
    fn write_to(self, out: &mut Vec<u8>) {
        struct Bytes<'a>(&'a mut Vec<u8>);
        impl std::fmt::Write for Bytes<'_> {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                self.0.extend_from_slice(text.as_bytes());
                Ok(())
            }
        }
        let _ = std::fmt::Write::write_fmt(&mut Bytes(out), self);
    }
}

impl Headers {
    /// Storage from the per-thread pool: responses come and go, their buffers stay.
    pub(super) fn with_capacity() -> Headers {
        Headers { lines: take_bytes() }
    }

    pub fn push(&mut self, name: FieldName, value: impl HeaderValue) {
        self.lines.extend_from_slice(name.0.as_bytes());
        value.write_to(&mut self.lines);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// Appends field lines rendered earlier by this type (see [`full_response_fields`]).
    pub fn push_rendered(&mut self, lines: &[u8]) {
        self.lines.extend_from_slice(lines);
    }

    /// Adds a field before the `index`th one (counting from 0; at the end when there are
    /// fewer), moving the lines after it: for the few responses that put a field early.
    pub fn insert(&mut self, index: usize, name: FieldName, value: impl HeaderValue) {
        let line_start = self.line_starts().nth(index).unwrap_or(self.lines.len());
        let old_len = self.lines.len();
        self.push(name, value);
        let line_len = self.lines.len() - old_len;
        self.lines[line_start..].rotate_right(line_len);
    }

    /// Where each field line starts in `lines`.
    fn line_starts(&self) -> impl Iterator<Item = usize> + '_ {
        let ends = self.lines.windows(2).enumerate().filter(|(_, pair)| pair == b"\r\n");
        std::iter::once(0).chain(ends.map(|(at, _)| at + 2)).filter(|&at| at < self.lines.len())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }

    /// Each field's name and value, read back from the lines (for tests and lookups; sending
    /// writes the bytes as they are).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = std::str::from_utf8(&self.lines).unwrap_or_default();
        text.split_terminator("\r\n").filter_map(|line| line.split_once(": "))
    }

    /// Each field's name and value as bytes, split without UTF-8 checks or string searches:
    /// what HTTP/2's encoder reads for every response.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines.split(|&b| b == b'\n').filter_map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = line.split_at(colon);
            Some((name, value[1..].strip_prefix(b" ").unwrap_or(&value[1..])))
        })
    }

    /// The field lines themselves, for a codec that sends them as they are (HTTP/1.1).
    pub fn into_lines(mut self) -> Vec<u8> {
        std::mem::take(&mut self.lines)
    }
}

/// A field name as written, `Name: ` (the separator joined at compile time by [`field!`], so a
/// field costs one copy fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldName(pub(crate) &'static str);

/// `field!("Content-Type")`: the [`FieldName`] `Content-Type: `.
macro_rules! field {
    ($name:literal) => {
        $crate::http::fields::FieldName(concat!($name, ": "))
    };
}

impl Drop for Headers {
    fn drop(&mut self) {
        give_bytes(std::mem::take(&mut self.lines));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_bytes_are_the_fields_read_as_text() {
        let mut headers = Headers::with_capacity();
        headers.push(field!("Content-Type"), "text/html; charset=utf-8");
        headers.push(field!("X-Empty"), "");
        headers.push(field!("Link"), "</a.css>; rel=preload: x");
        let text: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        assert_eq!(headers.iter_bytes().collect::<Vec<_>>(), text);
        assert_eq!(text.len(), 3);
    }

    #[test]
    fn inserted_fields_land_in_order_and_keep_every_value_findable() {
        let mut headers = Headers::with_capacity();
        headers.push(field!("A"), "1");
        headers.push(field!("B"), "22");
        headers.push(field!("C"), 333u64);
        headers.insert(1, field!("X"), "x-value");
        headers.insert(0, field!("Y"), "y");
        headers.insert(99, field!("Z"), "zz");
        let mut block = String::new();
        for (name, value) in headers.iter() {
            block.push_str(&format!("{name}: {value}\r\n"));
        }
        assert_eq!(block, "Y: y\r\nA: 1\r\nX: x-value\r\nB: 22\r\nC: 333\r\nZ: zz\r\n");
        assert_eq!(String::from_utf8(headers.into_lines()).unwrap(), block);
    }

    #[test]
    fn numbers_are_written_as_decimal_digits() {
        for number in [0, 7, 10, 128, 1_234_567, u64::MAX] {
            let mut out = Vec::new();
            number.write_to(&mut out);
            assert_eq!(out, number.to_string().into_bytes());
        }
    }
}
