//! HTTPS: a rustls session wrapped around a socket is one more [`Transport`](crate::transport::Transport)
//! (`transport.rs`), so the connection, the output queue and the engines above it run unchanged.
//!
//! This file loads and checks the certificates (several, chosen by SNI), at start and again on
//! SIGHUP. `tickets.rs` seals session tickets with keys every worker of one supervisor derives
//! from the same secret, and keeps the TLS 1.2 session cache; both outlive reloads, so clients
//! resume across them and on any worker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

mod tickets;
mod transport;

pub use tickets::{Sessions, TicketSecret, new_ticket_secret};
pub use transport::TlsTransport;

/// A certificate chain and its private key, as PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Loads every certificate and key, checks that each key matches its certificate, and builds
/// the configuration new handshakes use: TLS 1.2 and 1.3 with rustls' default suites in the
/// server's order (AES-128-GCM first), ALPN `http/1.1`, the first pair for clients that send no
/// (or no matching) SNI.
pub fn server_config(pairs: &[CertificateFiles], sessions: &Sessions) -> Result<Arc<ServerConfig>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM before AES-256-GCM (each within its TLS version): both are strong, and 128
    // takes 10 AES rounds per block instead of 14, which is most of a large download's CPU.
    provider.cipher_suites.sort_by_key(|suite| match suite.suite() {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        _ => 1,
    });
    let provider = Arc::new(provider);
    let mut keys = Vec::with_capacity(pairs.len());
    for pair in pairs {
        keys.push(Arc::new(load_pair(pair, &provider)?));
    }
    if keys.is_empty() {
        return Err("HTTPS needs --tls-cert and --tls-key".into());
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Certificates::new(keys)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The server's order of suites decides, not the client's: testssl.sh rates a server
    // without a cipher order as a weakness.
    config.ignore_client_order = true;
    sessions.install(&mut config);
    Ok(Arc::new(config))
}

/// HTTPS as configured: the files to load again on SIGHUP, and what new handshakes use now.
#[derive(Debug)]
pub struct Https {
    files: Vec<CertificateFiles>,
    sessions: Sessions,
    config: Arc<ServerConfig>,
}

impl Https {
    /// Loads `files` (every pair must load and match: a broken one is an error at start);
    /// session tickets are sealed with keys derived from `secret`.
    pub fn load(files: Vec<CertificateFiles>, secret: TicketSecret) -> Result<Https, String> {
        let sessions = Sessions::new(secret);
        let config = server_config(&files, &sessions)?;
        Ok(Https { files, sessions, config })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Loads the files again. On any error the configuration in use stays; connections open
    /// now keep the one they started with either way.
    pub fn reload(&mut self) -> Result<(), String> {
        self.config = server_config(&self.files, &self.sessions)?;
        Ok(())
    }
}

/// One pair, with the file named in any error.
fn load_pair(pair: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_error = |error: &dyn std::fmt::Display| format!("certificate {}: {error}", pair.cert.display());
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|error| cert_error(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| cert_error(&error))?;
    if chain.is_empty() {
        return Err(cert_error(&"no CERTIFICATE block in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|error| format!("private key {}: {error}", pair.key.display()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| format!("{} and {}: {error}", pair.cert.display(), pair.key.display()))
}

/// The loaded certificates, picked by the name the client asked for (SNI).
#[derive(Debug)]
struct Certificates {
    /// In the order given; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
    /// Names already resolved to a certificate (index into `keys`), so a handshake parses
    /// no certificate once its name has been seen.
    known: std::sync::Mutex<HashMap<String, usize>>,
}

/// Most distinct SNI names remembered (a client can send any name; unknown ones get the default).
const KNOWN_NAMES: usize = 1024;

impl Certificates {
    fn new(keys: Vec<Arc<CertifiedKey>>) -> Certificates {
        Certificates { keys, known: std::sync::Mutex::new(HashMap::new()) }
    }

    /// The first certificate valid for `name` (wildcards included), else the default.
    fn index_for(&self, name: &str) -> usize {
        let Ok(subject) = ServerName::try_from(name) else { return 0 };
        self.keys
            .iter()
            .position(|key| {
                key.end_entity_cert().is_ok_and(|cert| {
                    webpki::EndEntityCert::try_from(cert)
                        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&subject).is_ok())
                })
            })
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = match hello.server_name() {
            Some(name) if self.keys.len() > 1 => {
                let name = name.to_ascii_lowercase();
                let mut known = self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match known.get(&name) {
                    Some(&index) => index,
                    None => {
                        let index = self.index_for(&name);
                        if known.len() < KNOWN_NAMES {
                            known.insert(name, index);
                        }
                        index
                    }
                }
            }
            _ => 0,
        };
        self.keys.get(index).cloned()
    }
}
