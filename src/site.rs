//! What is served: a root and what shapes its responses (extra fields, authentication, the
//! HTTPS redirect). One value per site, so serving several (a root per `Host`) is a map of
//! these, chosen per request.

use std::collections::HashMap;

use crate::auth::Auth;
use crate::config::Config;
use crate::files::{Found, Root, RootOptions};
use crate::http::host::{normalise_host, request_authority};
use crate::http::{ExtraHeader, PathHeader};
use crate::http::{Method, Request};

/// One site: read-only while serving, shared by every connection (and every thread of the
/// blocking engines).
#[derive(Debug)]
pub struct Site {
    /// Its first name (`#2` for a nameless second site, `#1` for the one site of the command
    /// line): what the access log's `vhost_combined` names it by, and what a TLS certificate
    /// lists as a site it covers (see [`site_id`]).
    pub id: String,
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
    /// The site `settings` describe (the command line's, or a `[[site]]` table's): its root,
    /// password file and path rules opened and checked.
    pub fn open(settings: &Config, https_redirect: Option<u16>) -> Result<Site, String> {
        let root = Site::open_root(settings)?;
        let auth = match &settings.auth_file {
            Some(file) => Some(
                Auth::load(file, settings.auth_path.clone(), &settings.auth_realm)
                    .map_err(|message| format!("auth_file: {message}"))?,
            ),
            None => None,
        };
        let path_headers = settings.path_headers()?;
        let headers = settings.headers.clone();
        Ok(Site { id: String::new(), root, headers, path_headers, https_redirect, auth })
    }

    /// The root `settings` name, with its options.
    pub fn open_root(settings: &Config) -> Result<Root, String> {
        let options = RootOptions {
            spa_fallback: settings.spa_fallback.as_deref().map(RootOptions::target_for),
            listing: settings.listing,
            hidden: settings.hidden,
            not_found_page: settings.not_found_page.as_deref().map(RootOptions::target_for),
        };
        match Root::new(&settings.root) {
            Ok(root) => Ok(root.with_options(options)),
            Err(error) => Err(format!("cannot serve {}: {error}", settings.root.display())),
        }
    }

    /// The name it is known by, if it has one and it is not a wildcard (the access log's
    /// `vhost_combined`; a nameless or wildcard site is named by the request's host instead).
    pub fn server_name(&self) -> Option<&str> {
        (!self.id.starts_with(['#', '*'])).then_some(self.id.as_str())
    }

    /// SIGHUP: the password file is read again.
    pub fn reload(&self) {
        if let Some(auth) = &self.auth {
            auth.reload();
        }
    }
}

/// What a site answers to: an exact name, or every name one label under a parent
/// (`*.example.org`: `a.example.org`, not `example.org` nor `a.b.example.org`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteName {
    Exact(String),
    AnyLabelUnder(String),
}

impl SiteName {
    /// `example.org` or `*.example.org`, normalised as a request's host is (a name that could
    /// never match one is refused here, at start-up, instead of silently never matching).
    pub fn parse(text: &str) -> Result<SiteName, String> {
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(parent) => (true, parent),
            None => (false, text),
        };
        let normalised = normalise_host(name.as_bytes())
            .filter(|host| host.as_str().len() == name.trim_end_matches('.').len())
            .ok_or_else(|| format!("not a host name: {text:?}"))?;
        let name = normalised.as_str().to_owned();
        Ok(if wildcard { SiteName::AnyLabelUnder(name) } else { SiteName::Exact(name) })
    }
}

impl std::fmt::Display for SiteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SiteName::Exact(name) => f.write_str(name),
            SiteName::AnyLabelUnder(parent) => write!(f, "*.{parent}"),
        }
    }
}

/// A site's `id`: its first name, or its position (counted from 1) if it has none. Stable across a reload that keeps the site's first name, so a TLS session
/// made before a SIGHUP still knows which sites its certificate covers after it.
pub fn site_id(names: &[SiteName], index: usize) -> String {
    match names.first() {
        Some(name) => name.to_string(),
        None => format!("#{}", index + 1),
    }
}

/// Names to the sites (by index) that answer to them: an exact name first, then a wildcard one
/// label up. Both request routing and the certificate resolver's SNI lookup use it.
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    exact: HashMap<String, usize>,
    under: HashMap<String, usize>,
}

impl NameTable {
    /// The table of `sites`' names (each site's list at its index); two sites claiming one name
    /// is an error.
    pub fn new<'n>(sites: impl IntoIterator<Item = &'n [SiteName]>) -> Result<NameTable, String> {
        let mut table = NameTable::default();
        for (index, names) in sites.into_iter().enumerate() {
            for name in names {
                let (map, key) = match name {
                    SiteName::Exact(key) => (&mut table.exact, key),
                    SiteName::AnyLabelUnder(key) => (&mut table.under, key),
                };
                if map.insert(key.clone(), index).is_some_and(|other| other != index) {
                    return Err(format!("two sites answer to {name}"));
                }
            }
        }
        Ok(table)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.under.is_empty()
    }

    /// The site that answers to `host` (a request's authority or a TLS client's SNI, raw).
    pub fn find(&self, host: &[u8]) -> Option<usize> {
        let host = normalise_host(host)?;
        let parent = host.parent();
        self.exact.get(host.as_str()).or_else(|| parent.and_then(|parent| self.under.get(parent))).copied()
    }
}

/// What a request whose host names no site gets (`unknown_host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownHost {
    /// The default site serves it, as a single-site server does.
    #[default]
    Default,
    /// `404 Not Found` (and the request is logged).
    NotFound,
    /// The connection closes without an answer (scanners that send `Host: 1.2.3.4`).
    Close,
}

/// Every site, and how a request's host chooses one.
#[derive(Debug)]
pub struct Sites {
    sites: Vec<(Vec<SiteName>, Site)>,
    default: usize,
    unknown_host: UnknownHost,
    names: NameTable,
    /// One site answers everything: no request needs its host looked at.
    takes_every_host: bool,
    /// `--health-path`: answered before any site is chosen.
    health_path: Option<String>,
    /// Neither a health path nor a host to tell apart: every request is the default site's.
    takes_every_request: bool,
    /// The built-in ACME client's HTTP-01 answers, served for every host.
    acme_challenges: Option<Root>,
}

/// The site a request goes to, or what to do instead.
#[derive(Debug, Clone, Copy)]
pub enum SiteChoice<'s> {
    Site(&'s Site),
    NotFound,
    Close,
    /// A GET or HEAD of the health path: `200 ok`, before any site, auth or file lookup.
    Health,
    /// A request on the status listener: its reports, no site.
    Report,
}

impl Sites {
    /// Every site `config` describes (its `[[site]]` tables, or the one of its flags), opened,
    /// with its `unknown_host` and health path: what SIGHUP builds from a changed file.
    pub fn from_config(config: &Config, https_redirect: Option<u16>) -> Result<Sites, String> {
        let sites = match config.sites.is_empty() {
            true => Sites::one(Site::open(config, https_redirect)?),
            false => {
                let mut list = Vec::new();
                for table in &config.sites {
                    let site = Site::open(&table.settings, https_redirect)
                        .map_err(|message| format!("[[site]] at line {}: {message}", table.line))?;
                    list.push((table.names.clone(), site));
                }
                Sites::new(list, config.default_site(), config.unknown_host)?
            }
        };
        sites.with_health_path(config.health_path.clone()).with_acme_challenges(config)
    }

    /// One site, answering every host: the command line's.
    pub fn one(site: Site) -> Sites {
        Sites::new(vec![(Vec::new(), site)], 0, UnknownHost::Default).expect("one site has no clash")
    }

    /// `sites` with their names; `default` is the one that answers when no name matches (and
    /// `unknown_host` says so). Two sites claiming one name is an error.
    pub fn new(
        mut sites: Vec<(Vec<SiteName>, Site)>,
        default: usize,
        unknown_host: UnknownHost,
    ) -> Result<Sites, String> {
        let names = NameTable::new(sites.iter().map(|(names, _)| names.as_slice()))?;
        if default >= sites.len() {
            return Err("no default site".to_owned());
        }
        for (slot, (names, site)) in sites.iter_mut().enumerate() {
            site.root.set_cache_slot(slot);
            site.id = site_id(names, slot);
        }
        let takes_every_host = names.is_empty() && unknown_host == UnknownHost::Default;
        Ok(Sites {
            sites,
            default,
            unknown_host,
            names,
            takes_every_host,
            health_path: None,
            takes_every_request: takes_every_host,
            acme_challenges: None,
        })
    }

    /// `--health-path PATH`: GET and HEAD of `PATH` (any query) are the health check.
    pub fn with_health_path(mut self, path: Option<String>) -> Sites {
        self.takes_every_request &= path.is_none();
        self.health_path = path;
        self
    }

    /// The built-in ACME client's HTTP-01 answers, when `config` has it use HTTP-01.
    pub fn with_acme_challenges(mut self, config: &Config) -> Result<Sites, String> {
        if let Some(dir) = config.acme_http01_root() {
            std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
            self.acme_challenges =
                Some(Root::new(&dir).map_err(|error| format!("{}: {error}", dir.display()))?);
        }
        Ok(self)
    }

    /// The HTTP-01 key authorisation `request` asks for, if the built-in ACME client is
    /// being validated for it now (`/.well-known/acme-challenge/TOKEN`, any host).
    pub fn acme_challenge(&self, request: &Request<'_>) -> Option<Found> {
        let root = self.acme_challenges.as_ref()?;
        if !request.target.raw.starts_with("/.well-known/acme-challenge/") || request.check_method().is_err()
        {
            return None;
        }
        root.find_target(&request.target, None, None).ok()
    }

    /// The site for `request`, by the authority it names.
    pub fn choose_for(&self, request: &Request<'_>) -> SiteChoice<'_> {
        if self.takes_every_request {
            return SiteChoice::Site(self.default());
        }
        if let Some(health) = &self.health_path
            && matches!(request.method, Method::Get | Method::Head)
            && request.target.raw.split('?').next() == Some(health.as_str())
        {
            return SiteChoice::Health;
        }
        match self.takes_every_host {
            true => SiteChoice::Site(self.default()),
            false => self.choose(request_authority(request)),
        }
    }

    /// The site for a request naming `authority` (see `crate::http::host`): an exact name
    /// first, then a wildcard one label up; otherwise `unknown_host` decides.
    pub fn choose(&self, authority: Option<&[u8]>) -> SiteChoice<'_> {
        match (authority.and_then(|authority| self.names.find(authority)), self.unknown_host) {
            (Some(index), _) => SiteChoice::Site(&self.sites[index].1),
            (None, UnknownHost::Default) => SiteChoice::Site(self.default()),
            (None, UnknownHost::NotFound) => SiteChoice::NotFound,
            (None, UnknownHost::Close) => SiteChoice::Close,
        }
    }

    /// The site that answers for unknown hosts and for heads too broken to name one.
    pub fn default(&self) -> &Site {
        &self.sites[self.default].1
    }

    pub fn iter(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter().map(|(_, site)| site)
    }

    /// SIGHUP: every site's password file is read again.
    pub fn reload(&self) {
        self.iter().for_each(Site::reload);
    }

    /// Every site's root resolved again (a swapped `current` link); whether any changed.
    pub fn follow_roots(&self) -> bool {
        self.iter().fold(false, |changed, site| site.root.follow() | changed)
    }

    /// The roots that are symlinks, whose directories a file cache watches for a swap.
    pub fn root_links(&self) -> impl Iterator<Item = &std::path::Path> {
        self.iter().filter_map(|site| site.root.link())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site told apart from the others by its redirect port, `tag`.
    fn site(root: &std::path::Path, tag: u16) -> Site {
        let root = Root::new(root).unwrap();
        let id = String::new();
        Site {
            id,
            root,
            headers: Vec::new(),
            path_headers: Vec::new(),
            https_redirect: Some(tag),
            auth: None,
        }
    }

    fn tag(choice: SiteChoice<'_>) -> String {
        match choice {
            SiteChoice::Site(site) => site.https_redirect.unwrap_or_default().to_string(),
            SiteChoice::NotFound => "404".to_owned(),
            SiteChoice::Close => "close".to_owned(),
            SiteChoice::Health => "health".to_owned(),
            SiteChoice::Report => "report".to_owned(),
        }
    }

    fn names(list: &[&str]) -> Vec<SiteName> {
        list.iter().map(|name| SiteName::parse(name).unwrap()).collect()
    }

    #[test]
    fn a_host_chooses_its_site_exact_names_before_wildcards() {
        let dir = tempfile::tempdir().unwrap();
        let sites = |unknown| {
            Sites::new(
                vec![
                    (names(&["example.org", "www.example.org"]), site(dir.path(), 1)),
                    (names(&["*.example.org"]), site(dir.path(), 2)),
                    (names(&["blog.example.org."]), site(dir.path(), 3)),
                ],
                0,
                unknown,
            )
            .unwrap()
        };
        let default = sites(UnknownHost::Default);
        let cases: [(Option<&str>, &str); 10] = [
            (Some("example.org"), "1"),
            (Some("WWW.Example.Org:8080"), "1"),
            (Some("blog.example.org"), "3"),
            (Some("blog.example.org."), "3"),
            (Some("shop.example.org"), "2"),
            (Some("a.shop.example.org"), "1"), // one label only: unknown, so the default
            (Some("other.net"), "1"),
            (Some("exa_mple.org"), "1"),
            (Some("[::1]:8080"), "1"),
            (None, "1"),
        ];
        for (host, expected) in cases {
            assert_eq!(tag(default.choose(host.map(str::as_bytes))), expected, "{host:?}");
        }
        let refusing = sites(UnknownHost::NotFound);
        assert_eq!(tag(refusing.choose(Some(b"other.net"))), "404");
        assert_eq!(tag(refusing.choose(None)), "404");
        assert_eq!(tag(refusing.choose(Some(b"shop.example.org"))), "2");
        assert_eq!(tag(sites(UnknownHost::Close).choose(Some(b"1.2.3.4"))), "close");
    }

    #[test]
    fn names_are_checked_and_claimed_once() {
        assert_eq!(SiteName::parse("Example.ORG."), Ok(SiteName::Exact("example.org".to_owned())));
        assert_eq!(SiteName::parse("*.example.org"), Ok(SiteName::AnyLabelUnder("example.org".to_owned())));
        for bad in
            ["", "*", "*.", "a..b", "exa_mple.org", "example.org:80", "a.*.org", "**.org", "exämple.org"]
        {
            assert!(SiteName::parse(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let clash = vec![
            (names(&["example.org"]), site(dir.path(), 1)),
            (names(&["EXAMPLE.org"]), site(dir.path(), 2)),
        ];
        assert!(Sites::new(clash, 0, UnknownHost::Default).is_err());
        let single = Sites::one(site(dir.path(), 9));
        assert_eq!(tag(single.choose(Some(b"anything.example"))), "9");
        assert_eq!(tag(single.choose(Some(b"exa_mple.org"))), "9");
    }
}
