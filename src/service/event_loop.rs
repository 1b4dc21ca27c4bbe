//! The service as the event loop serves it: the [`Handler`] that decides what each accepted
//! socket's client speaks, and owns what only the loop's thread has: the file cache with its
//! change events and its compressor child, the HTTPS certificates (reloaded on SIGHUP), and the
//! seed protocols' datagram sockets.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use log::{debug, error, info, warn};
use mio::event::Source;
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::Service;
use super::compressor::Compressor;
use super::http::HttpClient;
use crate::config::Config;
use crate::config::file::first_line;
use crate::drive::{ConnLabel, Context, Limits, Now, Time};
use crate::engine::event_loop::{Handler, Polled};
use crate::engine::stream::{Socket, Stream};
use crate::files::FileCache;
use crate::seed::{self, Answered, Seed, SeedConnection};
use crate::site::Sites;
use crate::status::Counters;
use crate::tls::Https;

/// What a listening socket's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    /// HTTP inside TLS, with the service's certificates.
    Https,
    /// `--status-listen`: plain HTTP, `/status` and `/metrics` only.
    Status,
    Seed(Seed),
}

/// The event loop's service.
pub struct LoopService {
    service: Service,
    /// Certificates for `Protocol::Https` listeners.
    https: Option<Https>,
    /// Small files in memory: the loop's thread alone touches it, so it needs no lock.
    cache: Option<FileCache>,
    /// Makes the cache's compressed forms in a child process; there once registered.
    compressor: Option<Compressor>,
    /// The seed protocols' UDP sockets; emptied at shutdown.
    datagrams: Vec<(UdpSocket, Seed)>,
    /// Datagram sockets that spent their budget with datagrams left: answered again next turn.
    datagrams_yielded: Vec<usize>,
    /// The first of the tokens the loop gave this service's sources.
    first_token: usize,
    /// With `--config`: the configuration serving now, read again from the file on SIGHUP.
    reloadable: Option<Reloadable>,
    /// With `--status-listen`: requests and bytes counted for the reports.
    counters: Option<Counters>,
    /// The certificates the ACME helper keeps valid, and the helper once forked.
    #[cfg(feature = "acme")]
    acme: Option<(Vec<crate::acme::AcmeSettings>, Option<crate::acme::helper::AcmeHelper>)>,
}

/// What a SIGHUP needs to rebuild the sites from the file.
struct Reloadable {
    config: Config,
    /// Where `--https-redirect` sends requests (the port the HTTPS listener got).
    https_redirect: Option<u16>,
}

/// The service's sources, by their offset from its first token.
const FILE_CHANGES: usize = 0;
const COMPRESSED: usize = 1;
/// The compressor's child exited (its pidfd); the next `before_sleep` reaps it.
const COMPRESSOR_EXITED: usize = 2;
/// The ACME helper's socket: a line each time it installed a certificate.
#[cfg(feature = "acme")]
const ACME_HELPER: usize = 3;
const FIRST_DATAGRAM: usize = 4;

impl LoopService {
    /// `datagrams` are the seed protocols' UDP sockets.
    pub fn new(
        service: Service,
        https: Option<Https>,
        cache: Option<FileCache>,
        datagrams: Vec<(std::net::UdpSocket, Seed)>,
    ) -> io::Result<LoopService> {
        let datagrams = datagrams
            .into_iter()
            .map(|(socket, seed)| socket.set_nonblocking(true).map(|()| (UdpSocket::from_std(socket), seed)))
            .collect::<io::Result<_>>()?;
        Ok(LoopService {
            service,
            https,
            cache,
            compressor: None,
            datagrams,
            datagrams_yielded: Vec::new(),
            first_token: 0,
            reloadable: None,
            counters: None,
            #[cfg(feature = "acme")]
            acme: None,
        })
    }

    /// Forks the ACME helper for `certificates` (if any) once the loop registers its sources.
    #[cfg(feature = "acme")]
    pub fn with_acme(mut self, certificates: Vec<crate::acme::AcmeSettings>) -> LoopService {
        self.acme = (!certificates.is_empty()).then_some((certificates, None));
        self
    }

    /// Nothing to fork without the `acme` feature.
    #[cfg(not(feature = "acme"))]
    pub fn with_acme(self, _certificates: Vec<crate::config::AcmeHelperSettings>) -> LoopService {
        self
    }

    /// The helper installed a new certificate: loaded as SIGHUP loads them.
    #[cfg(feature = "acme")]
    fn install_acme_certificate(&mut self, registry: &Registry) {
        let Some((_, Some(helper))) = &mut self.acme else { return };
        if helper.read(registry) == 0 {
            return;
        }
        if let Some(https) = &mut self.https {
            match https.reload(None) {
                Ok(()) => {
                    info!("acme: new certificate installed; certificates reloaded, new handshakes use them")
                }
                Err(error) => error!("acme: the new certificate did not load, the old one stays: {error}"),
            }
            if let Some(counters) = &mut self.counters {
                counters.set_certificates(https.expiries());
            }
        }
    }

    /// SIGHUP reads `config`'s file again (`--config`): new requests use the new sites,
    /// requests in flight finish as they were, and a file that does not parse or check
    /// leaves everything as it was.
    pub fn reload_config_file(mut self, config: Config, https_redirect: Option<u16>) -> LoopService {
        self.reloadable = config.config.is_some().then_some(Reloadable { config, https_redirect });
        self
    }

    /// Counts requests and bytes for a status listener's reports.
    pub fn with_status(mut self) -> LoopService {
        let mut counters = Counters::new(&self.service.sites);
        if let Some(https) = &self.https {
            counters.set_certificates(https.expiries());
        }
        self.counters = Some(counters);
        self
    }

    /// The sites, certificates and limits of the file as it is now, or why it keeps the ones
    /// it has. Without a file, the certificates are read again from the same files.
    fn reload_sites(&mut self) {
        let Some(reloadable) = &self.reloadable else {
            if let Some(https) = &mut self.https {
                match https.reload(None) {
                    Ok(()) => info!("SIGHUP: certificates reloaded; new handshakes use them"),
                    Err(error) => error!("SIGHUP: certificates kept as they were: {error}"),
                }
            }
            return;
        };
        let https_redirect = reloadable.https_redirect;
        let path = reloadable.config.config.as_deref().unwrap_or(std::path::Path::new("?")).display();
        let keep = |message: &dyn std::fmt::Display| {
            error!("SIGHUP: {path}: the configuration stays as it was: {message}")
        };
        let fresh = match Config::from_args(std::env::args_os()) {
            Ok(fresh) => fresh,
            Err(error) => return keep(&first_line(&error.to_string())),
        };
        if fresh.acme_changed(&reloadable.config) {
            return keep(&"the ACME settings changed, which takes a restart (the helper runs with them)");
        }
        let sites = match Sites::from_config(&fresh, https_redirect) {
            Ok(sites) => sites,
            Err(message) => return keep(&message),
        };
        if let Some(https) = &mut self.https {
            let reloaded = fresh.certificate_plan().and_then(|plan| https.reload(Some(plan)));
            if let Err(message) = reloaded {
                return keep(&message);
            }
        }
        let fixed = fresh.restart_only_changes(&reloadable.config);
        if !fixed.is_empty() {
            warn!(
                "SIGHUP: {path}: {} changed, which takes a restart; the rest is reloaded",
                fixed.join(", ")
            );
        }
        let count = sites.iter().count();
        if let Some(counters) = &mut self.counters {
            counters.resite(&sites);
        }
        self.service.sites = sites;
        self.service.limits = fresh.limits();
        self.service.access_log.set_format(fresh.access_log_format, fresh.trusted_proxies.clone());
        // Its keys are the old sites' numbers.
        if let Some(cache) = &mut self.cache {
            cache.clear();
        }
        let certificates = self.https.as_ref().map_or(0, Https::count);
        info!("SIGHUP: {path}: configuration reloaded, {count} sites, {certificates} certificates");
        self.reloadable = Some(Reloadable { config: fresh, https_redirect });
    }

    /// The shared part, for what the process does after the loop (a last log flush).
    pub fn service(&self) -> &Service {
        &self.service
    }

    fn token(&self, offset: usize) -> Token {
        Token(self.first_token + offset)
    }

    /// Answers the datagrams waiting on socket `index`; one that still has some after its
    /// budget is answered again next turn, after the others had theirs.
    fn answer_datagrams(&mut self, index: usize, now: Now) {
        let Some((socket, seed)) = self.datagrams.get(index) else {
            return;
        };
        if seed::answer_datagrams(socket, *seed, now.wall) == Answered::BudgetSpent {
            self.datagrams_yielded.push(index);
        }
    }
}

impl Handler for LoopService {
    type Kind = Protocol;

    fn accept(
        &mut self,
        kind: Protocol,
        socket: Socket,
        label: ConnLabel,
        peer: Option<SocketAddr>,
        now: Now,
    ) -> Option<Box<dyn Polled>> {
        let from = || peer.map_or_else(|| "a unix socket".to_owned(), |peer| peer.to_string());
        match (kind, socket) {
            (Protocol::Http | Protocol::Https, socket) => {
                let tls = match kind {
                    Protocol::Https => Some(self.https.as_ref()?.config()),
                    _ => None,
                };
                match HttpClient::accept(Stream::from(socket), tls, label, peer, now) {
                    Ok(client) => {
                        debug!("{label} accept {}{}", from(), if tls.is_some() { " (TLS)" } else { "" });
                        Some(Box::new(client))
                    }
                    Err(error) => {
                        warn!("{label} TLS session refused: {error}");
                        None
                    }
                }
            }
            (Protocol::Status, socket) => {
                debug!("{label} accept {} (status)", from());
                Some(Box::new(HttpClient::accept_status(Stream::from(socket), label, peer, now)))
            }
            (Protocol::Seed(seed), Socket::Tcp(stream)) => {
                debug!("{label} accept {} ({seed})", from());
                Some(Box::new(SeedConnection::new(seed, stream, label, now.mono, now.wall)))
            }
            (Protocol::Seed(_), Socket::Unix(_)) => None, // seed listeners are TCP only
        }
    }

    fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()> {
        if FIRST_DATAGRAM + self.datagrams.len() > tokens.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many datagram sockets"));
        }
        self.first_token = tokens.start;
        if let Some(cache) = &mut self.cache {
            for link in self.service.sites.root_links() {
                if let Err(error) = cache.watch_link(link) {
                    warn!(
                        "root {}: its link's directory cannot be watched ({error}); a swap is followed on SIGHUP",
                        link.display()
                    );
                }
            }
            registry.register(&mut SourceFd(&cache.fd()), self.token(FILE_CHANGES), Interest::READABLE)?;
            self.compressor = Some(Compressor::new(self.token(COMPRESSED), self.token(COMPRESSOR_EXITED)));
        }
        #[cfg(feature = "acme")]
        if let Some((settings, helper)) = &mut self.acme {
            let token = Token(self.first_token + ACME_HELPER);
            match crate::acme::helper::AcmeHelper::start(settings, registry, token) {
                Ok(started) => *helper = Some(started),
                Err(error) => error!("acme: cannot start the helper: {error}; certificates are not renewed"),
            }
        }
        for index in 0..self.datagrams.len() {
            let token = self.token(FIRST_DATAGRAM + index);
            registry.register(&mut self.datagrams[index].0, token, Interest::READABLE)?;
        }
        Ok(())
    }

    fn ready(&mut self, token: Token, registry: &Registry, now: Now) {
        match token.0 - self.first_token {
            FILE_CHANGES => {
                // A change may be a root's link swapped: followed before this turn's requests.
                if let Some(cache) = &mut self.cache
                    && cache.process_events()
                    && self.service.sites.follow_roots()
                {
                    cache.clear();
                }
            }
            COMPRESSED => {
                if let Some(compressor) = &mut self.compressor {
                    compressor.read_output(registry);
                }
            }
            COMPRESSOR_EXITED => {}
            #[cfg(feature = "acme")]
            ACME_HELPER => self.install_acme_certificate(registry),
            offset => self.answer_datagrams(offset - FIRST_DATAGRAM, now),
        }
    }

    fn before_sleep(&mut self, registry: &Registry, now: Now) {
        for index in std::mem::take(&mut self.datagrams_yielded) {
            self.answer_datagrams(index, now);
        }
        if let (Some(cache), Some(compressor)) = (&mut self.cache, &mut self.compressor) {
            compressor.turn(cache, registry);
        }
        self.service.access_log.flush(); // this turn's lines, in one write
    }

    fn next_wakeup(&self, now: Now) -> Option<Instant> {
        let datagrams_waiting = (!self.datagrams_yielded.is_empty()).then_some(now.mono);
        let compressor = self.compressor.as_ref().and_then(Compressor::next_wakeup);
        datagrams_waiting.into_iter().chain(compressor).min()
    }

    fn reload(&mut self) {
        self.service.reload();
        if self.service.sites.follow_roots()
            && let Some(cache) = &mut self.cache
        {
            cache.clear();
        }
        self.reload_sites();
        if let (Some(counters), Some(https)) = (&mut self.counters, &self.https) {
            counters.set_certificates(https.expiries());
        }
    }

    fn begin_shutdown(&mut self, registry: &Registry) {
        for (mut socket, _) in self.datagrams.drain(..) {
            let _ = registry.deregister(&mut socket);
        }
        self.datagrams_yielded.clear();
    }

    fn end(&mut self) {
        if let Some(compressor) = &mut self.compressor {
            compressor.stop();
        }
        #[cfg(feature = "acme")]
        if let Some((_, Some(helper))) = &mut self.acme {
            helper.stop();
        }
    }

    fn context(&mut self, now: Now) -> Context<'_> {
        let mut cx =
            Context::new(Time::Turn(now), &self.service.sites, &self.service.access_log, self.cache.as_mut())
                .with_http2(self.service.http2);
        cx.counters = self.counters.as_ref();
        cx
    }

    fn limits(&self) -> &Limits {
        &self.service.limits
    }
}

impl Polled for HttpClient<Stream> {
    fn source(&mut self) -> &mut dyn Source {
        self.socket_mut()
    }
}

impl Polled for SeedConnection {
    fn source(&mut self) -> &mut dyn Source {
        self.stream_mut()
    }

    /// Daytime speaks first; echo's first drive just finds nothing to read yet.
    fn speaks_first(&self) -> bool {
        true
    }
}
