//! Several policy paths as one policy: `enforcer run --policy fleet/common --policy
//! fleet/branch-7`, `enforcer check A B`. Shared files live once in the repository (symlinks stay
//! refused) and each router adds its own.

use std::{path::Path, sync::Arc};

use super::{
    Diags, Loc, MAX_FILES, MAX_TOTAL_BYTES, Policy, PolicyError, Source, from_sources, read_sources,
};

/// Read several policy paths (files or directories) as one policy: their files in the order the
/// paths are given, each directory's in name order, merged with the uniqueness rules of one
/// directory (a name defined in two paths is an error citing both). The caps apply to each
/// directory, and [`MAX_TOTAL_BYTES`] and [`MAX_FILES`] to all paths together.
///
/// # Errors
/// As [`load`].
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<Policy, PolicyError> {
    let (root, sources) = read_all(paths)?;
    from_sources(&root, &sources, None)
}

/// As [`load_all`], also returning the bytes read, so what was validated can be kept and loaded
/// again later exactly as it was ([`PolicySnapshot::load`]).
///
/// # Errors
/// As [`load`].
pub fn load_snapshot<P: AsRef<Path>>(paths: &[P]) -> Result<(Policy, PolicySnapshot), PolicyError> {
    load_snapshot_with(paths, None)
}

/// [`load_snapshot`], through `cache` when given ([`super::ReadCache::load_snapshot`]).
pub(super) fn load_snapshot_with<P: AsRef<Path>>(
    paths: &[P],
    cache: Option<&mut super::ReadCache>,
) -> Result<(Policy, PolicySnapshot), PolicyError> {
    let (root, sources) = read_all(paths)?;
    let policy = from_sources(&root, &sources, cache)?;
    let snapshot = PolicySnapshot {
        root: root.to_string(),
        files: sources
            .into_iter()
            .map(|s| SnapshotFile {
                rel: s.rel,
                display: s.display.to_string(),
                // A policy that parsed is UTF-8 (the reader refuses anything else).
                text: String::from_utf8_lossy(&s.bytes).into_owned(),
            })
            .collect(),
    };
    Ok((policy, snapshot))
}

/// A policy's files as they were read: loaded again, they give the same policy and digest,
/// wherever the files are now (the daemon keeps the last confirmed policy so, `daemon::confirm`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicySnapshot {
    /// The first path, as diagnostics name the policy.
    pub root: String,
    pub files: Vec<SnapshotFile>,
}

/// One file of a [`PolicySnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotFile {
    /// The name it is hashed under.
    pub rel: String,
    /// The path it was read from.
    pub display: String,
    pub text: String,
}

impl PolicySnapshot {
    /// Parses and validates the kept files again.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] with every problem found.
    pub fn load(&self) -> Result<Policy, PolicyError> {
        let sources: Vec<Source> = self
            .files
            .iter()
            .map(|f| Source {
                rel: f.rel.clone(),
                display: Arc::from(f.display.as_str()),
                bytes: f.text.as_bytes().to_vec(),
            })
            .collect();
        from_sources(&Arc::from(self.root.as_str()), &sources, None)
    }
}

/// Every file of every path, with the caps of all paths together; the first path names the
/// policy.
fn read_all<P: AsRef<Path>>(paths: &[P]) -> Result<(Arc<str>, Vec<Source>), PolicyError> {
    let [first, rest @ ..] = paths else {
        return Err(PolicyError::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no policy path given"),
        });
    };
    let root: Arc<str> = Arc::from(first.as_ref().display().to_string());
    if rest.is_empty() {
        let sources = read_sources(first.as_ref())?;
        return Ok((root, sources));
    }
    let mut sources = Vec::new();
    for path in paths {
        let path = path.as_ref();
        for mut source in read_sources(path)? {
            // Hashed under the path it came from: two paths may each hold a `policy.yaml`.
            source.rel = format!("{}/{}", path.display(), source.rel);
            sources.push(source);
        }
    }
    let mut diags = Diags::default();
    let total: u64 = sources.iter().map(|s| s.bytes.len() as u64).sum();
    if total > MAX_TOTAL_BYTES {
        diags.error(
            &Loc::whole(&root),
            format!("policy files total {total} bytes, over the cap of {MAX_TOTAL_BYTES}"),
            "remove unused entries",
        );
    }
    if sources.len() > MAX_FILES {
        diags.error(
            &Loc::whole(&root),
            format!("more than {MAX_FILES} policy files"),
            "merge some of them",
        );
    }
    diags.finish()?;
    Ok((root, sources))
}

/// The policy paths as one string for messages: `a`, or `a + b` when several are merged.
pub fn shown_paths<P: AsRef<Path>>(paths: &[P]) -> String {
    paths
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use std::{fs, path::PathBuf};

    use super::{super::tests::*, *};
    use crate::policy::load;

    /// `fleet/common` (zones, rules) and `fleet/branch-7` (devices), each with a `policy.yaml`.
    fn fleet(name: &str, branch_devices: &str) -> (TempDir, PathBuf, PathBuf) {
        let dir = TempDir::new(name);
        let (common, branch) = (dir.0.join("common"), dir.0.join("branch-7"));
        for (d, files) in [
            (&common, [("00-zones.yaml", ZONES), ("policy.yaml", RULES)]),
            (
                &branch,
                [
                    ("policy.yaml", branch_devices),
                    ("x.yaml", "interfaces:\n  lan0: {role: segment}\n"),
                ],
            ),
        ] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
            for (f, text) in files {
                fs::write(d.join(f), text).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        (dir, common, branch)
    }

    #[test]
    fn several_paths_merge_into_one_policy_in_the_order_given() {
        let (_dir, common, branch) = fleet("merge", DEVICES);
        let policy = load_all(&[&common, &branch]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.devices.len(), 2);
        assert_eq!(policy.rules.len(), 1);
        assert_eq!(policy.interfaces.len(), 1);
        let shown: Vec<&str> = policy.sources.iter().map(String::as_str).collect();
        let expect = [
            common.join("00-zones.yaml"),
            common.join("policy.yaml"),
            branch.join("policy.yaml"),
            branch.join("x.yaml"),
        ];
        let expect: Vec<String> = expect.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(shown, expect);
        // Every file is in the digest, the second path's too.
        let other = load_all(&[&common, &branch]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.digest, other.digest);
        fs::write(
            branch.join("x.yaml"),
            "interfaces:\n  lan1: {role: segment}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let changed = load_all(&[&common, &branch]).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(policy.digest, changed.digest);
        // One path loads as it always did (its digest is unchanged by this feature).
        assert_eq!(
            load(&common).map(|p| p.digest).ok(),
            load_all(&[&common]).map(|p| p.digest).ok()
        );
    }

    #[test]
    fn a_name_defined_in_two_paths_is_an_error_citing_both() {
        let twice = format!("{DEVICES}zones: {{office: {{}}}}\n");
        let (_dir, common, branch) = fleet("twice", &twice);
        let err = load_all(&[&common, &branch])
            .map(|_| ())
            .expect_err("office twice");
        let all = err.errors();
        assert_eq!(all.len(), 1, "{err}");
        let shown = all[0].to_string();
        let first = format!("(first at {}:1:", common.join("00-zones.yaml").display());
        assert!(
            shown.starts_with(&format!("{}:4:", branch.join("policy.yaml").display())),
            "{shown}"
        );
        assert!(shown.contains("zone `office` is defined twice"), "{shown}");
        assert!(shown.contains(&first), "{shown}");
    }

    #[test]
    fn a_snapshot_loads_again_as_the_same_policy_after_its_files_are_gone() {
        let (dir, common, branch) = fleet("snapshot", DEVICES);
        let (policy, snapshot) =
            load_snapshot(&[&common, &branch]).unwrap_or_else(|e| panic!("{e}"));
        drop(dir);
        assert!(!common.exists());
        let again = snapshot.load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.digest, policy.digest);
        assert_eq!(again.sources, policy.sources);
        assert_eq!(again.devices.len(), policy.devices.len());
        let text = serde_json::to_string(&snapshot).unwrap_or_else(|e| panic!("{e}"));
        let back: PolicySnapshot = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, snapshot);
    }
}
