//! The HTML page listing a directory (`--listing`), from plain entries the filesystem edge
//! collected. Every name is hostile until escaped: file names may hold `<`, `"`, `&`, newlines
//! or invalid UTF-8, and a name like `javascript:alert(1)` must not become a link scheme.

use std::fmt::Write;
use std::time::SystemTime;

use percent_encoding::percent_encode;

use super::target::PATH_SEGMENT;

/// Most entries a listing shows. Reading a directory is synchronous, so a huge one would stall
/// the loop (and make a page nobody reads): past this many the listing stops and says so.
pub const MAX_LISTED_ENTRIES: usize = 10_000;

/// One directory entry, as read from the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    /// The raw file name (any bytes but `/` and NUL).
    pub name: Vec<u8>,
    pub is_dir: bool,
    /// Size in bytes; ignored for directories.
    pub len: u64,
    pub modified: Option<SystemTime>,
}

/// The listing of `directory` (the decoded URL path, ending in `/`): a parent link, then
/// subdirectories and files, each group sorted by name. The filesystem edge leaves hidden
/// names out before it collects them (unless `--hidden`). `truncated`: the directory holds
/// more than `entries`.
pub fn render_listing(directory: &[u8], entries: &mut [ListingEntry], truncated: bool) -> String {
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    let title = escape_html(&String::from_utf8_lossy(directory));
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1><hr><table>\n"
    );
    if directory != b"/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in entries.iter() {
        let slash = if entry.is_dir { "/" } else { "" };
        // "./" keeps a name with a colon a relative path, never a scheme such as javascript:.
        let href = escape_html(&percent_encode(&entry.name, PATH_SEGMENT).to_string());
        let text = escape_html(&displayable(&entry.name));
        let size = if entry.is_dir { "-".to_owned() } else { entry.len.to_string() };
        let modified = entry.modified.map(|time| super::http_date(time).to_string()).unwrap_or_default();
        let _ = writeln!(
            html,
            "<tr><td><a href=\"./{href}{slash}\">{text}{slash}</a></td><td>{size}</td><td>{modified}</td></tr>"
        );
    }
    html.push_str("</table>");
    if truncated {
        let _ = write!(
            html,
            "<p>Only the first {MAX_LISTED_ENTRIES} entries the directory yielded are listed.</p>"
        );
    }
    html.push_str("<hr></body></html>\n");
    html
}

/// A name as text: invalid UTF-8 and control characters (a newline is legal in a file name)
/// shown as U+FFFD; the link keeps the exact bytes, percent-encoded.
fn displayable(name: &[u8]) -> String {
    String::from_utf8_lossy(name).chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

/// Text safe inside HTML element content and double- or single-quoted attributes.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8], is_dir: bool) -> ListingEntry {
        ListingEntry { name: name.to_vec(), is_dir, len: 5, modified: None }
    }

    #[test]
    fn hostile_names_are_escaped_in_text_and_links() {
        let mut entries = vec![
            entry(b"<script>alert(1)</script>.html", false),
            entry(b"a\"onmouseover=\"x", false),
            entry(b"javascript:alert(1)", false),
            entry(b"caf\xe9 & more", false),
            entry(b"two\nlines", false),
        ];
        let html = render_listing(b"/d<i>r/", &mut entries, false);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.html"), "{html}");
        assert!(html.contains("href=\"./%3Cscript%3Ealert(1)%3C%2Fscript%3E.html\""), "{html}");
        assert!(!html.contains("\"onmouseover"), "{html}");
        assert!(html.contains("href=\"./javascript:alert(1)\""), "{html}");
        assert!(html.contains("href=\"./caf%E9%20&amp;%20more\""), "{html}");
        assert!(html.contains("caf\u{fffd} &amp; more"), "{html}");
        assert!(html.contains("href=\"./two%0Alines\">two\u{fffd}lines</a>"), "{html}");
        assert!(html.contains("<title>Index of /d&lt;i&gt;r/</title>"), "{html}");
    }

    #[test]
    fn directories_first_then_files_each_sorted() {
        let mut entries =
            vec![entry(b"b.txt", false), entry(b".git", true), entry(b"z", true), entry(b"a.txt", false)];
        let html = render_listing(b"/", &mut entries, false);
        let order: Vec<usize> =
            ["./.git/", "./z/", "./a.txt", "./b.txt"].iter().map(|href| html.find(href).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{html}");
        assert!(!html.contains("../"), "{html}");
        assert!(render_listing(b"/sub/", &mut Vec::new(), false).contains("href=\"../\""));
        assert!(!html.contains("Only the first"));
        assert!(render_listing(b"/", &mut Vec::new(), true).contains("Only the first 10000 entries"));
    }
}
