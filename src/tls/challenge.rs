//! TLS-ALPN-01 (RFC 8737): a CA proves control of a name by a TLS handshake on port 443 that
//! offers the single ALPN protocol `acme-tls/1` and expects a certificate made for the
//! challenge. onepoll does none of the ACME work: an ACME client (dehydrated `--alpn DIR`,
//! lighttpd's `ssl.acme-tls-1` layout) leaves `<name>.crt.pem` and `<name>.key.pem` in a
//! directory, and the resolver presents that pair to such a handshake, which the connection then
//! closes without reading a request. Clients that offer anything else never see the pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{debug, info, warn};
use rustls::crypto::CryptoProvider;
use rustls::server::ClientHello;
use rustls::sign::CertifiedKey;

use super::{CertificateFiles, read_pair};

/// The ALPN protocol of a TLS-ALPN-01 validation.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Whether the client offers `acme-tls/1` and nothing else: only a validation does (RFC 8737 §3).
pub(super) fn is_validation(hello: &ClientHello<'_>) -> bool {
    hello.alpn().is_some_and(|mut offered| offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none())
}

/// The directory challenge certificates are left in (`--tls-acme-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeDir(pub PathBuf);

impl ChallengeDir {
    /// The pair for `name`, if `name` can be a file name here: not empty, no `/`, no NUL, and
    /// not starting with `.` (no `..`, no hidden files). SNI is a DNS name already; this holds
    /// whatever rustls lets through.
    pub fn files_for(&self, name: &str) -> Option<CertificateFiles> {
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\0']) {
            return None;
        }
        let file = |suffix: &str| self.0.join(format!("{name}{suffix}"));
        Some(CertificateFiles { cert: file(".crt.pem"), key: file(".key.pem") })
    }

    /// The challenge certificate for a validation asking for `name`, read now: an ACME client
    /// writes it just before it asks the CA to validate, and removes it after. None (the
    /// handshake fails) when there is none.
    pub fn certificate_for(
        &self,
        name: Option<&str>,
        provider: &CryptoProvider,
    ) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            debug!("TLS-ALPN-01 validation without SNI: refused");
            return None;
        };
        let name = name.to_ascii_lowercase();
        let Some(files) = self.files_for(&name) else {
            debug!("TLS-ALPN-01 validation for {name:?}: not a file name, refused");
            return None;
        };
        if !exists(&files.cert) {
            debug!("TLS-ALPN-01 validation for {name}: no {}", files.cert.display());
            return None;
        }
        // Not `load_pair`: its check that the key matches parses the certificate with webpki,
        // which refuses the critical acmeIdentifier extension every challenge certificate has.
        let loaded = read_pair(&files).and_then(|(chain, key)| {
            let key = provider.key_provider.load_private_key(key).map_err(|error| error.to_string())?;
            Ok(CertifiedKey::new(chain, key))
        });
        match loaded {
            Ok(key) => {
                info!("TLS-ALPN-01 validation for {name}: presenting {}", files.cert.display());
                Some(Arc::new(key))
            }
            Err(error) => {
                warn!("TLS-ALPN-01 validation for {name}: {error}");
                None
            }
        }
    }
}

fn exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_or_hide_are_refused() {
        let dir = ChallengeDir(PathBuf::from("/var/lib/acme"));
        let files = dir.files_for("example.org").unwrap();
        assert_eq!(files.cert, Path::new("/var/lib/acme/example.org.crt.pem"));
        assert_eq!(files.key, Path::new("/var/lib/acme/example.org.key.pem"));
        for name in ["", ".", "..", ".hidden", "../etc/x", "a/b", "a\0b"] {
            assert!(dir.files_for(name).is_none(), "{name:?} was allowed");
        }
    }
}
