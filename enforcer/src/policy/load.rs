//! Reading a policy from disk: one file or a directory of `*.yaml`/`*.yml` files in name order,
//! size caps checked before anything is parsed, then parse, merge and validate.
//!
//! The bytes are read once and hashed as read, so the digest names exactly what was validated.

use std::{
    collections::{BTreeMap, HashMap, btree_map},
    fs,
    io::Read as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

pub use cache::ReadCache;
use enforcer_common::{Action, Mode};
pub use paths::{PolicySnapshot, SnapshotFile, load_all, load_snapshot, shown_paths};
use sha2::{Digest as _, Sha256};

use super::{
    diag::{Diags, Loc, PolicyError},
    model::{self, Defaults, FileDoc, Limits, Located, PartialDefaults, Policy, Quarantine, Rule},
    validate::{self, Gaps},
    yaml,
};

/// Largest policy file. The parser never expands anything, so its time and memory grow linearly
/// with the bytes read (about 1 s for 15 MB on a small router): the caps bound both. 8 MiB holds
/// some 50,000 devices with inventory; bigger sites split their devices over several files.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Largest policy directory (sum of its policy files): about 200,000 devices.
pub const MAX_TOTAL_BYTES: u64 = 32 * 1024 * 1024;
/// Most policy files in a directory.
pub const MAX_FILES: usize = 256;

mod cache;
mod paths;

/// One source: the name it is hashed under, the name diagnostics show, and its bytes.
pub(crate) struct Source {
    pub rel: String,
    pub display: Arc<str>,
    pub bytes: Vec<u8>,
}

impl Source {
    /// A file held in memory, named `name` both ways.
    fn in_memory(name: &str, text: &str) -> Self {
        Self {
            rel: name.to_owned(),
            display: Arc::from(name),
            bytes: text.as_bytes().to_vec(),
        }
    }
}

/// Read, cap, parse, validate and merge a policy file or directory.
///
/// # Errors
/// [`PolicyError::Io`] when the path cannot be read, [`PolicyError::Invalid`] with every problem
/// found otherwise.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    load_all(&[path])
}

/// Parse a policy held in memory, as if it were the one file `name`. The size caps of [`load`] do
/// not apply (they guard what is read from disk); the parser's work stays linear in the input.
///
/// # Errors
/// [`PolicyError::Invalid`] with every problem found.
pub fn parse_str(name: &str, text: &str) -> Result<Policy, PolicyError> {
    let source = Source::in_memory(name, text);
    from_sources(&Arc::clone(&source.display), &[source], None)
}

/// Parse a policy held in memory as the files of one directory: `(name, text)`, in name order.
/// As [`parse_str`], the size caps of [`load`] do not apply.
///
/// # Errors
/// [`PolicyError::Invalid`] with every problem found.
pub fn parse_files(files: &[(String, String)]) -> Result<Policy, PolicyError> {
    from_sources(&Arc::from("."), &in_memory_sources(files), None)
}

fn in_memory_sources(files: &[(String, String)]) -> Vec<Source> {
    files
        .iter()
        .map(|(name, text)| Source::in_memory(name, text))
        .collect()
}

fn io(path: &Path, source: std::io::Error) -> PolicyError {
    PolicyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_sources(path: &Path) -> Result<Vec<Source>, PolicyError> {
    let meta = fs::metadata(path).map_err(|e| io(path, e))?;
    let root: Arc<str> = Arc::from(path.display().to_string());
    let mut diags = Diags::default();
    if !meta.is_dir() {
        // One file: opened first and checked on the handle, so a FIFO never blocks us.
        let rel = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bytes = read_capped(path, &root, &mut diags)?;
        return diags.finish().map(|_| {
            vec![Source {
                rel,
                display: root,
                bytes,
            }]
        });
    }
    let files = list_dir(path, &root, &mut diags)?;
    let total: u64 = files.iter().map(|f| f.2).sum();
    for (_, file, len) in &files {
        if *len > MAX_FILE_BYTES {
            let at = Loc::whole(&Arc::from(file.display().to_string()));
            diags.error(
                &at,
                format!("file is {len} bytes, over the cap of {MAX_FILE_BYTES}"),
                "split the policy into several files",
            );
        }
    }
    if total > MAX_TOTAL_BYTES {
        diags.error(
            &Loc::whole(&root),
            format!("policy files total {total} bytes, over the cap of {MAX_TOTAL_BYTES}"),
            "remove unused entries",
        );
    }
    if diags.has_errors() {
        return Err(diags.into_error());
    }
    let mut sources = Vec::with_capacity(files.len());
    for (rel, file, _) in files {
        let display: Arc<str> = Arc::from(file.display().to_string());
        let bytes = read_capped(&file, &display, &mut diags)?;
        sources.push(Source {
            rel,
            display,
            bytes,
        });
    }
    diags.finish().map(|_| sources)
}

/// The bytes of one policy file, or an error in `diags` when it is over [`MAX_FILE_BYTES`].
fn read_capped(path: &Path, display: &Arc<str>, diags: &mut Diags) -> Result<Vec<u8>, PolicyError> {
    let (file, len) = open_regular(path)?;
    if len > MAX_FILE_BYTES {
        diags.error(
            &Loc::whole(display),
            format!("file is {len} bytes, over the cap of {MAX_FILE_BYTES}"),
            "split the policy into several files",
        );
        return Ok(Vec::new());
    }
    // Read at most one byte over the cap: a file that grew after the size check is still
    // caught, and never read whole.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        diags.error(
            &Loc::whole(display),
            format!("file is over the cap of {MAX_FILE_BYTES} bytes"),
            "split the policy into several files",
        );
        bytes = Vec::new();
    }
    Ok(bytes)
}

/// Open `path` for reading without blocking and check, on the open handle (so nothing can be
/// swapped in between), that it is a regular file. A FIFO opened for reading would otherwise wait
/// for a writer forever, and a device could stream without end. Returns the file and its size.
///
/// # Errors
/// [`PolicyError::Io`] when it cannot be opened, [`PolicyError::NotRegular`] naming the path
/// and what it is otherwise.
pub(crate) fn open_regular(path: &Path) -> Result<(fs::File, u64), PolicyError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io(path, e))?;
    let meta = file.metadata().map_err(|e| io(path, e))?;
    let ty = meta.file_type();
    if !ty.is_file() {
        let kind = if ty.is_fifo() {
            "a FIFO"
        } else if ty.is_socket() {
            "a socket"
        } else if ty.is_char_device() {
            "a character device"
        } else if ty.is_block_device() {
            "a block device"
        } else if ty.is_dir() {
            "a directory"
        } else {
            "not a file"
        };
        return Err(PolicyError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    Ok((file, meta.len()))
}

/// A policy file's bytes read again (for snippets): a regular file within [`MAX_FILE_BYTES`].
///
/// # Errors
/// As [`open_regular`], and [`PolicyError::Invalid`] when the file is over the cap.
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let mut diags = Diags::default();
    let display: Arc<str> = Arc::from(path.display().to_string());
    let bytes = read_capped(path, &display, &mut diags)?;
    diags.finish().map(|_| bytes)
}

/// The policy files of a directory, in name order (byte order of the names, so it does not
/// depend on the locale). Hidden files and subdirectories are ignored; symlinks are refused, so a
/// pull request cannot point the root daemon at a file outside the repository.
fn list_dir(
    dir: &Path,
    root: &Arc<str>,
    diags: &mut Diags,
) -> Result<Vec<(String, PathBuf, u64)>, PolicyError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if meta.file_type().is_symlink() {
            let at = Loc::whole(&Arc::from(path.display().to_string()));
            diags.error(
                &at,
                "policy files may not be symlinks",
                "copy the file into the policy directory",
            );
        } else if meta.is_file() {
            files.push((name, path, meta.len()));
        }
        if files.len() > MAX_FILES {
            diags.error(
                &Loc::whole(root),
                format!("more than {MAX_FILES} policy files"),
                "merge some of them",
            );
            return Ok(Vec::new());
        }
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if files.is_empty() && !diags.has_errors() {
        diags.error(
            &Loc::whole(root),
            "policy is empty: no *.yaml or *.yml files",
            "add policy files to the directory",
        );
    }
    Ok(files)
}

/// Parse every source (all of them, even after errors), merge and validate; through `cache`, only
/// the sources it does not hold as they are.
pub(crate) fn from_sources(
    root: &Arc<str>,
    sources: &[Source],
    cache: Option<&mut ReadCache>,
) -> Result<Policy, PolicyError> {
    let mut diags = Diags::default();
    let mut gaps = Gaps::default();
    let mut docs = Vec::with_capacity(sources.len());
    let reads = match cache {
        Some(cache) => cache.read(sources),
        None => read_files(&sources.iter().collect::<Vec<_>>()),
    };
    for read in reads {
        gaps.unread_file |= read.unread;
        diags.absorb(read.diags);
        docs.extend(read.doc);
    }
    for doc in &mut docs {
        gaps.unreadable.extend(doc.unreadable.drain(..));
    }
    let root_loc = sources
        .first()
        .map_or_else(|| Loc::whole(root), |s| Loc::new(&s.display, 1, 1));
    let policy = Policy {
        sources: sources.iter().map(|s| s.display.to_string()).collect(),
        digest: digest(sources),
        ..merge(docs, root_loc, &mut diags)
    };
    validate::validate(&policy, &gaps, &mut diags);
    let warnings = diags.finish()?;
    Ok(Policy { warnings, ..policy })
}

/// One file read on its own: its document (`None` when it holds none or is not YAML), what
/// reading it found, and whether the YAML reader left part of it unread.
#[derive(Clone)]
struct FileRead {
    doc: Option<FileDoc>,
    diags: Diags,
    unread: bool,
}

fn read_file(source: &Source) -> FileRead {
    let mut diags = Diags::default();
    let tree = yaml::parse(&source.display, &source.bytes, &mut diags);
    // Any YAML error (even one the reader steps over, such as an alias) leaves the file read in
    // part or not at all; an empty file is no gap.
    let unread = diags.found() > 0;
    let doc = tree.map(|tree| model::file_doc(tree.root(), &mut diags));
    FileRead { doc, diags, unread }
}

/// Every file read, in order. Files are independent until they are merged, so a policy split over
/// several files (as a big site's must be: [`MAX_FILE_BYTES`]) is read on every CPU at once: most
/// of loading 100,000 devices is reading YAML. Memory stays within one tree per CPU besides the
/// documents.
fn read_files(sources: &[&Source]) -> Vec<FileRead> {
    per_file(sources, |s| s.bytes.len(), |s| read_file(s))
}

/// `work` on every item, on every CPU at once, in contiguous runs balanced by `weight` (a file's
/// bytes); the results in item order.
fn per_file<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    crate::parallel::in_runs(items, weight, |run| {
        run.iter().map(&work).collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// sha256 over each file's name, length and bytes, in read order; hex.
fn digest(sources: &[Source]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        // Name and length first, so moving bytes between files changes the digest.
        hasher.update(source.rel.as_bytes());
        hasher.update([0]);
        hasher.update((source.bytes.len() as u64).to_be_bytes());
        hasher.update(&source.bytes);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Merge files; a name defined twice (in one file or two) is an error citing both places.
fn merge(docs: Vec<FileDoc>, root: Loc, diags: &mut Diags) -> Policy {
    let mut policy = empty(root);
    let mut defaults_at: Option<Loc> = None;
    let mut limits_at: Option<Loc> = None;
    let mut rule_names = HashMap::<String, Loc>::new();
    for doc in docs {
        insert_unique(
            &mut policy.zones,
            "zone",
            doc.zones,
            |z| (&z.name, &z.loc),
            diags,
        );
        insert_unique(
            &mut policy.networks,
            "network",
            doc.networks,
            |n| (&n.name, &n.loc),
            diags,
        );
        insert_unique(
            &mut policy.devices,
            "device",
            doc.devices,
            |d| (&d.name, &d.loc),
            diags,
        );
        insert_unique(
            &mut policy.interfaces,
            "interface",
            doc.interfaces,
            |i| (&i.name, &i.loc),
            diags,
        );
        merge_rules(&mut policy.rules, doc.rules, &mut rule_names, diags);
        // Tests and guards add up across files: each says something of its own.
        policy.tests.extend(doc.tests);
        policy.guards.extend(doc.guards);
        if let Some((at, d)) = doc.defaults {
            merge_defaults(&mut policy.defaults, &mut defaults_at, at, d, diags);
        }
        if let Some(q) = doc.quarantine {
            merge_quarantine(&mut policy.quarantine, q, diags);
        }
        if let Some(dns) = doc.dns {
            if let Some(first) = &policy.dns {
                diags.error(
                    &dns.loc,
                    format!("`dns` is defined twice (first at {})", first.loc),
                    "keep one dns section",
                );
            } else {
                policy.dns = Some(dns);
            }
        }
        if let Some((at, limits)) = doc.limits {
            if let Some(first) = &limits_at {
                diags.error(
                    &at,
                    format!("`limits` is defined twice (first at {first})"),
                    "keep one limits section",
                );
            } else {
                policy.limits = limits;
                limits_at = Some(at);
            }
        }
    }
    policy
}

/// A policy with nothing defined and every default in place (see `docs/policy.md`).
fn empty(root: Loc) -> Policy {
    Policy {
        sources: Vec::new(),
        digest: String::new(),
        zones: BTreeMap::new(),
        networks: BTreeMap::new(),
        devices: BTreeMap::new(),
        rules: Vec::new(),
        defaults: Defaults {
            action: Action::Deny,
            mode: Mode::Enforce,
            unknown: Located {
                value: "quarantine".to_owned(),
                loc: root.clone(),
            },
            spoofed: Action::Deny,
        },
        quarantine: None,
        limits: Limits::default(),
        interfaces: BTreeMap::new(),
        tests: Vec::new(),
        guards: Vec::new(),
        dns: None,
        warnings: Vec::new(),
        root,
    }
}

/// Rules keep read order; a name used twice keeps the first rule.
fn merge_rules(
    rules: &mut Vec<Rule>,
    more: Vec<Rule>,
    names: &mut HashMap<String, Loc>,
    diags: &mut Diags,
) {
    for r in more {
        if let Some(first) = names.get(&r.name) {
            diags.error(
                &r.loc,
                format!("rule `{}` is defined twice (first at {first})", r.name),
                "rule names are unique across all files; rename one",
            );
        } else {
            names.insert(r.name.clone(), r.loc.clone());
            rules.push(r);
        }
    }
}

/// One `defaults` section may set each field; what it leaves out keeps the built-in default.
fn merge_defaults(
    base: &mut Defaults,
    defaults_at: &mut Option<Loc>,
    at: Loc,
    d: PartialDefaults,
    diags: &mut Diags,
) {
    if let Some(first) = defaults_at {
        diags.error(
            &at,
            format!("`defaults` is defined twice (first at {first})"),
            "keep one defaults section",
        );
        return;
    }
    *defaults_at = Some(at);
    base.action = d.action.unwrap_or(base.action);
    base.mode = d.mode.unwrap_or(base.mode);
    base.spoofed = d.spoofed.unwrap_or(base.spoofed);
    if let Some(u) = d.unknown {
        base.unknown = u;
    }
}

fn merge_quarantine(section: &mut Option<Quarantine>, q: Quarantine, diags: &mut Diags) {
    if let Some(first) = section {
        diags.error(
            &q.loc,
            format!("`quarantine` is defined twice (first at {})", first.loc),
            "keep one quarantine section",
        );
    } else {
        *section = Some(q);
    }
}

/// Add `items` to `map` by name; a name already there is an error citing both places.
fn insert_unique<T>(
    map: &mut BTreeMap<String, T>,
    kind: &str,
    items: Vec<T>,
    name_and_loc: impl Fn(&T) -> (&String, &Loc),
    diags: &mut Diags,
) {
    for item in items {
        let (name, loc) = name_and_loc(&item);
        // One walk of the map per item, not a look-up and then an insert.
        match map.entry(name.clone()) {
            btree_map::Entry::Occupied(first) => {
                let (_, first_loc) = name_and_loc(first.get());
                diags.error(
                    loc,
                    format!("{kind} `{name}` is defined twice (first at {first_loc})"),
                    format!("{kind} names are unique across all files; remove or rename one"),
                );
            }
            btree_map::Entry::Vacant(slot) => {
                slot.insert(item);
            }
        }
    }
}

#[cfg(test)]
mod tests;
