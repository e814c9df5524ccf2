//! What the daemon records in its state directory, for the next daemon and for `status`, `plan`
//! and `devices`: stable ids (so counters keep their meaning across restarts), the applied policy's
//! view, and a status snapshot. Every file is written to a temporary name and renamed, so a reader
//! never sees half a file.
//!
//! The directory is the daemon's alone: it is created 0700, and a directory that another user owns
//! or can write to is refused ([`prepare_dir`]), because a root daemon writing into it could be
//! steered by planted symlinks. Files are 0600 (they hold the inventory: MACs, addresses,
//! firmware, notes), never opened through a symlink, and temporary files are created exclusively.

use std::{
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::policy::IdTable;

/// Stable ids of the applied policy.
pub const IDS_FILE: &str = "ids.json";
/// The applied policy as `plan` shows it (`policy::PlanView`), for `plan`'s diff.
pub const APPLIED_FILE: &str = "applied.json";
/// What the daemon is doing, for `status`.
pub const STATUS_FILE: &str = "status.json";
/// The last confirmed policy's files (`policy::PolicySnapshot`): what every start enforces first.
pub const CONFIRMED_FILE: &str = "confirmed.json";

/// The host context the running policy was compiled with, for `plan`.
pub const HOST_FILE: &str = "host.json";

/// What `host.json` holds: the host context of the running policy, and whose it is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostRecord {
    /// The daemon that recorded it (`plan` uses it only while that process runs).
    pub pid: u32,
    /// The generation of the policy compiled with it.
    pub generation: u64,
    /// The interfaces the daemon enforces on (listed, or `--iface`).
    pub interfaces: Vec<String>,
    /// Those of `interfaces` that do not exist now.
    #[serde(default)]
    pub absent: Vec<String>,
    pub context: crate::daemon::host::HostContext,
}

/// An interface as attached.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// "native" or "generic".
    pub mode: String,
}

/// A device as `status` and `devices` label it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceLabel {
    pub id: u32,
    pub name: String,
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub inventory: crate::policy::compiled::Inventory,
    /// In audit (`mode:` of the device or its zone).
    #[serde(default)]
    pub audit: bool,
}

/// The outcome of the last reload attempt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// "success" or "failure".
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The status snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub pid: u32,
    pub policy_path: String,
    pub pin_dir: String,
    pub metrics_addr: String,
    pub interfaces: Vec<Interface>,
    /// Interfaces the policy lists that do not exist now: attached when they appear.
    #[serde(default)]
    pub absent_interfaces: Vec<String>,
    pub generation: u64,
    pub digest: String,
    pub sources: Vec<String>,
    /// "enforce" or "audit".
    pub mode: String,
    pub unknown_zone: String,
    pub quarantine_zone: Option<String>,
    pub devices: Vec<DeviceLabel>,
    /// Rule id and name; id 0 is "default".
    pub rules: Vec<(u32, String)>,
    /// `dns:` name patterns by id, as `BINDINGS` entries name them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<(u32, String)>,
    pub last_reload: Option<ReloadOutcome>,
    /// A provisional policy being enforced until its deadline, unless confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingStatus>,
}

/// A pending provisional policy, as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingStatus {
    /// `apply` (an operator's `enforcer apply --confirm`), `reload` (a file change under
    /// `--confirm-window`) or `start` (policy files that differ from the last confirmed policy).
    pub origin: String,
    pub generation: u64,
    pub digest: String,
    /// Where the candidate was read from.
    pub paths: String,
    /// When it reverts unless confirmed: RFC 3339, and seconds since the Unix epoch.
    pub deadline: String,
    pub deadline_unix: u64,
    /// The last confirmed policy, which the revert restores.
    pub confirmed_generation: u64,
    pub confirmed_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "state directory {path} {why}; it must be a directory owned by root and writable by no one else (chown root: and chmod 0700 it, or choose another --state-dir)"
    )]
    Unsafe { path: PathBuf, why: String },
}

/// Mode of the state directory and of every file in it.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Why a state directory with this owner and mode is unsafe for a daemon running as `me`.
pub(crate) fn unsafe_dir(owner: u32, mode: u32, me: u32) -> Option<String> {
    if owner != me {
        return Some(format!("belongs to uid {owner}, not {me}"));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "is group- or world-writable (mode {:04o})",
            mode & 0o7777
        ));
    }
    None
}

/// Creates the state directory (0700) when it is missing, and refuses one that is a symlink,
/// belongs to another user, or that others can write to.
pub fn prepare_dir(dir: &Path) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(err)?;
    let why = if meta.file_type().is_symlink() {
        Some("is a symbolic link".to_owned())
    } else if !meta.is_dir() {
        Some("is not a directory".to_owned())
    } else {
        unsafe_dir(meta.uid(), meta.mode(), nix::unistd::geteuid().as_raw())
    };
    match why {
        Some(why) => Err(StateError::Unsafe {
            path: dir.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Opens `path` without following a symlink at its last component.
fn open_nofollow(path: &Path, opts: &mut fs::OpenOptions) -> std::io::Result<fs::File> {
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes `value` as JSON to `dir/name`, atomically: into a temporary file created exclusively
/// (a leftover or planted one is removed first, never followed), then renamed over the target.
pub fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), StateError> {
    let path = dir.join(name);
    let err = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut f =
        open_nofollow(&tmp, fs::OpenOptions::new().write(true).create_new(true)).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, &path).map_err(err)
}

/// Reads `dir/name`; `Ok(None)` when it does not exist. A symlink there is an error, not followed.
pub fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, StateError> {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    let read = open_nofollow(&path, fs::OpenOptions::new().read(true))
        .and_then(|mut f| f.read_to_end(&mut bytes));
    match read {
        Ok(_) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read { path, source }),
    }
}

/// The ids a previous daemon recorded.
pub fn read_ids(dir: &Path) -> Result<Option<IdTable>, StateError> {
    read(dir, IDS_FILE)
}

/// The daemon's exclusive lock on its state directory (and so on its pins): released when dropped
/// or when the process dies.
#[derive(Debug)]
pub struct Lock {
    _file: nix::fcntl::Flock<fs::File>,
}

/// Name of the lock file in the state directory; it holds the holder's pid.
pub const LOCK_FILE: &str = "lock";

/// Prepares the state directory ([`prepare_dir`]), then takes the lock, or says which process
/// holds it.
pub fn lock(dir: &Path) -> Result<Lock, LockError> {
    prepare_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let file = open_nofollow(
        &path,
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true),
    )
    .map_err(io)?;
    let mut locked =
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, _)) => {
                let mut holder = String::new();
                let _unreadable = file.read_to_string(&mut holder);
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: holder.trim().to_owned(),
                });
            }
        };
    locked.set_len(0).map_err(io)?;
    write!(locked, "{}", std::process::id()).map_err(io)?;
    Ok(Lock { _file: locked })
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Dir(#[from] StateError),
    #[error("another enforcer (pid {holder}) is running with state directory {dir}")]
    Held { dir: PathBuf, holder: String },
    #[error("lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A fresh directory of this test's own under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let base =
            std::env::temp_dir().join(format!("enforcer-state-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("create scratch dir");
        base
    }

    #[test]
    fn state_directory_is_created_private_and_files_are_0600() {
        let dir = scratch("mode").join("state");
        let _lock = lock(&dir).expect("lock a fresh state dir");
        write(&dir, STATUS_FILE, &[1, 2, 3]).expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STATUS_FILE)), 0o600);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        assert_eq!(
            read::<Vec<u8>>(&dir, STATUS_FILE).expect("read"),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn a_world_writable_state_directory_is_refused() {
        let dir = scratch("writable").join("state");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = lock(&dir).expect_err("a 0777 state dir must be refused");
        let text = e.to_string();
        assert!(
            text.contains("group- or world-writable (mode 0777)"),
            "{text}"
        );
        assert!(
            !dir.join(LOCK_FILE).exists(),
            "nothing is created in a refused dir"
        );
    }

    #[test]
    fn another_users_directory_is_refused() {
        assert_eq!(unsafe_dir(0, 0o40700, 0), None);
        assert_eq!(
            unsafe_dir(1000, 0o40700, 0).as_deref(),
            Some("belongs to uid 1000, not 0")
        );
        assert!(unsafe_dir(0, 0o40770, 0).is_some());
        assert!(unsafe_dir(0, 0o40702, 0).is_some());
        // Read access for others is not a write hazard.
        assert_eq!(unsafe_dir(0, 0o40755, 0), None);
    }

    #[test]
    fn planted_symlinks_are_never_followed() {
        let base = scratch("symlink");
        let dir = base.join("state");
        let victim = base.join("victim");
        fs::write(&victim, b"precious").expect("victim");
        let _lock = lock(&dir).expect("lock");
        // A planted temporary file: removed and created afresh, the victim untouched.
        std::os::unix::fs::symlink(&victim, dir.join(format!(".{STATUS_FILE}.tmp")))
            .expect("plant tmp link");
        write(&dir, STATUS_FILE, &"status").expect("write past a planted tmp link");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        // A planted state file: read refuses it, and a write replaces the link, not the victim.
        std::os::unix::fs::symlink(&victim, dir.join(IDS_FILE)).expect("plant ids link");
        assert!(read::<IdTable>(&dir, IDS_FILE).is_err());
        write(&dir, IDS_FILE, &IdTable::default()).expect("write over the link");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert!(
            !fs::symlink_metadata(dir.join(IDS_FILE))
                .expect("stat")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_planted_lock_symlink_is_refused_and_not_truncated() {
        let base = scratch("locklink");
        let dir = base.join("state");
        prepare_dir(&dir).expect("prepare");
        let victim = base.join("victim");
        fs::write(&victim, b"precious").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.join(LOCK_FILE)).expect("plant lock link");
        assert!(lock(&dir).is_err());
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = scratch("held").join("state");
        let _first = lock(&dir).expect("first lock");
        let e = lock(&dir).expect_err("second lock");
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
    }
}
