//! The observation store: SQLite (bundled), one file under the state directory, mode 0600.
//!
//! WAL journal with `synchronous=NORMAL`: a crash or SIGKILL mid-write loses at most the scan
//! being written, never the file (each scan is one transaction). Bounded by [`Bounds`]: rows not
//! seen for `max_age_s` go, then the oldest beyond `max_rows`.
//!
//! Read API (for `enforcer learn` and the graph's observed overlay): [`Store::observations`]
//! with a [`Filter`] (by source, by peer, since), each row an [`Observation`] with its counts and
//! first and last seen; [`Store::observing_since`] for how long the store has been observing.

use std::{
    collections::HashMap,
    fs::OpenOptions,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OptionalExtension, params};

use super::{FlowSample, Observation, Peer, Seen, Service};

/// How much the store keeps (documented in docs/learn.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Rows whose last sighting is older than this many seconds are removed (default 90 days:
    /// longer than any window `learn --since` is meant for, so monthly jobs are seen).
    pub max_age_s: u64,
    /// At most this many rows; past it the least recently seen go (default 200,000: with the
    /// server-port key, a site's distinct (source, peer, service) triples).
    pub max_rows: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_age_s: 90 * 86_400,
            max_rows: 200_000,
        }
    }
}

/// Which observations to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only flows this endpoint started.
    pub source: Option<Peer>,
    /// Only flows to this endpoint.
    pub peer: Option<Peer>,
    /// Only rows seen at or after this Unix time.
    pub since: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("observation store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("observation store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("observation store {path}: row {what} unreadable: `{value}`")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS observation (
    source TEXT NOT NULL,
    peer TEXT NOT NULL,
    proto INTEGER NOT NULL,
    port INTEGER NOT NULL,
    seen TEXT NOT NULL,
    peer_address TEXT NOT NULL,
    flows INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    -- The rule that allowed the flow at the latest scan ('default' for the default verdict).
    rule TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source, peer, proto, port, seen)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS observation_peer ON observation (peer);
CREATE INDEX IF NOT EXISTS observation_last_seen ON observation (last_seen);
-- What the last scan counted of each live flow, so the next adds only what is new (kept here,
-- not in memory, so a restarted daemon does not count live flows twice).
CREATE TABLE IF NOT EXISTS scanned (
    flow BLOB PRIMARY KEY,
    packets INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// The observation store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// What a scan added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Flows seen for the first time.
    pub new_flows: u64,
    /// Rows removed by the bounds.
    pub pruned: u64,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating, mode 0600) the store at `path`.
    ///
    /// # Errors
    /// The file cannot be created or opened, or is no SQLite database of this shape.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Created 0600 before SQLite sees it: SQLite would create it by the umask.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created', ?1)",
            params![as_i64(crate::time::unix_now())],
        )
        .map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records one scan of the flow table, taken at monotonic `now_ns` and Unix `now_unix`: each
    /// flow's packets and bytes since the last scan join its row; then the bounds apply. One
    /// transaction: a crash leaves the store as it was before the scan.
    ///
    /// # Errors
    /// SQLite refused a statement.
    pub fn record_scan(
        &mut self,
        flows: &[FlowSample],
        now_ns: u64,
        now_unix: u64,
        bounds: Bounds,
    ) -> Result<ScanReport, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let wall = |mono: u64| now_unix.saturating_sub(now_ns.saturating_sub(mono) / 1_000_000_000);
        let tx = self.conn.transaction().map_err(err)?;
        let mut report = ScanReport::default();
        {
            let before = scanned(&tx).map_err(err)?;
            tx.execute("DELETE FROM scanned", []).map_err(err)?;
            let mut keep = tx
                .prepare(
                    "INSERT OR REPLACE INTO scanned (flow, packets, bytes) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            let mut add = tx.prepare(UPSERT).map_err(err)?;
            for f in flows {
                let id = flow_id(f);
                let (was_packets, was_bytes, new) = before
                    .get(&id)
                    .map_or((0, 0, true), |&(p, b)| (p, b, false));
                keep.execute(params![id, as_i64(f.packets), as_i64(f.bytes)])
                    .map_err(err)?;
                let packets = f.packets.saturating_sub(was_packets);
                if !new && packets == 0 {
                    continue;
                }
                report.new_flows += u64::from(new);
                add.execute(params![
                    f.source.to_string(),
                    f.peer.to_string(),
                    f.service.proto,
                    f.service.port,
                    f.seen.as_str(),
                    f.peer_address.to_string(),
                    i64::from(new),
                    as_i64(packets),
                    as_i64(f.bytes.saturating_sub(was_bytes)),
                    as_i64(wall(f.first_seen_ns)),
                    as_i64(wall(f.last_seen_ns)),
                    f.rule,
                ])
                .map_err(err)?;
            }
        }
        report.pruned = prune(&tx, now_unix, bounds).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(report)
    }

    /// The observations `filter` selects, most flows first.
    ///
    /// # Errors
    /// SQLite refused the query, or a row does not read back.
    pub fn observations(&self, filter: &Filter) -> Result<Vec<Observation>, StoreError> {
        let err = self.err();
        let mut q = self
            .conn
            .prepare(
                "SELECT source, peer, proto, port, seen, peer_address, flows, packets, bytes, \
                 first_seen, last_seen, rule FROM observation \
                 WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR peer = ?2) \
                 AND last_seen >= ?3 ORDER BY flows DESC, source, peer, proto, port",
            )
            .map_err(&err)?;
        let rows = q
            .query_map(
                params![
                    filter.source.as_ref().map(ToString::to_string),
                    filter.peer.as_ref().map(ToString::to_string),
                    as_i64(filter.since.unwrap_or(0)),
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u8>(2)?,
                        r.get::<_, u16>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        [
                            r.get::<_, i64>(6)?,
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                            r.get(10)?,
                        ],
                        r.get::<_, String>(11)?,
                    ))
                },
            )
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (source, peer, proto, port, seen, addr, n, rule) = row.map_err(&err)?;
            let corrupt = |what, value: &str| StoreError::Corrupt {
                path: self.path.clone(),
                what,
                value: value.to_owned(),
            };
            out.push(Observation {
                source: source.parse().map_err(|_| corrupt("source", &source))?,
                peer: peer.parse().map_err(|_| corrupt("peer", &peer))?,
                service: Service { proto, port },
                seen: Seen::parse(&seen).ok_or_else(|| corrupt("seen", &seen))?,
                peer_address: addr.parse().map_err(|_| corrupt("peer_address", &addr))?,
                flows: as_u64(n[0]),
                packets: as_u64(n[1]),
                bytes: as_u64(n[2]),
                first_seen: as_u64(n[3]),
                last_seen: as_u64(n[4]),
                rule,
            });
        }
        Ok(out)
    }

    /// Since when (Unix seconds) this store has been observing.
    ///
    /// # Errors
    /// SQLite refused the query.
    pub fn observing_since(&self) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'created'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|v| v.map(as_u64))
            .map_err(self.err())
    }

    /// `PRAGMA integrity_check`'s answer (`ok` for a sound file).
    ///
    /// # Errors
    /// SQLite refused the pragma.
    pub fn integrity(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.err())
    }
}

const UPSERT: &str = "
INSERT INTO observation (source, peer, proto, port, seen, peer_address, flows, packets, bytes,
    first_seen, last_seen, rule)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
ON CONFLICT (source, peer, proto, port, seen) DO UPDATE SET
    peer_address = excluded.peer_address,
    rule = excluded.rule,
    flows = flows + excluded.flows,
    packets = packets + excluded.packets,
    bytes = bytes + excluded.bytes,
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen)";

/// A flow's identity as the `scanned` table keys it: its key's bytes and its first-seen time.
fn flow_id(f: &FlowSample) -> Vec<u8> {
    let (k, first) = f.id;
    let mut id = Vec::with_capacity(48);
    for w in k.lo_addr.iter().chain(&k.hi_addr) {
        id.extend_from_slice(&w.to_ne_bytes());
    }
    id.extend_from_slice(&k.lo_port.to_be_bytes());
    id.extend_from_slice(&k.hi_port.to_be_bytes());
    id.extend_from_slice(&[k.proto, k.family]);
    id.extend_from_slice(&first.to_be_bytes());
    id
}

fn scanned(tx: &Connection) -> rusqlite::Result<HashMap<Vec<u8>, (u64, u64)>> {
    let mut q = tx.prepare("SELECT flow, packets, bytes FROM scanned")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            (as_u64(r.get(1)?), as_u64(r.get(2)?)),
        ))
    })?;
    rows.collect()
}

fn prune(tx: &Connection, now_unix: u64, bounds: Bounds) -> rusqlite::Result<u64> {
    let old = tx.execute(
        "DELETE FROM observation WHERE last_seen < ?1",
        params![as_i64(now_unix.saturating_sub(bounds.max_age_s))],
    )?;
    let over = tx.execute(
        "DELETE FROM observation WHERE (source, peer, proto, port, seen) IN \
         (SELECT source, peer, proto, port, seen FROM observation \
          ORDER BY last_seen DESC LIMIT -1 OFFSET ?1)",
        params![as_i64(bounds.max_rows)],
    )?;
    Ok(u64::try_from(old + over).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
