//! On-the-fly compression (event loop): each coding decoded by a real client, the
//! representation rules (Vary, ETag, ranges, q-values, 406), invalidation on change, the
//! memory budget, and the loop serving others while a large file compresses.
#![cfg(feature = "compression")]

mod common;

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{HELLO, Response, Server, Site, curl};

fn with(path: &str, fields: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{fields}\r\n").into_bytes()
}

/// Script-like text that compresses well.
fn script(lines: usize, seed: &str) -> String {
    (0..lines).map(|n| format!("function {seed}{n}(x) {{ return x * {n} + {}; }}\n", n % 7)).collect()
}

/// `len` bytes of random hex digits: compresses to about half, slowly at high levels.
fn random_hex(len: usize, mut state: u64) -> String {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_digit((state % 16) as u32, 16).unwrap()
        })
        .collect()
}

/// Asks for `path` with `accept` until the response is in `coding` (the compressor runs in
/// the background; meanwhile the answer is identity, or 406 when `accept` refuses it); fails
/// after 60 s.
fn until_coded(server: &Server, path: &str, accept: &str, coding: &str) -> Response {
    let started = Instant::now();
    loop {
        let response = server.exchange(&with(path, &format!("Accept-Encoding: {accept}\r\n")));
        assert!(matches!(response.status, 200 | 406), "{path}: {response:?}");
        if response.header("Content-Encoding") == Some(coding) {
            return response;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{path} never came in {coding}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn write(root: &Path, name: &str, content: &str) {
    fs::write(root.join(name), content).unwrap();
}

/// The test site with `name` holding `content`, served by the event loop.
fn serving(name: &str, content: &str) -> (Site, Server) {
    let site = Site::new();
    write(&site.root(), name, content);
    let server = Server::start(&site.root());
    (site, server)
}

#[test]
fn each_coding_round_trips_through_curl() {
    let original = script(400, "f");
    let (_site, server) = serving("bundle.js", &original);
    let url = format!("http://{}/bundle.js", server.addr);
    for coding in ["br", "zstd", "gzip"] {
        let coded = until_coded(&server, "/bundle.js", coding, coding);
        assert!(coded.body.len() * 4 < original.len(), "{coding}: {} bytes", coded.body.len());
        let fetched = curl(&["--compressed", "-H", &format!("Accept-Encoding: {coding}"), "-D", "-", &url]);
        assert!(fetched.status.success(), "{fetched:?}");
        let text = String::from_utf8_lossy(&fetched.stdout);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.to_lowercase().contains(&format!("content-encoding: {coding}")), "{head}");
        assert!(body == original, "curl decoded {coding} into something else");
    }
    // curl's own Accept-Encoding (deflate, gzip, br, zstd) gets brotli.
    let auto = curl(&["--compressed", "--write-out", "%{header_json}", "-o", "/dev/null", &url]);
    assert!(String::from_utf8_lossy(&auto.stdout).contains(r#""content-encoding":["br"]"#));
}

#[test]
fn each_form_has_its_own_etag_and_ranges_and_the_identity_varies_too() {
    let original = script(300, "g");
    let (_site, server) = serving("app.js", &original);
    let first = server.exchange(&with("/app.js", "Accept-Encoding: br\r\n"));
    assert_eq!(first.header("Content-Encoding"), None, "identity until the form is made");
    assert_eq!(first.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(first.body, original.as_bytes());
    let identity_tag = first.header("ETag").unwrap().to_owned();

    let brotli = until_coded(&server, "/app.js", "br", "br");
    let brotli_tag = brotli.header("ETag").unwrap().to_owned();
    assert_eq!(brotli_tag, format!("{}-br\"", identity_tag.trim_end_matches('"')));
    assert_eq!(brotli.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(brotli.header("Content-Length"), Some(brotli.body.len().to_string().as_str()));

    let revalidated =
        server.exchange(&with("/app.js", &format!("Accept-Encoding: br\r\nIf-None-Match: {brotli_tag}\r\n")));
    assert_eq!((revalidated.status, revalidated.header("ETag")), (304, Some(brotli_tag.as_str())));
    let other_form = server.exchange(&with("/app.js", &format!("If-None-Match: {brotli_tag}\r\n")));
    assert_eq!((other_form.status, other_form.body.as_slice()), (200, original.as_bytes()));

    // A range is of the representation sent.
    let part = server.exchange(&with("/app.js", "Accept-Encoding: br\r\nRange: bytes=0-9\r\n"));
    assert_eq!((part.status, part.header("Content-Encoding")), (206, Some("br")));
    assert_eq!(part.body, brotli.body[..10]);
    let head = server.exchange(b"HEAD /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n");
    assert_eq!(head.header("Content-Length"), Some(brotli.body.len().to_string().as_str()));

    // The client's weights rank the codings; the one it wants most is made.
    let weighed = "gzip;q=1.0, br;q=0.5";
    let meanwhile = server.exchange(&with("/app.js", &format!("Accept-Encoding: {weighed}\r\n")));
    assert_eq!(meanwhile.header("Content-Encoding"), Some("br"), "what exists, until gzip does");
    until_coded(&server, "/app.js", weighed, "gzip");
}

#[test]
fn refusing_identity_gets_406_until_an_accepted_form_exists() {
    let (_site, server) = serving("page.html", &script(100, "h"));
    let refused = server.exchange(&with("/page.html", "Accept-Encoding: zstd, identity;q=0\r\n"));
    assert_eq!(refused.status, 406);
    until_coded(&server, "/page.html", "zstd, identity;q=0", "zstd");
    // A file too small to compress has no other form: refusing identity is refusing it.
    let tiny = server.exchange(&with("/hello.txt", "Accept-Encoding: br, *;q=0\r\n"));
    assert_eq!(tiny.status, 406);
    assert_eq!(server.exchange(&with("/hello.txt", "Accept-Encoding: br\r\n")).body_text(), HELLO);
}

#[test]
fn small_or_compressed_types_and_compress_off_are_sent_as_they_are() {
    let site = Site::new();
    let root = site.root();
    write(&root, "big.txt", &script(200, "i"));
    fs::write(root.join("photo.png"), random_hex(20_000, 7)).unwrap();
    let server = Server::start(&root);
    for path in ["/hello.txt", "/photo.png"] {
        for _ in 0..3 {
            let response = server.exchange(&with(path, "Accept-Encoding: br, gzip\r\n"));
            assert_eq!(
                (response.header("Content-Encoding"), response.header("Vary")),
                (None, None),
                "{path}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let off = Server::start_with(&root, &["--compress", "off"], "debug");
    for _ in 0..5 {
        let response = off.exchange(&with("/big.txt", "Accept-Encoding: br, gzip\r\n"));
        assert_eq!((response.header("Content-Encoding"), response.header("Vary")), (None, None));
        assert!(off.child_pids().is_empty(), "--compress off starts no compressor");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_change_on_disk_drops_the_compressed_form() {
    let (site, server) = serving("app.css", &script(200, "old"));
    let root = site.root();
    let old = until_coded(&server, "/app.css", "gzip", "gzip");
    let new = script(250, "new");
    write(&root, "app.css", &new);
    let after = server.exchange(&with("/app.css", "Accept-Encoding: gzip\r\n"));
    assert_eq!((after.header("Content-Encoding"), after.body.as_slice()), (None, new.as_bytes()));
    let remade = until_coded(&server, "/app.css", "gzip", "gzip");
    assert_ne!(remade.header("ETag"), old.header("ETag"));
    let fetched = curl(&["--compressed", &format!("http://{}/app.css", server.addr)]);
    assert!(fetched.stdout == new.as_bytes());
}

#[test]
fn the_budget_drops_the_least_recently_used_form() {
    let site = Site::new();
    let root = site.root();
    // Each compresses to about 10 KB; the budget holds one.
    write(&root, "a.js", &random_hex(20_000, 1));
    write(&root, "b.js", &random_hex(20_000, 2));
    let server = Server::start_with(&root, &["--compress-cache", "16K"], "debug");
    until_coded(&server, "/a.js", "gzip", "gzip");
    until_coded(&server, "/b.js", "gzip", "gzip");
    let a_again = server.exchange(&with("/a.js", "Accept-Encoding: gzip\r\n"));
    assert_eq!(a_again.header("Content-Encoding"), None, "a's form made room for b's");
    until_coded(&server, "/a.js", "gzip", "gzip");
    let b_again = server.exchange(&with("/b.js", "Accept-Encoding: gzip\r\n"));
    assert_eq!(b_again.header("Content-Encoding"), None);
}

/// The compressor works in a child process: while a 16 MiB file compresses, the loop answers
/// other clients, and a connection it closes is closed (the child holds none of its sockets).
/// Latency is measured by `scripts/compress-stall.sh`, not here.
#[test]
fn others_are_served_while_a_large_file_compresses() {
    let large = random_hex(16 * 1024 * 1024, 3);
    let (_site, server) = serving("large.txt", &large);
    let identity = server.exchange(&with("/large.txt", "Accept-Encoding: br\r\n"));
    assert_eq!(identity.body.len(), large.len());
    let started = Instant::now();
    let compressor = loop {
        if let [child] = server.child_pids()[..] {
            break child;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no compressor child");
        thread::sleep(Duration::from_millis(5));
    };
    // Its only socket (once it has closed what fork gave it) is the one it writes the result
    // to: no client or listener of the loop.
    let sockets = || {
        fs::read_dir(format!("/proc/{compressor}/fd"))
            .unwrap()
            .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    };
    // And it runs as SCHED_IDLE (policy 5, field 41 of /proc/<pid>/stat): only on idle CPU.
    let policy = || {
        let stat = fs::read_to_string(format!("/proc/{compressor}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(38).unwrap().parse::<u32>().unwrap()
    };
    while sockets() != 1 || policy() != 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the compressor holds sockets of the loop, or is not SCHED_IDLE (policy {})",
            policy()
        );
        thread::sleep(Duration::from_millis(5));
    }
    let mut client = server.connect();
    for _ in 0..200 {
        client.send(&with("/hello.txt", "Accept-Encoding: br\r\n"));
        assert_eq!(client.response(false).body_text(), HELLO);
    }
    let mut closing = server.connect();
    closing.send(&with("/hello.txt", "Connection: close\r\n"));
    let closed_in = closing.time_until_closed();
    assert!(closed_in < Duration::from_secs(5), "the close waited {closed_in:?}");
    let threads = fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap().count();
    assert_eq!(threads, 1);
    assert_eq!(server.child_pids(), [compressor], "all of that happened while it compressed");
}
