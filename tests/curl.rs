//! The same server through a real client, curl (`.ci/run` installs it; without it these tests
//! fail and say what to install).

mod common;

use common::{BIG_LEN, HELLO, INDEX, Server, Site, big_content, curl};

fn curl_fetches_pages_heads_and_redirects(engine: &str) {
    let site = Site::new();
    let server = Server::start_engine(&site.root(), engine);
    let base = format!("http://{}", server.addr);
    let page = curl(&[&format!("{base}/hello.txt")]);
    assert!(page.status.success(), "{page:?}");
    assert_eq!(String::from_utf8_lossy(&page.stdout), HELLO);

    let head = curl(&["--head", &format!("{base}/hello.txt")]);
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("content-length: 13") && head.contains("last-modified: "), "{head}");

    let followed = curl(&["--location", &format!("{base}/sub")]);
    assert_eq!(String::from_utf8_lossy(&followed.stdout), common::SUB_INDEX);

    let status = curl(&["--output", "/dev/null", "--write-out", "%{http_code}", &format!("{base}/nope")]);
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");

    // Several URLs in one curl call reuse one keep-alive connection.
    let reused = curl(&[
        "--http1.1",
        &format!("{base}/"),
        &format!("{base}/hello.txt"),
        "--write-out",
        "%{num_connects}\n",
    ]);
    let text = String::from_utf8_lossy(&reused.stdout);
    assert!(text.starts_with(INDEX) && text.contains(HELLO), "{text}");
    assert!(text.trim_end().ends_with('0'), "second transfer should reuse the connection: {text}");

    let old = curl(&["--http1.0", &format!("{base}/hello.txt")]);
    assert_eq!(String::from_utf8_lossy(&old.stdout), HELLO);
}

fn curl_downloads_a_large_file_intact(engine: &str) {
    let site = Site::new().with_big_file();
    let server = Server::start_with(&site.root(), &["--engine", engine], "info");
    let target = site.root().join("downloaded.bin");
    let download = curl(&["--output", target.to_str().unwrap(), &format!("http://{}/big.bin", server.addr)]);
    assert!(download.status.success(), "{download:?}");
    let bytes = std::fs::read(&target).unwrap();
    assert_eq!(bytes.len(), BIG_LEN);
    assert!(bytes == big_content());
}

engine_tests! {
    all: [
        curl_fetches_pages_heads_and_redirects,
        curl_downloads_a_large_file_intact,
    ];
}
