//! Every request-level behaviour, over raw sockets against the real binary: each case alone on
//! a fresh connection, then (darkhttpd style) the whole keep-alive table replayed over one
//! connection, for HTTP/1.1 and HTTP/1.0, with CRLF and with bare LF line endings.

mod common;

use std::io::Write;

use common::{HELLO, INDEX, Response, SUB_INDEX, Server, Site};

/// What a case expects of its response.
struct Case {
    /// Request line without version, e.g. `GET /hello.txt`.
    line: &'static str,
    /// Extra header lines, each ending in `\r\n`.
    headers: &'static str,
    status: u16,
    /// Header fields that must be present with exactly these values.
    fields: &'static [(&'static str, &'static str)],
    body: Body,
}

enum Body {
    Exactly(&'static str),
    /// An HTML error page mentioning this text.
    PageWith(&'static str),
}

const fn case(
    line: &'static str,
    status: u16,
    fields: &'static [(&'static str, &'static str)],
    body: Body,
) -> Case {
    Case { line, headers: "", status, fields, body }
}

const TEXT: (&str, &str) = ("Content-Type", "text/plain; charset=utf-8");
const HTML: (&str, &str) = ("Content-Type", "text/html; charset=utf-8");

/// Requests that leave the connection open, so they can all be replayed over one connection.
fn keep_alive_cases() -> Vec<Case> {
    use Body::*;
    vec![
        case("GET /hello.txt", 200, &[TEXT, ("Content-Length", "13")], Exactly(HELLO)),
        case("HEAD /hello.txt", 200, &[TEXT, ("Content-Length", "13")], Exactly("")),
        case("GET /", 200, &[HTML], Exactly(INDEX)),
        case("HEAD /", 200, &[HTML], Exactly("")),
        case("GET /hello.txt?x=1&y=2", 200, &[TEXT], Exactly(HELLO)),
        case("GET http://test/hello.txt", 200, &[TEXT], Exactly(HELLO)),
        case(
            "GET /style.css",
            200,
            &[("Content-Type", "text/css; charset=utf-8")],
            Exactly("body { color: red }\n"),
        ),
        case(
            "GET /app.js",
            200,
            &[("Content-Type", "text/javascript; charset=utf-8")],
            Exactly("console.log(1);\n"),
        ),
        case("GET /empty.txt", 200, &[("Content-Length", "0")], Exactly("")),
        case("GET /space%20name.txt", 200, &[], Exactly("spaced\n")),
        case("GET /%252e%252e", 200, &[], Exactly("literal percent name\n")),
        case("GET /a/../hello.txt", 200, &[], Exactly(HELLO)),
        case("GET //hello.txt", 200, &[], Exactly(HELLO)),
        case("GET /link-inside.txt", 200, &[], Exactly(HELLO)),
        case("GET /sub", 301, &[("Location", "/sub/"), HTML], PageWith("301 Moved Permanently")),
        case("GET /sub?page=2", 301, &[("Location", "/sub/?page=2")], PageWith("301")),
        case("HEAD /sub", 301, &[("Location", "/sub/")], Exactly("")),
        case("GET /sub/", 200, &[HTML], Exactly(SUB_INDEX)),
        case("GET /sub/page.txt", 200, &[], Exactly("sub page\n")),
        case("GET /no-index/", 404, &[HTML], PageWith("404 Not Found")),
        case("GET /missing.txt", 404, &[HTML], PageWith("404 Not Found")),
        case("HEAD /missing.txt", 404, &[HTML], Exactly("")),
        case("GET /hello.txt/", 404, &[], PageWith("404")),
        case("GET /%2e%2e-not-traversal", 404, &[], PageWith("404")),
        case("GET /link-outside.txt", 403, &[HTML], PageWith("403 Forbidden")),
        case("GET /dir-outside/secret.txt", 403, &[], PageWith("403 Forbidden")),
        case("GET /fifo", 403, &[], PageWith("403 Forbidden")),
        case("POST /hello.txt", 405, &[("Allow", "GET, HEAD")], PageWith("405 Method Not Allowed")),
        case("PUT /hello.txt", 405, &[("Allow", "GET, HEAD")], PageWith("405")),
        case("DELETE /hello.txt", 405, &[("Allow", "GET, HEAD")], PageWith("405")),
        case("OPTIONS *", 405, &[("Allow", "GET, HEAD")], PageWith("405")),
        case("PATCH /hello.txt", 405, &[("Allow", "GET, HEAD")], PageWith("405")),
        case("TRACE /", 405, &[("Allow", "GET, HEAD")], PageWith("405")),
        case("BREW /pot", 501, &[], PageWith("501 Not Implemented")),
        case("get /hello.txt", 501, &[], PageWith("501")),
    ]
}

/// Requests whose response must close the connection.
fn closing_cases() -> Vec<(&'static str, String, u16)> {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let huge_head = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(17_000));
    let many_fields = format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "X-A: b\r\n".repeat(100));
    vec![
        ("garbage", "GARBAGE\r\n\r\n".into(), 400),
        ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n".into(), 400),
        ("missing Host on 1.1", "GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("invalid Content-Length", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n".into(), 400),
        (
            "conflicting Content-Length",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
            400,
        ),
        (
            "CL with TE",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            400,
        ),
        ("TE on 1.0", "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400),
        (
            "TE not ending in chunked",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(),
            400,
        ),
        ("unknown TE", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n".into(), 400),
        ("bare CR", "GET / HTTP/1.1\rHost: t\r\n\r\n".into(), 400),
        ("NUL in header", "GET / HTTP/1.1\r\nHost: t\0\r\n\r\n".into(), 400),
        ("non-ASCII target in no known form", "GET aaaaaa\u{e9} HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        (
            "non-ASCII after a scheme-like prefix",
            "GET http:/\u{e9}/x HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            400,
        ),
        ("header name garbage", "GET / HTTP/1.1\r\nHost: t\r\nX(Y): z\r\n\r\n".into(), 400),
        ("space inside a header name", "GET / HTTP/1.1\r\nHost: t\r\nX Y: z\r\n\r\n".into(), 400),
        ("header without colon", "GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n".into(), 400),
        ("CL with a sign", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc".into(), 400),
        ("CL as a list", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc".into(), 400),
        (
            "chunked applied twice",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n".into(),
            400,
        ),
        ("request line over 8 KiB", long_target, 414),
        ("head over 16 KiB", huge_head, 431),
        ("too many fields", many_fields, 431),
        ("raw space in the target", "GET /hello.txt x HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("slash in Host", "GET / HTTP/1.1\r\nHost: bad/host\r\n\r\n".into(), 400),
        ("space in Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n".into(), 400),
        ("userinfo in Host", "GET / HTTP/1.1\r\nHost: u@t\r\n\r\n".into(), 400),
        ("letters in the Host port", "GET / HTTP/1.1\r\nHost: t:8o\r\n\r\n".into(), 400),
        ("HTTP/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: t\r\n\r\n".into(), 505),
        ("body over the limit", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n".into(), 413),
        ("dot-dot", "GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("encoded dot-dot", "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("encoded slash", "GET /sub%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("encoded backslash", "GET /..%5c..%5cetc%5cpasswd HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("encoded NUL", "GET /hello.txt%00.html HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("bad escape", "GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        (
            "Connection: close honoured",
            "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
            200,
        ),
        ("HTTP/1.0 closes by default", "GET /hello.txt HTTP/1.0\r\n\r\n".into(), 200),
    ]
}

fn request_bytes(case: &Case, version: &str, line_ending: &str) -> Vec<u8> {
    let mut text = format!("{} {version}\r\nHost: test\r\n{}", case.line, case.headers);
    if version == "HTTP/1.0" {
        text.push_str("Connection: keep-alive\r\n");
    }
    text.push_str("\r\n");
    text.replace("\r\n", line_ending).into_bytes()
}

fn check(case: &Case, response: &Response, context: &str) {
    let what = format!("{} ({context})", case.line);
    assert_eq!(response.status, case.status, "{what}: {response:?}");
    for (name, value) in case.fields {
        assert_eq!(response.header(name), Some(*value), "{what}: field {name}");
    }
    for always in ["Date", "Server", "Content-Length"] {
        assert_eq!(response.headers_named(always), 1, "{what}: exactly one {always}");
    }
    assert!(response.header("Server").unwrap().starts_with("onepoll/"), "{what}");
    if response.status == 200 {
        assert!(response.header("Last-Modified").is_some(), "{what}: Last-Modified");
    }
    match &case.body {
        Body::Exactly(text) => assert_eq!(response.body_text(), *text, "{what}: body"),
        Body::PageWith(text) => {
            assert!(response.body_text().contains(text), "{what}: body {:?}", response.body_text());
            assert_eq!(response.header("Content-Type"), Some("text/html; charset=utf-8"), "{what}");
        }
    }
    if !case.line.starts_with("HEAD") {
        assert_eq!(
            response.header("Content-Length"),
            Some(response.body.len().to_string().as_str()),
            "{what}"
        );
    }
}

fn each_case_on_its_own_connection(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    for case in keep_alive_cases() {
        let response = server.exchange(&request_bytes(&case, "HTTP/1.1", "\r\n"));
        check(&case, &response, "fresh connection");
        assert_eq!(response.header("Connection"), None, "{}: 1.1 keep-alive needs no field", case.line);
    }
}

fn keep_alive_replay_over_one_connection_for_each_version_and_line_ending(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        for line_ending in ["\r\n", "\n"] {
            let context = format!("{version} {line_ending:?} replay");
            let mut client = server.connect();
            for case in keep_alive_cases() {
                client.send(&request_bytes(&case, version, line_ending));
                let response = client.response(case.line.starts_with("HEAD"));
                check(&case, &response, &context);
                let echoed = if version == "HTTP/1.0" { Some("keep-alive") } else { None };
                assert_eq!(response.header("Connection"), echoed, "{}: {context}", case.line);
            }
            // The connection is still usable after the whole table.
            client.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            assert_eq!(client.response(false).body_text(), HELLO);
            client.expect_closed();
        }
    }
}

fn errors_that_leave_framing_unknown_get_a_response_and_a_close(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    for (name, request, status) in closing_cases() {
        let mut client = server.connect();
        client.send(request.as_bytes());
        // A follow-up request in the same write must never be answered.
        let _ = client.stream.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let response = client.response(false);
        assert_eq!(response.status, status, "{name}: {response:?}");
        assert_eq!(response.header("Connection"), Some("close"), "{name}");
        assert!(!response.body_text().contains("SECRET"), "{name}");
        client.expect_closed();
    }
}

fn traversal_never_reaches_outside_the_root(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let secret = site.outside.path().join("secret.txt");
    let outside_name = site.outside.path().file_name().unwrap().to_str().unwrap().to_owned();
    let targets = [
        "/../../../../../../etc/passwd".to_owned(),
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".to_owned(),
        "/%252e%252e/%252e%252e/etc/passwd".to_owned(),
        "/..%2f..%2f..%2fetc%2fpasswd".to_owned(),
        "/sub/../../etc/passwd".to_owned(),
        "/.%2e/.%2e/etc/passwd".to_owned(),
        format!("/../{outside_name}/secret.txt"),
        format!("/%2e%2e/{outside_name}/secret.txt"),
        format!("http://test/../{outside_name}/secret.txt"),
        format!("{}", secret.display()),
        "/link-outside.txt".to_owned(),
        "/dir-outside/secret.txt".to_owned(),
        "/dir-outside/".to_owned(),
    ];
    for target in targets {
        let response = server.exchange(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert!(matches!(response.status, 400 | 403 | 404), "{target}: {}", response.status);
        let body = response.body_text();
        assert!(!body.contains("SECRET") && !body.contains("root:"), "{target} leaked {body:?}");
    }
}

engine_tests! {
    all: [
        each_case_on_its_own_connection,
        keep_alive_replay_over_one_connection_for_each_version_and_line_ending,
        errors_that_leave_framing_unknown_get_a_response_and_a_close,
        traversal_never_reaches_outside_the_root,
    ];
}
