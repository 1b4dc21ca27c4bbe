//! `--auth-file`: Basic authentication end to end, with password files written by Apache's
//! `htpasswd` (the fixtures in tests/fixtures/htpasswd/ each name the command that made them)
//! and checked with curl too.

mod common;

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{HELLO, Response, Server, Site, logged, tool};

/// Puts the password file `tests/fixtures/htpasswd/<fixture>` at `file`, replacing it at once
/// (a new file renamed over the old one, as an editor saves).
fn install_passwords(fixture: &str, file: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/htpasswd").join(fixture);
    let staged = file.with_extension("new");
    fs::copy(&source, &staged).unwrap_or_else(|error| panic!("{}: {error}", source.display()));
    fs::rename(&staged, file).unwrap();
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn get_with(server: &Server, path: &str, authorization: Option<&str>) -> Response {
    let field = authorization.map(|value| format!("Authorization: {value}\r\n")).unwrap_or_default();
    server.exchange(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{field}\r\n").as_bytes())
}

fn basic_auth_guards_a_prefix_before_any_file_access(engine: &str) {
    let site = Site::new();
    let users = site.outside.path().join("htpasswd");
    install_passwords("alice-and-bob", &users);
    let server = Server::start_with(
        &site.root(),
        &[
            "--engine",
            engine,
            "--auth-file",
            users.to_str().unwrap(),
            "--auth-path",
            "/sub",
            "--auth-realm",
            "staff",
        ],
        "debug",
    );
    assert_eq!(get_with(&server, "/hello.txt", None).body_text(), HELLO, "outside the prefix");
    let challenge = r#"Basic realm="staff", charset="UTF-8""#;
    let right = format!("Basic {}", basic("alice", "secret"));
    let refused = [
        ("missing", None),
        ("wrong password", Some(format!("Basic {}", basic("alice", "hunter2")))),
        ("unknown user", Some(format!("Basic {}", basic("mallory", "secret")))),
        ("malformed base64", Some("Basic !!!".to_owned())),
        ("no colon", Some("Basic YWxpY2U=".to_owned())),
        ("another scheme", Some("Bearer abc".to_owned())),
    ];
    for (case, authorization) in &refused {
        let response = get_with(&server, "/sub/page.txt", authorization.as_deref());
        assert_eq!(response.status, 401, "{case}");
        assert_eq!(response.header("WWW-Authenticate"), Some(challenge), "{case}");
        assert_eq!(response.header("Connection"), None, "{case}: the connection stays open");
    }
    // Checked before the file is looked for: what exists and what does not look the same.
    assert_eq!(get_with(&server, "/sub/missing.txt", None).status, 401);
    assert_eq!(get_with(&server, "/sub/", Some(&right)).body_text(), common::SUB_INDEX);
    let page = get_with(&server, "/sub/page.txt", Some(&right));
    assert_eq!((page.status, page.body_text().as_str()), (200, "sub page\n"));
    assert_eq!(get_with(&server, "/sub/missing.txt", Some(&right)).status, 404);
    // A real client.
    let url = format!("http://{}/sub/page.txt", server.addr);
    let curl = tool("curl", "curl").args(["--silent", "--user", "bob:hunter2", &url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "sub page\n");
    // The access log names the user, never the credentials (a line trails its response).
    server.wait_for_log_count("\"GET /sub/page.txt HTTP/1.1\" 200 9 ", 2);
    let lines = server.log_lines();
    let mut users: Vec<&str> = lines
        .iter()
        .filter(|line| line.contains("\"GET /sub/page.txt HTTP/1.1\" 200 9 "))
        .filter_map(|line| line.split(' ').nth(2))
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "bob"], "{lines:#?}");
    for line in &lines {
        assert!(!line.contains(&basic("alice", "secret")) && !line.contains("secret"), "{line}");
    }
}

engine_tests! {
    all: [basic_auth_guards_a_prefix_before_any_file_access];
}

/// An event-loop server guarding the whole site with a file where alice's password is
/// `secret`; the file's path, to change it.
fn guarded_site() -> (Site, Server, std::path::PathBuf) {
    let site = Site::new();
    let users = site.outside.path().join("htpasswd");
    install_passwords("alice-secret", &users);
    let server = Server::start_with(&site.root(), &["--auth-file", users.to_str().unwrap()], "debug");
    (site, server, users)
}

#[test]
fn a_changed_file_is_read_again_and_sighup_reloads_it() {
    let (_site, server, users) = guarded_site();
    let old = format!("Basic {}", basic("alice", "secret"));
    let new = format!("Basic {}", basic("alice", "changed"));
    assert_eq!(get_with(&server, "/hello.txt", Some(&old)).status, 200);
    install_passwords("alice-changed", &users);
    // Looked at once a second: within two, the remembered old password is forgotten.
    let started = Instant::now();
    while get_with(&server, "/hello.txt", Some(&old)).status == 200 {
        assert!(started.elapsed() < Duration::from_secs(5), "the old password still works");
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get_with(&server, "/hello.txt", Some(&new)).status, 200);
    install_passwords("alice-third", &users);
    server.signal("HUP");
    server.wait_for_log(logged::AUTH_RELOADED);
    let third = format!("Basic {}", basic("alice", "third"));
    assert_eq!(get_with(&server, "/hello.txt", Some(&third)).status, 200);
    assert_eq!(get_with(&server, "/hello.txt", Some(&new)).status, 401);
}

#[test]
fn a_flood_of_wrong_passwords_gets_503_while_a_known_user_passes() {
    let (_site, server, _) = guarded_site();
    let known = format!("Basic {}", basic("alice", "secret"));
    assert_eq!(get_with(&server, "/hello.txt", Some(&known)).status, 200);
    let mut client = server.connect();
    let mut statuses = Vec::new();
    for attempt in 0..5000 {
        let guess = format!("Basic {}", basic(if attempt % 2 == 0 { "alice" } else { "nobody" }, "guess"));
        client
            .send(format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nAuthorization: {guess}\r\n\r\n").as_bytes());
        let response = client.response(false);
        statuses.push(response.status);
        if response.status == 503 {
            assert_eq!(response.header("Retry-After"), Some("1"));
            // In the same second, a credential already verified still passes.
            assert_eq!(get_with(&server, "/hello.txt", Some(&known)).body_text(), HELLO);
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{} guesses and no 503", statuses.len());
    assert!(statuses[..statuses.len() - 1].iter().all(|status| *status == 401));
}

#[test]
fn a_bad_password_file_stops_the_start() {
    let site = Site::new();
    let users = site.outside.path().join("htpasswd");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--port", "0"])
            .args(args)
            .output()
            .unwrap()
    };
    let missing = run(&["--auth-file", users.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--auth-file"), "{missing:?}");
    // htpasswd's default (MD5, $apr1$) is refused with what to use instead.
    install_passwords("alice-md5", &users);
    let md5 = run(&["--auth-file", users.to_str().unwrap()]);
    assert_eq!(md5.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&md5.stderr).contains("htpasswd -B"), "{md5:?}");
    let without_file = run(&["--auth-path", "/private"]);
    assert_eq!(without_file.status.code(), Some(2));
    fs::remove_file(&users).unwrap();
}
