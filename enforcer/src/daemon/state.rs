//! What the daemon records in its state directory, for the next daemon and for `status`, `plan`
//! and `devices`: stable ids (so counters keep their meaning across restarts), the applied policy's
//! view, and a status snapshot. Every file is written to a temporary name and renamed, so a reader
//! never sees half a file.

use std::{
    fs,
    io::Write as _,
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
    pub last_reload: Option<ReloadOutcome>,
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
}

/// Writes `value` as JSON to `dir/name`, atomically.
pub fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), StateError> {
    let path = dir.join(name);
    let err = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let mut f = fs::File::create(&tmp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, &path).map_err(err)
}

/// Reads `dir/name`; `Ok(None)` when it does not exist.
pub fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, StateError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
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
    _file: fs::File,
}

/// Name of the lock file in the state directory; it holds the holder's pid.
pub const LOCK_FILE: &str = "lock";

/// Takes the lock, or says which process holds it.
pub fn lock(dir: &Path) -> Result<Lock, LockError> {
    use std::os::fd::AsRawFd as _;
    fs::create_dir_all(dir).map_err(|source| LockError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on an fd we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .to_owned();
        return Err(LockError::Held {
            dir: dir.to_path_buf(),
            holder,
        });
    }
    file.set_len(0).map_err(|source| LockError::Io {
        path: path.clone(),
        source,
    })?;
    write!(file, "{}", std::process::id()).map_err(|source| LockError::Io { path, source })?;
    Ok(Lock { _file: file })
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another enforcer (pid {holder}) is running with state directory {dir}")]
    Held { dir: PathBuf, holder: String },
    #[error("lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
