//! The built-in ACME client's side that needs no CA, against the real binary: the placeholder
//! served from the first start, the helper a separate process (the loop stays one thread),
//! a CA that cannot be reached (a WARN line, HTTPS still served), HTTP-01 answers served for
//! the helper, the configuration file's keys, and what is refused at start. Issuance and
//! renewal against a real ACME server (pebble) are scripts/acme-check.sh, in CI.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::tls::{HttpsServer, Pem};
use common::{Site, curl};

/// onepoll with the built-in client for `localhost` and a CA that is not there (port 1).
fn with_unreachable_ca(site: &Site, state: &Path, extra: &[&str]) -> HttpsServer {
    let roots = state.with_extension("roots.pem");
    fs::write(&roots, Pem::for_names(&["ca.test"]).cert).unwrap();
    let mut args = vec!["--acme-domain", "localhost", "--acme-directory", "https://127.0.0.1:1/dir"];
    args.extend(["--acme-ca-roots", roots.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);
    args.extend(extra);
    HttpsServer::start(&site.root(), &[], &args)
}

fn https_get(server: &HttpsServer, path: &str) -> std::process::Output {
    let url = format!("https://localhost:{}{path}", server.https.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.https.port());
    curl(&["-vk", "--resolve", &resolve, "-o", "/dev/null", "-w", "%{http_code}", &url])
}

#[test]
fn a_first_start_serves_a_placeholder_while_the_helper_tries_the_ca_and_the_loop_stays_one_thread() {
    let site = Site::new();
    let state = tempfile::tempdir().unwrap();
    let server = with_unreachable_ca(&site, state.path(), &[]);
    let line = server.server.wait_for_log("serving a self-signed placeholder until the first issuance");
    assert!(line.contains("WARN") && line.contains("localhost"), "{line}");
    let failed = server.server.wait_for_log("acme: localhost: attempt 1 failed");
    assert!(
        failed.contains("WARN") && failed.contains("127.0.0.1:1") && failed.contains("next in 60 s"),
        "{failed}"
    );

    let answer = https_get(&server, "/hello.txt");
    assert_eq!(String::from_utf8_lossy(&answer.stdout), "200");
    assert!(String::from_utf8_lossy(&answer.stderr).contains("onepoll placeholder"), "not the placeholder");

    // The helper is a child process; the loop itself still runs one thread.
    let helpers = server.server.child_pids();
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    assert!(failed.contains("acme::helper"));
    let tasks = fs::read_dir(format!("/proc/{}/task", server.server.pid())).unwrap().count();
    assert_eq!(tasks, 1);

    let key = state.path().join("certificates/localhost/key.pem");
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(state.path().join("certificates/localhost/placeholder").exists());
    let account = fs::read_dir(state.path().join("acme"))
        .unwrap()
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().starts_with("account-"));
    let account = account.expect("an account key");
    assert_eq!(account.metadata().unwrap().permissions().mode() & 0o777, 0o600);

    // SIGTERM takes the helper down with the loop.
    let mut server = server;
    server.server.signal("TERM");
    assert_eq!(server.server.wait_exit(std::time::Duration::from_secs(10)), Some(0));
    for pid in helpers {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "helper {pid} outlived the loop"
        );
    }
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat.contains(") Z "))
}

#[test]
fn http_01_answers_are_served_on_plain_http_for_any_host_past_the_redirect() {
    let site = Site::new();
    let state = tempfile::tempdir().unwrap();
    let server =
        with_unreachable_ca(&site, state.path(), &["--acme-challenge", "http-01", "--https-redirect"]);
    server.server.wait_for_log("attempt 1 failed");
    let tokens = state.path().join("acme/http-01/.well-known/acme-challenge");
    fs::write(tokens.join("tok-1_A"), "tok-1_A.thumbprint").unwrap();
    let plain = |path: &str, host: &str| {
        let url = format!("http://{}{path}", server.server.addr);
        let host = format!("Host: {host}");
        let out = curl(&["-H", &host, "-w", "\n%{http_code}", &url]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(plain("/.well-known/acme-challenge/tok-1_A", "example.org"), "tok-1_A.thumbprint\n200");
    assert_eq!(plain("/.well-known/acme-challenge/tok-1_A", "localhost"), "tok-1_A.thumbprint\n200");
    // Not a current challenge: the site's own path (spared by the redirect), 404 here.
    assert!(plain("/.well-known/acme-challenge/other", "localhost").ends_with("404"));
    let escape = curl(&[
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{}/.well-known/acme-challenge/../../../etc/passwd", server.server.addr),
    ]);
    assert_eq!(String::from_utf8_lossy(&escape.stdout), "400");
    assert!(plain("/hello.txt", "localhost").ends_with("308"));
}

#[test]
fn the_configuration_file_takes_the_acme_keys() {
    let site = Site::new();
    let state = tempfile::tempdir().unwrap();
    let roots = state.path().join("roots.pem");
    fs::write(&roots, Pem::for_names(&["ca.test"]).cert).unwrap();
    let config = state.path().join("onepoll.toml");
    let text = format!(
        "acme_domain = [\"localhost\", \"www.localhost\"]\nacme_email = \"a@example.org\"\n\
         acme_directory = \"https://127.0.0.1:1/dir\"\nacme_ca_roots = {:?}\nstate_dir = {:?}\n",
        roots.display().to_string(),
        state.path().join("state").display().to_string()
    );
    fs::write(&config, text).unwrap();
    let server = HttpsServer::start(&site.root(), &[], &["--config", config.to_str().unwrap()]);
    let line = server.server.wait_for_log("helper");
    assert!(line.contains("localhost, www.localhost"), "{line}");
    assert!(state.path().join("state/certificates/localhost/fullchain.pem").exists());
}

#[test]
fn what_the_built_in_client_cannot_do_is_refused_at_start_in_one_line() {
    let site = Site::new();
    let state = tempfile::tempdir().unwrap();
    let state = state.path().to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--acme-domain", "*.example.org"], "give DNS names"),
        (&["--acme-domain", "192.0.2.1"], "give DNS names"),
        (&["--acme-domain", "example.org", "--engine", "thread-pool"], "needs the event-loop engine"),
        (&["--acme-domain", "example.org", "--tls-acme-dir", state], "--tls-acme-dir is for an outside"),
        (
            &["--acme-domain", "example.org", "--acme-directory", "http://ca.test/dir"],
            "must be an https:// URL",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
            .arg(site.root())
            .args(["--listen-tls", "127.0.0.1:0", "--state-dir", state])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected) && stderr.lines().count() == 1, "{args:?}: {stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .arg(site.root())
        .args(["--port", "0", "--acme-domain", "example.org", "--state-dir", state])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs an HTTPS listener"));
}

#[test]
fn with_workers_the_supervisor_runs_the_one_helper_and_every_worker_serves_the_placeholder() {
    let site = Site::new();
    let state = tempfile::tempdir().unwrap();
    let server = with_unreachable_ca(&site, state.path(), &["--workers", "2"]);
    server.server.wait_for_log("supervisor: 2 workers started");
    let failed = server.server.wait_for_log("acme: localhost: attempt 1 failed");
    assert!(failed.contains("WARN"), "{failed}");
    let helpers = server.server.log_lines().iter().filter(|line| line.contains("acme: helper")).count();
    assert_eq!(helpers, 1, "one helper for the group");
    // The supervisor's children: two workers and the helper.
    assert_eq!(server.server.child_pids().len(), 3);
    for _ in 0..6 {
        let answer = https_get(&server, "/hello.txt");
        assert_eq!(String::from_utf8_lossy(&answer.stdout), "200");
        assert!(String::from_utf8_lossy(&answer.stderr).contains("onepoll placeholder"));
    }
}

#[test]
fn each_site_with_an_acme_table_gets_its_own_certificate_for_its_names() {
    let (one, two) = (Site::new(), Site::new());
    let state = tempfile::tempdir().unwrap();
    let roots = state.path().join("roots.pem");
    fs::write(&roots, Pem::for_names(&["ca.test"]).cert).unwrap();
    let config = state.path().join("onepoll.toml");
    let text = format!(
        "state_dir = {:?}\nacme = {{ email = \"a@example.org\", directory = \"https://127.0.0.1:1/dir\", ca_roots = {:?} }}\n\
         [[site]]\nnames = [\"one.test\", \"www.one.test\"]\nroot = {:?}\nacme = {{}}\n\
         [[site]]\nnames = [\"two.test\"]\nroot = {:?}\nacme = {{ challenge = \"http-01\" }}\n",
        state.path().join("state").display().to_string(),
        roots.display().to_string(),
        one.root().display().to_string(),
        two.root().display().to_string(),
    );
    fs::write(&config, text).unwrap();
    let server = HttpsServer::start(&one.root(), &[], &["--config", config.to_str().unwrap()]);
    let line = server.server.wait_for_log("acme: helper");
    assert!(line.contains("one.test, www.one.test") && line.contains("two.test"), "{line}");
    server.server.wait_for_log("acme: two.test: attempt 1 failed");
    for name in ["one.test", "two.test"] {
        let pair = state.path().join("state/certificates").join(name);
        assert!(pair.join("fullchain.pem").exists() && pair.join("placeholder").exists(), "{name}");
        let resolve = format!("{name}:{}:127.0.0.1", server.https.port());
        let url = format!("https://{name}:{}/hello.txt", server.https.port());
        let out = curl(&["-vk", "--resolve", &resolve, "-o", "/dev/null", "-w", "%{http_code}", &url]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{name}");
        let verbose = String::from_utf8_lossy(&out.stderr);
        assert!(
            verbose.contains(&format!("subject: CN=onepoll placeholder for {name}")),
            "{name}: {verbose}"
        );
    }
    // A wildcard site cannot be proved by either challenge.
    let bad = state.path().join("bad.toml");
    let text = format!(
        "[[site]]\nnames = [\"*.one.test\"]\nroot = {:?}\nacme = {{}}\n",
        one.root().display().to_string()
    );
    fs::write(&bad, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("a wildcard takes DNS-01"), "{output:?}");
}

#[test]
fn a_reload_that_changes_the_acme_settings_keeps_what_serves_and_says_it_takes_a_restart() {
    let site = Site::new();
    let state = tempfile::tempdir().unwrap();
    let roots = state.path().join("roots.pem");
    fs::write(&roots, Pem::for_names(&["ca.test"]).cert).unwrap();
    let config = state.path().join("onepoll.toml");
    let text = |names: &str| {
        format!(
            "acme = {{ names = [{names}], directory = \"https://127.0.0.1:1/dir\", ca_roots = {:?} }}\nstate_dir = {:?}\n",
            roots.display().to_string(),
            state.path().join("state").display().to_string()
        )
    };
    fs::write(&config, text("\"localhost\"")).unwrap();
    let server = HttpsServer::start(&site.root(), &[], &["--config", config.to_str().unwrap()]);
    server.server.wait_for_log("acme: helper");
    fs::write(&config, text("\"localhost\", \"www.localhost\"")).unwrap();
    server.server.signal("HUP");
    let kept = server.server.wait_for_log("the configuration stays as it was");
    assert!(
        kept.contains("ERROR") && kept.contains("the ACME settings changed, which takes a restart"),
        "{kept}"
    );
    assert_eq!(String::from_utf8_lossy(&https_get(&server, "/hello.txt").stdout), "200");
}
