//! Tells `onepoll --version` what it was built from: the git commit (when built from a
//! checkout; `unknown` from a source tarball) and the cargo features compiled in.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    // TLS is always in; the rest are cargo features.
    let mut features = vec!["tls"];
    for (feature, name) in [("COMPRESSION", "compression"), ("COROUTINE", "coroutine")] {
        if std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some() {
            features.push(name);
        }
    }
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=ONEPOLL_VERSION={version} (commit {commit}; features: {})",
        features.join(", ")
    );
    // A new commit or checkout changes HEAD or the ref it points to.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
