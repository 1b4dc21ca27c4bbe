//! A bounded cache of small files (contents and metadata), so a hot request costs no path walk,
//! open, stat or sendfile: its body goes out in the same `writev` as its head.
//!
//! It stays exact with inotify. Before a file is read into the cache, every directory from the
//! root down to the file's own is watched; any change the kernel reports in any of them empties
//! the whole cache, and the event loop reads the inotify descriptor before it serves anything
//! else in a turn. Only paths without symlinks are cached, so those watches cover everything a
//! lookup depended on. Blocking engines run without the cache (nobody would read the events).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use log::debug;

use super::changes::Changes;
use super::compress::{CompressionJob, worth_compressing};
use crate::http::{
    AcceptEncoding, Choice, ContentCoding, FNV1A_START, FileMeta, fnv1a, full_response_fields,
};
use crate::status::CacheStats;
use crate::sys;

/// Largest file kept in memory; larger ones stream from disk with sendfile.
pub(crate) const MAX_CACHED_FILE_BYTES: u64 = 32 * 1024;
/// Most cached paths; the cache is emptied when it would grow past this.
const MAX_ENTRIES: usize = 1024;
/// Most compressions waiting for the compressor; beyond it a request just does not queue one.
const MAX_QUEUED_COMPRESSIONS: usize = 64;

/// A file and its precompressed siblings, each read whole beside the metadata its responses
/// need (which already says whether other representations exist), so a hit copies nothing
/// but a reference count.
#[derive(Debug)]
pub(crate) struct CachedResource {
    pub identity: Rc<CachedFile>,
    /// Precompressed siblings, in `ContentCoding::ALL` order.
    pub variants: [Option<Rc<CachedFile>>; ContentCoding::ALL.len()],
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
    pub fn new(meta: FileMeta, content: Box<[u8]>) -> Rc<CachedFile> {
        Rc::new(CachedFile { meta, full_response_fields: full_response_fields(&meta), content })
    }
}

/// What the cache knows about one path: a real, symlink-free regular file.
struct CacheEntry {
    /// The file and its siblings in memory; `None` when one of them is too large to hold, so
    /// its requests go straight to the filesystem instead of walking the path twice.
    held: Option<Rc<CachedResource>>,
    /// The forms the compressor makes of this version of the file, when it has no sibling
    /// and its type and size are worth compressing.
    compressed: Option<Box<CompressedForms>>,
}

struct CompressedForms {
    /// The file itself, which each form's metadata derives from.
    identity: FileMeta,
    /// Its canonical path, for the compressor to read.
    file: PathBuf,
    /// In `ContentCoding::ALL` order.
    forms: [Form; ContentCoding::ALL.len()],
}

/// One coding of a file the server compresses itself.
enum Form {
    /// Not asked for yet, or evicted.
    Absent,
    /// Waiting for the compressor, or in it.
    Queued,
    Ready {
        file: Rc<CachedFile>,
        last_used: u64,
    },
    /// The compressor failed or saved too little: identity until the file changes.
    Useless,
}

/// The compressed forms' share of the cache: a byte budget, spent least recently used first.
struct CompressionBudget {
    budget: usize,
    used: usize,
    /// Ticks once per hit on a compressed form: a form's `last_used` orders the evictions.
    clock: u64,
    queue: VecDeque<CompressionJob>,
}

/// What a request for a cached path gets.
pub enum Lookup {
    /// A representation in memory.
    Hit(Rc<CachedFile>),
    /// The file itself, from the filesystem; its responses say `Vary: Accept-Encoding` when
    /// `varies` (compressed forms exist or will).
    FromDisk { varies: bool },
    /// The client refuses identity and nothing it accepts exists yet.
    NotAcceptable,
}

pub struct FileCache {
    changes: Changes,
    /// Directories already watched.
    watched: HashSet<PathBuf>,
    /// Keyed by the request path exactly as sent (origin-form, query removed). Only existing
    /// files get an entry.
    /// (The first site's paths as they are, another's after its number: see [`site_key`].)
    entries: HashMap<String, CacheEntry, BuildHasherDefault<Fnv1a>>,
    /// Where another site's keys are composed, so a lookup allocates nothing.
    key_buffer: String,
    /// On-the-fly compression, if on.
    compression: Option<CompressionBudget>,
    /// Hits so far, for the status report.
    stats: CacheStats,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache").field("entries", &self.entries.len()).finish_non_exhaustive()
    }
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

/// The cache key of `path` (which starts with `/`) on site number `site`: the path itself on
/// the first site, with no copy; `{site}{path}` on the others, so no two sites' keys meet.
fn site_key<'k>(buffer: &'k mut String, site: usize, path: &'k str) -> &'k str {
    if site == 0 {
        return path;
    }
    buffer.clear();
    let _ = std::fmt::Write::write_fmt(buffer, format_args!("{site}{path}"));
    buffer
}

impl FileCache {
    /// A cache that also keeps up to `compression_budget` bytes of compressed forms, if given.
    pub fn new(compression_budget: Option<usize>) -> io::Result<FileCache> {
        let compression = compression_budget.map(|budget| CompressionBudget {
            budget,
            used: 0,
            clock: 0,
            queue: VecDeque::new(),
        });
        let entries = HashMap::default();
        let key_buffer = String::new();
        let (changes, watched, stats) = (Changes::new()?, HashSet::new(), CacheStats::default());
        Ok(FileCache { changes, watched, entries, key_buffer, compression, stats })
    }

    pub fn fd(&self) -> RawFd {
        self.changes.fd()
    }

    /// The representation of the cached `path` of site `site` that `accept` gets, or `None`
    /// when the path was not looked at yet. Queues the form the client wants most when it is
    /// missing.
    pub fn lookup(&mut self, site: usize, path: &str, accept: &AcceptEncoding) -> Option<Lookup> {
        let found = self.look_up(site, path, accept);
        if let Some(Lookup::Hit(file)) = &found {
            let bytes = file.content.len() as u64;
            self.stats.hits += 1;
            self.stats.hit_bytes += bytes;
            if file.meta.encoding.is_some() {
                self.stats.compressed_hits += 1;
                self.stats.compressed_hit_bytes += bytes;
            }
        }
        found
    }

    /// The hits so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Compressions queued and not yet made.
    pub fn compressions_queued(&self) -> usize {
        self.compression.as_ref().map_or(0, |compression| compression.queue.len())
    }

    fn look_up(&mut self, site: usize, path: &str, accept: &AcceptEncoding) -> Option<Lookup> {
        let key = site_key(&mut self.key_buffer, site, path);
        let entry = self.entries.get_mut(key)?;
        if entry.held.is_none() && entry.compressed.is_none() {
            return Some(Lookup::FromDisk { varies: false }); // the filesystem path weighs siblings
        }
        if accept.is_identity_only() {
            // No coding wanted (most tools send no Accept-Encoding): nothing to weigh or queue.
            return Some(match &entry.held {
                Some(held) => Lookup::Hit(Rc::clone(&held.identity)),
                None => Lookup::FromDisk { varies: entry.compressed.is_some() },
            });
        }
        let held = entry.held.as_deref();
        let forms = entry.compressed.as_deref_mut();
        let sibling = |coding: ContentCoding| held.and_then(|held| held.variants[coding.index()].as_ref());
        let choice = accept.choose(|coding| {
            sibling(coding).is_some()
                || forms
                    .as_ref()
                    .is_some_and(|forms| matches!(forms.forms[coding.index()], Form::Ready { .. }))
        });
        let varies = forms.is_some();
        if let (Some(forms), Some(compression)) = (forms, self.compression.as_mut()) {
            if let Some(wanted) = accept.most_wanted()
                && matches!(forms.forms[wanted.index()], Form::Absent)
                && compression.queue.len() < MAX_QUEUED_COMPRESSIONS
            {
                debug!("compression of {key} ({}) queued", wanted.token());
                forms.forms[wanted.index()] = Form::Queued;
                compression.queue.push_back(CompressionJob {
                    key: key.to_owned(),
                    file: forms.file.clone(),
                    coding: wanted,
                    identity: forms.identity,
                });
            }
            if let Choice::Coded(coding) = choice
                && let Form::Ready { file, last_used } = &mut forms.forms[coding.index()]
            {
                compression.clock += 1;
                *last_used = compression.clock;
                return Some(Lookup::Hit(Rc::clone(file)));
            }
        }
        Some(match (choice, held) {
            (Choice::Coded(coding), _) => match sibling(coding) {
                Some(file) => Lookup::Hit(Rc::clone(file)),
                None => Lookup::FromDisk { varies }, // unreachable: only existing forms are chosen
            },
            (Choice::Identity, Some(held)) => Lookup::Hit(Rc::clone(&held.identity)),
            (Choice::Identity, None) => Lookup::FromDisk { varies },
            (Choice::NothingAcceptable, _) => Lookup::NotAcceptable,
        })
    }

    /// Reads `file` (a canonical path without symlinks under `root`) and its small siblings into
    /// the cache as site `site`'s `path`, or, when one is too large, remembers that the path is
    /// served from the filesystem. Returns `false` when `file` is not a regular file that can
    /// be read.
    pub fn load(&mut self, root: &Path, site: usize, path: &str, file: &Path, name: &[u8]) -> bool {
        let Some(directory) = file.parent() else { return false };
        if self.watch_down_to(root, directory).is_err() {
            return false; // watched before reading: no change can slip between
        }
        let Some(entry) = self.read_entry(file, name) else { return false };
        if self.entries.len() >= MAX_ENTRIES {
            self.clear();
        }
        let key = site_key(&mut self.key_buffer, site, path).to_owned();
        self.entries.insert(key, entry);
        true
    }

    fn read_entry(&self, file: &Path, name: &[u8]) -> Option<CacheEntry> {
        let (identity, content) = read_regular(file, name, None)?;
        let mut variants = ContentCoding::ALL.map(|_| None);
        let mut has_siblings = false;
        let mut holdable = content.is_some();
        for (slot, coding) in variants.iter_mut().zip(ContentCoding::ALL) {
            let mut sibling = file.as_os_str().to_owned();
            sibling.push(coding.file_suffix());
            match fs::symlink_metadata(&sibling) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Ok(meta) if meta.is_file() => match read_regular(Path::new(&sibling), name, Some(coding)) {
                    Some((meta, Some(content))) => *slot = Some((meta, content)),
                    _ => holdable = false,
                },
                _ => holdable = false, // a symlinked or odd sibling: leave it to the uncached path
            }
            has_siblings = true;
        }
        let compressed =
            (!has_siblings && self.compression.is_some() && worth_compressing(&identity)).then(|| {
                Box::new(CompressedForms {
                    identity: FileMeta { has_encoded_variants: true, ..identity },
                    file: file.to_path_buf(),
                    forms: ContentCoding::ALL.map(|_| Form::Absent),
                })
            });
        let has_encoded_variants = has_siblings || compressed.is_some();
        let cached = |(meta, content): (FileMeta, Box<[u8]>)| {
            CachedFile::new(FileMeta { has_encoded_variants, ..meta }, content)
        };
        let held = match (holdable, content) {
            (true, Some(content)) => Some(Rc::new(CachedResource {
                identity: cached((identity, content)),
                variants: variants.map(|v| v.map(cached)),
            })),
            _ => None,
        };
        Some(CacheEntry { held, compressed })
    }

    /// The next compression to run, oldest request first.
    pub fn next_compression_job(&mut self) -> Option<CompressionJob> {
        self.compression.as_mut()?.queue.pop_front()
    }

    /// Keeps what the compressor made for `job` (`None`: it failed), if the entry is still
    /// the version it read and the form saves at least 5%; evicts the least recently used
    /// forms to stay within the budget.
    pub fn install_compressed(&mut self, job: &CompressionJob, compressed: Option<Vec<u8>>) {
        let Some(budget) = self.compression.as_ref().map(|c| c.budget) else { return };
        let worth_keeping = compressed
            .filter(|bytes| (bytes.len() as u64) * 100 <= job.identity.len * 95 && bytes.len() <= budget);
        let awaited =
            self.entries.get(&job.key).and_then(|entry| entry.compressed.as_deref()).is_some_and(|forms| {
                forms.identity.etag == job.identity.etag
                    && matches!(forms.forms[job.coding.index()], Form::Queued)
            });
        if !awaited {
            return; // changed on disk meanwhile: a later request queues the new version
        }
        // Room is made only for a form that will be kept.
        if let Some(bytes) = &worth_keeping {
            while self.compression.as_ref().is_some_and(|c| c.used + bytes.len() > c.budget) {
                if !self.evict_least_recently_used() {
                    break;
                }
            }
        }
        let (Some(compression), Some(forms)) = (
            self.compression.as_mut(),
            self.entries.get_mut(&job.key).and_then(|entry| entry.compressed.as_deref_mut()),
        ) else {
            return;
        };
        forms.forms[job.coding.index()] = match worth_keeping {
            Some(bytes) => {
                compression.used += bytes.len();
                compression.clock += 1;
                let meta = FileMeta {
                    len: bytes.len() as u64,
                    etag: forms.identity.etag.for_coding(job.coding),
                    encoding: Some(job.coding),
                    ..forms.identity
                };
                Form::Ready {
                    file: CachedFile::new(meta, bytes.into_boxed_slice()),
                    last_used: compression.clock,
                }
            }
            None => Form::Useless,
        };
    }

    /// Drops the compressed form used longest ago; `false` when there is none.
    fn evict_least_recently_used(&mut self) -> bool {
        let oldest = self
            .entries
            .values_mut()
            .filter_map(|entry| entry.compressed.as_deref_mut())
            .flat_map(|forms| forms.forms.iter_mut())
            .filter(|form| matches!(form, Form::Ready { .. }))
            .min_by_key(|form| match form {
                Form::Ready { last_used, .. } => *last_used,
                _ => u64::MAX,
            });
        let Some(form) = oldest else { return false };
        if let Form::Ready { file, .. } = std::mem::replace(form, Form::Absent)
            && let Some(compression) = self.compression.as_mut()
        {
            compression.used -= file.content.len();
        }
        true
    }

    /// Forgets everything: entries, compressed forms and compressions not started yet (the
    /// sites were replaced, or a change was seen on disk).
    pub fn clear(&mut self) {
        self.entries.clear();
        if let Some(compression) = self.compression.as_mut() {
            compression.used = 0;
            compression.queue.clear();
        }
    }

    /// Watches the directory holding `link` (a root that is a symlink), so swapping the link
    /// is a change like any other.
    pub fn watch_link(&mut self, link: &Path) -> io::Result<()> {
        let dir = link.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !self.watched.contains(dir) {
            self.changes.watch(dir)?;
            self.watched.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn watch_down_to(&mut self, root: &Path, directory: &Path) -> io::Result<()> {
        let mut dir = directory;
        loop {
            if !self.watched.contains(dir) {
                self.changes.watch(dir)?;
                self.watched.insert(dir.to_path_buf());
            }
            if dir == root {
                return Ok(());
            }
            dir =
                dir.parent().filter(|parent| parent.starts_with(root)).ok_or(io::ErrorKind::InvalidInput)?;
        }
    }

    /// Drains the change events; any change empties the cache. Returns whether it did.
    pub fn process_events(&mut self) -> bool {
        let changed = self.changes.drain();
        if changed && !self.entries.is_empty() {
            debug!("file cache: {} entries dropped after a change on disk", self.entries.len());
            self.clear();
        }
        changed
    }
}

/// The metadata of the regular file at `path` (served as `name`, in `encoding`), and its
/// bytes when it is small enough to hold.
fn read_regular(
    path: &Path,
    name: &[u8],
    encoding: Option<ContentCoding>,
) -> Option<(FileMeta, Option<Box<[u8]>>)> {
    let file = sys::open_nonblocking(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let facts = FileMeta::new(meta.ino(), meta.len(), meta.modified().ok(), name, encoding);
    if meta.len() > MAX_CACHED_FILE_BYTES {
        return Some((facts, None));
    }
    let mut content = Vec::with_capacity(meta.len() as usize + 1);
    // Through `take`, not `File::read_to_end`, which would stat the file a second time for a
    // size hint we already have; one byte more than expected shows a file that grew.
    (&file).take(meta.len() + 1).read_to_end(&mut content).ok()?;
    if content.len() as u64 != meta.len() {
        return None; // changed while we read it
    }
    Some((facts, Some(content.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root holding `name` with `content`, and the canonical paths the cache is given.
    fn root_with(name: &str, content: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(name), content).unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let file = root.join(name);
        (dir, root, file)
    }

    fn hit(lookup: Option<Lookup>) -> Rc<CachedFile> {
        match lookup {
            Some(Lookup::Hit(file)) => file,
            _ => panic!("not a hit"),
        }
    }

    #[test]
    fn a_small_file_is_held_a_large_one_served_from_disk_and_an_unseen_one_unknown() {
        let (_dir, root, small) = root_with("small.txt", b"hello");
        let big = root.join("big.bin");
        fs::write(&big, vec![0u8; MAX_CACHED_FILE_BYTES as usize + 1]).unwrap();
        let mut cache = FileCache::new(None).unwrap();
        let identity = AcceptEncoding::parse(None);
        assert!(cache.lookup(0, "/small.txt", &identity).is_none(), "never looked at");
        assert!(cache.load(&root, 0, "/small.txt", &small, b"small.txt"));
        let file = hit(cache.lookup(0, "/small.txt", &identity));
        assert_eq!(
            (&*file.content, file.meta.len, file.meta.content_type),
            (&b"hello"[..], 5, "text/plain; charset=utf-8")
        );
        assert!(cache.load(&root, 0, "/big.bin", &big, b"big.bin"));
        assert!(matches!(cache.lookup(0, "/big.bin", &identity), Some(Lookup::FromDisk { varies: false })));
        assert!(!cache.load(&root, 0, "/missing", &root.join("missing"), b"missing"), "not a file");
    }

    #[test]
    fn each_site_has_its_own_paths() {
        let (_first_dir, first_root, first) = root_with("a.txt", b"first");
        let (_second_dir, second_root, second) = root_with("a.txt", b"second");
        let mut cache = FileCache::new(None).unwrap();
        let identity = AcceptEncoding::parse(None);
        assert!(cache.load(&first_root, 0, "/a.txt", &first, b"a.txt"));
        assert!(cache.lookup(1, "/a.txt", &identity).is_none(), "site 1 never looked at it");
        assert!(cache.lookup(10, "/a.txt", &identity).is_none());
        assert!(cache.load(&second_root, 1, "/a.txt", &second, b"a.txt"));
        assert_eq!(&*hit(cache.lookup(0, "/a.txt", &identity)).content, b"first");
        assert_eq!(&*hit(cache.lookup(1, "/a.txt", &identity)).content, b"second");
        assert!(cache.lookup(11, "/a.txt", &identity).is_none(), "site 11 is not site 1");
    }

    #[test]
    fn any_change_under_a_watched_directory_empties_the_cache() {
        let (_dir, root, file) = root_with("page.html", b"<p>old</p>");
        let mut cache = FileCache::new(None).unwrap();
        assert!(cache.load(&root, 0, "/page.html", &file, b"page.html"));
        assert!(!cache.process_events(), "nothing changed yet");
        fs::write(&file, b"<p>new</p>").unwrap();
        assert!(cache.process_events());
        assert!(cache.lookup(0, "/page.html", &AcceptEncoding::parse(None)).is_none(), "forgotten");
        assert!(cache.load(&root, 0, "/page.html", &file, b"page.html"));
        assert_eq!(&*hit(cache.lookup(0, "/page.html", &AcceptEncoding::parse(None))).content, b"<p>new</p>");
    }

    #[test]
    fn a_precompressed_sibling_is_held_beside_the_file_and_chosen_by_accept_encoding() {
        let (_dir, root, file) = root_with("app.js", b"console.log(1);");
        fs::write(root.join("app.js.gz"), b"gzipped").unwrap();
        let mut cache = FileCache::new(None).unwrap();
        assert!(cache.load(&root, 0, "/app.js", &file, b"app.js"));
        let gzip = hit(cache.lookup(0, "/app.js", &AcceptEncoding::parse(Some("gzip"))));
        assert_eq!((&*gzip.content, gzip.meta.encoding), (&b"gzipped"[..], Some(ContentCoding::Gzip)));
        let identity = hit(cache.lookup(0, "/app.js", &AcceptEncoding::parse(None)));
        assert_eq!(&*identity.content, b"console.log(1);");
        assert!(identity.meta.has_encoded_variants && gzip.meta.has_encoded_variants, "both vary");
        let refused = AcceptEncoding::parse(Some("br, identity;q=0"));
        assert!(matches!(cache.lookup(0, "/app.js", &refused), Some(Lookup::NotAcceptable)));
    }

    #[test]
    fn a_compressed_form_is_queued_once_kept_when_it_saves_enough_and_then_served() {
        let text: String = (0..400).map(|n| format!("line {n}\n")).collect();
        let (_dir, root, file) = root_with("notes.txt", text.as_bytes());
        let mut cache = FileCache::new(Some(1 << 20)).unwrap();
        assert!(cache.load(&root, 0, "/notes.txt", &file, b"notes.txt"));
        let brotli = AcceptEncoding::parse(Some("br"));
        assert_eq!(
            &*hit(cache.lookup(0, "/notes.txt", &brotli)).content,
            text.as_bytes(),
            "identity until made"
        );
        hit(cache.lookup(0, "/notes.txt", &brotli));
        let job = cache.next_compression_job().expect("queued by the first lookup");
        assert_eq!((job.key.as_str(), job.coding), ("/notes.txt", ContentCoding::Brotli));
        assert!(cache.next_compression_job().is_none(), "queued once, however often asked");
        cache.install_compressed(&job, Some(vec![b'x'; 10]));
        let served = hit(cache.lookup(0, "/notes.txt", &brotli));
        assert_eq!((&*served.content, served.meta.encoding), (&[b'x'; 10][..], Some(ContentCoding::Brotli)));
        // A result that saves less than 5% is not kept: identity until the file changes.
        let gzip = AcceptEncoding::parse(Some("gzip"));
        hit(cache.lookup(0, "/notes.txt", &gzip));
        let job = cache.next_compression_job().unwrap();
        cache.install_compressed(&job, Some(text.as_bytes()[..text.len() - 1].to_vec()));
        assert_eq!(hit(cache.lookup(0, "/notes.txt", &gzip)).meta.encoding, None);
        assert!(cache.next_compression_job().is_none(), "not queued again");
    }
}
