//! Reading a policy from disk: one file or a directory of `*.yaml`/`*.yml` files in name order,
//! size caps checked before anything is parsed, then parse, merge and validate.
//!
//! The bytes are read once and hashed as read, so the digest names exactly what was validated.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use enforcer_common::{Action, Mode};
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
    let sources = read_sources(path)?;
    let root: Arc<str> = Arc::from(path.display().to_string());
    from_sources(&root, &sources)
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
    let files: Vec<(String, PathBuf, u64)> = if meta.is_dir() {
        list_dir(path, &root, &mut diags)?
    } else {
        let rel = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        vec![(rel, path.to_path_buf(), meta.len())]
    };
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
    if meta.is_dir() && total > MAX_TOTAL_BYTES {
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
        // Read at most one byte over the cap: a file that grew after the size check is still
        // caught, and never read whole.
        let mut bytes = Vec::new();
        fs::File::open(&file)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| io(&file, e))?;
        let display: Arc<str> = Arc::from(file.display().to_string());
        if bytes.len() as u64 > MAX_FILE_BYTES {
            diags.error(
                &Loc::whole(&display),
                format!("file is over the cap of {MAX_FILE_BYTES} bytes"),
                "split the policy into several files",
            );
        }
        sources.push(Source {
            rel,
            display,
            bytes,
        });
    }
    diags.finish().map(|_| sources)
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
        let before = diags.list.len();
        let tree = yaml::parse(&source.display, &source.bytes, &mut diags.list);
        // Any YAML error (even one the reader steps over, such as an alias) leaves the file
        // read in part or not at all; an empty file is no gap.
        gaps.unread_file |= diags.list.len() > before;
        if let Some(node) = tree {
            docs.push(model::file_doc(&node, &mut diags));
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
        merge_rules(&mut policy.rules, doc.rules, &mut rule_names, diags);
        if let Some((at, d)) = doc.defaults {
            merge_defaults(&mut policy.defaults, &mut defaults_at, at, d, diags);
        }
        if let Some(q) = doc.quarantine {
            merge_quarantine(&mut policy.quarantine, q, diags);
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

    const ZONES: &str = "zones: {cameras: {}, office: {}, quarantine: {}}\n";
    const DEVICES: &str = "devices:\n  fishtank: {zone: office, addresses: [10.0.0.9]}\n  cam-1: {zone: cameras, addresses: [10.0.0.10]}\n";
    const RULES: &str =
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
}
