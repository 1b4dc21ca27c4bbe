//! Command-line configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::engine::Engine;

/// A small, fast HTTP/1.1 static-file server: one mio event loop on one thread.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Directory to serve.
    #[arg(default_value = "www")]
    pub root: PathBuf,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub addr: IpAddr,

    /// Port to listen on; 0 picks a free one (the log says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// How connections are served: one event loop, or a blocking design to compare it with.
    #[arg(long, value_enum, default_value_t = Engine::EventLoop, help_heading = "Engine")]
    pub engine: Engine,

    /// Worker threads for `--engine thread-pool` (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Engine")]
    pub threads: Option<u32>,

    /// Seconds a request head may take to arrive in full, from its first byte (slowloris).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, help_heading = "Limits")]
    pub header_timeout: Duration,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = seconds, help_heading = "Limits")]
    pub idle_timeout: Duration,

    /// Seconds a client may accept no response bytes before it is dropped.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds, help_heading = "Limits")]
    pub send_timeout: Duration,

    /// Most open client connections; beyond it new ones wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub max_conns: u32,

    /// Seconds that responses in flight get to finish after SIGTERM or SIGINT.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, help_heading = "Limits")]
    pub grace_period: Duration,

    /// Write access lines to FILE (reopened on SIGHUP) instead of the log on stderr.
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    pub access_log: Option<PathBuf>,
}

/// Whole or fractional seconds, e.g. `10` or `0.5`.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("not a number of seconds: {text}"))?;
    Duration::try_from_secs_f64(value).map_err(|_| format!("not a duration: {text}"))
}
