//! Conditional requests, ranges and precompressed siblings, end to end over raw sockets.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::thread;
use std::time::Duration;

use common::{HELLO, Response, Server, Site, get};

fn with(path: &str, fields: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{fields}\r\n").into_bytes()
}

fn etags_and_dates_give_304_and_412_on_a_keep_alive_connection(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let mut client = server.connect();
    client.send(&get("/hello.txt"));
    let first = client.response(false);
    let etag = first.header("ETag").unwrap().to_owned();
    let modified = first.header("Last-Modified").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "strong ETag: {etag}");
    assert_eq!(first.header("Accept-Ranges"), Some("bytes"));

    let cases = [
        (format!("If-None-Match: {etag}\r\n"), 304),
        (format!("If-None-Match: \"x\", W/{etag}\r\n"), 304),
        ("If-None-Match: *\r\n".to_owned(), 304),
        ("If-None-Match: \"other\"\r\n".to_owned(), 200),
        (format!("If-Modified-Since: {modified}\r\n"), 304),
        ("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".to_owned(), 200),
        ("If-Modified-Since: not a date\r\n".to_owned(), 200),
        (format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n"), 200),
        (format!("If-Match: {etag}\r\n"), 200),
        ("If-Match: \"other\"\r\n".to_owned(), 412),
        (format!("If-Match: W/{etag}\r\n"), 412),
        ("If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".to_owned(), 412),
        (format!("If-Unmodified-Since: {modified}\r\n"), 200),
    ];
    for (fields, status) in &cases {
        client.send(&with("/hello.txt", fields));
        let response = client.response(false);
        assert_eq!(response.status, *status, "{fields}");
        match status {
            304 => {
                assert_eq!(response.header("ETag"), Some(etag.as_str()), "{fields}");
                assert!(response.header("Date").is_some());
                assert!(response.body.is_empty());
            }
            200 => assert_eq!(response.body_text(), HELLO, "{fields}"),
            _ => assert!(response.body_text().contains("412 Precondition Failed")),
        }
    }
    // HEAD honours preconditions too.
    client.send(format!("HEAD /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes());
    assert_eq!(client.response(true).status, 304);

    // Changing the file changes the ETag, so the old one no longer matches.
    thread::sleep(Duration::from_millis(20));
    fs::write(site.root().join("hello.txt"), "changed\n").unwrap();
    client.send(&with("/hello.txt", &format!("If-None-Match: {etag}\r\n")));
    let changed = client.response(false);
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body_text(), "changed\n");
    assert_ne!(changed.header("ETag"), Some(etag.as_str()));
}

fn digits_file(site: &Site) -> String {
    let text: String = (0..100).map(|i| char::from(b'0' + (i % 10) as u8)).collect();
    fs::write(site.root().join("digits.txt"), &text).unwrap();
    text
}

fn single_ranges(engine: &str) {
    let site = Site::new();
    let text = digits_file(&site);
    let server = Server::start_engine(&site.root(), engine);
    let mut client = server.connect();
    let cases = [
        ("bytes=0-9", 206, "bytes 0-9/100", &text[0..10]),
        ("bytes=95-", 206, "bytes 95-99/100", &text[95..]),
        ("bytes=-3", 206, "bytes 97-99/100", &text[97..]),
        ("bytes=90-1000", 206, "bytes 90-99/100", &text[90..]),
        ("bytes=0-0,1-1", 206, "bytes 0-1/100", &text[0..2]),
        ("bytes=100-", 416, "bytes */100", ""),
        ("bytes=-0", 416, "bytes */100", ""),
        ("items=0-5", 200, "", &text[..]),
        ("bytes=5-1", 200, "", &text[..]),
        ("bytes=x", 200, "", &text[..]),
    ];
    for (range, status, content_range, body) in cases {
        client.send(&with("/digits.txt", &format!("Range: {range}\r\n")));
        let response = client.response(false);
        assert_eq!(response.status, status, "{range}");
        if status == 206 || status == 416 {
            assert_eq!(response.header("Content-Range"), Some(content_range), "{range}");
        } else {
            assert_eq!(response.header("Content-Range"), None, "{range}");
        }
        if status != 416 {
            assert_eq!(response.body_text(), body, "{range}");
        }
    }
}

fn if_range_decides_between_part_and_whole(engine: &str) {
    let site = Site::new();
    let text = digits_file(&site);
    let server = Server::start_engine(&site.root(), engine);
    let first = server.exchange(&get("/digits.txt"));
    let (etag, modified) = (first.header("ETag").unwrap(), first.header("Last-Modified").unwrap());
    for (if_range, status) in [
        (etag.to_owned(), 206),
        (modified.to_owned(), 206),
        ("\"stale\"".to_owned(), 200),
        (format!("W/{etag}"), 200),
        ("Thu, 01 Jan 1970 00:00:00 GMT".to_owned(), 200),
    ] {
        let response =
            server.exchange(&with("/digits.txt", &format!("Range: bytes=0-4\r\nIf-Range: {if_range}\r\n")));
        assert_eq!(response.status, status, "{if_range}");
        let expected = if status == 206 { &text[..5] } else { &text[..] };
        assert_eq!(response.body_text(), expected);
    }
}

/// Splits a multipart/byteranges body into (Content-Range, data) pairs.
fn multipart_parts(response: &Response) -> Vec<(String, Vec<u8>)> {
    let content_type = response.header("Content-Type").unwrap();
    let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").expect(content_type);
    let body = &response.body;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut at = 0;
    loop {
        let start = at + find(&body[at..], delimiter.as_bytes()).expect("a delimiter") + delimiter.len();
        if body[start..].starts_with(b"--") {
            assert_eq!(&body[start..], b"--\r\n", "closing delimiter ends the body");
            return parts;
        }
        let head_end = start + find(&body[start..], b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&body[start..head_end]).into_owned();
        let range = head.lines().find_map(|l| l.strip_prefix("Content-Range: ")).unwrap().to_owned();
        let (first, last) =
            range.strip_prefix("bytes ").unwrap().split('/').next().unwrap().split_once('-').unwrap();
        let len = last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1;
        parts.push((range, body[head_end..head_end + len].to_vec()));
        at = head_end + len;
        assert!(body[at..].starts_with(b"\r\n--"), "CRLF before the next delimiter");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn several_ranges_come_back_as_multipart_byteranges(engine: &str) {
    let site = Site::new();
    let text = digits_file(&site);
    let server = Server::start_engine(&site.root(), engine);
    let response = server.exchange(&with("/digits.txt", "Range: bytes=50-54, 0-2, 1-3, -2\r\n"));
    assert_eq!(response.status, 206);
    assert_eq!(response.header("Content-Length"), Some(response.body.len().to_string().as_str()));
    let parts = multipart_parts(&response);
    let expected = [
        ("bytes 0-3/100", &text[0..4]),
        ("bytes 50-54/100", &text[50..55]),
        ("bytes 98-99/100", &text[98..]),
    ];
    assert_eq!(parts.len(), expected.len());
    for ((range, data), (want_range, want_data)) in parts.iter().zip(expected) {
        assert_eq!(range, want_range);
        assert_eq!(String::from_utf8_lossy(data), want_data);
    }
    // More than the cap: the whole file instead.
    let many: Vec<String> = (0..40).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
    let response = server.exchange(&with("/digits.txt", &format!("Range: bytes={}\r\n", many.join(","))));
    assert_eq!((response.status, response.body_text()), (200, text));
}

fn ranges_of_a_sparse_file_beyond_4_gib(engine: &str) {
    let site = Site::new();
    let path = site.root().join("sparse.bin");
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
    let len: u64 = (1 << 32) + 4096;
    file.set_len(len).unwrap();
    let markers: [(u64, &[u8]); 3] = [
        ((1 << 31) - 4, b"ABCDEFGH"), // straddles 2^31
        ((1 << 32) - 4, b"IJKLMNOP"), // straddles 2^32
        (len - 8, b"QRSTUVWX"),
    ];
    for (offset, bytes) in markers {
        file.write_all_at(bytes, offset).unwrap();
    }
    drop(file);
    let server = Server::start_engine(&site.root(), engine);
    let mut client = server.connect();
    for (offset, bytes) in markers {
        let range = format!("bytes={}-{}", offset, offset + 7);
        client.send(&with("/sparse.bin", &format!("Range: {range}\r\n")));
        let response = client.response(false);
        assert_eq!(response.status, 206, "{range}");
        assert_eq!(
            response.header("Content-Range"),
            Some(format!("bytes {}-{}/{len}", offset, offset + 7).as_str())
        );
        assert_eq!(response.body, bytes, "{range}");
    }
    client.send(&with("/sparse.bin", "Range: bytes=-8\r\n"));
    assert_eq!(client.response(false).body, b"QRSTUVWX");
    client.send(b"HEAD /sparse.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.response(true).header("Content-Length"), Some(len.to_string().as_str()));
}

fn precompressed_siblings_are_served_when_accepted(engine: &str) {
    let site = Site::new();
    let root = site.root();
    fs::write(root.join("app.js"), "console.log('plain');\n").unwrap();
    fs::write(root.join("app.js.gz"), b"GZIP-BYTES").unwrap();
    fs::write(root.join("app.js.br"), b"BROTLI-BYTES!").unwrap();
    fs::write(root.join("app.js.zst"), b"ZSTD-BYTES").unwrap();
    fs::write(root.join("only-gz.css"), "body{}\n").unwrap();
    fs::write(root.join("only-gz.css.gz"), b"GZ-CSS").unwrap();
    let server = Server::start_engine(&root, engine);
    let js = "text/javascript; charset=utf-8";
    let cases = [
        ("/app.js", "", None, "console.log('plain');\n"),
        ("/app.js", "Accept-Encoding: gzip\r\n", Some("gzip"), "GZIP-BYTES"),
        ("/app.js", "Accept-Encoding: gzip, deflate, br\r\n", Some("br"), "BROTLI-BYTES!"),
        ("/app.js", "Accept-Encoding: br;q=0, gzip\r\n", Some("gzip"), "GZIP-BYTES"),
        ("/app.js", "Accept-Encoding: zstd\r\n", Some("zstd"), "ZSTD-BYTES"),
        ("/app.js", "Accept-Encoding: gzip, zstd\r\n", Some("zstd"), "ZSTD-BYTES"),
        ("/app.js", "Accept-Encoding: gzip, deflate, br, zstd\r\n", Some("br"), "BROTLI-BYTES!"),
        ("/app.js", "Accept-Encoding: identity\r\n", None, "console.log('plain');\n"),
        ("/only-gz.css", "Accept-Encoding: br, gzip\r\n", Some("gzip"), "GZ-CSS"),
        ("/only-gz.css", "Accept-Encoding: br\r\n", None, "body{}\n"),
    ];
    let mut etags = Vec::new();
    for (path, fields, encoding, body) in cases {
        let response = server.exchange(&with(path, fields));
        assert_eq!(response.status, 200, "{path} {fields}");
        assert_eq!(response.header("Content-Encoding"), encoding, "{path} {fields}");
        assert_eq!(response.header("Vary"), Some("Accept-Encoding"), "{path} {fields}");
        assert_eq!(response.body_text(), body, "{path} {fields}");
        if path == "/app.js" {
            assert_eq!(response.header("Content-Type"), Some(js));
            etags.push(response.header("ETag").unwrap().to_owned());
        }
    }
    assert_ne!(etags[0], etags[1], "each representation has its own ETag");
    // Ranges refer to the representation sent.
    let part = server.exchange(&with("/app.js", "Accept-Encoding: gzip\r\nRange: bytes=0-3\r\n"));
    assert_eq!((part.status, part.body_text()), (206, "GZIP".to_owned()));
    assert_eq!(part.header("Content-Range"), Some("bytes 0-3/10"));
    // A file without siblings does not vary.
    assert_eq!(server.exchange(&with("/hello.txt", "Accept-Encoding: gzip\r\n")).header("Vary"), None);
    // The siblings themselves are ordinary files.
    let raw = server.exchange(&get("/app.js.gz"));
    assert_eq!(
        (raw.header("Content-Encoding"), raw.header("Content-Type")),
        (None, Some("application/gzip"))
    );
}

/// The small-file cache (event loop) must never serve what is no longer on disk.
fn changes_on_disk_are_seen_by_the_very_next_request(engine: &str) {
    let site = Site::new();
    let root = site.root();
    let server = Server::start_engine(&root, engine);
    let mut client = server.connect();
    let mut fetch = |path: &str, fields: &str| {
        client.send(&with(path, fields));
        client.response(false)
    };
    assert_eq!(fetch("/sub/page.txt", "").body_text(), "sub page\n");
    fs::write(root.join("sub/page.txt"), "rewritten in place\n").unwrap();
    assert_eq!(fetch("/sub/page.txt", "").body_text(), "rewritten in place\n");
    // Atomic replace, as deploy tools and editors do it.
    fs::write(root.join("sub/.page.tmp"), "renamed over\n").unwrap();
    fs::rename(root.join("sub/.page.tmp"), root.join("sub/page.txt")).unwrap();
    assert_eq!(fetch("/sub/page.txt", "").body_text(), "renamed over\n");
    // A sibling appears: the file now varies, and gzip clients get it.
    fs::write(root.join("sub/page.txt.gz"), "GZ").unwrap();
    let gz = fetch("/sub/page.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!((gz.header("Content-Encoding"), gz.body_text().as_str()), (Some("gzip"), "GZ"));
    // A whole directory renamed away.
    fs::rename(root.join("sub"), root.join("moved")).unwrap();
    assert_eq!(fetch("/sub/page.txt", "").status, 404);
    assert_eq!(fetch("/moved/page.txt", "").body_text(), "renamed over\n");
    fs::remove_file(root.join("moved/page.txt")).unwrap();
    assert_eq!(fetch("/moved/page.txt", "").status, 404);
    // A file too large to cache is remembered as such; rewritten small, it is served anew.
    let large = "L".repeat(100_000);
    fs::write(root.join("grows.txt"), &large).unwrap();
    assert_eq!(fetch("/grows.txt", "").body_text(), large);
    assert_eq!(fetch("/grows.txt", "").body_text(), large);
    fs::write(root.join("grows.txt"), "small now\n").unwrap();
    assert_eq!(fetch("/grows.txt", "").body_text(), "small now\n");
    fs::write(root.join("grows.txt"), &large).unwrap();
    assert_eq!(fetch("/grows.txt", "").body_text(), large);
    // Symlinked paths are never cached: re-pointing the link takes effect at once.
    assert_eq!(fetch("/link-inside.txt", "").body_text(), HELLO);
    fs::remove_file(root.join("link-inside.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("style.css"), root.join("link-inside.txt")).unwrap();
    assert_eq!(fetch("/link-inside.txt", "").body_text(), "body { color: red }\n");
}

engine_tests! {
    all: [
        changes_on_disk_are_seen_by_the_very_next_request,
        etags_and_dates_give_304_and_412_on_a_keep_alive_connection,
        single_ranges,
        if_range_decides_between_part_and_whole,
        several_ranges_come_back_as_multipart_byteranges,
        ranges_of_a_sparse_file_beyond_4_gib,
        precompressed_siblings_are_served_when_accepted,
    ];
}
