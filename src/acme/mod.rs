//! Certificates the server obtains and renews itself (ACME, RFC 8555), with the loop never
//! blocked and never threaded: the work runs in a helper process the loop forks at start
//! ([`crate::service::child`]: lowest priority, none of the loop's descriptors, dies with it).
//!
//! The helper and the loop share the state directory ([`store`]): the helper writes a
//! challenge's answer there just before it asks the CA to validate (an HTTP-01 key
//! authorisation the loop serves under `/.well-known/acme-challenge/`, a TLS-ALPN-01
//! certificate the loop's resolver presents, as `--tls-acme-dir` does), and the issued pair
//! after; then it writes `installed` on its socket and the loop loads the certificates again
//! exactly as SIGHUP does (a bad pair keeps the old one). Files rather than messages carry the
//! material because the loop already reads challenge certificates from a directory at the
//! handshake, and a learner can `ls` what is being validated.
//!
//! The helper's own work is blocking, one step after the other (`client.rs`, `order.rs`):
//! nothing else runs in that process, so it needs no runtime.

pub mod client;
pub mod helper;
pub mod jws;
pub mod order;
pub mod renewal;
pub mod store;

use std::path::PathBuf;

pub use order::{ChallengeKind, Eab};
pub use store::Store;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// One certificate to keep valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names it is for; the first names its files.
    pub names: Vec<String>,
    pub email: Option<String>,
    /// The CA's directory URL.
    pub directory: String,
    pub challenge: ChallengeKind,
    pub eab: Option<Eab>,
    /// The roots the CA's API is trusted by (PEM).
    pub ca_roots: PathBuf,
    pub store: Store,
}

impl AcmeSettings {
    /// Refuses names no challenge here can prove (wildcards need DNS-01; IP addresses are
    /// not DNS names).
    pub fn check(&self) -> Result<(), String> {
        if self.names.is_empty() {
            return Err("ACME needs the names to ask a certificate for (--acme-domain)".into());
        }
        for name in &self.names {
            let valid = rustls_pki_types::DnsName::try_from(name.as_str()).is_ok();
            if name.starts_with("*.") || !valid || name.parse::<std::net::IpAddr>().is_ok() {
                return Err(format!(
                    "ACME cannot prove {name:?} with {}: give DNS names",
                    self.challenge.name()
                ));
            }
        }
        if !self.directory.starts_with("https://") {
            return Err(format!("the ACME directory must be an https:// URL: {}", self.directory));
        }
        Ok(())
    }
}
