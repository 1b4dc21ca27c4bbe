//! Command-line configuration.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

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
}
