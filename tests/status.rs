//! `--status-listen`: a listener of its own that answers `/status` in nginx's stub_status text
//! and `/metrics` in Prometheus' text format, counting what the sites' listeners served, and
//! nothing else; the sites' listeners never answer for it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::{Client, Server, Site, get};

/// onepoll with a status listener, and that listener's address.
fn start(site: &Site, extra: &[&str]) -> (Server, SocketAddr) {
    let args = [&["--status-listen", "127.0.0.1:0"][..], extra].concat();
    let server = Server::start_with(&site.root(), &args, "debug");
    let line = server.wait_for_log("status on http://");
    let addr = line.split("http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
    (server, addr)
}

fn fetch(addr: SocketAddr, path: &str) -> common::Response {
    let mut client = Client::connect(addr);
    client.send(format!("GET {path} HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n").as_bytes());
    client.response(false)
}

/// nginx's stub_status, by its documented grammar (ngx_http_stub_status_module): the numbers
/// of each line, or a panic naming the line that is off.
fn parse_stub_status(text: &str) -> [u64; 7] {
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 5, "{text:?}");
    assert_eq!(lines[4], "", "{text:?}");
    let number = |word: &str| word.parse::<u64>().unwrap_or_else(|_| panic!("{word:?} in {text:?}"));
    let active = lines[0].strip_prefix("Active connections: ").and_then(|rest| rest.strip_suffix(' '));
    let active = number(active.unwrap_or_else(|| panic!("line 1 of {text:?}")));
    assert_eq!(lines[1], "server accepts handled requests", "{text:?}");
    let counts: Vec<u64> = lines[2]
        .strip_prefix(' ')
        .and_then(|rest| rest.strip_suffix(' '))
        .unwrap()
        .split(' ')
        .map(number)
        .collect();
    let phases: Vec<&str> = lines[3].strip_suffix(' ').unwrap().split(' ').collect();
    assert_eq!(phases.len(), 6, "{text:?}");
    assert_eq!([phases[0], phases[2], phases[4]], ["Reading:", "Writing:", "Waiting:"], "{text:?}");
    [active, counts[0], counts[1], counts[2], number(phases[1]), number(phases[3]), number(phases[5])]
}

/// Every sample of a Prometheus text exposition, checked line by line: each family has its
/// HELP and TYPE before its samples, each sample is `name{labels} value`.
fn parse_metrics(text: &str) -> HashMap<String, u64> {
    let mut samples = HashMap::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(typed.last().is_some_and(|family| family == name), "{line:?} has no TYPE before it");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line:?}");
        samples.insert(series.to_owned(), value.parse().unwrap_or_else(|_| panic!("{line:?}")));
    }
    samples
}

#[test]
fn status_and_metrics_count_what_the_sites_served_on_a_listener_of_their_own() {
    let site = Site::new();
    let (server, status) = start(&site, &[]);
    for _ in 0..3 {
        assert_eq!(server.exchange(&get("/hello.txt")).status, 200);
    }
    assert_eq!(server.exchange(&get("/missing")).status, 404);
    // The site's listener has no reports, and the status listener no files.
    assert_eq!(server.exchange(&get("/status")).status, 404);
    assert_eq!(fetch(status, "/hello.txt").status, 404);
    // One connection idle between requests, one halfway through a head.
    let mut waiting = server.connect();
    waiting.send(&get("/hello.txt"));
    assert_eq!(waiting.response(false).status, 200);
    let mut reading = server.connect();
    reading.send(b"GET /hello.txt HTTP/1.1\r\nHo");
    let report = fetch(status, "/status");
    assert_eq!((report.status, report.header("Cache-Control")), (200, Some("no-store")));
    let [active, accepts, handled, requests, reading_now, _writing, waiting_now] =
        parse_stub_status(&report.body_text());
    assert_eq!(requests, 6, "{}", report.body_text()); // 3 + 404 + the site's /status + the keep-alive one
    assert!(accepts >= 8 && handled == accepts, "{}", report.body_text());
    assert!(active >= 3 && reading_now >= 1 && waiting_now >= 1, "{}", report.body_text());

    let metrics = fetch(status, "/metrics?x=1");
    assert_eq!(metrics.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let samples = parse_metrics(&metrics.body_text());
    assert_eq!(samples["onepoll_requests_total{class=\"2xx\"}"], 4);
    assert_eq!(samples["onepoll_requests_total{class=\"4xx\"}"], 2);
    assert_eq!(samples["onepoll_site_requests_total{site=\"#1\"}"], 6);
    assert!(samples["onepoll_sent_bytes_total"] > 4 * 5, "{samples:?}");
    assert!(samples["onepoll_connections{state=\"reading\"}"] >= 1);
    assert!(samples["onepoll_cache_hits_total"] >= 3, "{samples:?}");
    assert_eq!(samples["onepoll_accept_pauses_total{reason=\"max_conns\"}"], 0);
    // Reports are never logged; the sites' requests are.
    let logged = server.log_lines();
    assert!(logged.iter().any(|line| line.contains("\"GET /missing HTTP/1.1\" 404")));
    assert!(!logged.iter().any(|line| line.contains("GET /metrics")), "{logged:?}");
    drop((waiting, reading));
}

#[test]
fn a_pause_at_max_conns_is_counted() {
    let site = Site::new();
    let (server, status) = start(&site, &["--max-conns", "2"]);
    let held: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    // Both slots are taken: the status client waits in the backlog too (one accept pause).
    let mut third = server.connect();
    third.send(&get("/hello.txt"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(held);
    assert_eq!(third.response(false).status, 200);
    let samples = parse_metrics(&fetch(status, "/metrics").body_text());
    assert!(samples["onepoll_accept_pauses_total{reason=\"max_conns\"}"] >= 1, "{samples:?}");
}

/// With `--workers`, the supervisor answers on the status listener with every worker's counts
/// summed: it reads each worker's report from the worker's own Unix socket.
#[test]
fn with_workers_the_supervisor_sums_every_workers_counts() {
    let site = Site::new();
    let (server, status) = start(&site, &["--workers", "2"]);
    let served = 40;
    for _ in 0..served {
        assert_eq!(server.exchange(&get("/hello.txt")).status, 200);
    }
    // SO_REUSEPORT spread the connections over both workers, so a sum is needed.
    for worker in ["worker=0", "worker=1"] {
        let accepted =
            server.log_lines().iter().any(|line| line.contains(worker) && line.contains("accept 127.0.0.1"));
        assert!(accepted, "{worker} served nothing");
    }
    let samples = parse_metrics(&fetch(status, "/metrics").body_text());
    assert_eq!(samples["onepoll_requests_total{class=\"2xx\"}"], served);
    assert!(samples["onepoll_connections_accepted_total"] >= served, "{samples:?}");
    let [_, accepts, handled, requests, ..] = parse_stub_status(&fetch(status, "/status").body_text());
    assert_eq!((requests, accepts >= served, handled), (served, true, accepts));
    assert_eq!(fetch(status, "/nothing").status, 404);
}

#[test]
fn the_status_listener_wants_the_event_loop() {
    let site = Site::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .arg(site.root())
        .args(["--port", "0", "--status-listen", "127.0.0.1:0", "--engine", "thread-pool"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--status-listen needs the event loop"), "{stderr}");
}
