//! Several sites from one server, described in a `--config` file: each request's host
//! (an absolute-form target's authority first) chooses its site, on every engine; names are
//! normalised; unknown hosts get the default site, a 404 or a closed connection, as
//! `unknown_host` says; config errors name the file, the line and the key.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Server, curl};

/// Three roots, each with an `index.html` and `same.txt` saying which site it is, and a file
/// for `--config` naming them (`extra` goes at the top level).
fn sites(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for site in ["main", "blog", "any"] {
        let root = dir.path().join(site);
        fs::create_dir(&root).unwrap();
        fs::write(root.join("index.html"), format!("<p>{site}</p>\n")).unwrap();
        fs::write(root.join("same.txt"), format!("{site}\n")).unwrap();
    }
    let root = |site: &str| dir.path().join(site).display().to_string();
    let config = format!(
        "access_log = \"-\"\n{extra}\n\
         [[site]]\nnames = [\"example.org\", \"www.example.org\"]\nroot = \"{}\"\nheader = [\"X-Site: main\"]\n\n\
         [[site]]\nnames = [\"blog.example.org\"]\nroot = \"{}\"\n\n\
         [[site]]\nnames = [\"*.example.net\"]\nroot = \"{}\"\n",
        root("main"),
        root("blog"),
        root("any"),
    );
    let file = dir.path().join("onepoll.toml");
    fs::write(&file, config).unwrap();
    (dir, file)
}

fn start(file: &Path, engine: &str) -> Server {
    start_logging(file, engine, "debug")
}

fn start_logging(file: &Path, engine: &str, log_level: &str) -> Server {
    let args = ["--config", file.to_str().unwrap(), "--engine", engine];
    // The positional root is the harness's; with [[site]] tables it serves nothing.
    Server::start_with(file.parent().unwrap(), &args, log_level)
}

/// `(status, body)` of `GET target` with `host` as the Host field, each on its own connection.
fn get(server: &Server, target: &str, host: Option<&str>) -> (u16, String) {
    let host = host.map(|host| format!("Host: {host}\r\n")).unwrap_or_default();
    let version = if host.is_empty() { "1.0" } else { "1.1" };
    let request = format!("GET {target} HTTP/{version}\r\n{host}Connection: close\r\n\r\n");
    let response = server.exchange(request.as_bytes());
    (response.status, response.body_text())
}

fn each_host_gets_its_own_site(engine: &str) {
    let (_dir, file) = sites("");
    let server = start(&file, engine);
    let cases = [
        ("example.org", "main"),
        ("WWW.Example.ORG:8080", "main"),
        ("example.org.", "main"),
        ("blog.example.org", "blog"),
        ("shop.example.net", "any"),
        ("a.shop.example.net", "main"), // a wildcard covers one label: unknown, the default
        ("example.net", "main"),
        ("1.2.3.4", "main"),
        ("exa_mple.org", "main"),
    ];
    for (host, site) in cases {
        assert_eq!(get(&server, "/same.txt", Some(host)), (200, format!("{site}\n")), "{host}");
    }
    // The same path on two sites, twice each (the event loop's cache keeps them apart).
    for _ in 0..2 {
        assert_eq!(get(&server, "/same.txt", Some("blog.example.org")).1, "blog\n");
        assert_eq!(get(&server, "/same.txt", Some("example.org")).1, "main\n");
    }
    // An absolute-form target's authority outranks Host (RFC 9112 §3.2.2).
    let absolute = get(&server, "http://blog.example.org/same.txt", Some("example.org"));
    assert_eq!(absolute, (200, "blog\n".to_owned()));
    // Each site's own fields.
    let response = server.exchange(b"GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n");
    assert_eq!(response.header("X-Site"), Some("main"));
    let response = server.exchange(b"GET / HTTP/1.1\r\nHost: blog.example.org\r\nConnection: close\r\n\r\n");
    assert_eq!(response.header("X-Site"), None);
}

fn unknown_hosts_get_what_unknown_host_says(engine: &str) {
    let (_dir, file) = sites("unknown_host = \"404\"");
    let server = start(&file, engine);
    assert_eq!(get(&server, "/same.txt", Some("blog.example.org")).0, 200);
    for host in [Some("other.example"), Some("1.2.3.4"), Some("exa_mple.org"), None] {
        assert_eq!(get(&server, "/same.txt", host).0, 404, "{host:?}");
    }
    let response = server.exchange(b"GET / HTTP/1.1\r\nHost: nobody.example\r\nConnection: close\r\n\r\n");
    assert_eq!(response.header("X-Site"), None, "no site's fields on an unknown host");
    server.wait_for_access("GET /same.txt HTTP/1.1", 404);

    let (_dir, file) = sites("unknown_host = \"close\"");
    let server = start(&file, engine);
    let mut client = server.connect();
    client.send(b"GET /same.txt HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n");
    assert!(client.read_to_close().is_empty(), "closed without an answer");
    assert_eq!(get(&server, "/same.txt", Some("example.org")).0, 200);
}

engine_tests! {
    all: [each_host_gets_its_own_site, unknown_hosts_get_what_unknown_host_says];
}

#[test]
fn curl_reaches_each_site_by_name() {
    let (_dir, file) = sites("");
    let server = start(&file, "event-loop");
    for (name, site) in [("example.org", "main"), ("blog.example.org", "blog"), ("x.example.net", "any")] {
        let resolve = format!("{name}:{}:127.0.0.1", server.addr.port());
        let url = format!("http://{name}:{}/same.txt", server.addr.port());
        let output = curl(&["--silent", "--resolve", &resolve, &url]);
        assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{site}\n"), "{name}");
    }
}

/// `onepoll --config FILE --check-config` with `FILE` holding `text`: (exit code, stdout, stderr).
fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    fs::write(&file, text.replace("ROOT", &dir.path().display().to_string())).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let cases = [
        ("port = 0\nidel_timeout = 5\n", "bad.toml:2: idel_timeout: no such setting"),
        ("listing = \"yes\"\n", "bad.toml:1: listing: true or false"),
        ("port = 0\n\nidle_timeout = \"soon\"\n", "bad.toml:3: invalid value 'soon' for '--idle-timeout"),
        ("[[site]]\nnames = [\"a.example\"]\n", "bad.toml:1: [[site]] without a root"),
        (
            "# sites\n[[site]]\nroot = \"ROOT\"\n\ncolour = 1\n",
            "bad.toml:5: [[site]] colour: not a per-site key",
        ),
        (
            "[[site]]\nroot = \"ROOT\"\nnames = [\"a_b.example\"]\n",
            "bad.toml:3: [[site]] names: not a host name",
        ),
        ("port = [\n", "bad.toml:1:"),
        ("unknown_host = \"maybe\"\n", "bad.toml:1: unknown_host: \"default\", \"404\" or \"close\""),
    ];
    for (text, expected) in cases {
        let (code, _, stderr) = check(text);
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    let clash =
        "[[site]]\nroot = \"ROOT\"\nnames = [\"x.org\"]\n[[site]]\nroot = \"ROOT\"\nnames = [\"X.org.\"]\n";
    let (code, _, stderr) = check(clash);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("two sites answer to x.org"), "{stderr}");
    let (code, _, stderr) = check("[[site]]\nroot = \"ROOT/missing\"\nnames = [\"x.org\"]\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[test]
fn check_config_summarises_sites_and_listeners() {
    let (_dir, file) = sites("port = 8181");
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("site 1 (default): example.org www.example.org -> "), "{stdout}");
    assert!(stdout.contains("site 3: *.example.net -> "), "{stdout}");
    assert!(stdout.contains("listen http 127.0.0.1:8181"), "{stdout}");
    assert!(stdout.ends_with("configuration ok\n"), "{stdout}");
}

#[test]
fn the_command_line_and_variables_win_over_the_file() {
    let (dir, file) = sites("port = 8181\nidle_timeout = 9");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .args(["--config", file.to_str().unwrap(), "--check-config"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(run(&[], &[]).contains("listen http 127.0.0.1:8181"));
    assert!(run(&["--port", "8282"], &[]).contains("listen http 127.0.0.1:8282"));
    assert!(run(&[], &[("ONEPOLL_PORT", "8383")]).contains("listen http 127.0.0.1:8383"));
    drop(dir);
}

/// The health check answers before any site, authentication or file lookup, and is never
/// logged: here every site asks for a password and unknown hosts are closed on.
fn health_answers_before_everything_and_is_not_logged(engine: &str) {
    let auth = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/htpasswd/alice-and-bob");
    let extra = format!("health_path = \"/healthz\"\nunknown_host = \"close\"\nauth_file = \"{auth}\"");
    let (_dir, file) = sites(&extra);
    let server = start(&file, engine);
    assert_eq!(get(&server, "/same.txt", Some("example.org")).0, 401, "the site asks for a password");
    for (target, host) in
        [("/healthz", Some("example.org")), ("/healthz?probe=1", Some("1.2.3.4")), ("/healthz", None)]
    {
        let (status, body) = get(&server, target, host);
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{target} {host:?}");
    }
    let head = server.exchange(b"HEAD /healthz HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n");
    assert_eq!((head.status, head.header("Cache-Control"), head.body.len()), (200, Some("no-store"), 0));
    // Only GET and HEAD of the exact path: the rest goes to the site as before.
    assert_eq!(get(&server, "/healthz/x", Some("example.org")).0, 401);
    let post = server.exchange(
        b"POST /healthz HTTP/1.1\r\nHost: example.org\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_ne!(post.status, 200);
    // The last request is logged; none of the health checks before it is.
    get(&server, "/after-the-checks", Some("example.org"));
    server.wait_for_log("GET /after-the-checks HTTP/1.1");
    let health_line = |line: &String| {
        line.starts_with("127.0.0.1 - ")
            && ["\"GET /healthz HTTP", "\"GET /healthz?", "\"HEAD /healthz HTTP"]
                .iter()
                .any(|needle| line.contains(needle))
    };
    let logged: Vec<String> = server.log_lines().into_iter().filter(health_line).collect();
    assert!(logged.is_empty(), "{logged:?}");
}

engine_tests! {
    all: [health_answers_before_everything_and_is_not_logged];
}

/// SIGHUP reads the file again while clients keep asking: new requests see the new sites, no
/// request fails, a broken file keeps the configuration it replaces, and what needs a restart
/// is named.
#[test]
fn sighup_reloads_the_file_under_load_with_no_failed_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let (dir, file) = sites("max_conns = 100");
    let server = start_logging(&file, "event-loop", "info");
    let original = fs::read_to_string(&file).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new((0u32, Vec::<String>::new())));
    // Two clients: one keep-alive connection, and a new connection per request.
    let load: Vec<_> = [true, false]
        .into_iter()
        .map(|keep_alive| {
            let (stop, tally, addr) = (Arc::clone(&stop), Arc::clone(&tally), server.addr);
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    if !keep_alive {
                        client = common::Client::connect(addr);
                    }
                    client.send(b"GET /same.txt HTTP/1.1\r\nHost: example.org\r\n\r\n");
                    let response = client.response(false);
                    let mut tally = tally.lock().unwrap();
                    tally.0 += 1;
                    if (response.status, response.body_text().as_str()) != (200, "main\n") {
                        tally.1.push(format!("{} {}", response.status, response.body_text()));
                    }
                }
            })
        })
        .collect();
    assert_eq!(get(&server, "/same.txt", Some("new.example")).1, "main\n", "unknown: the default");
    let blog = dir.path().join("blog").display().to_string();
    for round in 1..=5 {
        // A site for new.example appears (and its root alternates), in the same file.
        let root = if round % 2 == 1 { &blog } else { &dir.path().join("any").display().to_string() };
        let added = format!("{original}\n[[site]]\nnames = [\"new.example\"]\nroot = \"{root}\"\n");
        fs::write(&file, added).unwrap();
        server.signal("HUP");
        server.wait_for_log_count("configuration reloaded, 4 sites", round);
        let expected = if round % 2 == 1 { "blog\n" } else { "any\n" };
        assert_eq!(get(&server, "/same.txt", Some("new.example")).1, expected, "round {round}");
    }
    // A file that does not check keeps what serves now, with one ERROR line.
    fs::write(&file, format!("{original}\n[[site]]\nnames = [\"x.example\"]\n")).unwrap();
    server.signal("HUP");
    let kept = server.wait_for_log("the configuration stays as it was");
    assert!(kept.contains("ERROR") && kept.contains("[[site]] without a root"), "{kept}");
    assert_eq!(get(&server, "/same.txt", Some("new.example")).1, "blog\n", "round 5 stays");
    // What takes a restart is named, and the rest still reloads.
    fs::write(&file, original.replace("max_conns = 100", "max_conns = 200")).unwrap();
    server.signal("HUP");
    server.wait_for_log("max_conns changed, which takes a restart");
    server.wait_for_log_count("configuration reloaded, 3 sites", 1);
    assert_eq!(get(&server, "/same.txt", Some("new.example")).1, "main\n", "the site is gone again");
    stop.store(true, Ordering::Relaxed);
    load.into_iter().for_each(|thread| thread.join().unwrap());
    let (requests, failures) = std::mem::take(&mut *tally.lock().unwrap());
    assert!(requests > 10, "{requests} requests");
    assert!(failures.is_empty(), "{} of {requests} failed: {failures:?}", failures.len());
    eprintln!("{requests} requests during 7 reloads, 0 failed");
}

/// `access_log_format = "vhost_combined"` puts the site's first name and the local port before
/// the Combined line (`%v:%p`, as Apache and goaccess have it); a wildcard site, or a host no
/// site answers to, is named by the request's host, normalised; the default format's line is
/// unchanged.
fn vhost_combined_names_the_site_and_port(engine: &str) {
    let (_dir, file) = sites("access_log_format = \"vhost_combined\"\nunknown_host = \"404\"");
    let server = start(&file, engine);
    let port = server.addr.port();
    for (host, target, line_start) in [
        ("WWW.example.org", "/same.txt", "example.org"),
        ("blog.example.org:80", "/index.html", "blog.example.org"),
        ("X.example.net", "/same.txt?q", "x.example.net"), // a wildcard site: the host it matched
        ("Other.Example.", "/nowhere", "other.example"),
    ] {
        get(&server, target, Some(host));
        let request = format!("\"GET {target} HTTP/1.1\" "); // the access line, not the debug one
        let line = server.wait_for_log(&request);
        let expected = format!("{line_start}:{port} 127.0.0.1 - - [");
        assert!(line.starts_with(&expected), "{line:?} should start with {expected:?}");
    }
    let (_dir, file) = sites("");
    let server = start(&file, engine);
    get(&server, "/same.txt", Some("blog.example.org"));
    let line = server.wait_for_log("\"GET /same.txt HTTP/1.1\" ");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
}

engine_tests! {
    all: [vhost_combined_names_the_site_and_port];
}

/// The README's example file is complete and right: with its paths moved under a temporary
/// directory (roots made, certificates made with rcgen, the password file a fixture), it
/// passes `--check-config` as written.
#[test]
fn the_readmes_example_file_passes_check_config() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Several sites").expect("the README's sites section")..];
    let start = section.find("```toml\n").expect("an example file") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::new();
    let mut pair = None;
    for line in example.lines() {
        let Some((key, rest)) = line.split_once(" = \"/") else {
            file.push_str(line);
            file.push('\n');
            continue;
        };
        let (path, comment) = rest.split_once('"').unwrap();
        let moved = dir.path().join(path);
        fs::create_dir_all(moved.parent().unwrap()).unwrap();
        match key {
            "root" => fs::create_dir_all(&moved).unwrap(),
            "auth_file" => {
                let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/htpasswd/alice-and-bob");
                fs::copy(fixture, &moved).unwrap();
            }
            "tls_cert" => {
                let made = rcgen::generate_simple_self_signed(vec!["example.org".to_owned()]).unwrap();
                fs::write(&moved, made.cert.pem()).unwrap();
                pair = Some(made.signing_key.serialize_pem());
            }
            "tls_key" => fs::write(&moved, pair.take().expect("tls_key after its tls_cert")).unwrap(),
            _ => {} // the access log's directory is made above
        }
        file.push_str(&format!("{key} = \"{}\"{comment}\n", moved.display()));
    }
    let path = dir.path().join("onepoll.toml");
    fs::write(&path, &file).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(["--config", path.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}\n{file}");
    for line in [
        "site 1 (default): example.org www.example.org",
        "site 3: files.example.org",
        "certificates: 2 loaded",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }
}
