//! The filesystem edge: from a [`SafePath`] to an open regular file under the root, or the
//! reason there is none, as an [`HttpError`].
//!
//! The safety rule is simple and checked in one place: the canonical path (every symlink
//! followed) of whatever we open must lie under the canonical root. A symlink may point
//! anywhere inside the root; one that leads outside is refused with 403.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::http::{FileMeta, HttpError, Resource, SafePath};

/// The file served for a path that names a directory.
pub const INDEX_FILE: &str = "index.html";

/// The served directory, canonicalised once at start-up.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

impl Root {
    /// Fails unless `dir` exists and is a directory.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let canonical = fs::canonicalize(dir)?;
        if !canonical.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Root { canonical })
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Looks `path` up under the root and opens what it names.
    pub fn find(&self, path: &SafePath) -> Result<Found, HttpError> {
        let mut joined = self.canonical.clone();
        joined.extend(path.segments().map(OsStr::from_bytes));
        let canonical = self.canonicalize_inside(&joined)?;
        let metadata = fs::metadata(&canonical).map_err(not_servable)?;
        if metadata.is_dir() {
            if !path.names_directory() {
                return Ok(Found::DirectoryWithoutSlash {
                    location: path.directory_location(),
                });
            }
            let index = self.canonicalize_inside(&canonical.join(INDEX_FILE))?;
            return open_regular(&index, INDEX_FILE.as_bytes().to_vec());
        }
        if path.names_directory() {
            return Err(HttpError::NotFound); // `/file.txt/` names no directory
        }
        let name = path.segments().last().unwrap_or_default().to_vec();
        open_regular(&canonical, name)
    }

    fn canonicalize_inside(&self, path: &Path) -> Result<PathBuf, HttpError> {
        let canonical = fs::canonicalize(path).map_err(not_servable)?;
        if canonical.starts_with(&self.canonical) {
            Ok(canonical)
        } else {
            Err(HttpError::Forbidden)
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Found {
    File(OpenedFile),
    /// A directory asked for without its trailing slash; 301 to `location`.
    DirectoryWithoutSlash {
        location: String,
    },
}

impl Found {
    /// The plain facts the decision function needs; the file handle stays here.
    pub fn resource(&self) -> Resource<'_> {
        match self {
            Found::File(opened) => Resource::File(FileMeta {
                len: opened.len,
                modified: opened.modified,
                name: &opened.name,
            }),
            Found::DirectoryWithoutSlash { location } => Resource::DirectoryWithoutSlash {
                location: location.clone(),
            },
        }
    }
}

/// A regular file, open for reading, with the metadata of that very open file.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: File,
    pub len: u64,
    pub modified: Option<SystemTime>,
    /// The name the client asked for (`index.html` for a directory), which sets the type.
    pub name: Vec<u8>,
}

fn open_regular(path: &Path, name: Vec<u8>) -> Result<Found, HttpError> {
    // O_NONBLOCK: opening a FIFO that slipped in after the stat must not block the loop.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(not_servable)?;
    // Trust only the metadata of the file actually opened (no stat-then-open race).
    let metadata = file.metadata().map_err(not_servable)?;
    if !metadata.is_file() {
        return Err(if metadata.is_dir() {
            HttpError::NotFound
        } else {
            HttpError::Forbidden
        });
    }
    Ok(Found::File(OpenedFile {
        file,
        len: metadata.len(),
        modified: metadata.modified().ok(),
        name,
    }))
}

fn not_servable(error: io::Error) -> HttpError {
    match error.kind() {
        io::ErrorKind::PermissionDenied => HttpError::Forbidden,
        _ => HttpError::NotFound,
    }
}
