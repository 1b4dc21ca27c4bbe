//! HTTPS servers for tests: certificates made with rcgen, written to a temporary directory
//! and passed to onepoll.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Server;

/// A certificate for `names` and its key, as PEM text.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    pub fn for_names(names: &[&str]) -> Pem {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).expect("rcgen");
        Pem { cert: made.cert.pem(), key: made.signing_key.serialize_pem() }
    }

    /// A TLS-ALPN-01 challenge certificate (RFC 8737 §3): for `name`, with the critical
    /// acmeIdentifier extension holding `digest` (what a CA checks; webpki refuses it).
    pub fn for_challenge(name: &str, digest: [u8; 32]) -> Pem {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("rcgen");
        params.custom_extensions.push(rcgen::CustomExtension::new_acme_identifier(&digest));
        let key = rcgen::KeyPair::generate().expect("rcgen");
        let cert = params.self_signed(&key).expect("rcgen");
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert.as_bytes()).expect("a PEM certificate")
    }
}

/// onepoll with a plain listener and an HTTPS one, its certificate files in `files`.
pub struct HttpsServer {
    pub server: Server,
    pub https: SocketAddr,
    pub files: tempfile::TempDir,
}

impl HttpsServer {
    pub fn start(root: &Path, pairs: &[&Pem], extra: &[&str]) -> HttpsServer {
        HttpsServer::start_with(
            root,
            pairs,
            &["--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"],
            extra,
        )
    }

    /// Only an HTTPS listener (the serial engine serves exactly one).
    pub fn start_tls_only(root: &Path, pairs: &[&Pem], extra: &[&str]) -> HttpsServer {
        HttpsServer::start_with(root, pairs, &["--listen-tls", "127.0.0.1:0"], extra)
    }

    pub fn start_with(root: &Path, pairs: &[&Pem], listen: &[&str], extra: &[&str]) -> HttpsServer {
        let files = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_onepoll"));
        command.arg(root).args(listen).args(extra);
        for (index, pair) in pairs.iter().enumerate() {
            let (cert, key) =
                (files.path().join(format!("cert{index}.pem")), files.path().join(format!("key{index}.pem")));
            fs::write(&cert, &pair.cert).unwrap();
            fs::write(&key, &pair.key).unwrap();
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let server = Server::spawn(command, "debug");
        let line = server.wait_for_log("listening on https://");
        let https = line.split("https://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();
        HttpsServer { server, https, files }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }
}
