//! The service: what every engine serves its clients from, apart from how it waits for
//! sockets. The site, the access log and the time limits, shared read-only (by every thread
//! of the blocking engines too); an engine lends them to a client as a [`Context`].

pub(crate) mod child;
pub(crate) mod compressor;
pub mod event_loop;
pub mod http;

use crate::access_log::AccessLog;
use crate::drive::{Context, Limits, Time};
use crate::site::Sites;

/// The parts of the service every engine shares.
#[derive(Debug)]
pub struct Service {
    pub sites: Sites,
    pub access_log: AccessLog,
    /// Each connection's time limits.
    pub limits: Limits,
    /// `--http2`: a plain connection that opens with HTTP/2's preface speaks HTTP/2.
    pub http2: bool,
}

impl Service {
    /// The context a client of a blocking engine gets: live time, no file cache.
    pub fn live_context(&self) -> Context<'_> {
        Context::new(Time::Live, &self.sites, &self.access_log, None).with_http2(self.http2)
    }

    /// SIGHUP: the access log reopened (logrotate moved it) and the site's files read again.
    pub fn reload(&self) {
        match self.access_log.reopen() {
            Ok(()) => log::info!("SIGHUP: access log reopened"),
            Err(error) => log::warn!("SIGHUP: cannot reopen the access log: {error}"),
        }
        self.sites.reload();
    }
}
