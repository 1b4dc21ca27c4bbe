//! What tells the file cache that something under the root changed: inotify on Linux. Where
//! there is none (macOS, FreeBSD), `Changes::new` fails, so the cache stays off (and the
//! compressed forms that live in it): every request is then looked up on disk, which is
//! always exact.

use std::io;
use std::os::fd::RawFd;
use std::path::Path;

#[cfg(target_os = "linux")]
use crate::transport::nonblocking;

#[cfg(target_os = "linux")]
pub(super) struct Changes {
    inotify: inotify::Inotify,
}

#[cfg(target_os = "linux")]
impl Changes {
    pub(super) fn new() -> io::Result<Changes> {
        Ok(Changes { inotify: inotify::Inotify::init()? })
    }

    /// Readable when a change is pending.
    pub(super) fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.inotify.as_raw_fd()
    }

    /// Reports any change to `directory`'s entries or the files in it, and its own removal.
    pub(super) fn watch(&mut self, directory: &Path) -> io::Result<()> {
        use inotify::WatchMask;
        let mask = WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        self.inotify.watches().add(directory, mask).map(|_| ())
    }

    /// Takes every pending event: whether there was any (a read error counts as one).
    pub(super) fn drain(&mut self) -> bool {
        let mut buffer = [0u8; 4096];
        let mut changed = false;
        loop {
            match nonblocking(|| self.inotify.read_events(&mut buffer).map(|events| events.count())) {
                Ok(Some(events)) => changed |= events > 0,
                Ok(None) => return changed,
                Err(error) => {
                    log::warn!("inotify: {error}; emptying the file cache");
                    return true;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) struct Changes;

#[cfg(not(target_os = "linux"))]
impl Changes {
    pub(super) fn new() -> io::Result<Changes> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no inotify on this system"))
    }

    pub(super) fn fd(&self) -> RawFd {
        -1
    }

    pub(super) fn watch(&mut self, _directory: &Path) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub(super) fn drain(&mut self) -> bool {
        true
    }
}
