//! Where access lines go: the `log` facade (stderr via env_logger, level info) by default, or
//! a file of their own that SIGHUP reopens, so logrotate can move it away.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use log::info;

use crate::output::AccessRecord;

#[derive(Debug)]
pub struct AccessLog {
    /// `None`: lines go to the logger. The mutex is uncontended in the event loop and lets
    /// threaded engines share one log.
    file: Mutex<Option<(PathBuf, File)>>,
}

impl AccessLog {
    pub fn to_logger() -> AccessLog {
        AccessLog { file: Mutex::new(None) }
    }

    pub fn to_file(path: &Path) -> io::Result<AccessLog> {
        let file = open_append(path)?;
        Ok(AccessLog { file: Mutex::new(Some((path.to_path_buf(), file))) })
    }

    /// Whether lines go anywhere; when not, callers skip building them.
    pub fn is_enabled(&self) -> bool {
        log::log_enabled!(log::Level::Info)
            || self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    /// One line for a finished (or abandoned) response. A failing write is reported on the
    /// logger, never allowed to stop serving.
    pub fn record(&self, label: &dyn Display, access: &AccessRecord) {
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if file.is_none() && !log::log_enabled!(log::Level::Info) {
            return; // access lines are off: build nothing
        }
        let peer = access.peer.map_or_else(|| "-".to_owned(), |peer| peer.to_string());
        let line =
            format!("{label} {peer} \"{}\" {} {}", access.request_line, access.status, access.bytes_sent);
        match file.as_mut() {
            None => info!("{line}"),
            Some((path, file)) => {
                let stamped = format!("{} {line}\n", httpdate::fmt_http_date(SystemTime::now()));
                if let Err(error) = file.write_all(stamped.as_bytes()) {
                    log::error!("access log {}: {error}", path.display());
                }
            }
        }
    }

    /// Reopens the file at its path (after logrotate moved the old one away).
    pub fn reopen(&self) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((path, current)) = file.as_mut() {
            *current = open_append(path)?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
