//! The process's diagnostics: env_logger (`RUST_LOG`, `info` by default), with one rule on
//! top. rustls warns about what a peer did (an IP address sent as SNI, a TLS 1.2
//! renegotiation, an unexpected message or alert); on a public server that is one line per
//! misbehaving client, thousands an hour, burying what the operator must see. Those lines
//! are logged at debug instead: `RUST_LOG=debug` still shows every one.

use log::{Level, Log, Metadata, Record};

/// env_logger's logger, with rustls' warnings demoted to debug.
pub struct Logger(env_logger::Logger);

impl Logger {
    /// Installs `logger` as the process's logger.
    pub fn install(logger: env_logger::Logger) -> Result<(), log::SetLoggerError> {
        let max = logger.filter();
        log::set_boxed_logger(Box::new(Logger(logger)))?;
        log::set_max_level(max);
        Ok(())
    }
}

/// Whether a line is about a peer's misbehaviour: every warning rustls logs in a server is.
fn about_the_peer(target: &str, level: Level) -> bool {
    level == Level::Warn && (target == "rustls" || target.starts_with("rustls::"))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match about_the_peer(metadata.target(), metadata.level()) {
            true => {
                self.0.enabled(&Metadata::builder().level(Level::Debug).target(metadata.target()).build())
            }
            false => self.0.enabled(metadata),
        }
    }

    fn log(&self, record: &Record<'_>) {
        if !about_the_peer(record.target(), record.level()) {
            return self.0.log(record);
        }
        let demoted = Record::builder()
            .level(Level::Debug)
            .target(record.target())
            .args(*record.args())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        self.0.log(&demoted);
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rustls_warnings_are_the_peers() {
        assert!(about_the_peer("rustls::msgs::handshake", Level::Warn));
        assert!(about_the_peer("rustls", Level::Warn));
        assert!(!about_the_peer("rustls::msgs::handshake", Level::Error));
        assert!(!about_the_peer("rustlsx", Level::Warn));
        assert!(!about_the_peer("onepoll::tls", Level::Warn));
    }
}
