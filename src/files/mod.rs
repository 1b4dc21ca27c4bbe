//! The filesystem edge: from a request-target to an open regular file under the root (or its
//! cached contents), or the reason there is none, as an [`HttpError`].
//!
//! The safety rule is simple and checked in one place: the canonical path (every symlink
//! followed) of whatever we open must lie under the canonical root. A symlink may point
//! anywhere inside the root; one that leads outside is refused with 403. With the cache on
//! (event loop only), small files found on symlink-free paths are answered from memory.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub mod cache;

use crate::http::{
    ContentCoding, FileMeta, HttpError, ListingEntry, MAX_LISTED_ENTRIES, Prerendered, Resource, SafePath,
    is_hidden_name, render_listing, resolve_target,
};
use crate::sys;
pub use cache::CachedFile;
use cache::{CachedResource, FileCache};

/// The file served for a path that names a directory.
pub const INDEX_FILE: &str = "index.html";

/// The served directory, canonicalised once at start-up.
pub struct Root {
    canonical: PathBuf,
    /// Small files in memory, when the engine reads the cache's change events.
    cache: Option<Mutex<FileCache>>,
    options: RootOptions,
}

/// What to serve when a path names nothing, and whether directories are listed.
#[derive(Debug, Clone, Default)]
pub struct RootOptions {
    /// Request-target (`/index.html`) served for missing paths without an extension.
    pub spa_fallback: Option<String>,
    /// List directories that have no index file.
    pub listing: bool,
    /// Request-target of the page whose bytes every 404 carries.
    pub not_found_page: Option<String>,
    /// Serve and list dotfiles too (`--hidden`); otherwise they are 404 outside `/.well-known/`.
    pub hidden: bool,
}

impl RootOptions {
    /// A file path relative to the root (`index.html`, `/errors/404.html`) as a target.
    pub fn target_for(file: &str) -> String {
        format!("/{}", file.trim_start_matches('/'))
    }
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
        Ok(Root { canonical, cache: None, options: RootOptions::default() })
    }

    pub fn with_options(self, options: RootOptions) -> Root {
        Root { options, ..self }
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

    /// Resolves a request-target (RFC 9112 §3.2) and finds what it names; when that is
    /// nothing, the single-page-app fallback or the operator's 404 page, if configured.
    pub fn find_target(&self, target: &str, accept_encoding: Option<&str>) -> Result<Found, HttpError> {
        let found = self.find_exact(target, accept_encoding);
        if !matches!(found, Err(HttpError::NotFound)) {
            return found;
        }
        if let Some(fallback) = &self.options.spa_fallback
            && is_client_route(target)
        {
            let found = self.find_exact(fallback, accept_encoding);
            if !matches!(found, Err(HttpError::NotFound)) {
                return found;
            }
        }
        match &self.options.not_found_page {
            Some(page) => match self.find_exact(page, None) {
                Ok(Resource::File(meta, body)) => Ok(Resource::NotFoundPage(meta, body)),
                _ => found,
            },
            None => found,
        }
    }

    /// What `target` itself names: from the cache when it can, otherwise from the filesystem.
    fn find_exact(&self, target: &str, accept_encoding: Option<&str>) -> Result<Found, HttpError> {
        let key = path_of(target).filter(|path| path.starts_with('/'));
        if let (Some(mut cache), Some(key)) = (self.lock_cache(), key) {
            match cache.get(key) {
                Some(Some(hit)) => return Ok(from_cache(hit, accept_encoding)),
                Some(None) => {
                    drop(cache); // known too large to cache: the filesystem path, walked once
                    return self.find(&self.resolve(target)?, accept_encoding);
                }
                None => {}
            }
            // Only what `resolve` allows is ever loaded, so a hit needs no second check.
            let path = self.resolve(target)?;
            if let Some(loaded) = self
                .cacheable_file(&path)
                .and_then(|(file, name)| cache.load(&self.canonical, key, &file, &name))
            {
                return Ok(from_cache(&loaded, accept_encoding));
            }
            drop(cache);
            return self.find(&path, accept_encoding);
        }
        self.find(&self.resolve(target)?, accept_encoding)
    }

    /// The safe path `target` names, if it may be served: hidden paths are 404 unless `--hidden`.
    fn resolve(&self, target: &str) -> Result<SafePath, HttpError> {
        let path = resolve_target(target)?;
        match path.is_hidden() && !self.options.hidden {
            true => Err(HttpError::NotFound),
            false => Ok(path),
        }
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
                return Ok(Resource::DirectoryWithoutSlash { location: path.directory_location() });
            }
            let index = canonical.join(INDEX_FILE);
            let canonical_index = match self.canonicalize_inside(&index) {
                Err(HttpError::NotFound) if self.options.listing => {
                    return list_directory(&canonical, path, self.options.hidden);
                }
                other => other?,
            };
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

    /// Opens the file at `canonical` (reached as `path`), or the best sibling `path.br`,
    /// `path.zst` or `path.gz` the client accepts. A sibling that is missing, escapes the root or cannot be
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
        let (mut meta, body) = match encoded {
            Some(opened) => opened,
            None => open_regular(canonical, name, None)?,
        };
        meta.has_encoded_variants = has_encoded_variants;
        Ok(Resource::File(meta, body))
    }

    fn canonicalize_inside(&self, path: &Path) -> Result<PathBuf, HttpError> {
        let canonical = fs::canonicalize(path).map_err(not_servable)?;
        if canonical.starts_with(&self.canonical) { Ok(canonical) } else { Err(HttpError::Forbidden) }
    }
}

/// What a lookup found; a file to serve carries its own bytes.
pub type Found = Resource<FileBody>;

/// Where a file's bytes come from.
#[derive(Debug)]
pub enum FileBody {
    /// An open file, streamed with sendfile.
    Open(File),
    /// The whole file, from the cache.
    Cached(Arc<CachedFile>),
}

impl Prerendered for FileBody {
    fn full_response_fields(&self) -> Option<&[u8]> {
        match self {
            FileBody::Open(_) => None,
            FileBody::Cached(cached) => Some(&cached.full_response_fields),
        }
    }
}

/// The target without its query. A plain byte loop: targets are short, and `split('?')`
/// costs a `memchr` set-up per request.
fn path_of(target: &str) -> Option<&str> {
    let end = target.bytes().position(|byte| byte == b'?').unwrap_or(target.len());
    target.get(..end)
}

/// A path a single-page app routes on the client: its last segment has no extension
/// (`/users/42`, not `/app.js` or `/logo.png`, whose absence is a real 404).
fn is_client_route(target: &str) -> bool {
    let path = path_of(target).unwrap_or_default();
    !path.rsplit('/').next().unwrap_or_default().contains('.')
}

/// The listing page of the directory at `canonical`, reached as `path`; dotfiles only when
/// `show_hidden`.
fn list_directory(canonical: &Path, path: &SafePath, show_hidden: bool) -> Result<Found, HttpError> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in fs::read_dir(canonical).map_err(not_servable)? {
        let Ok(entry) = entry else { continue };
        if !show_hidden && is_hidden_name(entry.file_name().as_bytes()) {
            continue; // skipped before any stat, and not counted
        }
        if entries.len() == MAX_LISTED_ENTRIES {
            truncated = true;
            break;
        }
        // Follows symlinks like serving does; a dangling one is skipped.
        let Ok(metadata) = fs::metadata(entry.path()) else { continue };
        entries.push(ListingEntry {
            name: entry.file_name().as_bytes().to_vec(),
            is_dir: metadata.is_dir(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
        });
    }
    let mut directory = b"/".to_vec();
    for segment in path.segments() {
        directory.extend_from_slice(segment);
        directory.push(b'/');
    }
    Ok(Resource::Listing(render_listing(&directory, &mut entries, truncated)))
}

/// The representation of a cached resource that `accept_encoding` allows, best first.
fn from_cache(resource: &CachedResource, accept_encoding: Option<&str>) -> Found {
    let chosen = resource
        .variants
        .iter()
        .zip(ContentCoding::ALL)
        .find_map(|(variant, coding)| variant.as_ref().filter(|_| coding.is_accepted(accept_encoding)));
    let cached = chosen.unwrap_or(&resource.identity);
    Resource::File(cached.meta, FileBody::Cached(Arc::clone(cached)))
}

/// Opens the regular file at `path`, served as `name` in `encoding`, with the metadata of the
/// very file opened (no stat-then-open race).
fn open_regular(
    path: &Path,
    name: &[u8],
    encoding: Option<ContentCoding>,
) -> Result<(FileMeta, FileBody), HttpError> {
    let file = sys::open_nonblocking(path).map_err(not_servable)?;
    let metadata = file.metadata().map_err(not_servable)?;
    if !metadata.is_file() {
        return Err(if metadata.is_dir() { HttpError::NotFound } else { HttpError::Forbidden });
    }
    let meta = FileMeta::new(metadata.ino(), metadata.len(), metadata.modified().ok(), name, encoding);
    Ok((meta, FileBody::Open(file)))
}

fn not_servable(error: io::Error) -> HttpError {
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) => HttpError::Forbidden,
        (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => HttpError::ServiceUnavailable,
        _ => HttpError::NotFound,
    }
}
