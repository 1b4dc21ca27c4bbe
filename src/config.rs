//! Command-line configuration. Every flag can also come from an `ONEPOLL_*` environment
//! variable (the flag wins), so a service unit or container can configure onepoll without
//! editing its command line, and from a `--config` file (either of them wins over it; see
//! [`file`]).

pub mod file;

use std::net::{IpAddr, SocketAddr};

use crate::listen::ListenAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::access_log::LogFormat;
use crate::drive::Limits;
use crate::engine::Engine;
use crate::http::forwarded::IpBlock;
use crate::http::{ExtraHeader, PathGlob, PathHeader};
use crate::site::{SiteName, UnknownHost, site_id};
use crate::tls::{CertificateFiles, CertificatePlan, ChallengeDir, SitePairs};

/// A small, fast HTTP/1.1 static-file server: one mio event loop on one thread.
#[derive(Debug, Clone, Parser)]
#[command(version = env!("ONEPOLL_VERSION"), about, max_term_width = 100)]
pub struct Config {
    /// Directory to serve.
    #[arg(default_value = "www", env = "ONEPOLL_ROOT")]
    pub root: PathBuf,

    /// Address to listen on for plain HTTP; not with --listen, which names its own.
    #[arg(
        long,
        default_value = "127.0.0.1",
        env = "ONEPOLL_ADDR",
        conflicts_with = "listen",
        help_heading = "Listening"
    )]
    pub addr: IpAddr,

    /// Port to listen on for plain HTTP; 0 picks a free one (the log says which). Not with
    /// --listen, which names its own. Given beside --listen-tls, plain HTTP is served too.
    #[arg(
        long,
        default_value_t = 8080,
        env = "ONEPOLL_PORT",
        conflicts_with = "listen",
        help_heading = "Listening"
    )]
    pub port: u16,

    /// Whether --addr or --port was given (flag or variable) rather than left at its default:
    /// beside --listen-tls, that asks for plain HTTP too.
    #[arg(skip)]
    pub plain_address_given: bool,

    /// Listen on ADDR:PORT or unix:/PATH; repeat for several, e.g. `--listen 0.0.0.0:80
    /// --listen [::]:80` (IPv6 listeners are IPv6-only, so the pair is dual-stack). Instead of
    /// --addr/--port. Ignored when a service manager passes listening sockets (systemd).
    #[arg(
        long,
        value_name = "ADDR:PORT|unix:/PATH",
        env = "ONEPOLL_LISTEN",
        value_delimiter = ',',
        help_heading = "Listening"
    )]
    pub listen: Vec<ListenAddr>,

    /// Serve HTTPS on ADDR:PORT (or [V6]:PORT); repeatable like --listen. Needs --tls-cert and
    /// --tls-key. Plain HTTP is served beside it only on a --listen, or on an --addr/--port
    /// given explicitly; otherwise only HTTPS. Ignored when a service manager passes
    /// listening sockets: those named `https` (LISTEN_FDNAMES) are served with TLS.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "ONEPOLL_LISTEN_TLS",
        value_delimiter = ',',
        help_heading = "HTTPS"
    )]
    pub listen_tls: Vec<SocketAddr>,

    /// Certificate chain for HTTPS, PEM, leaf first. Repeat with --tls-key for several
    /// certificates, chosen by the name the client asks for (SNI); the first is the default.
    /// SIGHUP loads them again.
    #[arg(
        long,
        value_name = "FILE",
        env = "ONEPOLL_TLS_CERT",
        value_delimiter = ',',
        help_heading = "HTTPS"
    )]
    pub tls_cert: Vec<PathBuf>,

    /// Private key of the --tls-cert at the same position, PEM (PKCS#8, SEC1 or RSA).
    #[arg(long, value_name = "FILE", env = "ONEPOLL_TLS_KEY", value_delimiter = ',', help_heading = "HTTPS")]
    pub tls_key: Vec<PathBuf>,

    /// Answer TLS-ALPN-01 validations (RFC 8737) with the challenge certificates an ACME client
    /// leaves here as NAME.crt.pem and NAME.key.pem (dehydrated's --alpn DIR, lighttpd's
    /// ssl.acme-tls-1 layout): a handshake offering only ALPN `acme-tls/1` gets the pair for its
    /// SNI name, read at that moment, and is closed once complete. Other clients are unaffected.
    #[arg(long, value_name = "DIR", env = "ONEPOLL_TLS_ACME_DIR", help_heading = "HTTPS")]
    pub tls_acme_dir: Option<PathBuf>,

    /// Obtain and renew the HTTPS certificate for these names with ACME (Let's Encrypt by
    /// default), in a helper process: repeatable, the first names the files. Until the first
    /// issuance HTTPS serves a self-signed placeholder. Needs --listen-tls (port 443 for
    /// tls-alpn-01) or a plain listener on port 80 (http-01), and the event-loop engine.
    #[arg(
        long,
        value_name = "NAME",
        env = "ONEPOLL_ACME_DOMAIN",
        value_delimiter = ',',
        help_heading = "ACME"
    )]
    pub acme_domain: Vec<String>,

    /// Contact address given to the CA (expiry notices, policy changes).
    #[arg(long, value_name = "EMAIL", env = "ONEPOLL_ACME_EMAIL", help_heading = "ACME")]
    pub acme_email: Option<String>,

    /// The CA's ACME directory URL.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://acme-v02.api.letsencrypt.org/directory",
        env = "ONEPOLL_ACME_DIRECTORY",
        help_heading = "ACME"
    )]
    pub acme_directory: String,

    /// How the CA checks that the names are ours: a TLS handshake on the HTTPS port
    /// (tls-alpn-01, RFC 8737), or a request to /.well-known/acme-challenge/ on port 80 (http-01).
    #[arg(long, value_enum, value_name = "KIND", default_value_t = AcmeChallenge::TlsAlpn01, env = "ONEPOLL_ACME_CHALLENGE", help_heading = "ACME")]
    pub acme_challenge: AcmeChallenge,

    /// External account binding key ID, for CAs that need one (ZeroSSL, Google, sectigo).
    #[arg(
        long,
        value_name = "KID",
        env = "ONEPOLL_ACME_EAB_KID",
        requires = "acme_eab_hmac_key",
        help_heading = "ACME"
    )]
    pub acme_eab_kid: Option<String>,

    /// External account binding MAC key (base64url), with --acme-eab-kid.
    #[arg(
        long,
        value_name = "KEY",
        env = "ONEPOLL_ACME_EAB_HMAC_KEY",
        requires = "acme_eab_kid",
        help_heading = "ACME"
    )]
    pub acme_eab_hmac_key: Option<String>,

    /// The certificates the CA's API is trusted by (PEM): the system's, or a test CA's.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/ssl/certs/ca-certificates.crt",
        env = "ONEPOLL_ACME_CA_ROOTS",
        help_heading = "ACME"
    )]
    pub acme_ca_roots: PathBuf,

    /// Where ACME keeps the account key and certificates across restarts (keys mode 0600).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/onepoll",
        env = "ONEPOLL_STATE_DIR",
        help_heading = "ACME"
    )]
    pub state_dir: PathBuf,

    /// HTTP/2: offered by ALPN (`h2`, then `http/1.1`) on HTTPS listeners, and recognised by
    /// its connection preface on plain ones (prior knowledge, as `curl --http2-prior-knowledge`
    /// and h2load send it). Off: HTTP/1.1 only.
    #[arg(long, value_enum, value_name = "on|off", default_value_t = Switch::On, env = "ONEPOLL_HTTP2", help_heading = "HTTPS")]
    pub http2: Switch,

    /// Answer every plain-HTTP request with `308` to the same host and target on HTTPS (the
    /// first --listen-tls port), except `/.well-known/acme-challenge/`, still served from the
    /// root so HTTP-01 renewals work. HSTS is a --header on top.
    #[arg(long, env = "ONEPOLL_HTTPS_REDIRECT", help_heading = "HTTPS")]
    pub https_redirect: bool,

    /// Also serve Echo (RFC 862) on this port, TCP and UDP, from the same event loop; on the
    /// address of --addr (or of the first --listen).
    #[arg(long, value_name = "PORT", env = "ONEPOLL_ECHO_PORT", help_heading = "Listening")]
    pub echo_port: Option<u16>,

    /// Also serve Daytime (RFC 867) on this port, TCP and UDP, like --echo-port.
    #[arg(long, value_name = "PORT", env = "ONEPOLL_DAYTIME_PORT", help_heading = "Listening")]
    pub daytime_port: Option<u16>,

    /// How connections are served: one event loop, or a blocking design to compare it with.
    #[arg(long, value_enum, default_value_t = Engine::EventLoop, env = "ONEPOLL_ENGINE", help_heading = "Engine")]
    pub engine: Engine,

    /// Worker threads for `--engine thread-pool` (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), env = "ONEPOLL_THREADS", help_heading = "Engine")]
    pub threads: Option<u32>,

    /// Worker processes, each one event loop on one thread with its own SO_REUSEPORT
    /// listeners, under a supervisor that restarts crashed workers and forwards signals.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), env = "ONEPOLL_WORKERS", help_heading = "Engine")]
    pub workers: u32,

    /// Seconds a request head may take to arrive in full, from its first byte (slowloris).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, env = "ONEPOLL_HEADER_TIMEOUT", help_heading = "Limits")]
    pub header_timeout: Duration,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = seconds, env = "ONEPOLL_IDLE_TIMEOUT", help_heading = "Limits")]
    pub idle_timeout: Duration,

    /// Seconds a client may accept no response bytes before it is dropped.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds, env = "ONEPOLL_SEND_TIMEOUT", help_heading = "Limits")]
    pub send_timeout: Duration,

    /// Most open client connections (per worker); beyond it new ones wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), env = "ONEPOLL_MAX_CONNS", help_heading = "Limits")]
    pub max_conns: u32,

    /// Seconds that responses in flight get to finish after SIGTERM or SIGINT.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, env = "ONEPOLL_GRACE_PERIOD", help_heading = "Limits")]
    pub grace_period: Duration,

    /// Access log in Combined Log Format: `-` for stdout, `off`, or a FILE (reopened on SIGHUP).
    /// Diagnostics always go to stderr, at the level RUST_LOG sets (default info).
    #[arg(
        long,
        value_name = "FILE|-|off",
        default_value = "-",
        env = "ONEPOLL_ACCESS_LOG",
        help_heading = "Logging"
    )]
    pub access_log: String,

    /// The access log's lines: `combined` (nginx's and Apache's default), or `vhost_combined`
    /// (Apache's: the site's name and the port first, `example.org:443 ...`, as goaccess reads
    /// with `%v:%p`). SIGHUP with --config applies a change.
    #[arg(
        long,
        value_enum,
        default_value = "combined",
        env = "ONEPOLL_ACCESS_LOG_FORMAT",
        help_heading = "Logging"
    )]
    pub access_log_format: LogFormat,

    /// Proxies (addresses or CIDR blocks, comma-separated or repeated) whose X-Forwarded-For
    /// names the client in the access log: the rightmost address in it that is not one of them.
    /// Nobody else can set the logged address. SIGHUP with --config applies a change.
    #[arg(
        long,
        value_name = "ADDR[/BITS],...",
        value_parser = IpBlock::parse,
        value_delimiter = ',',
        env = "ONEPOLL_TRUSTED_PROXIES",
        help_heading = "Logging"
    )]
    pub trusted_proxies: Vec<IpBlock>,

    /// Add this header to every response, e.g. `--header 'Cache-Control: max-age=60'`;
    /// repeatable (HSTS, CORS, ...). Several can also be given as `ONEPOLL_HEADER`, one per line.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = header, env = "ONEPOLL_HEADER", value_delimiter = '\n', help_heading = "Site")]
    pub headers: Vec<ExtraHeader>,

    /// Add a header to the successful and redirect responses for paths matching GLOB, e.g.
    /// `--header-for '/assets/*.js' 'Cache-Control: public, max-age=31536000, immutable'`: `*`
    /// stays within a path segment, `**` crosses them, `?` is one character; matched on the
    /// decoded path. Repeatable, on top of --header. `ONEPOLL_HEADER_FOR` takes GLOB and header
    /// on alternate lines.
    #[arg(long = "header-for", num_args = 2, value_names = ["GLOB", "'NAME: VALUE'"], env = "ONEPOLL_HEADER_FOR", value_delimiter = '\n', help_heading = "Site")]
    pub header_for: Vec<String>,

    /// Compress text files (HTML, CSS, JavaScript, JSON, SVG, wasm, ...) that have no
    /// precompressed sibling with br, zstd or gzip, as each client's Accept-Encoding prefers.
    /// Each file version is compressed once per coding, by a child process at the lowest
    /// priority (never in the event loop), and then served from memory; until then it is sent
    /// as it is. Event loop only.
    #[arg(long, value_enum, value_name = "on|off", default_value_t = Switch::On, env = "ONEPOLL_COMPRESS", help_heading = "Site")]
    pub compress: Switch,

    /// Memory for compressed forms (e.g. 16M, 512K, 1G): the least recently used are dropped
    /// beyond it.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = size, env = "ONEPOLL_COMPRESS_CACHE", help_heading = "Site")]
    pub compress_cache: usize,

    /// Serve FILE (relative to the root, e.g. index.html) for GET/HEAD of paths that do not
    /// exist and have no extension: the client-side routes of a single-page app.
    #[arg(long, value_name = "FILE", env = "ONEPOLL_SPA_FALLBACK", help_heading = "Site")]
    pub spa_fallback: Option<String>,

    /// List the contents of directories that have no index.html (without it they are 404).
    #[arg(long, env = "ONEPOLL_LISTING", help_heading = "Site")]
    pub listing: bool,

    /// Serve and list dotfiles (`/.env`, `/.git/`). Without it any path with a segment that
    /// starts with `.` is 404, except under `/.well-known/` (RFC 8615: ACME, security.txt).
    #[arg(long, env = "ONEPOLL_HIDDEN", help_heading = "Site")]
    pub hidden: bool,

    /// Serve FILE (relative to the root) as the body of every 404 response.
    #[arg(long = "404-page", value_name = "FILE", env = "ONEPOLL_404_PAGE", help_heading = "Site")]
    pub not_found_page: Option<String>,

    /// Ask for a user and password (HTTP Basic) from this htpasswd file of bcrypt hashes, as
    /// `htpasswd -B -c FILE NAME` writes. Read at start, again when it changes (looked at once
    /// a second) and on SIGHUP. Use it over HTTPS: Basic sends the password readable.
    #[arg(long, value_name = "FILE", env = "ONEPOLL_AUTH_FILE", help_heading = "Access")]
    pub auth_file: Option<PathBuf>,

    /// Only paths under PREFIX (whole segments, decoded) ask for credentials; repeatable.
    /// Default: the whole site.
    #[arg(
        long,
        value_name = "PREFIX",
        requires = "auth_file",
        env = "ONEPOLL_AUTH_PATH",
        value_delimiter = ',',
        help_heading = "Access"
    )]
    pub auth_path: Vec<String>,

    /// The realm a 401 names (browsers show it in their password prompt).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "onepoll",
        env = "ONEPOLL_AUTH_REALM",
        help_heading = "Access"
    )]
    pub auth_realm: String,

    /// After binding, switch to this user (and its groups); onepoll refuses to serve as
    /// root if asked to drop and the switch fails.
    #[arg(long, value_name = "NAME", env = "ONEPOLL_USER", help_heading = "Process")]
    pub user: Option<String>,

    /// After binding, confine the process to DIR (chroot; needs root). The root directory
    /// and the 404 page are then paths inside DIR.
    #[arg(long, value_name = "DIR", env = "ONEPOLL_CHROOT", help_heading = "Process")]
    pub chroot: Option<PathBuf>,

    /// Write the process ID to FILE at start and remove it at exit.
    #[arg(long, value_name = "FILE", env = "ONEPOLL_PIDFILE", help_heading = "Process")]
    pub pidfile: Option<PathBuf>,

    /// Answer GET and HEAD of PATH (e.g. /healthz; any query) with `200 ok` before any site,
    /// authentication or file lookup, and never log them: for load balancers and monitors.
    #[arg(long, value_name = "PATH", value_parser = health_path, env = "ONEPOLL_HEALTH_PATH", help_heading = "Monitoring")]
    pub health_path: Option<String>,

    /// Serve `/status` (nginx's stub_status text) and `/metrics` (Prometheus) on a listener of
    /// their own, ADDR:PORT or unix:/PATH, so they are never exposed with the sites by accident.
    /// The event loop's, with one worker.
    #[arg(
        long,
        value_name = "ADDR:PORT|unix:/PATH",
        env = "ONEPOLL_STATUS_LISTEN",
        help_heading = "Monitoring"
    )]
    pub status_listen: Option<ListenAddr>,

    /// Read settings from this TOML file: every flag as a key (`idle_timeout = 30`,
    /// `header = ["X-A: 1"]`), and a `[[site]]` table per site (`names`, `root`, and the site
    /// flags). A flag given on the command line or in its variable wins over the file.
    #[arg(long, value_name = "FILE", env = "ONEPOLL_CONFIG", help_heading = "Configuration")]
    pub config: Option<PathBuf>,

    /// Read the configuration, open every root, password file and certificate, print the
    /// sites, names and listeners, and exit: 0 if all is well, 1 if not (nginx's `-t`).
    #[arg(long, help_heading = "Configuration")]
    pub check_config: bool,

    /// The `[[site]]` tables of the --config file, each as the settings of its site.
    #[arg(skip)]
    pub sites: Vec<SiteConfig>,

    /// The --config file's `unknown_host`.
    #[arg(skip)]
    pub unknown_host: UnknownHost,
}

/// A `[[site]]` table: its names, whether it is the default, and its settings (the file's top
/// level with the table on top).
#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub names: Vec<SiteName>,
    pub default: bool,
    pub settings: Box<Config>,
    /// The table's own `tls_cert`/`tls_key` pairs (its settings have the top level's too).
    pub certificates: Vec<CertificateFiles>,
    /// Where the table starts in the file.
    pub line: usize,
}

impl Config {
    /// The configuration from `args` (the program's name first) and the `ONEPOLL_*`
    /// environment, or the usage error to exit with.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let command = Config::command();
        let matches = command.clone().try_get_matches_from(&args)?;
        let Some(path) = matches.get_one::<PathBuf>("config") else {
            return Config::from_matches(&matches);
        };
        // Set on the command line or by a variable: the file's key is left out.
        let given = |name: &str| {
            let source =
                file::setting(&command, name).and_then(|arg| matches.value_source(arg.get_id().as_str()));
            source.is_some_and(|source| source != ValueSource::DefaultValue)
        };
        let file = file::ConfigFile::read(path, &command, &given)
            .map_err(|message| command.clone().error(clap::error::ErrorKind::ValueValidation, message))?;
        let program = args.first().cloned().unwrap_or_else(|| "onepoll".into());
        let merged =
            std::iter::once(program.clone()).chain(file.root.clone()).chain(file.args.iter().cloned());
        // A value the flag's parser refuses is reported where the file sets it.
        let at_line = |error: clap::Error, table_line: Option<usize>| {
            let long = match error.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(arg)) => {
                    arg.trim_start_matches('-').split([' ', '=']).next().map(str::to_owned)
                }
                _ => None,
            };
            match table_line.or_else(|| long.and_then(|long| file.line_of_flag(&long))) {
                Some(line) => {
                    let message =
                        format!("{}:{line}: {}", path.display(), file::first_line(&error.to_string()));
                    command.clone().error(clap::error::ErrorKind::ValueValidation, message)
                }
                None => error,
            }
        };
        let matches = command.clone().try_get_matches_from(merged.chain(args.into_iter().skip(1)));
        let mut config = Config::from_matches(&matches.map_err(|error| at_line(error, None))?)?;
        for table in &file.sites {
            let site_args = std::iter::once(program.clone())
                .chain(file.args.iter().cloned())
                .chain(table.args.iter().cloned());
            let matches = command.clone().try_get_matches_from(site_args);
            let settings = Config::from_matches(&matches.map_err(|error| at_line(error, Some(table.line)))?)?;
            let own = command.clone().try_get_matches_from(std::iter::once(&program).chain(&table.args));
            let own = Config::from_matches(&own.map_err(|error| at_line(error, Some(table.line)))?)?;
            let certificates = own.certificate_files().map_err(|message| {
                let message = format!("{}:{}: [[site]]: {message}", path.display(), table.line);
                command.clone().error(clap::error::ErrorKind::ValueValidation, message)
            })?;
            let (names, default, line) = (table.names.clone(), table.default, table.line);
            let settings = Box::new(settings);
            config.sites.push(SiteConfig { names, default, settings, certificates, line });
        }
        config.unknown_host = file.unknown_host;
        Ok(config)
    }

    /// The `[[site]]` that answers unknown hosts: the one marked `default`, else the first.
    pub fn default_site(&self) -> usize {
        self.sites.iter().position(|site| site.default).unwrap_or(0)
    }

    /// Each connection's time limits.
    pub fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            send_timeout: self.send_timeout,
        }
    }

    /// The settings that differ from `earlier` but only take effect on a restart (the
    /// listeners, the engine, the process), by their flags.
    pub fn restart_only_changes(&self, earlier: &Config) -> Vec<&'static str> {
        macro_rules! changed {
            ($($field:ident $flag:literal),* $(,)?) => {{
                let mut changed = Vec::new();
                $(if format!("{:?}", self.$field) != format!("{:?}", earlier.$field) {
                    changed.push($flag);
                })*
                changed
            }};
        }
        changed!(
            addr "addr", port "port", listen "listen", listen_tls "listen_tls", https_redirect "https_redirect", echo_port "echo_port",
            daytime_port "daytime_port", engine "engine", threads "threads", workers "workers",
            max_conns "max_conns", status_listen "status_listen", access_log "access_log", compress "compress",
            http2 "http2", compress_cache "compress_cache", user "user", chroot "chroot", pidfile "pidfile",
        )
    }

    /// Whether the certificates the ACME helper keeps valid differ from `earlier`'s: the helper
    /// was forked with those, so a change takes a restart.
    pub fn acme_changed(&self, earlier: &Config) -> bool {
        format!("{:?}", self.acme_certificates()) != format!("{:?}", earlier.acme_certificates())
    }

    fn from_matches(matches: &clap::ArgMatches) -> Result<Config, clap::Error> {
        let mut config = Config::from_arg_matches(matches)?;
        config.plain_address_given = ["addr", "port"]
            .iter()
            .any(|id| matches.value_source(id).is_some_and(|source| source != ValueSource::DefaultValue));
        Ok(config)
    }

    /// The plain-HTTP addresses to bind when no listener is inherited: the --listen ones, or
    /// --addr:--port unless only --listen-tls was asked for.
    pub fn listen_addrs(&self) -> Vec<ListenAddr> {
        if !self.listen.is_empty() {
            self.listen.clone()
        } else if self.listen_tls.is_empty() || self.plain_address_given {
            vec![ListenAddr::Tcp(SocketAddr::new(self.addr, self.port))]
        } else {
            Vec::new()
        }
    }

    /// The HTTPS addresses, as listen addresses.
    pub fn listen_tls_addrs(&self) -> Vec<ListenAddr> {
        self.listen_tls.iter().copied().map(ListenAddr::Tcp).collect()
    }

    /// Every certificate pair and which site has which: the top level's for every site, plus
    /// each `[[site]]`'s own.
    pub fn certificate_plan(&self) -> Result<CertificatePlan, String> {
        let mut shared = self.certificate_files()?;
        let mut challenges = self.tls_acme_dir.clone().map(ChallengeDir);
        let acme = self.acme_pairs()?;
        if let Some((.., Some(dir))) = acme.iter().find(|(.., alpn)| alpn.is_some()) {
            challenges = Some(ChallengeDir(dir.clone()));
        }
        if self.sites.is_empty() {
            shared.extend(acme.into_iter().map(|(_, pair, _)| pair));
            return Ok(CertificatePlan { challenges, ..CertificatePlan::one_site(shared) });
        }
        let sites = (self.sites.iter().enumerate())
            .map(|(index, site)| {
                let mut own = site.certificates.clone();
                own.extend(
                    acme.iter().filter(|(of, ..)| *of == Some(index)).map(|(_, pair, _)| pair.clone()),
                );
                SitePairs { id: site_id(&site.names, index), names: site.names.clone(), own }
            })
            .collect();
        Ok(CertificatePlan { shared, sites, default_site: self.default_site(), challenges })
    }

    /// The pairs the ACME helper keeps valid: the site each is for (`None`: the one site), its
    /// files, and its TLS-ALPN-01 challenge directory if it is validated so.
    #[cfg(feature = "acme")]
    fn acme_pairs(&self) -> Result<Vec<AcmePair>, String> {
        let sites = (self.sites.iter().enumerate()).map(|(index, site)| (Some(index), &*site.settings));
        let configs: Vec<(Option<usize>, &Config)> = match self.sites.is_empty() {
            true => vec![(None, self)],
            false => sites.collect(),
        };
        let mut pairs = Vec::new();
        for (site, config) in configs {
            if let Some(acme) = config.acme_settings()? {
                let alpn = acme.challenge == crate::acme::ChallengeKind::TlsAlpn01;
                let dir = alpn.then(|| acme.store.tls_alpn01_dir());
                pairs.push((site, acme.store.certificate(&acme.names[0]), dir));
            }
        }
        Ok(pairs)
    }

    #[cfg(not(feature = "acme"))]
    fn acme_pairs(&self) -> Result<Vec<AcmePair>, String> {
        self.acme_certificates().map(|_| Vec::new())
    }

    /// Every certificate the ACME helper keeps valid: the one site's (`--acme-domain`), or each
    /// `[[site]]`'s with an `acme` table (for its names).
    #[cfg(feature = "acme")]
    pub fn acme_certificates(&self) -> Result<Vec<AcmeHelperSettings>, String> {
        if self.sites.is_empty() {
            return Ok(self.acme_settings()?.into_iter().collect());
        }
        if !self.acme_domain.is_empty() {
            return Err("with [[site]] tables, give each site its own acme = { ... } (its names are the certificate's), not acme_domain".into());
        }
        let mut all = Vec::new();
        for site in &self.sites {
            let settings = site
                .settings
                .acme_settings()
                .map_err(|error| format!("[[site]] at line {}: {error}", site.line))?;
            all.extend(settings);
        }
        Ok(all)
    }

    #[cfg(not(feature = "acme"))]
    pub fn acme_certificates(&self) -> Result<Vec<AcmeHelperSettings>, String> {
        let sites = self.sites.iter().map(|site| &*site.settings);
        match std::iter::once(self).chain(sites).all(|config| config.acme_domain.is_empty()) {
            true => Ok(Vec::new()),
            false => Err("--acme-domain needs onepoll built with the acme feature".into()),
        }
    }

    /// `--acme-domain`: the certificate the ACME helper keeps valid, checked.
    #[cfg(feature = "acme")]
    pub fn acme_settings(&self) -> Result<Option<AcmeHelperSettings>, String> {
        use crate::acme::{AcmeSettings, ChallengeKind, Eab, Store};
        if self.acme_domain.is_empty() {
            return Ok(None);
        }
        if self.tls_acme_dir.is_some() {
            return Err(
                "--tls-acme-dir is for an outside ACME client; --acme-domain uses the built-in one".into()
            );
        }
        let settings = AcmeSettings {
            names: self.acme_domain.iter().map(|name| name.to_ascii_lowercase()).collect(),
            email: self.acme_email.clone(),
            directory: self.acme_directory.clone(),
            challenge: match self.acme_challenge {
                AcmeChallenge::TlsAlpn01 => ChallengeKind::TlsAlpn01,
                AcmeChallenge::Http01 => ChallengeKind::Http01,
            },
            eab: self
                .acme_eab_kid
                .clone()
                .zip(self.acme_eab_hmac_key.clone())
                .map(|(kid, hmac_key)| Eab { kid, hmac_key }),
            ca_roots: self.acme_ca_roots.clone(),
            store: Store { dir: self.state_dir.clone() },
        };
        settings.check()?;
        Ok(Some(settings))
    }

    /// Without the `acme` feature, `--acme-domain` is refused.
    #[cfg(not(feature = "acme"))]
    pub fn acme_settings(&self) -> Result<Option<AcmeHelperSettings>, String> {
        match self.acme_domain.is_empty() {
            true => Ok(None),
            false => Err("--acme-domain needs onepoll built with the acme feature".into()),
        }
    }

    /// The root HTTP-01 challenges are served from, when the built-in ACME client uses them
    /// for a certificate (one site's, or any `[[site]]`'s).
    pub fn acme_http01_root(&self) -> Option<PathBuf> {
        let uses = |config: &Config| {
            !config.acme_domain.is_empty() && config.acme_challenge == AcmeChallenge::Http01
        };
        let any = uses(self) || self.sites.iter().any(|site| uses(&site.settings));
        any.then(|| self.state_dir.join("acme").join("http-01"))
    }

    /// The certificate/key pairs, or why they do not pair up.
    pub fn certificate_files(&self) -> Result<Vec<CertificateFiles>, String> {
        if self.tls_cert.len() != self.tls_key.len() {
            return Err(format!(
                "{} --tls-cert and {} --tls-key: give them in pairs",
                self.tls_cert.len(),
                self.tls_key.len()
            ));
        }
        let pairs = self.tls_cert.iter().zip(&self.tls_key);
        Ok(pairs.map(|(cert, key)| CertificateFiles { cert: cert.clone(), key: key.clone() }).collect())
    }
}

/// An ACME certificate in the plan: its site (`None`: the one site), its files, and its
/// TLS-ALPN-01 challenge directory if it is validated so.
type AcmePair = (Option<usize>, CertificateFiles, Option<PathBuf>);

/// What the ACME helper is forked with; nothing to fork without the `acme` feature.
#[cfg(feature = "acme")]
pub type AcmeHelperSettings = crate::acme::AcmeSettings;
#[cfg(not(feature = "acme"))]
pub type AcmeHelperSettings = std::convert::Infallible;

/// `--acme-challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcmeChallenge {
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
    #[value(name = "http-01")]
    Http01,
}

/// A feature turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Bytes, with an optional binary suffix: `4096`, `512K`, `16M`, `1G`.
fn size(text: &str) -> Result<usize, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, suffix)) if suffix.is_ascii_alphabetic() => (&text[..at], suffix.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("not a size: {text} (use a number with K, M or G)")),
    };
    let value: usize = digits.parse().map_err(|_| format!("not a size: {text}"))?;
    value.checked_mul(1 << shift).ok_or_else(|| format!("too large: {text}"))
}

/// Whole or fractional seconds, e.g. `10` or `0.5`.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("not a number of seconds: {text}"))?;
    Duration::try_from_secs_f64(value).map_err(|_| format!("not a duration: {text}"))
}

impl Config {
    /// The `--header-for` rules, each pattern and header checked as `--header`'s are.
    pub fn path_headers(&self) -> Result<Vec<PathHeader>, String> {
        self.header_for
            .chunks(2)
            .map(|pair| match pair {
                [glob, field] => Ok(PathHeader {
                    pattern: PathGlob::parse(glob)
                        .map_err(|error| format!("--header-for {glob}: {error}"))?,
                    header: ExtraHeader::parse(field)
                        .map_err(|error| format!("--header-for {glob} {field}: {error}"))?,
                }),
                _ => Err("--header-for takes a GLOB and a 'NAME: VALUE'".to_owned()),
            })
            .collect()
    }
}

fn health_path(text: &str) -> Result<String, String> {
    match text.starts_with('/') && !text.contains(['?', '#']) && text.bytes().all(|b| b.is_ascii_graphic()) {
        true => Ok(text.to_owned()),
        false => Err(format!("not a path: {text} (e.g. /healthz)")),
    }
}

fn header(text: &str) -> Result<ExtraHeader, String> {
    ExtraHeader::parse(text).map_err(|error| error.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{Config, ListenAddr, size};

    fn listeners(args: &[&str]) -> (Vec<ListenAddr>, Vec<ListenAddr>) {
        let config = Config::from_args(["onepoll"].iter().chain(args)).unwrap();
        (config.listen_addrs(), config.listen_tls_addrs())
    }

    fn tcp(addr: &str) -> ListenAddr {
        ListenAddr::Tcp(addr.parse().unwrap())
    }

    #[test]
    fn an_explicit_port_beside_listen_tls_serves_plain_http_too() {
        let https = vec![tcp("127.0.0.1:8443")];
        assert_eq!(listeners(&[]), (vec![tcp("127.0.0.1:8080")], vec![]));
        assert_eq!(listeners(&["--listen-tls", "127.0.0.1:8443"]), (vec![], https.clone()));
        let both = (vec![tcp("127.0.0.1:8080")], https.clone());
        assert_eq!(listeners(&["--port", "8080", "--listen-tls", "127.0.0.1:8443"]), both);
        let both = (vec![tcp("0.0.0.0:8080")], https.clone());
        assert_eq!(listeners(&["--addr", "0.0.0.0", "--listen-tls", "127.0.0.1:8443"]), both);
        let listed = (vec![tcp("127.0.0.1:80")], https);
        assert_eq!(listeners(&["--listen", "127.0.0.1:80", "--listen-tls", "127.0.0.1:8443"]), listed);
    }

    #[test]
    fn addr_or_port_beside_listen_is_a_usage_error() {
        for flag in ["--port", "--addr"] {
            let value = if flag == "--port" { "8080" } else { "0.0.0.0" };
            let error = Config::from_args(["onepoll", flag, value, "--listen", "127.0.0.1:80"]).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{flag}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("512K"), Ok(512 * 1024));
        assert_eq!(size("16m"), Ok(16 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        for bad in ["", "M", "12Q", "-1K", "1.5M", "99999999999999999999G"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }
}
