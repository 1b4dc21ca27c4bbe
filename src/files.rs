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
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::http::{ContentCoding, FileMeta, HttpError, Resource, SafePath};

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
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(Root { canonical })
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Looks `path` up under the root and opens what it names: the file itself, or its
    /// precompressed sibling when `accept_encoding` allows one.
    pub fn find(&self, path: &SafePath, accept_encoding: Option<&str>) -> Result<Found, HttpError> {
        let mut joined = self.canonical.clone();
        joined.extend(path.segments().map(OsStr::from_bytes));
        let canonical = self.canonicalize_inside(&joined)?;
        let metadata = fs::metadata(&canonical).map_err(not_servable)?;
        if metadata.is_dir() {
            if !path.names_directory() {
                return Ok(Found::DirectoryWithoutSlash { location: path.directory_location() });
            }
            let index = canonical.join(INDEX_FILE);
            let canonical_index = self.canonicalize_inside(&index)?;
            return self.open_representation(
                &index,
                &canonical_index,
                INDEX_FILE.as_bytes(),
                accept_encoding,
            );
        }
        if path.names_directory() {
            return Err(HttpError::NotFound); // `/file.txt/` names no directory
        }
        let name = path.segments().last().unwrap_or_default();
        self.open_representation(&joined, &canonical, name, accept_encoding)
    }

    /// Opens the file at `canonical` (reached as `path`), or the best sibling `path.br` /
    /// `path.gz` the client accepts. A sibling that is missing, escapes the root or cannot be
    /// opened just means the file itself is sent.
    fn open_representation(
        &self,
        path: &Path,
        canonical: &Path,
        name: &[u8],
        accept_encoding: Option<&str>,
    ) -> Result<Found, HttpError> {
        let mut has_encoded_variants = false;
        let mut encoded = None;
        for coding in ContentCoding::ALL {
            let mut sibling = path.as_os_str().to_owned();
            sibling.push(coding.file_suffix());
            if !fs::metadata(&sibling).is_ok_and(|m| m.is_file()) {
                continue;
            }
            has_encoded_variants = true;
            if encoded.is_none() && coding.is_accepted(accept_encoding) {
                encoded = self
                    .canonicalize_inside(Path::new(&sibling))
                    .and_then(|sibling| open_regular(&sibling, name, Some(coding)))
                    .ok();
            }
        }
        let mut opened = match encoded {
            Some(opened) => opened,
            None => open_regular(canonical, name, None)?,
        };
        opened.has_encoded_variants = has_encoded_variants;
        Ok(Found::File(opened))
    }

    fn canonicalize_inside(&self, path: &Path) -> Result<PathBuf, HttpError> {
        let canonical = fs::canonicalize(path).map_err(not_servable)?;
        if canonical.starts_with(&self.canonical) { Ok(canonical) } else { Err(HttpError::Forbidden) }
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
                inode: opened.inode,
                name: &opened.name,
                encoding: opened.encoding,
                has_encoded_variants: opened.has_encoded_variants,
            }),
            Found::DirectoryWithoutSlash { location } => {
                Resource::DirectoryWithoutSlash { location: location.clone() }
            }
        }
    }
}

/// A regular file, open for reading, with the metadata of that very open file.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: File,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub inode: u64,
    /// The name the client asked for (`index.html` for a directory), which sets the type.
    pub name: Vec<u8>,
    /// Set when `file` is a precompressed sibling in this coding.
    pub encoding: Option<ContentCoding>,
    /// The requested file has precompressed siblings (sent or not).
    pub has_encoded_variants: bool,
}

fn open_regular(path: &Path, name: &[u8], encoding: Option<ContentCoding>) -> Result<OpenedFile, HttpError> {
    // O_NONBLOCK: opening a FIFO that slipped in after the stat must not block the loop.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(not_servable)?;
    // Trust only the metadata of the file actually opened (no stat-then-open race).
    let metadata = file.metadata().map_err(not_servable)?;
    if !metadata.is_file() {
        return Err(if metadata.is_dir() { HttpError::NotFound } else { HttpError::Forbidden });
    }
    Ok(OpenedFile {
        file,
        len: metadata.len(),
        modified: metadata.modified().ok(),
        inode: metadata.ino(),
        name: name.to_vec(),
        encoding,
        has_encoded_variants: false,
    })
}

fn not_servable(error: io::Error) -> HttpError {
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) => HttpError::Forbidden,
        (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => HttpError::ServiceUnavailable,
        _ => HttpError::NotFound,
    }
}
