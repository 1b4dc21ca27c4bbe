//! `--auth-file`: HTTP Basic authentication against an htpasswd file of bcrypt hashes, checked
//! before any file is looked at.
//!
//! bcrypt is slow on purpose (a few milliseconds at `htpasswd -B`'s cost 5, a quarter of a
//! second at 12), and one event loop cannot pay that per request. So:
//! - a credential that verified is remembered, keyed by an HMAC of the whole `Authorization`
//!   value under a key made at start (the table holds no password, nor anything to test
//!   guesses against offline); only the first request per credential pays;
//! - the table is bounded, and emptied when the file changes (looked at once a second) or
//!   on SIGHUP;
//! - verifying has a budget: at most [`VERIFY_BUDGET`] of bcrypt per second, all clients
//!   together. Past it, a request that would need a verification gets `503` with
//!   `Retry-After: 1` at once, so a flood of wrong passwords costs the loop at most a tenth
//!   of its time, while remembered credentials keep passing;
//! - an unknown user is checked against a dummy hash of the same cost, so the answer takes
//!   as long as for a wrong password.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use ring::hmac;
use ring::rand::SystemRandom;

use crate::http::HttpError;
use crate::http::auth::{basic_credentials, challenge, is_guarded};

/// Most bcrypt time spent per second, all clients together.
pub const VERIFY_BUDGET: Duration = Duration::from_millis(100);
/// Most remembered credentials; the table is emptied when it would grow past this.
const MAX_REMEMBERED: usize = 1024;
/// How often the file is looked at for changes.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Costs above this warn at start: each first request of a credential stalls the loop.
const COSTLY: u32 = 8;

/// The settings and state of `--auth-file`.
pub struct Auth {
    file: PathBuf,
    /// Decoded path prefixes it guards (`--auth-path`); empty: the whole site.
    prefixes: Vec<String>,
    /// The `WWW-Authenticate` value of every 401.
    challenge: Arc<str>,
    key: hmac::Key,
    state: Mutex<State>,
}

struct State {
    users: Users,
    /// HMAC tags of `Authorization` values that verified, with their user.
    remembered: HashMap<[u8; 32], String>,
    /// When the file was last looked at.
    checked_at: Instant,
    /// The current second of the verification budget, and what it has spent.
    budget_since: Instant,
    spent: Duration,
}

/// One version of the file.
struct Users {
    hashes: HashMap<String, String>,
    /// Checked when the user is unknown: a bcrypt hash of the same cost as the file's.
    dummy: String,
    /// Inode, size and mtime of the file read, to notice a change.
    version: (u64, u64, Option<SystemTime>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("file", &self.file).field("prefixes", &self.prefixes).finish()
    }
}

impl Auth {
    /// Reads `file`; fails with a sentence for the operator when it cannot be used.
    pub fn load(file: &Path, prefixes: Vec<String>, realm: &str) -> Result<Auth, String> {
        let users = Users::read(file)?;
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| "no randomness for the credential table's key".to_owned())?;
        let now = Instant::now();
        let state = State {
            users,
            remembered: HashMap::new(),
            checked_at: now,
            budget_since: now,
            spent: Duration::ZERO,
        };
        Ok(Auth {
            file: file.to_path_buf(),
            prefixes,
            challenge: challenge(realm).into(),
            key,
            state: Mutex::new(state),
        })
    }

    /// Lets a request through (with its user, if its path is guarded), or says why not: 401
    /// with the challenge, or 503 when the verification budget is spent. `decoded_path` is
    /// called only when some paths are guarded and others not.
    pub fn check(
        &self,
        decoded_path: impl FnOnce() -> Option<String>,
        authorization: Option<&str>,
    ) -> Result<Option<String>, HttpError> {
        // The whole site needs no path decoded; a path that decodes to none is refused later
        // by the lookup, without touching a file.
        if !self.prefixes.is_empty() && !decoded_path().is_some_and(|path| is_guarded(&self.prefixes, &path))
        {
            return Ok(None);
        }
        let refused = || HttpError::Unauthorized(Arc::clone(&self.challenge));
        let field = authorization.ok_or_else(refused)?;
        let tag = self.tag(field);
        let (hash, user, password) = {
            let mut state = self.lock();
            self.reload_if_changed(&mut state);
            if let Some(user) = state.remembered.get(&tag) {
                return Ok(Some(user.clone()));
            }
            let Some((user, password)) = basic_credentials(field) else {
                debug!("auth: malformed Authorization field");
                return Err(refused());
            };
            let now = Instant::now();
            if now.duration_since(state.budget_since) >= Duration::from_secs(1) {
                state.budget_since = now;
                state.spent = Duration::ZERO;
            }
            if state.spent >= VERIFY_BUDGET {
                debug!("auth: verification budget spent this second; 503");
                return Err(HttpError::AuthenticationBusy);
            }
            let hash = state.users.hashes.get(&user).cloned();
            (hash.ok_or_else(|| state.users.dummy.clone()), user, password)
        };
        // The lock is not held while bcrypt runs: other threads of a threaded engine go on.
        let started = Instant::now();
        let verified = match &hash {
            Ok(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
            Err(dummy) => {
                let _ = bcrypt::verify(&password, dummy); // the same work, whatever its outcome
                false
            }
        };
        let took = started.elapsed();
        let mut state = self.lock();
        state.spent += took;
        if !verified {
            debug!("auth: credentials for {user:?} refused after {took:.1?}");
            return Err(refused());
        }
        debug!("auth: {user:?} verified in {took:.1?}; remembered");
        if state.remembered.len() >= MAX_REMEMBERED {
            state.remembered.clear();
        }
        state.remembered.insert(tag, user.clone());
        Ok(Some(user))
    }

    /// Reads the file again and forgets every remembered credential (SIGHUP). A file that no
    /// longer reads keeps the previous users.
    pub fn reload(&self) {
        self.read_again(&mut self.lock(), "reloaded");
    }

    fn reload_if_changed(&self, state: &mut State) {
        if state.checked_at.elapsed() < FILE_CHECK_INTERVAL {
            return;
        }
        state.checked_at = Instant::now();
        // A file that cannot be looked at (gone, or outside a --chroot) keeps the users read.
        if file_version(&self.file).is_ok_and(|version| version != state.users.version) {
            self.read_again(state, "changed");
        }
    }

    /// Replaces the users with the file's and forgets every remembered credential, unless the
    /// file no longer reads.
    fn read_again(&self, state: &mut State, why: &str) {
        match Users::read(&self.file) {
            Ok(users) => {
                info!("auth: {} {why} ({} users)", self.file.display(), users.hashes.len());
                state.users = users;
                state.remembered.clear();
            }
            Err(error) => warn!("auth: keeping the previous users: {error}"),
        }
    }

    fn tag(&self, field: &str) -> [u8; 32] {
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(&self.key, field.as_bytes()).as_ref());
        tag
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Users {
    /// Parses `user:hash` lines (blank lines and `#` comments skipped); every hash must be
    /// bcrypt (`$2y$`, `$2b$`, `$2a$`: what `htpasswd -B` writes).
    fn read(file: &Path) -> Result<Users, String> {
        let version =
            file_version(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
        let text =
            fs::read_to_string(file).map_err(|error| format!("cannot read {}: {error}", file.display()))?;
        let mut hashes = HashMap::new();
        let mut cost = None;
        for (number, line) in text.lines().enumerate().map(|(n, line)| (n + 1, line.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let where_ = format!("{} line {number}", file.display());
            let (user, hash) = line.split_once(':').ok_or_else(|| format!("{where_}: not user:hash"))?;
            let this_cost = bcrypt_cost(hash).ok_or_else(|| {
                format!("{where_}: {user}'s hash is not bcrypt; write it with `htpasswd -B`")
            })?;
            cost.get_or_insert(this_cost);
            hashes.insert(user.to_owned(), hash.to_owned());
        }
        let cost = cost.unwrap_or(bcrypt::DEFAULT_COST.min(5));
        if cost > COSTLY {
            warn!(
                "auth: bcrypt cost {cost}: the first request of each credential holds the loop for its verification"
            );
        }
        let dummy = bcrypt::hash(b"no such user", cost).map_err(|error| format!("bcrypt: {error}"))?;
        Ok(Users { hashes, dummy, version })
    }
}

/// The cost of a bcrypt hash (`$2y$05$...`), or `None` when it is not one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2y$", "$2b$", "$2a$"].iter().find_map(|prefix| hash.strip_prefix(prefix))?;
    let (cost, salt_and_hash) = rest.split_once('$')?;
    (salt_and_hash.len() == 53).then_some(())?;
    cost.parse().ok().filter(|cost| (4..=31).contains(cost))
}

fn file_version(file: &Path) -> std::io::Result<(u64, u64, Option<SystemTime>)> {
    let meta = fs::metadata(file)?;
    Ok((meta.ino(), meta.len(), meta.modified().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// The decoded path of a request, as `check` asks for it.
    fn at(path: &str) -> impl FnOnce() -> Option<String> + use<'_> {
        move || Some(path.to_owned())
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    fn auth_with(users: &[(&str, &str)], prefixes: &[&str]) -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = users
            .iter()
            .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()))
            .collect();
        fs::write(dir.path().join("htpasswd"), format!("# staff\n\n{lines}")).unwrap();
        let prefixes = prefixes.iter().map(|p| p.to_string()).collect();
        let auth = Auth::load(&dir.path().join("htpasswd"), prefixes, "staff").unwrap();
        (dir, auth)
    }

    #[test]
    fn right_wrong_unknown_missing_and_malformed() {
        let (_dir, auth) = auth_with(&[("alice", "secret"), ("bob", "hunter2")], &["/private"]);
        let is_401 =
            |result: Result<Option<String>, HttpError>| matches!(result, Err(HttpError::Unauthorized(_)));
        assert_eq!(auth.check(at("/public/a"), None), Ok(None));
        assert_eq!(auth.check(at("/private/a"), Some(&basic("alice", "secret"))), Ok(Some("alice".into())));
        assert_eq!(auth.check(at("/private"), Some(&basic("bob", "hunter2"))), Ok(Some("bob".into())));
        assert!(is_401(auth.check(at("/private/a"), Some(&basic("alice", "hunter2")))));
        assert!(is_401(auth.check(at("/private/a"), Some(&basic("mallory", "secret")))));
        assert!(is_401(auth.check(at("/private/a"), None)));
        assert!(is_401(auth.check(at("/private/a"), Some("Basic !!"))));
        assert!(is_401(auth.check(at("/private/a"), Some("Bearer token"))));
    }

    #[test]
    fn a_verified_credential_is_remembered_until_the_file_changes() {
        let (dir, auth) = auth_with(&[("alice", "secret")], &[]);
        let field = basic("alice", "secret");
        assert!(auth.check(at("/"), Some(&field)).is_ok());
        let spent = auth.lock().spent;
        for _ in 0..100 {
            assert!(auth.check(at("/"), Some(&field)).is_ok());
        }
        assert_eq!(auth.lock().spent, spent, "remembered: no bcrypt again");
        fs::write(dir.path().join("htpasswd"), format!("alice:{}\n", bcrypt::hash("changed", 4).unwrap()))
            .unwrap();
        auth.lock().checked_at -= FILE_CHECK_INTERVAL;
        assert!(matches!(auth.check(at("/"), Some(&field)), Err(HttpError::Unauthorized(_))));
        assert!(auth.check(at("/"), Some(&basic("alice", "changed"))).is_ok());
    }

    #[test]
    fn a_flood_spends_the_budget_and_then_gets_503_while_known_credentials_pass() {
        let (_dir, auth) = auth_with(&[("alice", "secret")], &[]);
        let known = basic("alice", "secret");
        assert!(auth.check(at("/"), Some(&known)).is_ok());
        let mut answers = Vec::new();
        // Unknown users spend the budget as wrong passwords do (each is a real bcrypt run).
        for attempt in 0..10_000 {
            let answer = auth.check(at("/"), Some(&basic(&format!("user{attempt}"), "guess")));
            let busy = answer == Err(HttpError::AuthenticationBusy);
            answers.push(busy);
            if busy {
                break;
            }
            assert!(attempt < 9_999, "the budget never ran out");
        }
        assert!(answers.iter().filter(|busy| !**busy).count() >= 2);
        assert_eq!(auth.check(at("/"), Some(&basic("alice", "wrong"))), Err(HttpError::AuthenticationBusy));
        assert_eq!(auth.check(at("/"), Some(&known)), Ok(Some("alice".into())));
    }

    #[test]
    fn only_bcrypt_hashes_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        for refused in ["alice:$apr1$abc$def", "alice:{SHA}abc=", "alice:plain", "no colon"] {
            fs::write(&file, refused).unwrap();
            assert!(Auth::load(&file, Vec::new(), "r").is_err(), "{refused}");
        }
        assert_eq!(bcrypt_cost("$2y$05$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ"), Some(5));
    }
}
