use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use clap::Parser;
use log::info;

use onepoll::access_log::AccessLog;
use onepoll::config::Config;
use onepoll::connection::{Limits, Site};
use onepoll::engine::event_loop::{self, Exit, Options};
use onepoll::engine::{Engine, serial, thread_per_conn, thread_pool};
use onepoll::files::Root;

fn main() -> ExitCode {
    let config = Config::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let mut root = match Root::new(&config.root) {
        Ok(root) => root,
        Err(error) => {
            return fail(format_args!("cannot serve {}: {error}", config.root.display()));
        }
    };
    let access_log = match &config.access_log {
        None => AccessLog::to_logger(),
        Some(path) => match AccessLog::to_file(path) {
            Ok(log) => log,
            Err(error) => {
                return fail(format_args!("cannot open access log {}: {error}", path.display()));
            }
        },
    };
    let listener = match TcpListener::bind(SocketAddr::new(config.addr, config.port)) {
        Ok(listener) => listener,
        Err(error) => {
            return fail(format_args!("cannot listen on {}:{}: {error}", config.addr, config.port));
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(error) => return fail(format_args!("cannot read the listening address: {error}")),
    };
    info!("listening on http://{local}/ serving {}", config.root.display());

    let limits = Limits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        send_timeout: config.send_timeout,
    };
    // Only the event loop reads the cache's change events, so only it gets the cache.
    let file_changes = match config.engine {
        Engine::EventLoop => root.enable_cache().map_err(|error| log::warn!("file cache off: {error}")).ok(),
        _ => None,
    };
    let site = Site { root, limits, access_log };
    let options =
        Options { max_conns: config.max_conns as usize, grace_period: config.grace_period, file_changes };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match config.engine {
        Engine::EventLoop => {}
        Engine::Serial => serial::run(listener, &site),
        Engine::ThreadPerConn => thread_per_conn::run(listener, &site),
        Engine::ThreadPool => thread_pool::run(listener, &site, config.threads.map_or(cores, |n| n as usize)),
    }
    match event_loop::run(listener, &site, options) {
        Ok(Exit::Graceful) => ExitCode::SUCCESS,
        Ok(Exit::Forced) => ExitCode::FAILURE,
        Err(error) => fail(format_args!("event loop failed: {error}")),
    }
}

/// One line on stderr and exit code 1: what an operator's service manager shows.
fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("onepoll: {message}");
    ExitCode::FAILURE
}
