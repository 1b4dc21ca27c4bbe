//! What a long-running service needs around the engine: readiness notification for systemd,
//! a pid file, and giving up root once the privileged work (binding low ports, opening log
//! files) is done.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use log::{info, warn};
use nix::unistd::{self, Uid, User};

/// Tells the service manager (systemd `Type=notify`) how we are doing. Without
/// `NOTIFY_SOCKET` in the environment this does nothing.
pub fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(&[state]) {
        warn!("cannot notify the service manager: {error}");
    }
}

/// A pid file that is removed when dropped (at exit).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn create(path: &Path) -> io::Result<PidFile> {
        fs::write(path, format!("{}\n", std::process::id()))?;
        Ok(PidFile { path: path.to_path_buf() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_file(&self.path) {
            warn!("cannot remove pid file {}: {error}", self.path.display());
        }
    }
}

/// Confines the process to `chroot` (if given) and switches to `user` (if given): its
/// supplementary groups, then its group, then its uid, in the only order that works. Any
/// failure is an error: the caller must not go on serving as root when asked not to.
pub fn drop_privileges(user: Option<&str>, chroot: Option<&Path>) -> io::Result<()> {
    // The user database is read before chroot: /etc/passwd is usually not inside it.
    let account = match user {
        None => None,
        Some(name) => Some(
            User::from_name(name)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user named {name}")))?,
        ),
    };
    if let Some(account) = &account {
        let name = CString::new(account.name.as_str()).map_err(io::Error::other)?;
        crate::sys::initgroups(&name, account.gid)?;
    }
    if let Some(dir) = chroot {
        unistd::chroot(dir)?;
        unistd::chdir("/")?;
        info!("chroot: confined to {}", dir.display());
    }
    if let Some(account) = account {
        unistd::setgid(account.gid)?;
        unistd::setuid(account.uid)?;
        // A process that can still become root did not really drop it.
        if account.uid != Uid::from_raw(0) && unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(io::Error::other("could regain root after dropping it"));
        }
        info!("running as user {} (uid {}, gid {})", account.name, account.uid, account.gid);
    }
    Ok(())
}
