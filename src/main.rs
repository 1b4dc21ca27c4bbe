use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::CommandFactory;
use log::info;

use onepoll::access_log::{AccessLog, Destination};
use onepoll::auth::Auth;
use onepoll::config::{AcmeHelperSettings, Config, Switch};
use onepoll::daemon::{self, PidFile};
use onepoll::engine::blocking::BlockingListener;
#[cfg(feature = "coroutine")]
use onepoll::engine::coroutine;
use onepoll::engine::event_loop::{self, Options};
use onepoll::engine::{Engine, Exit, process_per_conn, serial, thread_per_conn, thread_pool};
use onepoll::files::{FileCache, Root};
use onepoll::http::PathHeader;
use onepoll::listen::{self, ListenAddr, Listener, Scheme};
use onepoll::seed::Seed;
use onepoll::service::Service;
use onepoll::service::event_loop::{LoopService, Protocol};
use onepoll::site::{Site, Sites};
use onepoll::supervisor::{self, StatusRelay, WORKER_ENV, WORKER_STATUS_ENV, WorkerListeners};
use onepoll::tls::{Https, new_ticket_secret};

fn main() -> ExitCode {
    let mut config = Config::from_args(std::env::args_os()).unwrap_or_else(|error| error.exit());
    // A worker reports on the socket its supervisor chose, and the supervisor sums the reports.
    if std::env::var_os(WORKER_ENV).is_some() {
        config.status_listen = std::env::var_os(WORKER_STATUS_ENV).map(|path| ListenAddr::Unix(path.into()));
    }
    // Checked with the other flags, so a bad rule is a usage error (exit 2) too.
    // The site whose parts are opened first (the only one without [[site]] tables): the
    // default; the others are opened beside its root.
    let primary: &Config = config.sites.get(config.default_site()).map_or(&config, |site| &site.settings);
    if config.check_config {
        return check_config(&config);
    }
    let path_headers = match primary.path_headers() {
        Ok(rules) => rules,
        Err(message) => Config::command().error(clap::error::ErrorKind::ValueValidation, message).exit(),
    };
    let worker = std::env::var(WORKER_ENV).ok();
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(index) = worker.clone() {
        // Workers share stderr: each line says which worker wrote it.
        logger.format(move |out, record| {
            use std::io::Write;
            let (time, level, target) = (out.timestamp(), record.level(), record.target());
            writeln!(out, "[{time} {level:<5} {target}] worker={index} {}", record.args())
        });
    }
    if let Err(error) = onepoll::logging::Logger::install(logger.build()) {
        eprintln!("onepoll: cannot install the logger: {error}");
    }
    if let Some(index) = &worker {
        if let Err(error) = supervisor::bind_to_supervisor() {
            return fail(format_args!("worker {index}: {error}"));
        }
        info!("starting (pid {})", std::process::id());
    }
    let auth = match &primary.auth_file {
        Some(file) => match Auth::load(file, primary.auth_path.clone(), &primary.auth_realm) {
            Ok(auth) => Some(auth),
            Err(message) => return fail(format_args!("--auth-file: {message}")),
        },
        None => None,
    };
    // The root is checked before binding, so a typo costs one clear line; under --chroot it
    // is a path inside the chroot and can only be opened after entering it.
    let root_before_chroot = match config.chroot {
        Some(_) => None,
        None => match Site::open_root(primary) {
            Ok(root) => Some(root),
            Err(message) => return fail(format_args!("{message}")),
        },
    };
    let unix_listener = config.listen_addrs().iter().any(|addr| matches!(addr, ListenAddr::Unix(_)));
    if unix_listener && config.engine != Engine::EventLoop {
        return fail(format_args!("the blocking engines serve TCP listeners only"));
    }
    let inherited = match listen::inherited() {
        Ok(inherited) => inherited,
        Err(error) => return fail(format_args!("cannot use the inherited listening sockets: {error}")),
    };
    // Certificates are checked before binding too: a bad pair is one line and exit 1. A worker
    // seals session tickets with the secret its supervisor gave every worker.
    let serves_https = match &inherited {
        Some(listeners) => listeners.iter().any(|(_, scheme)| *scheme == Scheme::Https),
        None => !config.listen_tls.is_empty(),
    };
    // The certificate the ACME helper keeps valid, for the process that forks the helper: this
    // one, or with --workers the supervisor (a worker only loads the files).
    let acme = match prepare_acme(&config, serves_https, worker.is_some()) {
        Ok(acme) => acme,
        Err(message) => return fail(format_args!("{message}")),
    };
    let https = match https_settings(&config, serves_https, worker.is_some()) {
        Ok(https) => https,
        Err(message) => return fail(format_args!("{message}")),
    };
    let seeds = [(Seed::Echo, config.echo_port), (Seed::Daytime, config.daytime_port)];
    let seeds: Vec<(Seed, u16)> = seeds.into_iter().filter_map(|(seed, port)| Some((seed, port?))).collect();
    if !seeds.is_empty() && (config.workers > 1 || config.engine != Engine::EventLoop) {
        return fail(format_args!("--echo-port and --daytime-port need the event loop and one worker"));
    }
    if config.status_listen.is_some() && config.engine != Engine::EventLoop {
        return fail(format_args!("--status-listen needs the event loop"));
    }
    if worker.is_none() && config.workers > 1 {
        return supervise(&config, inherited, https.is_some(), acme);
    }
    let listeners = match inherited {
        Some(listeners) => {
            if worker.is_none() {
                info!("using {} listening sockets passed by the service manager", listeners.len());
            }
            listeners
        }
        None => match bind_every_scheme(&config.listen_addrs(), &config.listen_tls_addrs(), false) {
            Ok(listeners) => listeners,
            Err(message) => return fail(format_args!("{message}")),
        },
    };
    let seed_sockets = match bind_seeds(&config, &seeds) {
        Ok(sockets) => sockets,
        Err(message) => return fail(format_args!("{message}")),
    };
    let status_listener = match config.status_listen.as_ref().map(|addr| (addr, listen::bind(addr, false))) {
        None => None,
        Some((_, Ok(listener))) => Some(listener),
        Some((addr, Err(error))) => return fail(format_args!("cannot listen on {addr} (status): {error}")),
    };
    // Privileged work first (log files, pid file), then give privileges up, then the root:
    // after a chroot, the root is a path inside it.
    let mut access_log =
        match AccessLog::open(&Destination::parse(&config.access_log), config.engine == Engine::EventLoop) {
            Ok(log) => log,
            Err(error) => return fail(format_args!("cannot open access log {}: {error}", config.access_log)),
        };
    access_log.set_format(config.access_log_format, config.trusted_proxies.clone());
    let _pidfile = match (&config.pidfile, &worker) {
        (Some(path), None) => match PidFile::create(path) {
            Ok(pidfile) => Some(pidfile),
            Err(error) => return fail(format_args!("cannot write pid file {}: {error}", path.display())),
        },
        _ => None,
    };
    if let Err(error) = daemon::drop_privileges(config.user.as_deref(), config.chroot.as_deref()) {
        return fail(format_args!("cannot drop privileges: {error}"));
    }
    let root = match root_before_chroot.map_or_else(|| Site::open_root(primary), Ok) {
        Ok(root) => root,
        Err(message) => return fail(format_args!("{message}")),
    };
    // Signals are caught from here on (the event loop and the forking parent handle them), so
    // a SIGTERM that follows the ready line at once still means a graceful stop. The other
    // blocking engines keep the defaults.
    let caught = match config.engine {
        Engine::EventLoop => event_loop::shutdown_signals().map(Signals::EventLoop),
        Engine::ProcessPerConn => process_per_conn::Signals::catch().map(Signals::Forking),
        _ => Ok(Signals::Default),
    };
    let signals = match caught {
        Ok(signals) => signals,
        Err(error) => return fail(format_args!("cannot handle signals: {error}")),
    };
    // Said last, once everything that could still fail has not: the "ready" line.
    for (listener, scheme) in &listeners {
        match listener.local() {
            Ok(local) => info!("listening on {} serving {}", url(&local, *scheme), primary.root.display()),
            Err(error) => return fail(format_args!("cannot read a listening address: {error}")),
        }
    }
    if let Some(Err(message)) = status_listener.as_ref().map(|listener| announce_status(listener.local())) {
        return fail(format_args!("{message}"));
    }
    serve(
        &config,
        listeners,
        (seed_sockets, status_listener),
        (https, acme),
        signals,
        SiteParts { root, access_log, path_headers, auth },
    )
}

/// The signals an engine catches: the event loop and the forking parent each their own way,
/// the other engines none.
enum Signals {
    EventLoop(signal_hook_mio::v1_0::Signals),
    Forking(process_per_conn::Signals),
    Default,
}

/// The status listener's line at start: where the reports are.
fn announce_status(local: std::io::Result<ListenAddr>) -> Result<(), String> {
    match local {
        Ok(local @ ListenAddr::Tcp(_)) => info!("status on {}status and /metrics", local.url()),
        Ok(local) => info!("status on {local}: /status and /metrics"),
        Err(error) => return Err(format!("cannot read the status listener's address: {error}")),
    }
    Ok(())
}

/// How a client reaches `local` with `scheme`: `http://127.0.0.1:8080/`, `https://[::1]:443/`.
fn url(local: &ListenAddr, scheme: Scheme) -> String {
    match scheme {
        Scheme::Http => local.url(),
        Scheme::Https => format!("https://{local}/"),
    }
}

/// The certificates, loaded and checked, when HTTPS is served (`serves_https`: an HTTPS
/// listener is bound or was passed in). Session tickets are sealed with keys from a secret
/// drawn here, or, in a worker, the one its supervisor gave every worker.
fn https_settings(config: &Config, serves_https: bool, worker: bool) -> Result<Option<Https>, String> {
    let plan = config.certificate_plan()?;
    match (serves_https, plan.is_empty()) {
        (false, _) if config.https_redirect => {
            Err("--https-redirect needs an HTTPS listener (--listen-tls)".into())
        }
        (false, true) => Ok(None),
        (false, false) => Err("--tls-cert and --tls-key need an HTTPS listener (--listen-tls)".into()),
        (true, true) => Err("HTTPS listeners need --tls-cert and --tls-key".into()),
        (true, false) => {
            let ticket_secret = match worker {
                true => supervisor::ticket_secret_from_supervisor()
                    .map_err(|error| format!("ticket secret from the supervisor: {error}"))?,
                false => new_ticket_secret()?,
            };
            Https::load(plan, ticket_secret, config.http2 == Switch::On).map(Some)
        }
    }
}

/// `--acme-domain` (or the sites' `acme` tables): checked against the rest of the
/// configuration, and the state directory made ready, with a self-signed placeholder where no
/// certificate is yet, so HTTPS starts before the first issuance. A worker only checks: its
/// supervisor did the rest and forks the helper, so a worker gets none.
fn prepare_acme(
    config: &Config,
    serves_https: bool,
    worker: bool,
) -> Result<Vec<AcmeHelperSettings>, String> {
    let certificates = config.acme_certificates()?;
    if certificates.is_empty() {
        return Ok(certificates);
    }
    if config.engine != Engine::EventLoop {
        return Err("--acme-domain needs the event-loop engine".into());
    }
    if !serves_https {
        return Err("--acme-domain needs an HTTPS listener (--listen-tls)".into());
    }
    if worker {
        return Ok(Vec::new());
    }
    #[cfg(feature = "acme")]
    for acme in &certificates {
        if acme.store.prepare(&acme.names)? {
            log::warn!(
                "acme: no certificate for {} yet: serving a self-signed placeholder until the first issuance",
                acme.names.join(", ")
            );
        }
    }
    Ok(certificates)
}

/// Seed protocol sockets: a TCP listener and a UDP socket per configured port.
struct SeedSockets {
    listeners: Vec<(Listener, Seed)>,
    datagrams: Vec<(std::net::UdpSocket, Seed)>,
}

fn bind_seeds(config: &Config, seeds: &[(Seed, u16)]) -> Result<SeedSockets, String> {
    let first_tcp = config.listen_addrs().into_iter().find_map(|addr| match addr {
        ListenAddr::Tcp(addr) => Some(addr.ip()),
        ListenAddr::Unix(_) => None,
    });
    let ip = first_tcp.unwrap_or(config.addr);
    let mut sockets = SeedSockets { listeners: Vec::new(), datagrams: Vec::new() };
    for &(seed, port) in seeds {
        let addr = SocketAddr::new(ip, port);
        let listener = listen::bind_tcp(addr, false)
            .map_err(|error| format!("cannot listen on {addr} ({seed}): {error}"))?;
        // Port 0 picks one for TCP; UDP takes the same number.
        let addr = listener.local_addr().map_err(|error| error.to_string())?;
        let datagram = std::net::UdpSocket::bind(addr)
            .map_err(|error| format!("cannot bind udp {addr} ({seed}): {error}"))?;
        info!("{seed} (TCP and UDP) on {addr}");
        sockets.listeners.push((Listener::Tcp(listener), seed));
        sockets.datagrams.push((datagram, seed));
    }
    Ok(sockets)
}

/// `--check-config`: every site opened, the certificates loaded, a summary on stdout.
fn check_config(config: &Config) -> ExitCode {
    let https = match https_settings(config, !config.listen_tls.is_empty(), false) {
        Ok(https) => https,
        Err(message) => return fail(format_args!("{message}")),
    };
    if let Err(message) = Sites::from_config(config, None) {
        return fail(format_args!("{message}"));
    }
    let default = config.default_site();
    let sites: Vec<String> = match config.sites.is_empty() {
        true => vec![format!("site 1 (default): every host -> {}", config.root.display())],
        false => (config.sites.iter().enumerate())
            .map(|(index, site)| {
                let names: Vec<String> = site.names.iter().map(ToString::to_string).collect();
                let mark = if index == default { " (default)" } else { "" };
                format!("site {}{mark}: {} -> {}", index + 1, names.join(" "), site.settings.root.display())
            })
            .collect(),
    };
    for line in sites {
        println!("{line}");
    }
    for addr in config.listen_addrs() {
        println!("listen http {addr}");
    }
    for addr in config.listen_tls_addrs() {
        println!("listen https {addr}");
    }
    if let Some(addr) = &config.status_listen {
        println!("listen status {addr}");
    }
    if let Some(https) = &https {
        println!("certificates: {} loaded", https.count());
    }
    println!("configuration ok");
    ExitCode::SUCCESS
}

/// What the site is made of, opened and checked before an engine starts.
struct SiteParts {
    root: Root,
    access_log: AccessLog,
    path_headers: Vec<PathHeader>,
    auth: Option<Auth>,
}

/// Runs the chosen engine on `listeners` until it ends.
fn serve(
    config: &Config,
    listeners: Vec<(Listener, Scheme)>,
    (seeds, status): (SeedSockets, Option<Listener>),
    (https, acme): (Option<Https>, Vec<AcmeHelperSettings>),
    signals: Signals,
    parts: SiteParts,
) -> ExitCode {
    let SiteParts { root, access_log, path_headers, auth } = parts;
    let limits = config.limits();
    // Only the event loop reads the cache's change events, so only it gets the cache, and
    // the compressed forms that live in it.
    let compression_budget =
        (config.compress == Switch::On && cfg!(feature = "compression")).then_some(config.compress_cache);
    let file_cache = match config.engine {
        Engine::EventLoop => {
            FileCache::new(compression_budget).map_err(|error| log::warn!("file cache off: {error}")).ok()
        }
        _ => None,
    };
    // The port the first HTTPS listener got (port 0 picks one when binding).
    let https_port = listeners.iter().find(|(_, scheme)| *scheme == Scheme::Https).and_then(
        |(listener, _)| match listener.local() {
            Ok(ListenAddr::Tcp(addr)) => Some(addr.port()),
            _ => None,
        },
    );
    let https_redirect = https_port.filter(|_| config.https_redirect);
    let sites = match config.sites.is_empty() {
        true => {
            let headers = config.headers.clone();
            let site = Site { id: String::new(), root, headers, path_headers, https_redirect, auth };
            match Sites::one(site).with_health_path(config.health_path.clone()).with_acme_challenges(config) {
                Ok(sites) => sites,
                Err(message) => return fail(format_args!("{message}")),
            }
        }
        // [[site]] tables: every site opened now (inside the chroot, like the first root,
        // which was opened before binding so that a typo costs one clear line).
        false => match Sites::from_config(config, https_redirect) {
            Ok(sites) => sites,
            Err(message) => return fail(format_args!("{message}")),
        },
    };
    let service = Service { sites, access_log, limits, http2: config.http2 == Switch::On };
    let (max_conns, grace_period) = (config.max_conns as usize, config.grace_period);
    let options = Options {
        max_conns,
        grace_period,
        on_shutdown: || daemon::notify(sd_notify::NotifyState::Stopping),
        census: config.status_listen.is_some(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if config.engine != Engine::EventLoop {
        // The blocking engines are for comparing designs on TCP; Unix sockets are a daemon feature.
        let tls = https.as_ref().map(|https| Arc::clone(https.config()));
        let Some(listeners) = listeners
            .into_iter()
            .map(|(listener, scheme)| {
                let tls = (scheme == Scheme::Https).then(|| tls.clone()).flatten();
                listener.into_tcp().map(|listener| BlockingListener { listener, tls })
            })
            .collect::<Option<Vec<BlockingListener>>>()
        else {
            return fail(format_args!("the blocking engines serve TCP listeners only"));
        };
        if let Signals::Forking(signals) = signals {
            daemon::notify(sd_notify::NotifyState::Ready);
            let stopping = || daemon::notify(sd_notify::NotifyState::Stopping);
            let exit =
                process_per_conn::run(listeners, signals, &service, https, max_conns, grace_period, stopping);
            return exit_code(exit);
        }
        serve_blocking(config, listeners, service, cores);
    }
    daemon::notify(sd_notify::NotifyState::Ready);
    let mut all: Vec<(Listener, Protocol)> = listeners
        .into_iter()
        .map(|(listener, scheme)| match scheme {
            Scheme::Http => (listener, Protocol::Http),
            Scheme::Https => (listener, Protocol::Https),
        })
        .collect();
    all.extend(seeds.listeners.into_iter().map(|(listener, seed)| (listener, Protocol::Seed(seed))));
    all.extend(status.map(|listener| (listener, Protocol::Status)));
    let Signals::EventLoop(signals) = signals else {
        return fail(format_args!("the event loop needs its signal handlers"));
    };
    let mut service = match LoopService::new(service, https, file_cache, seeds.datagrams) {
        Ok(service) => {
            let service = service.reload_config_file(config.clone(), https_redirect);
            let service = service.with_acme(acme);
            if config.status_listen.is_some() { service.with_status() } else { service }
        }
        Err(error) => return fail(format_args!("cannot serve the seed protocols' datagrams: {error}")),
    };
    let exit = event_loop::run(all, signals, &mut service, options);
    service.service().access_log.flush();
    exit_code(exit)
}

fn exit_code(exit: std::io::Result<Exit>) -> ExitCode {
    match exit {
        Ok(Exit::Graceful) => ExitCode::SUCCESS,
        Ok(Exit::Forced) => ExitCode::FAILURE,
        Err(error) => fail(format_args!("engine failed: {error}")),
    }
}

/// The comparison engines never return.
fn serve_blocking(config: &Config, listeners: Vec<BlockingListener>, service: Service, cores: usize) -> ! {
    match config.engine {
        Engine::EventLoop | Engine::ProcessPerConn => unreachable!("served in `serve`"),
        Engine::Serial => match <[BlockingListener; 1]>::try_from(listeners) {
            Ok([listener]) => serial::run(listener, &service),
            Err(_) => {
                eprintln!("onepoll: --engine serial serves exactly one listener");
                std::process::exit(1)
            }
        },
        Engine::ThreadPerConn => thread_per_conn::run(listeners, &service),
        Engine::ThreadPool => {
            thread_pool::run(listeners, &service, config.threads.map_or(cores, |n| n as usize))
        }
        #[cfg(feature = "coroutine")]
        Engine::Coroutine => coroutine::run(listeners, service),
    }
}

/// `--workers N`: bind (or take over) the listeners here, then run the workers on them.
fn supervise(
    config: &Config,
    inherited: Option<Vec<(Listener, Scheme)>>,
    https: bool,
    acme: Vec<AcmeHelperSettings>,
) -> ExitCode {
    if config.engine != Engine::EventLoop {
        return fail(format_args!("--workers runs event-loop workers only"));
    }
    if inherited.is_none() && config.listen_addrs().iter().any(|addr| matches!(addr, ListenAddr::Unix(_))) {
        // SO_REUSEPORT has no Unix counterpart: one path, one socket.
        return fail(format_args!("--listen unix:... with --workers needs systemd socket activation"));
    }
    let workers = config.workers as usize;
    // Caught before anything says "listening", as in a single process.
    let signals = match event_loop::shutdown_signals() {
        Ok(signals) => signals,
        Err(error) => return fail(format_args!("cannot handle signals: {error}")),
    };
    let listeners = match inherited {
        Some(shared) => WorkerListeners::Shared(shared),
        None => {
            let mut sets: Vec<Vec<(Listener, Scheme)>> = Vec::with_capacity(workers);
            let (mut plain, mut tls) = (config.listen_addrs(), config.listen_tls_addrs());
            for _ in 0..workers {
                match bind_every_scheme(&plain, &tls, true) {
                    Ok(set) => {
                        // Port 0 resolved for the first set: the others join those ports.
                        let bound = |wanted: Scheme| -> Vec<ListenAddr> {
                            let of_scheme = set.iter().filter(|(_, scheme)| *scheme == wanted);
                            of_scheme.filter_map(|(listener, _)| listener.local().ok()).collect()
                        };
                        (plain, tls) = (bound(Scheme::Http), bound(Scheme::Https));
                        sets.push(set);
                    }
                    Err(message) => return fail(format_args!("{message}")),
                }
            }
            for local in &plain {
                info!("listening on {} with {workers} workers", url(local, Scheme::Http));
            }
            for local in &tls {
                info!("listening on {} with {workers} workers", url(local, Scheme::Https));
            }
            WorkerListeners::PerWorker(sets)
        }
    };
    let _pidfile = match &config.pidfile {
        Some(path) => match PidFile::create(path) {
            Ok(pidfile) => Some(pidfile),
            Err(error) => return fail(format_args!("cannot write pid file {}: {error}", path.display())),
        },
        None => None,
    };
    // One ticket secret for every worker, so a session resumes on whichever worker it reaches.
    let ticket_secret = match https.then(new_ticket_secret).transpose() {
        Ok(secret) => secret,
        Err(message) => return fail(format_args!("{message}")),
    };
    let status = match &config.status_listen {
        None => None,
        Some(addr) => match listen::bind(addr, false).and_then(StatusRelay::new) {
            Ok(relay) => Some(relay),
            Err(error) => return fail(format_args!("cannot listen on {addr} (status): {error}")),
        },
    };
    if let Some(Err(message)) = status.as_ref().map(|relay| announce_status(relay.local())) {
        return fail(format_args!("{message}"));
    }
    match supervisor::run(listeners, workers, signals, ticket_secret, status, acme) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => fail(format_args!("supervisor failed: {error}")),
    }
}

/// Binds the plain-HTTP addresses and the HTTPS ones, each listener with what it serves.
fn bind_every_scheme(
    plain: &[ListenAddr],
    tls: &[ListenAddr],
    reuse_port: bool,
) -> Result<Vec<(Listener, Scheme)>, String> {
    let mut listeners: Vec<(Listener, Scheme)> =
        bind_all(plain, reuse_port)?.into_iter().map(|listener| (listener, Scheme::Http)).collect();
    listeners.extend(bind_all(tls, reuse_port)?.into_iter().map(|listener| (listener, Scheme::Https)));
    Ok(listeners)
}

/// Binds every address; with `reuse_port`, so that other sets can bind the same ports.
fn bind_all(addrs: &[ListenAddr], reuse_port: bool) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener =
            listen::bind(addr, reuse_port).map_err(|error| format!("cannot listen on {addr}: {error}"))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// One line on stderr and exit code 1: what an operator's service manager shows.
fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("onepoll: {message}");
    ExitCode::FAILURE
}
