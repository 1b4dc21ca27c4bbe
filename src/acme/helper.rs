//! The ACME helper process: forked by the loop at start, it keeps one certificate valid for as
//! long as the loop lives, and tells the loop on its socket each time it installed a new one.
//!
//! Its life is a loop of its own, blocking (nothing else runs in that process): look at the
//! certificate (missing, the placeholder, not for the configured names, or due by the CA's
//! renewal window or a third of its lifetime left: renew), sleep until the next look (at
//! most [`CHECK_EVERY`] later), and after a failure a WARN line and a wait that doubles
//! ([`renewal::backoff`]), or as long as the CA's `Retry-After` says.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use mio::{Interest, Registry, Token};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::client::Client;
use super::jws::AccountKey;
use super::order::{AcmeError, Ca};
use super::renewal;
use super::{AcmeSettings, Store};
use crate::service::child::fork_helper;
use crate::transport::nonblocking;

/// The line the helper writes once a new pair is in place.
const INSTALLED: &[u8] = b"installed\n";

/// The loop's side: the child and its socket, registered for readable events.
pub struct AcmeHelper {
    pid: Pid,
    socket: mio::net::UnixStream,
    received: Vec<u8>,
}

impl AcmeHelper {
    /// Forks the helper for `certificates`; its socket gets `token`.
    pub fn start(
        certificates: &[AcmeSettings],
        registry: &Registry,
        token: Token,
    ) -> std::io::Result<AcmeHelper> {
        let (pid, socket) = fork_helper("acme", |socket| run(certificates, socket))?;
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::UnixStream::from_std(socket);
        if let Err(error) = registry.register(&mut socket, token, Interest::READABLE) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(error);
        }
        let names: Vec<String> = certificates.iter().map(|settings| settings.names.join(", ")).collect();
        info!("acme: helper {pid} keeps the certificate for {} valid", names.join("; and the one for "));
        Ok(AcmeHelper { pid, socket, received: Vec::new() })
    }

    /// The socket is readable: how many `installed` lines came (each asks for a reload).
    /// A helper that died is said once; HTTPS goes on with the certificates it has.
    pub fn read(&mut self, registry: &Registry) -> usize {
        let mut buffer = [0u8; 256];
        loop {
            match nonblocking(|| self.socket.read(&mut buffer)) {
                Ok(Some(0)) | Err(_) => {
                    warn!(
                        "acme: helper {} ended; certificates are no longer renewed until a restart",
                        self.pid
                    );
                    let _ = registry.deregister(&mut self.socket);
                    let _ = waitpid(self.pid, None);
                    break;
                }
                Ok(Some(read)) => self.received.extend_from_slice(&buffer[..read]),
                Ok(None) => break,
            }
        }
        let lines = self.received.iter().filter(|&&byte| byte == b'\n').count();
        let installed = self
            .received
            .split(|&byte| byte == b'\n')
            .filter(|line| *line == &INSTALLED[..INSTALLED.len() - 1])
            .count();
        if let Some(last) = self.received.iter().rposition(|&byte| byte == b'\n') {
            self.received.drain(..=last);
        }
        debug!("acme: {lines} lines from the helper, {installed} installed");
        installed
    }

    /// The loop is ending: the child is killed and reaped (it is ours, started by PID).
    pub fn stop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64)
}

/// The helper's whole life; returns only if the loop is gone.
fn run(certificates: &[AcmeSettings], mut socket: UnixStream) -> i32 {
    let mut failures = vec![0u32; certificates.len()];
    // When each certificate is looked at next (Unix seconds): all at once at start.
    let mut next = vec![0i64; certificates.len()];
    loop {
        for (index, settings) in certificates.iter().enumerate() {
            if next[index] > unix_now() {
                continue;
            }
            match tend(settings, &mut failures[index]) {
                Tended::Installed => {
                    if socket.write_all(INSTALLED).is_err() {
                        return 0; // the loop is gone
                    }
                    next[index] = 0; // looked at again at once: its renewal time
                }
                Tended::LookAgain(at) => next[index] = at,
            }
        }
        let now = unix_now();
        let wake = next.iter().copied().min().unwrap_or(now + renewal::CHECK_EVERY);
        if wake > now {
            debug!("acme: next look in {} s", wake - now);
            std::thread::sleep(Duration::from_secs((wake - now) as u64));
        }
    }
}

/// What looking after one certificate came to.
enum Tended {
    /// A new pair is in place: the loop loads it.
    Installed,
    /// Nothing to do, or a failure: look again then (Unix seconds).
    LookAgain(i64),
}

/// Looks at one certificate and renews it if it is due.
fn tend(settings: &AcmeSettings, failures: &mut u32) -> Tended {
    let names = settings.names.join(", ");
    let now = unix_now();
    let look = look(settings);
    if look.due > now {
        return Tended::LookAgain(renewal::next_check(now, look.due, look.retry_after));
    }
    info!("acme: {names}: {}; obtaining a certificate from {}", look.why, settings.directory);
    match obtain(settings, look.replaces) {
        Ok(()) => {
            *failures = 0;
            info!("acme: {names}: new certificate installed");
            Tended::Installed
        }
        Err(error) => {
            *failures += 1;
            let wait = renewal::backoff(*failures, error.retry_after);
            let left = look.not_after.map_or("no certificate yet".to_owned(), |not_after| {
                format!("the current one expires in {} s", not_after - now)
            });
            warn!("acme: {names}: attempt {failures} failed: {error}; next in {wait} s ({left})");
            Tended::LookAgain(now + wait)
        }
    }
}

/// What a look at the certificate found.
struct Look {
    /// When to renew (Unix seconds); now or earlier: at once.
    due: i64,
    why: String,
    retry_after: Option<i64>,
    not_after: Option<i64>,
    /// The ARI ID of the certificate a renewal replaces.
    replaces: Option<String>,
}

fn look(settings: &AcmeSettings) -> Look {
    let store = &settings.store;
    let name = &settings.names[0];
    let at_once =
        |why: &str| Look { due: 0, why: why.to_owned(), retry_after: None, not_after: None, replaces: None };
    if store.is_placeholder(name) {
        return at_once("no certificate yet (serving the placeholder)");
    }
    let pair = store.certificate(name);
    let leaf = CertificateDer::pem_file_iter(&pair.cert)
        .ok()
        .and_then(|mut chain| chain.next())
        .and_then(Result::ok);
    let Some(leaf) = leaf else { return at_once("the stored certificate cannot be read") };
    let Some((not_before, not_after)) = crate::tls::expiry::validity(&leaf) else {
        return at_once("the stored certificate cannot be parsed");
    };
    if !covers_every_name(&leaf, &settings.names) {
        return at_once("the stored certificate is not for every configured name");
    }
    let replaces = renewal::cert_id(&leaf);
    // The CA's window where it offers one (a failure to ask is the ⅓ rule, not an error).
    let window = connect(settings).ok().and_then(|mut ca| ca.renewal_window(&leaf));
    let random = f64::from(ring_random_u16()) / f64::from(u16::MAX);
    let due = renewal::renew_at(not_before, not_after, window.map(|(window, _)| window), random);
    let why = match window {
        Some((window, _)) => format!("the CA's renewal window {}..{} has begun", window.start, window.end),
        None => "a third of its lifetime is left".to_owned(),
    };
    Look { due, why, retry_after: window.and_then(|(_, retry)| retry), not_after: Some(not_after), replaces }
}

fn covers_every_name(leaf: &CertificateDer<'_>, names: &[String]) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else { return false };
    names.iter().all(|name| {
        rustls_pki_types::ServerName::try_from(name.as_str())
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    })
}

fn ring_random_u16() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u16::from_le_bytes(bytes)
}

fn connect(settings: &AcmeSettings) -> Result<Ca, AcmeError> {
    let client = Client::new(&settings.ca_roots)?;
    let key: AccountKey = settings.store.account_key(&settings.directory)?;
    Ca::connect(client, &settings.directory, key)
}

/// Account, order, challenges, certificate, installed.
fn obtain(settings: &AcmeSettings, replaces: Option<String>) -> Result<(), AcmeError> {
    let mut ca = connect(settings)?;
    ca.account(settings.email.as_deref(), settings.eab.as_ref())?;
    let store: &Store = &settings.store;
    let issued = ca.obtain(&settings.names, settings.challenge, store, replaces)?;
    let name = &settings.names[0];
    store.install(name, &issued.chain_pem, &issued.key_pem)?;
    store.clear_placeholder(name);
    Ok(())
}
