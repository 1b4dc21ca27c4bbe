//! The media type a file is served as, from its name.

/// `Content-Type` from the file name: our own table for the types browsers are strict about
/// (module scripts, wasm streaming compile), then `mime_guess`; text gets an explicit charset.
pub fn content_type(name: &[u8]) -> &'static str {
    /// Extensions (compared ignoring ASCII case) whose type we set ourselves.
    const OURS: [(&str, &str); 9] = [
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("txt", "text/plain; charset=utf-8"),
        ("svg", "image/svg+xml"),
        ("wasm", "application/wasm"),
    ];
    const UNKNOWN: &str = "application/octet-stream";
    let extension = name
        .rsplit(|&b| b == b'.')
        .next()
        .filter(|ext| ext.len() < name.len())
        .and_then(|ext| std::str::from_utf8(ext).ok())
        .unwrap_or_default();
    match OURS.iter().find(|(ours, _)| ours.eq_ignore_ascii_case(extension)) {
        Some((_, known)) => known,
        None if extension.is_empty() => UNKNOWN,
        // mime_guess compares extensions ignoring case too.
        None => mime_guess::from_ext(extension).first_raw().unwrap_or(UNKNOWN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for (name, expected) in [
            (&b"index.html"[..], "text/html; charset=utf-8"),
            (b"STYLE.CSS", "text/css; charset=utf-8"),
            (b"app.js", "text/javascript; charset=utf-8"),
            (b"mod.mjs", "text/javascript; charset=utf-8"),
            (b"logo.svg", "image/svg+xml"),
            (b"pic.png", "image/png"),
            (b"PIC.PNG", "image/png"),
            (b"clip.mp4", "video/mp4"),
            (b"code.wasm", "application/wasm"),
            (b"README", "application/octet-stream"),
            (b"archive.unknownext", "application/octet-stream"),
            (b".hidden", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name), expected, "{}", String::from_utf8_lossy(name));
        }
    }
}
