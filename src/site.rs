//! What is served: a root and what shapes its responses (extra fields, authentication, the
//! HTTPS redirect). One value per site, so serving several (a root per `Host`) is a map of
//! these, chosen per request.

use crate::auth::Auth;
use crate::files::Root;
use crate::http::{ExtraHeader, PathHeader};

/// One site: read-only while serving, shared by every connection (and every thread of the
/// blocking engines).
#[derive(Debug)]
pub struct Site {
    pub root: Root,
    /// Added to every response (`--header`).
    pub headers: Vec<ExtraHeader>,
    /// Added to the responses for some paths (`--header-for`).
    pub path_headers: Vec<PathHeader>,
    /// `--https-redirect`: plain-HTTP requests are sent to HTTPS on this port.
    pub https_redirect: Option<u16>,
    /// `--auth-file`: Basic authentication, checked before any file access.
    pub auth: Option<Auth>,
}

impl Site {
    /// SIGHUP: the password file is read again.
    pub fn reload(&self) {
        if let Some(auth) = &self.auth {
            auth.reload();
        }
    }
}
