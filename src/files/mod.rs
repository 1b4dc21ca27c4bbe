//! The filesystem edge: from a request-target to an open regular file under the root (or its
//! cached contents), or the reason there is none, as an [`HttpError`].
//!
//! The safety rule is simple and checked in one place: the canonical path (every symlink
//! followed) of whatever we open must lie under the canonical root. A symlink may point
//! anywhere inside the root; one that leads outside is refused with 403. Given a
//! [`FileCache`] (the event loop owns one and lends it to each lookup), small files found on
//! symlink-free paths are answered from memory.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub(crate) mod cache;
mod changes;
pub mod compress;

use crate::http::{
    AcceptEncoding, Choice, ContentCoding, FileMeta, HttpError, ListingEntry, MAX_LISTED_ENTRIES,
    Representation, Resource, SafePath, Target, is_hidden_name, render_listing,
};
use crate::sys;
use cache::Lookup;
pub use cache::{CachedFile, FileCache};
pub use compress::CompressionJob;

/// The file served for a path that names a directory.
pub const INDEX_FILE: &str = "index.html";

/// The served directory: the path as configured, and what it resolves to (every symlink
/// followed), shared by every engine's threads.
///
/// A deploy that swaps a link (`current -> releases/N`, `ln -sfn`) is followed: by the event
/// loop as soon as the link's directory changes (its file cache watches it), by every engine
/// on SIGHUP and when a lookup finds the resolved directory gone. Files are served only from
/// inside the directory the root resolves to at that moment.
#[derive(Debug)]
pub struct Root {
    configured: PathBuf,
    canonical: RwLock<Arc<PathBuf>>,
    /// The resolved directory was missing at the last lookup that looked (said once).
    gone: AtomicBool,
    /// When the last gone/back line was logged (Unix seconds), to keep a flapping root quiet.
    last_said: AtomicU64,
    options: RootOptions,
    /// Which site this is, so the loop's one file cache keeps each site's paths apart.
    cache_slot: usize,
}

/// Least time between two "gone"/"back" lines of one root.
const ROOT_LINES_EVERY: u64 = 10;

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

impl Root {
    /// Fails unless `dir` exists and is a directory.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let canonical = fs::canonicalize(dir)?;
        if !canonical.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(Root {
            configured: dir.to_path_buf(),
            canonical: RwLock::new(Arc::new(canonical)),
            gone: AtomicBool::new(false),
            last_said: AtomicU64::new(0),
            options: RootOptions::default(),
            cache_slot: 0,
        })
    }

    /// The directory the root resolves to now.
    fn current(&self) -> Arc<PathBuf> {
        Arc::clone(&self.canonical.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Whether the configured path is a symlink, whose directory a cache should watch.
    pub fn link(&self) -> Option<&Path> {
        fs::symlink_metadata(&self.configured)
            .is_ok_and(|meta| meta.file_type().is_symlink())
            .then_some(&self.configured)
    }

    /// Resolves the configured path again; true when it now names another directory (a
    /// swapped link), which from now on is the one served.
    pub fn follow(&self) -> bool {
        let Some(fresh) = fs::canonicalize(&self.configured).ok().filter(|dir| dir.is_dir()) else {
            return false;
        };
        let mut current = self.canonical.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if **current == fresh {
            return false;
        }
        log::info!(
            "root {} now resolves to {} (was {})",
            self.configured.display(),
            fresh.display(),
            current.display()
        );
        *current = Arc::new(fresh);
        true
    }

    /// A lookup found nothing: if the root's directory itself is missing, follows the
    /// configured path (a swapped link whose old target was deleted; true: look again) or
    /// says, once, that the root is gone.
    fn note_not_found(&self) -> bool {
        if self.current().is_dir() {
            return false;
        }
        if self.follow() {
            return true;
        }
        if !self.gone.swap(true, Ordering::Relaxed) && self.may_say() {
            log::error!(
                "root {} is gone: every request gets 404 until it is back",
                self.configured.display()
            );
        }
        false
    }

    /// A lookup found something: a root said to be gone is back.
    fn note_found(&self) {
        if self.gone.load(Ordering::Relaxed) && self.gone.swap(false, Ordering::Relaxed) && self.may_say() {
            log::info!("root {} is back", self.configured.display());
        }
    }

    /// At most one gone/back line per [`ROOT_LINES_EVERY`] seconds.
    fn may_say(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.last_said.load(Ordering::Relaxed);
        now >= last + ROOT_LINES_EVERY
            && self.last_said.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Numbered by [`crate::site::Sites`], once per site.
    /// Its site's position among the sites: its cache keys' number, and its status counts'.
    pub(crate) fn slot(&self) -> usize {
        self.cache_slot
    }

    pub(crate) fn set_cache_slot(&mut self, slot: usize) {
        self.cache_slot = slot;
    }

    pub fn with_options(self, options: RootOptions) -> Root {
        Root { options, ..self }
    }

    /// The directory served now.
    pub fn path(&self) -> PathBuf {
        self.current().to_path_buf()
    }

    /// Resolves a request-target (RFC 9112 §3.2) and finds what it names; when that is
    /// nothing, the single-page-app fallback or the operator's 404 page, if configured.
    /// With a `cache`, small files come from memory (and are read into it on a miss).
    pub fn find_target(
        &self,
        target: &Target<'_>,
        accept_encoding: Option<&str>,
        mut cache: Option<&mut FileCache>,
    ) -> Result<Found, HttpError> {
        let accept_encoding = AcceptEncoding::parse(accept_encoding);
        let mut found = self.find_exact(target, &accept_encoding, cache.as_deref_mut());
        match &found {
            // The root was a link, swapped and its old target deleted: asked again in the new.
            Err(HttpError::NotFound) if self.note_not_found() => {
                found = self.find_exact(target, &accept_encoding, cache.as_deref_mut());
            }
            Err(HttpError::NotFound) => {}
            _ => self.note_found(),
        }
        if !matches!(found, Err(HttpError::NotFound)) {
            return found;
        }
        if let Some(fallback) = &self.options.spa_fallback
            && is_client_route(target.raw)
        {
            let found = self.find_exact(&Target::new(fallback), &accept_encoding, cache.as_deref_mut());
            if !matches!(found, Err(HttpError::NotFound)) {
                return found;
            }
        }
        match &self.options.not_found_page {
            Some(page) => match self.find_exact(&Target::new(page), &AcceptEncoding::parse(None), cache) {
                Ok(Resource::File(page)) => Ok(Resource::NotFoundPage(page)),
                _ => found,
            },
            None => found,
        }
    }

    /// What `target` itself names: from the cache when it can, otherwise from the filesystem.
    fn find_exact(
        &self,
        target: &Target<'_>,
        accept: &AcceptEncoding,
        cache: Option<&mut FileCache>,
    ) -> Result<Found, HttpError> {
        let key = path_of(target.raw).filter(|path| path.starts_with('/'));
        let (Some(cache), Some(key)) = (cache, key) else {
            return self.find(self.resolve(target)?, accept);
        };
        let lookup = match cache.lookup(self.cache_slot, key, accept) {
            Some(lookup) => lookup,
            None => {
                // Only what `resolve` allows is ever loaded, so a hit needs no second check.
                let path = self.resolve(target)?;
                let loaded = self.cacheable_file(path).is_some_and(|(file, name)| {
                    cache.load(&self.current(), self.cache_slot, key, &file, &name)
                });
                if !loaded {
                    return self.find(path, accept); // behind a symlink, or not a file: never cached
                }
                cache.lookup(self.cache_slot, key, accept).unwrap_or(Lookup::FromDisk { varies: false })
            }
        };
        match lookup {
            Lookup::Hit(file) => Ok(Resource::File(FileBody::Cached(file))),
            Lookup::NotAcceptable => Err(HttpError::NotAcceptable),
            Lookup::FromDisk { varies } => {
                let found = self.find(self.resolve(target)?, accept);
                match found {
                    Ok(Resource::File(FileBody::Open { file, mut meta })) if varies => {
                        meta.has_encoded_variants = true;
                        Ok(Resource::File(FileBody::Open { file, meta }))
                    }
                    other => other,
                }
            }
        }
    }

    /// The safe path `target` names, if it may be served: hidden paths are 404 unless `--hidden`.
    fn resolve<'p>(&self, target: &'p Target<'_>) -> Result<&'p SafePath, HttpError> {
        let path = target.path()?;
        match path.is_hidden() && !self.options.hidden {
            true => Err(HttpError::NotFound),
            false => Ok(path),
        }
    }

    /// The file `path` would serve, with its type-setting name, if no symlink is involved.
    fn cacheable_file(&self, path: &SafePath) -> Option<(PathBuf, Vec<u8>)> {
        let mut joined = self.current().to_path_buf();
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
    pub fn find(&self, path: &SafePath, accept: &AcceptEncoding) -> Result<Found, HttpError> {
        let mut joined = self.current().to_path_buf();
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
            return self.open_representation(&index, &canonical_index, INDEX_FILE.as_bytes(), accept);
        }
        if path.names_directory() {
            return Err(HttpError::NotFound); // `/file.txt/` names no directory
        }
        let name = path.segments().last().unwrap_or_default();
        self.open_representation(&joined, &canonical, name, accept)
    }

    /// Opens the file at `canonical` (reached as `path`), or the sibling `path.br`, `path.zst`
    /// or `path.gz` that `accept` prefers. A sibling that escapes the root or cannot be opened
    /// counts as missing.
    fn open_representation(
        &self,
        path: &Path,
        canonical: &Path,
        name: &[u8],
        accept: &AcceptEncoding,
    ) -> Result<Found, HttpError> {
        let sibling_path = |coding: ContentCoding| {
            let mut sibling = path.as_os_str().to_owned();
            sibling.push(coding.file_suffix());
            PathBuf::from(sibling)
        };
        let siblings =
            ContentCoding::ALL.map(|coding| fs::metadata(sibling_path(coding)).is_ok_and(|m| m.is_file()));
        let has_encoded_variants = siblings.contains(&true);
        let (file, mut meta) = match accept.choose(|coding| siblings[coding.index()]) {
            Choice::Coded(coding) => self
                .canonicalize_inside(&sibling_path(coding))
                .and_then(|sibling| open_regular(&sibling, name, Some(coding)))
                .or_else(|_| open_regular(canonical, name, None))?,
            Choice::Identity => open_regular(canonical, name, None)?,
            Choice::NothingAcceptable => return Err(HttpError::NotAcceptable),
        };
        meta.has_encoded_variants = has_encoded_variants;
        Ok(Resource::File(FileBody::Open { file, meta: Box::new(meta) }))
    }

    fn canonicalize_inside(&self, path: &Path) -> Result<PathBuf, HttpError> {
        let canonical = fs::canonicalize(path).map_err(not_servable)?;
        if canonical.starts_with(&*self.current()) { Ok(canonical) } else { Err(HttpError::Forbidden) }
    }
}

/// What a lookup found; a file to serve carries its own metadata and bytes.
pub type Found = Resource<FileBody>;

/// A file to serve: its metadata, and where its bytes come from. The metadata sits behind a
/// pointer either way, so a lookup's result moves as a few words.
#[derive(Debug)]
pub enum FileBody {
    /// An open file, streamed with sendfile.
    Open { file: File, meta: Box<FileMeta> },
    /// The whole file, from the cache.
    Cached(Rc<CachedFile>),
}

impl Representation for FileBody {
    fn meta(&self) -> &FileMeta {
        match self {
            FileBody::Open { meta, .. } => meta,
            FileBody::Cached(cached) => &cached.meta,
        }
    }

    fn full_response_fields(&self) -> Option<&[u8]> {
        match self {
            FileBody::Open { .. } => None,
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

/// Opens the regular file at `path`, served as `name` in `encoding`, with the metadata of the
/// very file opened (no stat-then-open race).
fn open_regular(
    path: &Path,
    name: &[u8],
    encoding: Option<ContentCoding>,
) -> Result<(File, FileMeta), HttpError> {
    let file = sys::open_nonblocking(path).map_err(not_servable)?;
    let metadata = file.metadata().map_err(not_servable)?;
    if !metadata.is_file() {
        return Err(if metadata.is_dir() { HttpError::NotFound } else { HttpError::Forbidden });
    }
    let meta = FileMeta::new(metadata.ino(), metadata.len(), metadata.modified().ok(), name, encoding);
    Ok((file, meta))
}

fn not_servable(error: io::Error) -> HttpError {
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) => HttpError::Forbidden,
        (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => HttpError::ServiceUnavailable,
        _ => HttpError::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `find_target` answered, in a word, and the bytes of a file's body when it is one.
    fn outcome(found: Result<Found, HttpError>) -> (String, Vec<u8>) {
        let read = |body: FileBody| match body {
            FileBody::Open { mut file, .. } => {
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut file, &mut bytes).unwrap();
                bytes
            }
            FileBody::Cached(file) => file.content.to_vec(),
        };
        match found {
            Ok(Resource::File(body)) => {
                let coding = body.meta().encoding.map_or("", |coding| coding.token());
                (format!("file{coding}"), read(body))
            }
            Ok(Resource::NotFoundPage(body)) => ("404 page".into(), read(body)),
            Ok(Resource::DirectoryWithoutSlash { location }) => (format!("redirect {location}"), vec![]),
            Ok(Resource::Listing(_)) => ("listing".into(), vec![]),
            Ok(Resource::OnHttps { .. }) => ("on https".into(), vec![]),
            Ok(Resource::Report { .. }) => ("report".into(), vec![]),
            Err(error) => (format!("{error:?}"), vec![]),
        }
    }

    /// A root of every kind of thing a lookup meets, and a secret outside it.
    fn site() -> (tempfile::TempDir, tempfile::TempDir) {
        let (dir, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = dir.path();
        fs::write(root.join("hello.txt"), "hello").unwrap();
        fs::write(root.join("app.js"), "js").unwrap();
        fs::write(root.join("app.js.br"), "brotli").unwrap();
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::write(root.join("docs/index.html"), "docs").unwrap();
        fs::create_dir_all(root.join("bare")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/config"), "secret").unwrap();
        fs::create_dir_all(root.join(".well-known")).unwrap();
        fs::write(root.join(".well-known/security.txt"), "contact").unwrap();
        fs::write(root.join("404.html"), "gone").unwrap();
        fs::write(outside.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("hello.txt"), root.join("inside")).unwrap();
        (dir, outside)
    }

    #[test]
    fn find_target_names_what_a_target_leads_to_with_and_without_the_cache() {
        let (dir, _outside) = site();
        let root = Root::new(dir.path()).unwrap();
        let cases: [(&str, Option<&str>, &str, &[u8]); 12] = [
            ("/hello.txt", None, "file", b"hello"),
            ("/hello.txt?x=1", None, "file", b"hello"),
            ("/app.js", Some("br"), "filebr", b"brotli"),
            ("/app.js", Some("gzip"), "file", b"js"),
            ("/docs", None, "redirect /docs/", b""),
            ("/docs/", None, "file", b"docs"),
            ("/bare/", None, "NotFound", b""),
            ("/hello.txt/", None, "NotFound", b""),
            ("/.git/config", None, "NotFound", b""),
            ("/.well-known/security.txt", None, "file", b"contact"),
            ("/escape", None, "Forbidden", b""),
            ("/inside", None, "file", b"hello"),
        ];
        let mut cache = FileCache::new(None).unwrap();
        for round in 0..3 {
            // Without a cache; then with one, twice: a miss that loads, and a hit.
            for (target, accept, expected, body) in cases {
                let cache = (round > 0).then_some(&mut cache);
                let (what, bytes) = outcome(root.find_target(&Target::new(target), accept, cache));
                assert_eq!(
                    (what.as_str(), &bytes[..]),
                    (expected, body),
                    "{target} {accept:?} round {round}"
                );
            }
        }
    }

    #[test]
    fn options_decide_listings_hidden_files_fallbacks_and_the_404_page() {
        let (dir, _outside) = site();
        let options = RootOptions {
            spa_fallback: Some(RootOptions::target_for("hello.txt")),
            listing: true,
            not_found_page: Some(RootOptions::target_for("404.html")),
            hidden: true,
        };
        let root = Root::new(dir.path()).unwrap().with_options(options);
        let find = |target: &str| outcome(root.find_target(&Target::new(target), None, None));
        assert_eq!(find("/bare/").0, "listing");
        assert_eq!(find("/.git/config"), ("file".into(), b"secret".to_vec()));
        assert_eq!(find("/users/42"), ("file".into(), b"hello".to_vec()), "a client route");
        assert_eq!(find("/missing.js"), ("404 page".into(), b"gone".to_vec()), "not a route: a 404");
        assert_eq!(find("/escape").0, "Forbidden", "options never open the root");
    }
}
