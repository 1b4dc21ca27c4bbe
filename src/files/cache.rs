//! A bounded cache of small files (contents and metadata), so a hot request costs no path walk,
//! open, stat or sendfile: its body goes out in the same `writev` as its head.
//!
//! It stays exact with inotify. Before a file is read into the cache, every directory from the
//! root down to the file's own is watched; any change the kernel reports in any of them empties
//! the whole cache, and the event loop reads the inotify descriptor before it serves anything
//! else in a turn. Only paths without symlinks are cached, so those watches cover everything a
//! lookup depended on. Blocking engines run without the cache (nobody would read the events).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inotify::{Inotify, WatchMask};
use log::{debug, warn};

use crate::http::{ContentCoding, FNV1A_START, FileMeta, fnv1a, full_response_fields};
use crate::sys;

/// Largest file kept in memory; larger ones stream from disk with sendfile.
pub const MAX_CACHED_FILE_BYTES: u64 = 32 * 1024;
/// Most cached paths; the cache is emptied when it would grow past this.
const MAX_ENTRIES: usize = 1024;

/// Everything a request for one path can be answered with: the file and its precompressed
/// siblings, each read whole beside the metadata its responses need (which already says
/// whether siblings exist), so a hit copies nothing but a reference count.
#[derive(Debug)]
pub struct CachedResource {
    pub identity: Arc<CachedFile>,
    /// Precompressed siblings, in `ContentCoding::ALL` order.
    pub variants: [Option<Arc<CachedFile>>; ContentCoding::ALL.len()],
}

/// One representation in memory: its metadata, the header fields of its full responses
/// rendered once, and its bytes.
#[derive(Debug)]
pub struct CachedFile {
    pub meta: FileMeta,
    pub full_response_fields: Box<[u8]>,
    pub content: Box<[u8]>,
}

impl CachedFile {
    pub fn new(meta: FileMeta, content: Box<[u8]>) -> Arc<CachedFile> {
        Arc::new(CachedFile { meta, full_response_fields: full_response_fields(&meta), content })
    }
}

pub struct FileCache {
    inotify: Inotify,
    /// Directories already watched.
    watched: HashSet<PathBuf>,
    /// Keyed by the request path exactly as sent (origin-form, query removed). `None` marks a
    /// real, symlink-free file too large to cache, so its requests skip straight to sendfile
    /// instead of walking the path twice; only existing files get such an entry.
    entries: HashMap<String, Option<Arc<CachedResource>>, BuildHasherDefault<Fnv1a>>,
}

/// FNV-1a for the cache's keys: a few instructions per byte of a short path, where SipHash
/// took ~200 per lookup. SipHash guards a map against keys chosen to collide, but only files
/// that exist on disk become keys here, so clients cannot pick them.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(FNV1A_START)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FileCache {
    pub fn new() -> io::Result<FileCache> {
        let entries = HashMap::default();
        Ok(FileCache { inotify: Inotify::init()?, watched: HashSet::new(), entries })
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    /// `Some(Some(_))`: cached; `Some(None)`: known not cacheable; `None`: not looked at yet.
    pub fn get(&self, key: &str) -> Option<Option<&CachedResource>> {
        self.entries.get(key).map(Option::as_deref)
    }

    /// Reads `file` (a canonical path without symlinks under `root`) and its small siblings into
    /// the cache under `key`. Returns `None` when any of them is too large, is not a regular
    /// file, or cannot be read; the key is then remembered as not cacheable until the next
    /// change on disk.
    pub fn load(&mut self, root: &Path, key: &str, file: &Path, name: &[u8]) -> Option<Arc<CachedResource>> {
        let directory = file.parent()?;
        self.watch_down_to(root, directory).ok()?; // before reading: no change can slip between
        let loaded = self.read_resource(file, name);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(key.to_owned(), loaded.clone());
        loaded
    }

    fn read_resource(&self, file: &Path, name: &[u8]) -> Option<Arc<CachedResource>> {
        let identity = read_small(file, name, None)?;
        let mut variants = ContentCoding::ALL.map(|_| None);
        for (slot, coding) in variants.iter_mut().zip(ContentCoding::ALL) {
            let mut sibling = file.as_os_str().to_owned();
            sibling.push(coding.file_suffix());
            match fs::symlink_metadata(&sibling) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Ok(meta) if meta.is_file() => {
                    *slot = Some(read_small(Path::new(&sibling), name, Some(coding))?)
                }
                _ => return None, // a symlinked or odd sibling: leave it to the uncached path
            }
        }
        let has_encoded_variants = variants.iter().any(Option::is_some);
        let cached = |(meta, content): (FileMeta, Box<[u8]>)| {
            CachedFile::new(FileMeta { has_encoded_variants, ..meta }, content)
        };
        Some(Arc::new(CachedResource {
            identity: cached(identity),
            variants: variants.map(|v| v.map(cached)),
        }))
    }

    fn watch_down_to(&mut self, root: &Path, directory: &Path) -> io::Result<()> {
        let mask = WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        let mut dir = directory;
        loop {
            if !self.watched.contains(dir) {
                self.inotify.watches().add(dir, mask)?;
                self.watched.insert(dir.to_path_buf());
            }
            if dir == root {
                return Ok(());
            }
            dir =
                dir.parent().filter(|parent| parent.starts_with(root)).ok_or(io::ErrorKind::InvalidInput)?;
        }
    }

    /// Drains the inotify descriptor; any change empties the cache. Returns whether it did.
    pub fn process_events(&mut self) -> bool {
        let mut buffer = [0u8; 4096];
        let mut changed = false;
        loop {
            match self.inotify.read_events(&mut buffer) {
                Ok(events) => changed |= events.count() > 0,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    warn!("inotify: {error}; emptying the file cache");
                    changed = true;
                    break;
                }
            }
        }
        if changed && !self.entries.is_empty() {
            debug!("file cache: {} entries dropped after a change on disk", self.entries.len());
            self.entries.clear();
        }
        changed
    }
}

/// The whole of the small regular file at `path` (served as `name`, in `encoding`).
fn read_small(path: &Path, name: &[u8], encoding: Option<ContentCoding>) -> Option<(FileMeta, Box<[u8]>)> {
    let file = sys::open_nonblocking(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_CACHED_FILE_BYTES {
        return None;
    }
    let mut content = Vec::with_capacity(meta.len() as usize + 1);
    // Through `take`, not `File::read_to_end`, which would stat the file a second time for a
    // size hint we already have; one byte more than expected shows a file that grew.
    (&file).take(meta.len() + 1).read_to_end(&mut content).ok()?;
    if content.len() as u64 != meta.len() {
        return None; // changed while we read it
    }
    let facts = FileMeta::new(meta.ino(), meta.len(), meta.modified().ok(), name, encoding);
    Some((facts, content.into()))
}
