//! Reading a policy from disk: one file or a directory of `*.yaml`/`*.yml` files in name order,
//! size caps checked before anything is parsed, then parse, merge and validate.
//!
//! The bytes are read once and hashed as read, so the digest names exactly what was validated.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Read as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

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

mod paths;

/// One source: the name it is hashed under, the name diagnostics show, and its bytes.
pub(crate) struct Source {
    pub rel: String,
    pub display: Arc<str>,
    pub bytes: Vec<u8>,
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
    let display: Arc<str> = Arc::from(name);
    let source = Source {
        rel: name.to_owned(),
        display: Arc::clone(&display),
        bytes: text.as_bytes().to_vec(),
    };
    from_sources(&display, &[source])
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

/// Parse every source (all of them, even after errors), merge and validate.
pub(crate) fn from_sources(root: &Arc<str>, sources: &[Source]) -> Result<Policy, PolicyError> {
    let mut diags = Diags::default();
    let mut gaps = Gaps::default();
    let mut docs = Vec::with_capacity(sources.len());
    for source in sources {
        let before = diags.found();
        let tree = yaml::parse(&source.display, &source.bytes, &mut diags);
        // Any YAML error (even one the reader steps over, such as an alias) leaves the file
        // read in part or not at all; an empty file is no gap.
        gaps.unread_file |= diags.found() > before;
        if let Some(tree) = tree {
            docs.push(model::file_doc(tree.root(), &mut diags));
        }
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
        if let Some(first) = map.get(name) {
            let (_, first_loc) = name_and_loc(first);
            diags.error(
                loc,
                format!("{kind} `{name}` is defined twice (first at {first_loc})"),
                format!("{kind} names are unique across all files; remove or rename one"),
            );
        } else {
            map.insert(name.clone(), item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> Source {
        Source {
            rel: name.to_owned(),
            display: Arc::from(name),
            bytes: text.as_bytes().to_vec(),
        }
    }

    pub(super) const ZONES: &str = "zones: {cameras: {}, office: {}, quarantine: {}}\n";
    pub(super) const DEVICES: &str = "devices:\n  fishtank: {zone: office, addresses: [10.0.0.9]}\n  cam-1: {zone: cameras, addresses: [10.0.0.10]}\n";
    pub(super) const RULES: &str =
        "rules:\n  - {name: r, from: device:fishtank, to: zone:cameras, allow: [tcp/554]}\n";

    #[test]
    fn a_file_that_fails_to_parse_is_the_only_error_reported() {
        let tabbed = DEVICES.replacen("  fishtank", "\tfishtank", 1);
        let sources = [
            source("00-zones.yaml", ZONES),
            source("10-devices.yaml", &tabbed),
            source("20-rules.yaml", RULES),
        ];
        let err = from_sources(&Arc::from("p"), &sources)
            .map(|_| ())
            .expect_err("a tab");
        let all = err.diagnostics();
        assert_eq!(all.len(), 1, "{err}");
        assert_eq!(
            all[0].to_string(),
            "10-devices.yaml:2:1: error: tab used for indentation"
        );
    }

    #[test]
    fn a_definition_whose_body_fails_is_no_undefined_reference() {
        // An invalid zone name drops the device; the rule naming it must not add "undefined".
        let broken = DEVICES.replacen("zone: office,", "zone: Office,", 1);
        let sources = [
            source("00-zones.yaml", ZONES),
            source("10-devices.yaml", &broken),
            source("20-rules.yaml", RULES),
        ];
        let err = from_sources(&Arc::from("p"), &sources)
            .map(|_| ())
            .expect_err("bad zone name");
        let all = err.diagnostics();
        assert_eq!(all.len(), 1, "{err}");
        assert!(
            all[0].message.contains("invalid zone name `Office`"),
            "{err}"
        );
    }

    #[test]
    fn the_same_policy_without_the_fault_loads() {
        let sources = [
            source("00-zones.yaml", ZONES),
            source("10-devices.yaml", DEVICES),
            source("20-rules.yaml", RULES),
        ];
        let policy = from_sources(&Arc::from("p"), &sources).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.devices.len(), 2);
    }

    /// A directory of its own under the system temp dir, removed on drop.
    pub(super) struct TempDir(pub(super) PathBuf);

    impl TempDir {
        pub(super) fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "enforcer-load-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_fifo_as_the_policy_path_is_an_error_naming_it_and_does_not_block() {
        let dir = TempDir::new("fifo");
        let fifo = dir.0.join("policy.yaml");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
        // No writer ever opens it: a blocking open or read would hang this test.
        let err = load(&fifo).map(|_| ()).expect_err("a FIFO is no policy");
        assert!(
            matches!(err, PolicyError::NotRegular { kind: "a FIFO", .. }),
            "{err}"
        );
        let shown = err.to_string();
        assert!(shown.contains(&fifo.display().to_string()), "{shown}");
        assert!(shown.contains("not a regular file (a FIFO)"), "{shown}");
        assert_eq!(err.errors()[0].file, fifo.display().to_string());
    }

    #[test]
    fn a_character_device_as_the_policy_path_is_an_error() {
        let err = load(Path::new("/dev/zero"))
            .map(|_| ())
            .expect_err("a device is no policy");
        assert!(
            err.to_string()
                .contains("/dev/zero: not a regular file (a character device)"),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_inside_a_policy_directory_is_skipped() {
        let dir = TempDir::new("fifo-in-dir");
        fs::write(dir.0.join("00-zones.yaml"), ZONES).unwrap_or_else(|e| panic!("{e}"));
        fs::write(dir.0.join("10-devices.yaml"), DEVICES).unwrap_or_else(|e| panic!("{e}"));
        nix::unistd::mkfifo(&dir.0.join("20-rules.yaml"), nix::sys::stat::Mode::S_IRUSR)
            .unwrap_or_else(|e| panic!("mkfifo: {e}"));
        let policy = load(&dir.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.devices.len(), 2);
        assert!(policy.rules.is_empty());
    }

    /// Parse a generated hostile input; it must be rejected.
    fn rejected(text: &str) -> PolicyError {
        parse_str("hostile.yaml", text)
            .map(|_| ())
            .expect_err("hostile input must be rejected")
    }

    fn assert_bounded(err: &PolicyError) {
        let diags = err.diagnostics();
        assert!(diags.iter().filter(|d| d.is_error()).count() <= crate::policy::MAX_REPORTED);
        for d in &diags {
            assert!(
                d.message.chars().count() <= crate::policy::MAX_MESSAGE_CHARS + 3,
                "{d}"
            );
        }
        // Display (what a log or a terminal shows) stays small whatever the input.
        assert!(
            err.to_string().len() < 200_000,
            "{} bytes",
            err.to_string().len()
        );
        assert!(err.summary(20).lines().count() <= 21);
    }

    #[test]
    fn an_alias_bomb_reports_a_hundred_errors_and_counts_the_rest() {
        // `x: &a [*a, *a, ...]`, 200,000 aliases on one line (the 6 MB attack file holds 1.5 M).
        let aliases = 200_000;
        let text = format!("x: &a [{}]\n", vec!["*a"; aliases].join(", "));
        let err = rejected(&text);
        assert_bounded(&err);
        let errors = err.errors();
        assert_eq!(errors.len(), crate::policy::MAX_REPORTED);
        // Every alias, the anchor and the unknown key `x` are each one problem.
        assert_eq!(
            err.omitted().errors,
            aliases + 2 - crate::policy::MAX_REPORTED
        );
        assert_eq!(errors[0].message, "unknown key `x` in the policy file");
        assert!(errors[1].message.contains("YAML anchors"), "{}", errors[1]);
        // Kept in place order: the first aliases of the line.
        assert!(errors[2].message.contains("YAML aliases"), "{}", errors[2]);
        assert_eq!((errors[2].line, errors[2].col), (1, 8));
        let summary = err.summary(20);
        assert!(
            summary.ends_with(&format!("and {} more errors", aliases + 2 - 19)),
            "{summary}"
        );
    }

    #[test]
    fn an_alias_bomb_over_many_lines_renders_quickly_bounded() {
        let text = format!("x: &a [\n{}]\n", "  *a,\n".repeat(100_000));
        let dir = TempDir::new("bomb-lines");
        let file = dir.0.join("bomb.yaml");
        fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        let err = load(&file).map(|_| ()).expect_err("aliases");
        assert_bounded(&err);
        let rendered = crate::policy::render_all(&err.diagnostics());
        assert_eq!(rendered.len(), crate::policy::MAX_REPORTED);
        assert!(rendered[5].contains("  *a,"), "{}", rendered[5]);
    }

    #[test]
    fn deep_nesting_is_one_error() {
        let text = format!("zones: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let err = rejected(&text);
        assert_bounded(&err);
        assert_eq!(err.errors().len(), 1, "{err}");
        assert!(err.to_string().contains("nesting deeper than 16"), "{err}");
    }

    #[test]
    fn a_huge_plain_key_is_a_syntax_error() {
        // YAML caps implicit keys at 1024 characters.
        let text = format!("{}: 1\n", "k".repeat(1 << 20));
        let err = rejected(&text);
        assert_bounded(&err);
        assert_eq!(err.errors().len(), 1, "{err}");
        assert!(err.errors()[0].message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn a_huge_value_is_reported_with_a_bounded_message() {
        let text = format!(
            "{ZONES}devices:\n  cam-1: {{zone: cameras, addresses: [10.0.0.1], vendor: \"{}\"}}\n",
            "v".repeat(1 << 20)
        );
        let err = rejected(&text);
        assert_bounded(&err);
        assert_eq!(err.errors().len(), 1, "{err}");
        assert!(
            err.errors()[0].message.contains("value longer than 1024"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_device_name_is_reported_with_a_bounded_message() {
        // An explicit key (`? `) may be longer than 1024 characters.
        let text = format!(
            "{ZONES}devices:\n  ? {}\n  : {{zone: cameras, addresses: [10.0.0.1]}}\n",
            "d".repeat(1 << 20)
        );
        let err = rejected(&text);
        assert_bounded(&err);
        assert_eq!(err.errors().len(), 1, "{err}");
        assert!(
            err.errors()[0].message.contains("longer than 1024"),
            "{err}"
        );
    }

    #[test]
    fn a_million_tiny_list_items_are_one_error() {
        // 1,000,000 items in a list where a mapping of zones belongs: one type error, no cascade.
        let text = format!("zones: [{}]\n", vec!["a"; 1_000_000].join(","));
        let err = rejected(&text);
        assert_bounded(&err);
        // The list, and (there being no zones) the default zone `quarantine` undefined.
        assert_eq!(err.errors().len(), 2, "{err}");
        assert!(err.errors()[1].message.contains("found a list"), "{err}");
    }

    #[test]
    fn a_million_duplicate_keys_report_a_hundred_and_count_the_rest() {
        let text = format!("zones:\n{}", "  a: {}\n".repeat(300_000));
        let err = rejected(&text);
        assert_bounded(&err);
        let errors = err.errors();
        assert_eq!(errors.len(), crate::policy::MAX_REPORTED);
        assert_eq!(err.omitted().errors + errors.len(), 300_000 - 1);
        assert_eq!(
            errors[0].message,
            "duplicate key `a` (first defined at hostile.yaml:2:3)"
        );
        assert_eq!(errors[0].line, 3);
    }

    #[test]
    fn a_long_line_of_unknown_keys_is_bounded() {
        // One 2 MB line of a flow mapping with 200,000 unknown keys.
        let keys: Vec<String> = (0..200_000).map(|i| format!("k{i}: 1")).collect();
        let text = format!("zones: {{cameras: {{{}}}}}\n", keys.join(", "));
        let dir = TempDir::new("long-line");
        let file = dir.0.join("long.yaml");
        fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        let err = load(&file).map(|_| ()).expect_err("unknown keys");
        assert_bounded(&err);
        // Every key, and the default zone `quarantine` undefined.
        assert_eq!(err.errors().len() + err.omitted().errors, 200_001);
        let shown = crate::policy::render_all(&err.errors()[..1]).concat();
        assert!(shown.contains("k0: 1"), "{shown}");
        // The snippet shows a window of the line, not 2 MB of it.
        assert!(shown.len() < 2_000, "{} bytes", shown.len());
    }
}
