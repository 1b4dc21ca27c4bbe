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

use crate::site::{NameTable, SiteName, site_id};

mod challenge;
pub(crate) mod expiry;
mod tickets;
mod transport;

pub use challenge::{ACME_TLS_ALPN, ChallengeDir};
pub use tickets::{Sessions, TicketSecret, new_ticket_secret};
pub use transport::TlsTransport;

/// A certificate chain and its private key, as PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What HTTPS serves with: the shared pairs (`--tls-cert`/`--tls-key` at the top level) and each
/// site's names and own pairs, in the order of the sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePlan {
    pub shared: Vec<CertificateFiles>,
    pub sites: Vec<SitePairs>,
    /// The site whose certificate a client that names no site gets.
    pub default_site: usize,
    /// Where TLS-ALPN-01 challenge certificates appear (`--tls-acme-dir`).
    pub challenges: Option<ChallengeDir>,
}

/// One site as the certificates see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePairs {
    /// [`crate::site::site_id`].
    pub id: String,
    pub names: Vec<SiteName>,
    /// Its `[[site]]` table's `tls_cert`/`tls_key`.
    pub own: Vec<CertificateFiles>,
}

impl CertificatePlan {
    /// One site answering every name, with the shared pairs.
    pub fn one_site(shared: Vec<CertificateFiles>) -> CertificatePlan {
        let site = SitePairs { id: site_id(&[], 0), names: Vec::new(), own: Vec::new() };
        CertificatePlan { shared, sites: vec![site], default_site: 0, challenges: None }
    }

    /// The distinct pairs (two sites naming the same files share one).
    pub fn pairs(&self) -> Vec<&CertificateFiles> {
        let mut pairs: Vec<&CertificateFiles> = Vec::new();
        for pair in self.shared.iter().chain(self.sites.iter().flat_map(|site| &site.own)) {
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        pairs
    }

    /// No pair anywhere: nothing to serve HTTPS with.
    pub fn is_empty(&self) -> bool {
        self.shared.is_empty() && self.sites.iter().all(|site| site.own.is_empty())
    }
}

/// A loaded certificate and the sites it may serve: what a TLS session remembers of its
/// handshake, so that a request for a site the certificate is not one of gets `421`.
#[derive(Debug)]
pub struct ServedCertificate {
    key: Arc<CertifiedKey>,
    /// `None`: every site (no site has a certificate of its own).
    sites: Option<Vec<String>>,
}

impl ServedCertificate {
    /// Whether a request for the site `id` may be answered under this certificate.
    pub fn covers(&self, id: &str) -> bool {
        self.sites.as_ref().is_none_or(|sites| sites.iter().any(|site| site == id))
    }
}

thread_local! {
    /// The certificate the resolver last chose on this thread. rustls' unbuffered server
    /// session does not tell which one it sent, and it resolves one in every handshake
    /// (resumptions too) within the `process_tls_records` call that read the ClientHello, on
    /// the caller's thread: the session takes it from here right after that call.
    static RESOLVED: std::cell::RefCell<Option<Arc<ServedCertificate>>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// Handshakes completed on this thread: full ones, and resumptions. The event loop's
    /// sessions all live on its one thread, so these are its counts, for the status report.
    static HANDSHAKES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// Full handshakes and resumptions completed on this thread.
pub fn handshakes() -> (u64, u64) {
    HANDSHAKES.get()
}

/// A session on this thread finished its handshake.
pub(crate) fn count_handshake(resumed: bool) {
    let (full, resumptions) = HANDSHAKES.get();
    HANDSHAKES.set(if resumed { (full, resumptions + 1) } else { (full + 1, resumptions) });
}

/// The certificate the last handshake step on this thread chose, if it chose one.
pub(crate) fn take_resolved() -> Option<Arc<ServedCertificate>> {
    RESOLVED.with(|resolved| resolved.borrow_mut().take())
}

/// Loads every certificate and key, checks that each key matches its certificate, and builds
/// the configuration new handshakes use: TLS 1.2 and 1.3 with rustls' default suites in the
/// server's order (AES-128-GCM first), ALPN `h2` (when `http2`) then `http/1.1`, then
/// `acme-tls/1` with a challenge directory, certificates chosen by SNI (see [`Certificates`]).
pub fn server_config(
    plan: &CertificatePlan,
    sessions: &Sessions,
    http2: bool,
) -> Result<Arc<ServerConfig>, String> {
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
    if plan.is_empty() {
        return Err("HTTPS needs --tls-cert and --tls-key".into());
    }
    let certificates = Certificates::load(plan, Arc::clone(&provider))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certificates));
    // The server's preference wins (RFC 7301 §3.2): h2 for every client that offers it.
    // `acme-tls/1` last: only a client that offers nothing else (a CA validating) gets it.
    config.alpn_protocols = match http2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    if plan.challenges.is_some() {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // The server's order of suites decides, not the client's: testssl.sh rates a server
    // without a cipher order as a weakness.
    config.ignore_client_order = true;
    sessions.install(&mut config);
    Ok(Arc::new(config))
}

/// HTTPS as configured: the files to load again on SIGHUP, and what new handshakes use now.
#[derive(Debug)]
pub struct Https {
    plan: CertificatePlan,
    sessions: Sessions,
    /// ALPN offers `h2`.
    http2: bool,
    config: Arc<ServerConfig>,
    expiries: Vec<(String, i64)>,
}

impl Https {
    /// Loads `plan`'s files (every pair must load and match: a broken one is an error at
    /// start); session tickets are sealed with keys derived from `secret`; ALPN offers `h2`
    /// when `http2`.
    pub fn load(plan: CertificatePlan, secret: TicketSecret, http2: bool) -> Result<Https, String> {
        let sessions = Sessions::new(secret);
        let config = server_config(&plan, &sessions, http2)?;
        let expiries = expiries(&plan);
        Ok(Https { plan, sessions, http2, config, expiries })
    }

    /// How many certificates it serves with.
    pub fn count(&self) -> usize {
        self.plan.pairs().len()
    }

    /// Each certificate file served with, and its `notAfter` (Unix seconds), read when it was
    /// loaded; for the status report.
    pub fn expiries(&self) -> &[(String, i64)] {
        &self.expiries
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Loads the files again, those of `plan` if given (a reloaded configuration file's). On
    /// any error everything stays as it was; connections open now keep the certificate they
    /// started with either way.
    pub fn reload(&mut self, plan: Option<CertificatePlan>) -> Result<(), String> {
        let plan = plan.unwrap_or_else(|| self.plan.clone());
        self.config = server_config(&plan, &self.sessions, self.http2)?;
        self.expiries = expiries(&plan);
        self.plan = plan;
        Ok(())
    }
}

/// Each of `plan`'s certificate files and its leaf's `notAfter`, just after they loaded.
fn expiries(plan: &CertificatePlan) -> Vec<(String, i64)> {
    let leaf = |pair: &CertificateFiles| {
        let der = CertificateDer::pem_file_iter(&pair.cert).ok()?.next()?.ok()?;
        expiry::not_after(&der)
    };
    plan.pairs().into_iter().filter_map(|pair| Some((pair.cert.display().to_string(), leaf(pair)?))).collect()
}

/// One pair, with the file named in any error; the key must match the certificate.
fn load_pair(pair: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let (chain, key) = read_pair(pair)?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|error| format!("{} and {}: {error}", pair.cert.display(), pair.key.display()))
}

/// One pair's PEM files, parsed, with the file named in any error.
fn read_pair(
    pair: &CertificateFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
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
    Ok((chain, key))
}

/// Whether `key`'s certificate is valid for the DNS name `name` (wildcards included).
fn is_valid_for(key: &CertifiedKey, name: &str) -> bool {
    let Ok(subject) = ServerName::try_from(name) else { return false };
    key.end_entity_cert().is_ok_and(|cert| {
        webpki::EndEntityCert::try_from(cert)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&subject).is_ok())
    })
}

/// The loaded certificates, picked by the name the client asked for (SNI).
///
/// A site's certificates are its own pairs; a site without any has the shared pairs valid for
/// one of its names, or, if none is, every shared pair (one self-signed pair for all). A
/// client's SNI that names a site gets the first of that site's certificates valid for the
/// name (or its first), so another site's wildcard never shadows it; a name no site answers
/// to gets the first certificate valid for it; no SNI, or no match, the default site's first.
#[derive(Debug)]
struct Certificates {
    served: Vec<Arc<ServedCertificate>>,
    names: NameTable,
    /// Each site's certificates, as indices into `served`, in order of preference.
    of_site: Vec<Vec<usize>>,
    /// For clients that send no SNI or one nothing matches.
    fallback: usize,
    /// Names already resolved to a certificate (index into `served`), so a handshake parses
    /// no certificate once its name has been seen.
    known: std::sync::Mutex<HashMap<String, usize>>,
    challenges: Option<ChallengeDir>,
    /// To load challenge certificates with.
    provider: Arc<CryptoProvider>,
}

/// Most distinct SNI names remembered (a client can send any name; unknown ones get the default).
const KNOWN_NAMES: usize = 1024;

/// A name under a wildcard site name (`*.example.org`) to ask a certificate about: valid for it
/// means a `*.example.org` entry.
const WILDCARD_PROBE: &str = "onepoll-wildcard-probe";

impl Certificates {
    fn load(plan: &CertificatePlan, provider: Arc<CryptoProvider>) -> Result<Certificates, String> {
        let pairs = plan.pairs();
        let keys: Vec<Arc<CertifiedKey>> =
            pairs.iter().map(|pair| load_pair(pair, &provider).map(Arc::new)).collect::<Result<_, _>>()?;
        let index_of = |pair: &CertificateFiles| pairs.iter().position(|known| *known == pair).unwrap_or(0);
        let shared: Vec<usize> = plan.shared.iter().map(index_of).collect();
        let own = plan.sites.iter().map(|site| site.own.iter().map(index_of).collect::<Vec<_>>());
        let mut of_site = Vec::new();
        for (site, own) in plan.sites.iter().zip(own) {
            let certificates = match own.is_empty() {
                false => own,
                true => {
                    let covering: Vec<usize> = (shared.iter().copied())
                        .filter(|&index| {
                            site.names.iter().any(|name| match name {
                                SiteName::Exact(name) => is_valid_for(&keys[index], name),
                                SiteName::AnyLabelUnder(parent) => {
                                    is_valid_for(&keys[index], &format!("{WILDCARD_PROBE}.{parent}"))
                                }
                            })
                        })
                        .collect();
                    if covering.is_empty() { shared.clone() } else { covering }
                }
            };
            if certificates.is_empty() {
                let id = &site.id;
                return Err(format!(
                    "site {id} has no certificate: give it tls_cert and tls_key, or top-level ones"
                ));
            }
            of_site.push(certificates);
        }
        let every_site_has_every = of_site.iter().all(|certificates| certificates.len() == keys.len());
        let served = (keys.into_iter().enumerate())
            .map(|(index, key)| {
                let sites = (!every_site_has_every).then(|| {
                    (plan.sites.iter().zip(&of_site))
                        .filter(|(_, certificates)| certificates.contains(&index))
                        .map(|(site, _)| site.id.clone())
                        .collect()
                });
                Arc::new(ServedCertificate { key, sites })
            })
            .collect();
        let names = NameTable::new(plan.sites.iter().map(|site| site.names.as_slice()))?;
        let fallback = of_site.get(plan.default_site).and_then(|certificates| certificates.first()).copied();
        Ok(Certificates {
            served,
            names,
            of_site,
            fallback: fallback.unwrap_or(0),
            known: std::sync::Mutex::new(HashMap::new()),
            challenges: plan.challenges.clone(),
            provider,
        })
    }

    /// The certificate for a client asking for `name` (lowercase).
    fn index_for(&self, name: &str) -> usize {
        let valid = |&index: &usize| is_valid_for(&self.served[index].key, name);
        let found = match self.names.find(name.as_bytes()) {
            Some(site) => {
                let certificates = &self.of_site[site];
                certificates.iter().copied().find(valid).or_else(|| certificates.first().copied())
            }
            None => (0..self.served.len()).find(valid),
        };
        found.unwrap_or(self.fallback)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.challenges
            && challenge::is_validation(&hello)
        {
            let key = challenges.certificate_for(hello.server_name(), &self.provider)?;
            // Covers no site: the connection closes after the handshake (see
            // `TlsTransport::read_tls`), and a request on it would get 421 regardless.
            let served = ServedCertificate { key: Arc::clone(&key), sites: Some(Vec::new()) };
            RESOLVED.with(|resolved| *resolved.borrow_mut() = Some(Arc::new(served)));
            return Some(key);
        }
        let index = match hello.server_name() {
            Some(name) if self.served.len() > 1 => {
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
            _ => self.fallback,
        };
        let served = self.served.get(index)?;
        RESOLVED.with(|resolved| *resolved.borrow_mut() = Some(Arc::clone(served)));
        Some(Arc::clone(&served.key))
    }
}
