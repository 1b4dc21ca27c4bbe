//! Session resumption that survives certificate reloads and works across `--workers`: tickets
//! sealed under keys derived from one shared secret, and a bounded TLS 1.2 session cache.

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hkdf};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

/// Sessions the server remembers for TLS 1.2 resumption (about 200 bytes each).
const SESSION_CACHE_ENTRIES: usize = 1024;

/// What survives a certificate reload: the keys that seal session tickets and the cache of
/// TLS 1.2 sessions, so a client resumes whether or not the certificates changed meanwhile.
#[derive(Debug, Clone)]
pub struct Sessions {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Sessions {
    /// Tickets sealed with keys derived from `secret`: every process given the same secret
    /// (the workers of one supervisor) opens the others' tickets.
    pub fn new(secret: TicketSecret) -> Sessions {
        let ticketer = Arc::new(SharedTicketer { secret });
        Sessions { ticketer, cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES) }
    }

    /// Makes `config` issue and accept these tickets, and keep sessions in this cache.
    pub(super) fn install(&self, config: &mut rustls::ServerConfig) {
        config.ticketer = Arc::clone(&self.ticketer);
        config.session_storage = Arc::clone(&self.cache);
    }
}

/// The secret session-ticket keys are derived from.
pub type TicketSecret = [u8; 32];

/// A fresh ticket secret, from the operating system's random source.
pub fn new_ticket_secret() -> Result<TicketSecret, String> {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).map_err(|_| "no randomness for session tickets".to_owned())?;
    Ok(secret)
}

/// How long one session-ticket key seals new tickets; a ticket opens during its own period
/// and the next, so it lives one to two periods.
const TICKET_KEY_SECONDS: u64 = 6 * 3600;

/// Seals TLS session tickets with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from
/// the shared secret and the current period, so keys rotate without any process telling
/// another, and a ticket from one worker resumes on any worker of the same supervisor.
/// A ticket is `period (8 bytes) || nonce (12) || sealed session state`.
struct SharedTicketer {
    secret: TicketSecret,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTicketer") // never the secret
    }
}

impl SharedTicketer {
    fn key(&self, period: u64) -> Option<aead::LessSafeKey> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"onepoll session tickets");
        let info = period.to_be_bytes();
        let info = [&info[..]];
        let prk = salt.extract(&self.secret);
        let okm = prk.expand(&info, &aead::CHACHA20_POLY1305).ok()?;
        Some(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }

    fn period_now() -> u64 {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        since_epoch.as_secs() / TICKET_KEY_SECONDS
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_KEY_SECONDS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let period = Self::period_now();
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(8 + nonce.len() + plain.len() + aead::MAX_TAG_LEN);
        ticket.extend_from_slice(&period.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        let aad = aead::Aad::from(period.to_be_bytes());
        self.key(period)?
            .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut sealed)
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let (period, rest) = ticket.split_at_checked(8)?;
        let period = u64::from_be_bytes(period.try_into().ok()?);
        let now = Self::period_now();
        if period != now && period + 1 != now {
            return None; // sealed with a key that has expired (or is not in use yet)
        }
        let (nonce, sealed) = rest.split_at_checked(aead::NONCE_LEN)?;
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut opened = sealed.to_vec();
        let aad = aead::Aad::from(period.to_be_bytes());
        let plain = self.key(period)?.open_in_place(nonce, aad, &mut opened).ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_with_the_same_secret_only_and_not_when_altered() {
        let state = b"resumption state".to_vec();
        let issuer = SharedTicketer { secret: [7; 32] };
        let ticket = issuer.encrypt(&state).unwrap();
        assert_eq!(SharedTicketer { secret: [7; 32] }.decrypt(&ticket), Some(state.clone()));
        assert_eq!(SharedTicketer { secret: [8; 32] }.decrypt(&ticket), None);
        for at in [0, 8, 20, ticket.len() - 1] {
            let mut altered = ticket.clone();
            altered[at] ^= 1;
            assert_eq!(issuer.decrypt(&altered), None, "byte {at} altered");
        }
        assert_eq!(issuer.decrypt(&ticket[..10]), None);
        assert_ne!(issuer.encrypt(&state), Some(ticket), "a fresh nonce per ticket");
    }

    #[test]
    fn tickets_open_in_their_period_and_the_next_only() {
        let issuer = SharedTicketer { secret: [1; 32] };
        let now = SharedTicketer::period_now();
        let seal = |period: u64| {
            let nonce = [3u8; aead::NONCE_LEN];
            let mut sealed = b"state".to_vec();
            let aad = aead::Aad::from(period.to_be_bytes());
            let key = issuer.key(period).unwrap();
            key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aad, &mut sealed)
                .unwrap();
            [&period.to_be_bytes()[..], &nonce, &sealed].concat()
        };
        assert!(issuer.decrypt(&seal(now)).is_some());
        assert!(issuer.decrypt(&seal(now - 1)).is_some());
        assert!(issuer.decrypt(&seal(now - 2)).is_none(), "expired key");
        assert!(issuer.decrypt(&seal(now + 1)).is_none(), "a key not in use yet");
    }
}
