//! The state directory (`--state-dir`, `/var/lib/onepoll` by default): what the ACME helper
//! keeps across restarts and shares with the loop.
//!
//! ```text
//! acme/account-<CA>.key                    the account key (PKCS#8 PEM, 0600), one per CA
//! certificates/<name>/fullchain.pem        the certificate served, leaf first
//! certificates/<name>/key.pem              its key (0600)
//! certificates/<name>/placeholder          there while the pair is the self-signed stand-in
//! acme/tls-alpn-01/<name>.crt.pem, .key.pem  a TLS-ALPN-01 challenge, while it is validated
//! acme/http-01/.well-known/acme-challenge/<token>  an HTTP-01 challenge, while it is validated
//! ```
//!
//! Every file is written whole to a temporary name and renamed over the old one, so the loop
//! (reading on SIGHUP, or at a handshake) sees the old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::jws::AccountKey;
use super::order::Publish;
use crate::tls::CertificateFiles;

/// The state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub dir: PathBuf,
}

/// Private keys: readable by their owner only.
const KEY_MODE: u32 = 0o600;

impl Store {
    /// The pair served for the certificate named by its first name.
    pub fn certificate(&self, name: &str) -> CertificateFiles {
        let dir = self.dir.join("certificates").join(name);
        CertificateFiles { cert: dir.join("fullchain.pem"), key: dir.join("key.pem") }
    }

    fn placeholder_marker(&self, name: &str) -> PathBuf {
        self.dir.join("certificates").join(name).join("placeholder")
    }

    /// Whether the pair of `name` is the self-signed stand-in (or missing).
    pub fn is_placeholder(&self, name: &str) -> bool {
        self.placeholder_marker(name).exists() || !self.certificate(name).cert.exists()
    }

    /// Where the loop finds TLS-ALPN-01 challenge certificates (`--tls-acme-dir`'s layout).
    pub fn tls_alpn01_dir(&self) -> PathBuf {
        self.dir.join("acme").join("tls-alpn-01")
    }

    /// The root the loop serves HTTP-01 key authorisations from.
    pub fn http01_root(&self) -> PathBuf {
        self.dir.join("acme").join("http-01")
    }

    fn http01_file(&self, token: &str) -> PathBuf {
        self.http01_root().join(".well-known/acme-challenge").join(token)
    }

    /// Makes the directories (the challenge ones empty), and, where no certificate is yet, a
    /// self-signed placeholder for `names`, so HTTPS starts before the first issuance.
    /// Returns whether a placeholder was made.
    pub fn prepare(&self, names: &[String]) -> Result<bool, String> {
        let io = |path: &Path, error: std::io::Error| format!("{}: {error}", path.display());
        for dir in [self.tls_alpn01_dir(), self.http01_root().join(".well-known/acme-challenge")] {
            fs::create_dir_all(&dir).map_err(|error| io(&dir, error))?;
            // Left over from a helper that died mid-validation: stale either way.
            for entry in fs::read_dir(&dir).map_err(|error| io(&dir, error))?.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        let name = names.first().ok_or("ACME needs at least one name")?;
        let pair = self.certificate(name);
        if pair.cert.exists() && pair.key.exists() {
            return Ok(false);
        }
        let dir = pair.cert.parent().unwrap_or(&self.dir);
        fs::create_dir_all(dir).map_err(|error| io(dir, error))?;
        let key = rcgen::KeyPair::generate().map_err(|error| error.to_string())?;
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|error| error.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("onepoll placeholder for {name}"));
        let cert = params.self_signed(&key).map_err(|error| error.to_string())?;
        write_atomically(&self.placeholder_marker(name), b"self-signed until the first issuance\n", 0o644)?;
        self.install(name, &cert.pem(), &key.serialize_pem())?;
        Ok(true)
    }

    /// Writes a pair for `name`: the key first, then the chain, then the placeholder marker
    /// goes. A reload between the two renames finds a key that does not match and keeps the
    /// old pair (and the helper's message comes after both).
    pub fn install(&self, name: &str, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        let pair = self.certificate(name);
        write_atomically(&pair.key, key_pem.as_bytes(), KEY_MODE)?;
        write_atomically(&pair.cert, chain_pem.as_bytes(), 0o644)?;
        Ok(())
    }

    /// The certificate is a real one now.
    pub fn clear_placeholder(&self, name: &str) {
        let _ = fs::remove_file(self.placeholder_marker(name));
    }

    /// The account key for the CA at `directory`, made and stored on first use.
    pub fn account_key(&self, directory: &str) -> Result<AccountKey, String> {
        let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
        let id: String = digest.as_ref()[..6].iter().map(|byte| format!("{byte:02x}")).collect();
        let path = self.dir.join("acme").join(format!("account-{id}.key"));
        if let Ok(pem) = fs::read(&path) {
            let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|error| format!("{}: {error}", path.display()))?;
            return AccountKey::from_pkcs8(der.secret_der())
                .map_err(|error| format!("{}: {error}", path.display()));
        }
        let (key, pkcs8) = AccountKey::generate()?;
        let pem = pem_block("PRIVATE KEY", &pkcs8);
        write_atomically(&path, pem.as_bytes(), KEY_MODE)?;
        log::info!("acme: new account key {}", path.display());
        Ok(key)
    }
}

use rustls_pki_types::pem::PemObject;

impl Publish for Store {
    fn http01(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        write_atomically(&self.http01_file(token), key_authorization.as_bytes(), 0o644)
    }

    fn tls_alpn01(&self, name: &str, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let files = crate::tls::ChallengeDir(self.tls_alpn01_dir())
            .files_for(name)
            .ok_or_else(|| format!("{name:?} cannot name a challenge file"))?;
        write_atomically(&files.key, key_pem.as_bytes(), KEY_MODE)?;
        write_atomically(&files.cert, cert_pem.as_bytes(), 0o644)
    }

    fn withdraw(&self, name: &str, token: &str) {
        let _ = fs::remove_file(self.http01_file(token));
        if let Some(files) = crate::tls::ChallengeDir(self.tls_alpn01_dir()).files_for(name) {
            let _ = fs::remove_file(files.cert);
            let _ = fs::remove_file(files.key);
        }
    }
}

/// `der` as a PEM block.
fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        text.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// `bytes` at `path`, through a temporary file renamed over it, with `mode`.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let error = |error: std::io::Error| format!("{}: {error}", path.display());
    let dir = path.parent().ok_or_else(|| format!("{}: no directory", path.display()))?;
    fs::create_dir_all(dir).map_err(error)?;
    let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file =
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_then_an_installed_pair_and_keys_only_for_their_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store { dir: dir.path().to_owned() };
        let names = vec!["example.org".to_owned(), "www.example.org".to_owned()];
        assert!(store.prepare(&names).unwrap());
        assert!(store.is_placeholder("example.org"));
        let pair = store.certificate("example.org");
        assert_eq!(fs::metadata(&pair.key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(fs::read_to_string(&pair.cert).unwrap().contains("BEGIN CERTIFICATE"));
        // A restart keeps what is there.
        assert!(!store.prepare(&names).unwrap());
        store.install("example.org", "chain", "key").unwrap();
        store.clear_placeholder("example.org");
        assert!(!store.is_placeholder("example.org"));
        assert_eq!(fs::read_to_string(&pair.cert).unwrap(), "chain");

        let key = store.account_key("https://ca.test/dir").unwrap();
        let again = store.account_key("https://ca.test/dir").unwrap();
        assert_eq!(key.thumbprint(), again.thumbprint(), "the stored account key is reused");
        assert_ne!(store.account_key("https://other.test/dir").unwrap().thumbprint(), key.thumbprint());
        let accounts: Vec<_> = fs::read_dir(dir.path().join("acme")).unwrap().flatten().collect();
        for account in
            accounts.iter().filter(|entry| entry.path().extension().is_some_and(|ext| ext == "key"))
        {
            assert_eq!(account.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }

        store.http01("tok", "tok.print").unwrap();
        let served = dir.path().join("acme/http-01/.well-known/acme-challenge/tok");
        assert_eq!(fs::read_to_string(&served).unwrap(), "tok.print");
        store.tls_alpn01("example.org", "c", "k").unwrap();
        assert!(dir.path().join("acme/tls-alpn-01/example.org.crt.pem").exists());
        store.withdraw("example.org", "tok");
        assert!(!served.exists());
        assert!(!dir.path().join("acme/tls-alpn-01/example.org.crt.pem").exists());
        assert!(store.tls_alpn01("../x", "c", "k").is_err());
    }
}
