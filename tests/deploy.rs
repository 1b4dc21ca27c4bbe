//! Deploys and failures an operator sees, against the real binary: a root that is a symlink
//! swapped to another release (`ln -sfn`), followed at once by the event loop and, by every
//! engine, once the old release is gone; a root that vanishes and comes back, one line each.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::Server;

/// `ln -sfn target link`: a new link renamed over the old one, so the swap is atomic.
fn swap_link(target: &str, link: &Path) {
    let temporary = link.with_extension("new");
    let _ = fs::remove_file(&temporary);
    symlink(target, &temporary).unwrap();
    fs::rename(&temporary, link).unwrap();
}

fn body(server: &Server, path: &str) -> (u16, String) {
    let response =
        server.exchange(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    (response.status, response.body_text())
}

/// `d/rel1/v.txt` = 1, `d/rel2/v.txt` = 2, `d/current -> rel1`.
fn releases() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for release in ["rel1", "rel2"] {
        fs::create_dir(dir.path().join(release)).unwrap();
        fs::write(dir.path().join(release).join("v.txt"), &release[3..]).unwrap();
    }
    symlink("rel1", dir.path().join("current")).unwrap();
    dir
}

#[test]
fn the_event_loop_follows_a_swapped_root_link_at_once_and_serves_nothing_of_the_old_release() {
    let dir = releases();
    let server = Server::start(&dir.path().join("current"));
    assert_eq!(body(&server, "/v.txt"), (200, "1".to_owned()));
    assert_eq!(body(&server, "/v.txt"), (200, "1".to_owned()), "now from the cache");
    swap_link("rel2", &dir.path().join("current"));
    assert_eq!(body(&server, "/v.txt"), (200, "2".to_owned()), "the swap was not followed");
    server.wait_for_log("now resolves to");
    fs::write(dir.path().join("rel1/only-in-1.txt"), "old").unwrap();
    assert_eq!(body(&server, "/only-in-1.txt").0, 404);
    fs::remove_dir_all(dir.path().join("rel1")).unwrap();
    assert_eq!(body(&server, "/v.txt"), (200, "2".to_owned()));
}

#[test]
fn every_engine_follows_the_link_once_the_old_release_is_gone() {
    for engine in ["thread-pool", "thread-per-conn", "coroutine"] {
        let dir = releases();
        let server = Server::start_engine(&dir.path().join("current"), engine);
        assert_eq!(body(&server, "/v.txt"), (200, "1".to_owned()), "{engine}");
        swap_link("rel2", &dir.path().join("current"));
        fs::remove_dir_all(dir.path().join("rel1")).unwrap();
        assert_eq!(body(&server, "/v.txt"), (200, "2".to_owned()), "{engine}");
        let lines = server.log_lines();
        assert!(!lines.iter().any(|line| line.contains("ERROR")), "{engine}: {lines:?}");
    }
}

#[test]
fn a_root_that_vanishes_is_one_error_line_and_its_return_one_more() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("a.txt"), "a").unwrap();
    let server = Server::start(&root);
    assert_eq!(body(&server, "/a.txt").0, 200);
    fs::remove_dir_all(&root).unwrap();
    for _ in 0..20 {
        assert_eq!(body(&server, "/a.txt").0, 404);
    }
    let gone = server.wait_for_log("is gone");
    assert!(gone.contains("ERROR") && gone.contains("www"), "{gone}");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("a.txt"), "a").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(body(&server, "/a.txt").0, 200);
    server.wait_for_log("is back");
    let lines = server.log_lines();
    assert_eq!(lines.iter().filter(|line| line.contains("is gone")).count(), 1, "{lines:?}");
    assert_eq!(lines.iter().filter(|line| line.contains("is back")).count(), 1, "{lines:?}");
}

#[test]
fn a_file_that_shrinks_while_it_is_sent_ends_the_response_with_a_warning_naming_it() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    fs::File::create(&file).unwrap().set_len(64 << 20).unwrap();
    let server = Server::start_with(dir.path(), &[], "info");
    let mut socket = std::net::TcpStream::connect(server.addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    socket.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut start = vec![0u8; 1 << 16];
    socket.read_exact(&mut start).unwrap();
    fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(1 << 20).unwrap();
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest);
    assert!(start.len() + rest.len() < 64 << 20, "the whole length came");
    let warning = server.wait_for_log("shrank while it was sent");
    assert!(warning.contains("WARN") && warning.contains("big.bin"), "{warning}");
    let lines = server.log_lines();
    assert!(!lines.iter().any(|line| line.contains("socket error")), "{lines:?}");
}

#[test]
fn over_http2_a_file_that_shrinks_mid_stream_is_a_warning_naming_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    fs::File::create(&file).unwrap().set_len(64 << 20).unwrap();
    let server = Server::start_with(dir.path(), &[], "info");
    let url = format!("http://{}/big.bin", server.addr);
    let mut curl = common::tool("curl", "curl")
        .args(["-s", "--http2-prior-knowledge", "--limit-rate", "4M", "-o", "/dev/null", &url])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(1 << 20).unwrap();
    let status = curl.wait().unwrap();
    assert!(!status.success(), "curl got the whole promised length");
    let warning = server.wait_for_log("shrank while it was sent");
    assert!(warning.contains("WARN") && warning.contains("big.bin"), "{warning}");
}
