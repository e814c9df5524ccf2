//! MUD (RFC 8520): a manufacturer's profile of what a device needs on the network, turned into
//! policy rules for review (`enforcer import mud`). Nothing here applies anything.
//!
//! [`profile`] reads the YANG-JSON file (the `ietf-mud:mud` container and RFC 8519 ACLs) into
//! [`profile::Entry`]s, refusing any match it does not know; [`convert`] turns them into rules:
//! names stay names (`dns:`), networks become `networks:`, abstractions (`local-networks`,
//! `controller`, ...) become what the operator maps them to. An entry it cannot express is an
//! error naming the entry, never a silent skip (osMUD logs and skips them).

pub mod convert;
pub mod profile;

/// Why a profile was not converted. Each names the ACE (`acl/ace`) at fault.
#[derive(Debug, thiserror::Error)]
pub enum MudError {
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("not a MUD file: {0}")]
    NotMud(String),
    #[error("entry {entry}: {why}")]
    Entry { entry: String, why: String },
    #[error(
        "--map {0}: expected ABSTRACTION=DESTINATION (e.g. local-networks=zone:lan, controller:URI=device:hub)"
    )]
    BadMap(String),
    #[error(
        "--device {0}: not a policy name (lowercase ASCII: a letter, then letters, digits, - or _)"
    )]
    BadDevice(String),
}

fn entry_error(entry: &str, why: impl Into<String>) -> MudError {
    MudError::Entry {
        entry: entry.to_owned(),
        why: why.into(),
    }
}
