//! What operators ask of a static server beyond files: their own headers, a single-page-app
//! fallback, directory listings that survive hostile names, a custom 404 page, settings from
//! the environment, and a Combined Log Format access log.

mod common;

use std::fs;

use common::{HELLO, INDEX, SUB_INDEX, Server, Site, get};

engine_tests! {
    all: [
        extra_headers_go_on_every_response,
        spa_fallback_serves_the_app_for_routes_but_not_for_missing_assets,
        listing_is_opt_in_and_escapes_hostile_names,
        the_404_page_is_served_with_status_404,
        hidden_paths_are_404_except_well_known_unless_asked_for,
        path_headers_go_on_the_matching_paths_successes_only,
        only_a_trusted_proxy_names_the_client_in_the_access_log,
    ];
}

/// A connection from `source` (a loopback address other than 127.0.0.1 stands for another
/// machine) to `server`.
fn connect_from(source: &str, server: &Server) -> common::Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    common::Client::from_stream(socket.into())
}

/// `--trusted-proxies`: a request from a listed proxy is logged as the rightmost address of
/// X-Forwarded-For that is not a listed proxy; anyone else's X-Forwarded-For is ignored, so a
/// client cannot choose the address logged for it.
fn only_a_trusted_proxy_names_the_client_in_the_access_log(engine: &str) {
    let site = Site::new();
    let args = ["--engine", engine, "--trusted-proxies", "127.0.0.1,10.0.0.0/8"];
    let server = Server::start_with(&site.root(), &args, "info");
    let cases = [
        // (connecting from, X-Forwarded-For lines, the address logged)
        ("127.0.0.1", vec!["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", vec!["6.6.6.6, 198.51.100.2", "10.1.2.3"], "198.51.100.2"),
        ("127.0.0.1", vec![], "127.0.0.1"),
        ("127.0.0.2", vec!["198.51.100.3"], "127.0.0.2"), // not a trusted proxy: a spoof
        ("127.0.0.2", vec!["127.0.0.1"], "127.0.0.2"),
    ];
    for (index, (source, forwarded, logged)) in cases.into_iter().enumerate() {
        let mut client = connect_from(source, &server);
        let lines: String = forwarded.iter().map(|line| format!("X-Forwarded-For: {line}\r\n")).collect();
        let request = format!("GET /hello.txt?case={index} HTTP/1.1\r\nHost: test\r\n{lines}\r\n");
        client.send(request.as_bytes());
        assert_eq!(client.response(false).status, 200);
        let line = server.wait_for_log(&format!("GET /hello.txt?case={index} HTTP/1.1\" "));
        assert!(line.starts_with(&format!("{logged} - - [")), "case {index}: {line}");
    }
    let plain = Server::start_with(&site.root(), &["--engine", engine], "info");
    let mut client = plain.connect();
    client.send(b"GET /hello.txt HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
    let line = plain.wait_for_log("GET /hello.txt HTTP/1.1\" ");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
}

fn path_headers_go_on_the_matching_paths_successes_only(engine: &str) {
    let site = Site::new();
    fs::create_dir(site.root().join("assets")).unwrap();
    fs::write(site.root().join("assets/app.3f9a.js"), "let app;\n").unwrap();
    fs::write(site.root().join("assets/app.js.map"), "{}\n").unwrap();
    let immutable = "public, max-age=31536000, immutable";
    let args = [
        "--engine",
        engine,
        "--header",
        "X-Frame-Options: DENY",
        "--header-for",
        "/assets/*.js",
        &format!("Cache-Control: {immutable}"),
        "--header-for",
        "/**.txt",
        "X-Text: yes",
    ];
    let server = Server::start_with(&site.root(), &args, "info");
    // Matched on the decoded, normalised path: encodings and dot-segments change nothing.
    for target in ["/assets/app.3f9a.js", "/assets/%61pp.3f9a.js", "/sub/../assets/app.3f9a.js"] {
        let response = server.exchange(&get(target));
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(response.header("Cache-Control"), Some(immutable), "{target}");
        assert_eq!(response.header("X-Frame-Options"), Some("DENY"), "--header stays: {target}");
        assert_eq!(response.header("X-Text"), None, "{target}");
    }
    let etag = server.exchange(&get("/assets/app.3f9a.js")).header("ETag").unwrap().to_owned();
    let revalidated = server.exchange(
        format!("GET /assets/app.3f9a.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    assert_eq!((revalidated.status, revalidated.header("Cache-Control")), (304, Some(immutable)));
    // `*` stays in its segment and the pattern is the whole path; errors never get the header.
    for (target, status) in [("/assets/app.js.map", 200), ("/assets/missing.js", 404), ("/hello.txt", 200)] {
        let response = server.exchange(&get(target));
        assert_eq!((response.status, response.header("Cache-Control")), (status, None), "{target}");
    }
    assert_eq!(server.exchange(&get("/hello.txt")).header("X-Text"), Some("yes"));
}

fn head(path: &str) -> Vec<u8> {
    format!("HEAD {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

fn extra_headers_go_on_every_response(engine: &str) {
    let site = Site::new();
    let args = [
        "--engine",
        engine,
        "--header",
        "Cache-Control: max-age=60",
        "--header",
        "Strict-Transport-Security:max-age=31536000 ",
    ];
    let server = Server::start_with(&site.root(), &args, "info");
    let ok = server.exchange(&get("/hello.txt"));
    let missing = server.exchange(&get("/missing"));
    for response in [&ok, &missing] {
        assert_eq!(response.header("Cache-Control"), Some("max-age=60"), "{response:?}");
        assert_eq!(response.header("Strict-Transport-Security"), Some("max-age=31536000"), "{response:?}");
    }
    assert_eq!((ok.status, ok.body_text().as_str()), (200, HELLO));
    assert_eq!(missing.status, 404);
}

fn spa_fallback_serves_the_app_for_routes_but_not_for_missing_assets(engine: &str) {
    let site = Site::new();
    let server =
        Server::start_with(&site.root(), &["--engine", engine, "--spa-fallback", "index.html"], "info");
    for route in ["/users/42", "/settings?tab=1", "/deep/route/here"] {
        let response = server.exchange(&get(route));
        assert_eq!((response.status, response.body_text().as_str()), (200, INDEX), "{route}");
    }
    assert_eq!(server.exchange(&get("/missing.js")).status, 404);
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    assert_eq!(server.exchange(&get("/sub/")).body_text(), SUB_INDEX);
    assert_eq!(server.exchange(&get("/../etc/passwd")).status, 400, "a bad target stays bad");
}

fn listing_is_opt_in_and_escapes_hostile_names(engine: &str) {
    let site = Site::new();
    let dir = site.root().join("no-index");
    for hostile in ["<img src=x onerror=alert(1)>.txt", "a\"b'c&d.txt", "javascript:alert(1)"] {
        fs::write(dir.join(hostile), "x").unwrap();
    }
    fs::create_dir(dir.join("child")).unwrap();
    let closed = Server::start_with(&site.root(), &["--engine", engine], "info");
    assert_eq!(closed.exchange(&get("/no-index/")).status, 404, "listing is off by default");
    let server = Server::start_with(&site.root(), &["--engine", engine, "--listing"], "info");
    let listing = server.exchange(&get("/no-index/"));
    assert_eq!(listing.status, 200);
    assert_eq!(listing.header("Content-Type"), Some("text/html; charset=utf-8"));
    let html = listing.body_text();
    assert!(html.contains("<a href=\"./file.txt\">file.txt</a>"), "{html}");
    assert!(html.contains("<a href=\"./child/\">child/</a>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;.txt"), "{html}");
    assert!(html.contains("a&quot;b&#39;c&amp;d.txt"), "{html}");
    assert!(html.contains("href=\"./javascript:alert(1)\""), "{html}");
    // Every link leads back to the file it names.
    assert_eq!(server.exchange(&get("/no-index/a%22b'c&d.txt")).body_text(), "x");
    assert_eq!(server.exchange(&get("/sub/")).body_text(), SUB_INDEX, "an index still wins");
    let headers_only = server.exchange(&head("/no-index/"));
    assert!(headers_only.body.is_empty() && headers_only.status == 200);
}

fn the_404_page_is_served_with_status_404(engine: &str) {
    let site = Site::new();
    fs::write(site.root().join("404.html"), "<h1>lost?</h1>\n").unwrap();
    let server = Server::start_with(&site.root(), &["--engine", engine, "--404-page", "404.html"], "info");
    let missing = server.exchange(&get("/nowhere"));
    assert_eq!((missing.status, missing.body_text().as_str()), (404, "<h1>lost?</h1>\n"));
    assert_eq!(missing.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(missing.header("ETag"), None, "validators describe the page, not the resource");
    let headers_only = server.exchange(&head("/nowhere"));
    assert_eq!((headers_only.status, headers_only.body.len()), (404, 0));
    assert_eq!(headers_only.header("Content-Length"), Some("15"));
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    fs::remove_file(site.root().join("404.html")).unwrap();
    let fallback = server.exchange(&get("/nowhere"));
    assert_eq!(fallback.status, 404);
    assert!(fallback.body_text().contains("404 Not Found"), "a missing 404 page falls back to ours");
}

/// Dotfiles (`.env`, `.git/`) are 404 like miniserve and hosted static servers answer them;
/// RFC 8615's `/.well-known/` stays served so ACME HTTP-01 and security.txt work.
fn hidden_paths_are_404_except_well_known_unless_asked_for(engine: &str) {
    let site = Site::new();
    let root = site.root();
    fs::write(root.join(".env"), "SECRET=1").unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join(".git/config"), "[core]").unwrap();
    fs::write(root.join("sub/.hidden.txt"), "h").unwrap();
    fs::create_dir_all(root.join(".well-known/acme-challenge")).unwrap();
    fs::write(root.join(".well-known/acme-challenge/token-1"), "token-1.key").unwrap();
    fs::write(root.join(".well-known/security.txt"), "Contact: x").unwrap();
    let hidden = ["/.env", "/%2eenv", "/.git/config", "/.git/", "/sub/.hidden.txt", "/sub/../.env"];
    let server = Server::start_with(&root, &["--engine", engine], "info");
    for path in hidden {
        // Asked twice: the second time a cache would answer if the first had filled it.
        for _ in 0..2 {
            let response = server.exchange(&get(path));
            assert_eq!(response.status, 404, "{path}");
            assert!(!response.body_text().contains("SECRET") && !response.body_text().contains("[core]"));
        }
    }
    let challenge = server.exchange(&get("/.well-known/acme-challenge/token-1"));
    assert_eq!((challenge.status, challenge.body_text().as_str()), (200, "token-1.key"));
    assert_eq!(server.exchange(&get("/.well-known/security.txt")).status, 200);
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    let listing = Server::start_with(&root, &["--engine", engine, "--listing"], "info");
    let html = listing.exchange(&get("/.well-known/")).body_text();
    assert!(html.contains("acme-challenge/") && !html.contains(".env"), "{html}");

    let open = Server::start_with(&root, &["--engine", engine, "--hidden", "--listing"], "info");
    for (path, body) in [("/.env", "SECRET=1"), ("/.git/config", "[core]"), ("/sub/.hidden.txt", "h")] {
        let response = open.exchange(&get(path));
        assert_eq!((response.status, response.body_text().as_str()), (200, body), "{path}");
    }
    let html = open.exchange(&get("/.git/")).body_text();
    assert!(html.contains("./config"), "--hidden lists dotfiles too: {html}");
}

#[test]
fn settings_come_from_the_environment_and_flags_win() {
    let site = Site::new();
    let envs = [("ONEPOLL_LISTING", "true"), ("ONEPOLL_HEADER", "X-From: env\nX-Other: two")];
    let server = Server::start_with_env(&site.root(), &[], &envs);
    let listing = server.exchange(&get("/no-index/"));
    assert_eq!(listing.status, 200);
    assert_eq!((listing.header("X-From"), listing.header("X-Other")), (Some("env"), Some("two")));
    let overridden = Server::start_with_env(&site.root(), &["--header", "X-From: flag"], &envs);
    let response = overridden.exchange(&get("/hello.txt"));
    assert_eq!((response.header("X-From"), response.header("X-Other")), (Some("flag"), None));
}

#[test]
fn hostile_or_framing_headers_are_refused_at_start() {
    let site = Site::new();
    for bad in [
        "X-Bad: a\r\nInjected: b",
        "Content-Length: 5",
        "No colon",
        "Bad Name: x",
        "Transfer-Encoding: chunked",
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--port", "0", "--header", bad])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?} was accepted");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--header"), "{bad:?}");
    }
}

#[test]
fn bad_path_header_rules_are_refused_at_start() {
    let site = Site::new();
    for rule in [&["*.js", "Cache-Control: no-cache"][..], &["/a/*", "Content-Length: 1"], &["/a/*"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--port", "0", "--header-for"])
            .args(rule)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{rule:?} was accepted");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--header-for"), "{rule:?}");
    }
}

#[test]
fn access_lines_are_combined_log_format_on_stdout() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "info");
    let mut client = server.connect();
    client.send(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: agent \"x\"/1.0\r\nReferer: http://ref/\r\n\r\n",
    );
    assert_eq!(client.response(false).status, 200);
    let line = server.wait_for_log("\"GET /hello.txt HTTP/1.1\" 200 13 ");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.ends_with(
            " +0000] \"GET /hello.txt HTTP/1.1\" 200 13 \"http://ref/\" \"agent \\x22x\\x22/1.0\""
        ),
        "{line}"
    );
    let fields: Vec<&str> = line.split(['[', ']']).collect();
    assert_eq!(fields[1].len(), "22/Nov/2026:07:00:00 +0000".len(), "{line}");
    let mut quiet = Server::start_with(&site.root(), &["--access-log", "off"], "info");
    assert_eq!(quiet.exchange(&get("/hello.txt")).status, 200);
    assert_eq!(quiet.exchange(&get("/missing")).status, 404);
    let everything = quiet.stop_and_collect();
    assert!(everything.iter().all(|line| !line.contains("GET")), "{everything:?}");
}

#[test]
fn a_huge_directory_is_listed_only_in_part() {
    let site = Site::new();
    let big = site.root().join("big-dir");
    fs::create_dir(&big).unwrap();
    let count = onepoll::http::MAX_LISTED_ENTRIES + 50;
    for i in 0..count {
        fs::write(big.join(format!("f{i:05}")), "").unwrap();
    }
    let server = Server::start_with(&site.root(), &["--listing"], "info");
    let mut lister = server.connect();
    lister.send(&get("/big-dir/"));
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
    let listing = lister.response(false);
    assert_eq!(listing.status, 200);
    let html = listing.body_text();
    assert_eq!(html.matches("<tr><td><a href=\"./f").count(), onepoll::http::MAX_LISTED_ENTRIES);
    assert!(
        html.contains("Only the first 10000 entries the directory yielded are listed."),
        "tail: {}",
        &html[html.len() - 200..]
    );
}
