use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use clap::Parser;
use log::info;

use onepoll::config::Config;
use onepoll::connection::Site;
use onepoll::engine::event_loop;
use onepoll::files::Root;

fn main() -> ExitCode {
    let config = Config::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let root = match Root::new(&config.root) {
        Ok(root) => root,
        Err(error) => {
            return fail(format_args!(
                "cannot serve {}: {error}",
                config.root.display()
            ));
        }
    };
    let listener = match TcpListener::bind(SocketAddr::new(config.addr, config.port)) {
        Ok(listener) => listener,
        Err(error) => {
            return fail(format_args!(
                "cannot listen on {}:{}: {error}",
                config.addr, config.port
            ));
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(error) => return fail(format_args!("cannot read the listening address: {error}")),
    };
    info!(
        "listening on http://{local}/ serving {}",
        config.root.display()
    );

    match event_loop::run(listener, &Site { root }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(format_args!("event loop failed: {error}")),
    }
}

/// One line on stderr and exit code 1: what an operator's service manager shows.
fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("onepoll: {message}");
    ExitCode::FAILURE
}
