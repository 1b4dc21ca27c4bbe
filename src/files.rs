//! The filesystem edge: from a request-target to an open regular file under the root (or its
//! cached contents), or the reason there is none, as an [`HttpError`].
//!
//! The safety rule is simple and checked in one place: the canonical path (every symlink
//! followed) of whatever we open must lie under the canonical root. A symlink may point
//! anywhere inside the root; one that leads outside is refused with 403. With the cache on
//! (event loop only), small files found on symlink-free paths are answered from memory.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::file_cache::{CachedResource, FileCache};
use crate::http::{ContentCoding, FileMeta, HttpError, Resource, SafePath, resolve_target};

/// The file served for a path that names a directory.
pub const INDEX_FILE: &str = "index.html";

/// The served directory, canonicalised once at start-up.
pub struct Root {
    canonical: PathBuf,
    /// Small files in memory, when the engine reads the cache's change events.
    cache: Option<Mutex<FileCache>>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("canonical", &self.canonical)
            .field("cached", &self.cache.is_some())
            .finish()
    }
}

impl Root {
    /// Fails unless `dir` exists and is a directory.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let canonical = fs::canonicalize(dir)?;
        if !canonical.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(Root { canonical, cache: None })
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Turns the small-file cache on; the caller must call [`Root::process_cache_events`]
    /// whenever the returned descriptor is readable, before serving anything else.
    pub fn enable_cache(&mut self) -> io::Result<RawFd> {
        let cache = FileCache::new()?;
        let fd = cache.fd();
        self.cache = Some(Mutex::new(cache));
        Ok(fd)
    }

    pub fn process_cache_events(&self) {
        if let Some(mut cache) = self.lock_cache() {
            cache.process_events();
        }
    }

    fn lock_cache(&self) -> Option<MutexGuard<'_, FileCache>> {
        self.cache.as_ref().map(|cache| cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Resolves a request-target (RFC 9112 §3.2) and finds what it names: from the cache when
    /// it can, otherwise from the filesystem.
    pub fn find_target(&self, target: &str, accept_encoding: Option<&str>) -> Result<Found, HttpError> {
        let key = target.split('?').next().filter(|path| path.starts_with('/'));
        if let (Some(mut cache), Some(key)) = (self.lock_cache(), key) {
            match cache.get(key) {
                Some(Some(hit)) => return Ok(Found::File(from_cache(&hit, accept_encoding))),
                Some(None) => {
                    drop(cache); // known too large to cache: the filesystem path, walked once
                    return self.find(&resolve_target(target)?, accept_encoding);
                }
                None => {}
            }
            let path = resolve_target(target)?;
            if let Some(loaded) = self
                .cacheable_file(&path)
                .and_then(|(file, name)| cache.load(&self.canonical, key, &file, &name))
            {
                return Ok(Found::File(from_cache(&loaded, accept_encoding)));
            }
            drop(cache);
            return self.find(&path, accept_encoding);
        }
        self.find(&resolve_target(target)?, accept_encoding)
    }

    /// The file `path` would serve, with its type-setting name, if no symlink is involved.
    fn cacheable_file(&self, path: &SafePath) -> Option<(PathBuf, Vec<u8>)> {
        let mut joined = self.canonical.clone();
        joined.extend(path.segments().map(OsStr::from_bytes));
        let (file, name) = if path.names_directory() {
            (joined.join(INDEX_FILE), INDEX_FILE.as_bytes().to_vec())
        } else {
            let name = path.segments().last()?.to_vec();
            (joined, name)
        };
        (fs::canonicalize(&file).ok()? == file).then_some((file, name))
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

/// A regular file to send, with the metadata of that very file.
#[derive(Debug)]
pub struct OpenedFile {
    pub body: FileBody,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub inode: u64,
    /// The name the client asked for (`index.html` for a directory), which sets the type.
    pub name: Arc<[u8]>,
    /// Set when the body is a precompressed sibling in this coding.
    pub encoding: Option<ContentCoding>,
    /// The requested file has precompressed siblings (sent or not).
    pub has_encoded_variants: bool,
}

/// Where a file's bytes come from.
#[derive(Debug)]
pub enum FileBody {
    /// An open file, streamed with sendfile.
    Open(File),
    /// The whole file, from the cache.
    Cached(Arc<[u8]>),
}

/// The representation of a cached resource that `accept_encoding` allows, best first.
fn from_cache(resource: &CachedResource, accept_encoding: Option<&str>) -> OpenedFile {
    let chosen = resource.variants.iter().zip(ContentCoding::ALL).find_map(|(variant, coding)| {
        variant.as_ref().filter(|_| coding.is_accepted(accept_encoding)).map(|v| (v, Some(coding)))
    });
    let (file, encoding) = chosen.unwrap_or((&resource.identity, None));
    OpenedFile {
        body: FileBody::Cached(Arc::clone(&file.content)),
        len: file.content.len() as u64,
        modified: file.modified,
        inode: file.inode,
        name: Arc::clone(&resource.name),
        encoding,
        has_encoded_variants: resource.variants.iter().any(Option::is_some),
    }
}

/// Opens for reading without following a FIFO into a blocking open (`O_NONBLOCK` is harmless
/// for regular files).
pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

fn open_regular(path: &Path, name: &[u8], encoding: Option<ContentCoding>) -> Result<OpenedFile, HttpError> {
    let file = open_nonblocking(path).map_err(not_servable)?;
    // Trust only the metadata of the file actually opened (no stat-then-open race).
    let metadata = file.metadata().map_err(not_servable)?;
    if !metadata.is_file() {
        return Err(if metadata.is_dir() { HttpError::NotFound } else { HttpError::Forbidden });
    }
    Ok(OpenedFile {
        body: FileBody::Open(file),
        len: metadata.len(),
        modified: metadata.modified().ok(),
        inode: metadata.ino(),
        name: name.into(),
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
