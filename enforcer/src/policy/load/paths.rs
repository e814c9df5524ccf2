//! Several policy paths as one policy: `enforcer run --policy fleet/common --policy
//! fleet/branch-7`, `enforcer check A B`. Shared files live once in the repository (symlinks stay
//! refused) and each router adds its own.

use std::{path::Path, sync::Arc};

use super::{
    Diags, Loc, MAX_FILES, MAX_TOTAL_BYTES, Policy, PolicyError, from_sources, read_sources,
};

/// Read several policy paths (files or directories) as one policy: their files in the order the
/// paths are given, each directory's in name order, merged with the uniqueness rules of one
/// directory (a name defined in two paths is an error citing both). The caps apply to each
/// directory, and [`MAX_TOTAL_BYTES`] and [`MAX_FILES`] to all paths together.
///
/// # Errors
/// As [`load`].
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<Policy, PolicyError> {
    let [first, rest @ ..] = paths else {
        return Err(PolicyError::Io {
            path: std::path::PathBuf::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no policy path given"),
        });
    };
    let root: Arc<str> = Arc::from(first.as_ref().display().to_string());
    if rest.is_empty() {
        let sources = read_sources(first.as_ref())?;
        return from_sources(&root, &sources);
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
    from_sources(&root, &sources)
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
}
