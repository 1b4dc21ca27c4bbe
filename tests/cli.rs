//! The command line as an operator meets it: the start-up line, and one-line errors with exit
//! code 1 for a missing root or a busy port.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{HELLO, Server, Site, get, logged};

fn run_to_exit(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll")).args(args).output().expect("run onepoll");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn logs_where_it_listens_and_what_it_serves() {
    let site = Site::new();
    let server = Server::start_with(&site.root(), &[], "info");
    let line = server.wait_for_log(logged::READY);
    assert!(
        line.ends_with(&format!("listening on http://{}/ serving {}", server.addr, site.root().display())),
        "{line}"
    );
    assert_ne!(server.addr.port(), 0);
    assert_eq!(server.exchange(&get("/hello.txt")).body_text(), HELLO);
}

#[test]
fn a_missing_root_is_a_one_line_error() {
    let (code, stderr) = run_to_exit(&["/nonexistent/onepoll-root", "--port", "0"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("onepoll: cannot serve /nonexistent/onepoll-root:"), "{stderr}");
}

#[test]
fn a_root_that_is_a_file_is_a_one_line_error() {
    let site = Site::new();
    let file = site.root().join("hello.txt");
    let (code, stderr) = run_to_exit(&[file.to_str().unwrap(), "--port", "0"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot serve"), "{stderr}");
}

#[test]
fn a_busy_port_is_a_one_line_error() {
    let site = Site::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stderr) = run_to_exit(&[site.root().to_str().unwrap(), "--port", &port]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("onepoll: cannot listen on 127.0.0.1:{port}:")), "{stderr}");
}

#[test]
fn help_describes_the_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll")).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in ["[ROOT]", "--addr", "--port"] {
        assert!(help.contains(option), "{help}");
    }
}

#[test]
fn version_names_the_commit_and_the_features() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll")).arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let expected_start = format!("onepoll {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_start), "{text}");
    assert!(text.contains("features: tls"), "{text}");
    assert_eq!(text.contains("compression"), cfg!(feature = "compression"), "{text}");
    assert_eq!(text.contains("coroutine"), cfg!(feature = "coroutine"), "{text}");
}

#[test]
fn addr_or_port_beside_listen_is_refused_not_ignored() {
    let site = Site::new();
    let root = site.root();
    for (flag, value) in [("--port", "8080"), ("--addr", "0.0.0.0")] {
        let (code, stderr) = run_to_exit(&[root.to_str().unwrap(), flag, value, "--listen", "127.0.0.1:0"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains("--listen"), "{stderr}");
    }
    // The same from the environment: ONEPOLL_PORT is as explicit as --port.
    let output = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args([root.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("ONEPOLL_PORT", "8080")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
