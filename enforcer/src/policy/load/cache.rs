//! What reading each policy file gave, kept between loads, so a reload reads again only the files
//! that changed: a site of 100,000 devices keeps most of them in files that a change to a rule or
//! a default leaves alone, and reading YAML is most of loading it.
//!
//! Reading a file is a pure function of its name (as diagnostics show it) and its bytes, so a
//! file whose name and bytes are what they were last time gives what it gave then: its document
//! and its diagnostics, errors included. Merging and validating run on every load, over every
//! file, as they must (a change in one file can make another's name a duplicate).

use std::{collections::HashMap, path::Path, sync::Arc};

use super::{FileRead, PolicySnapshot, Source, from_sources, paths, per_file, read_files};
use crate::policy::{Policy, PolicyError};

/// The files of the last load through this cache, by the name diagnostics show, with what reading
/// each gave. Only the last load's files are kept: a file no longer read is forgotten, so memory
/// stays within one policy's bytes and documents.
#[derive(Default)]
pub struct ReadCache {
    files: HashMap<Arc<str>, Cached>,
    /// Files the last load read (not found here with the same bytes).
    last_read: usize,
}

struct Cached {
    bytes: Vec<u8>,
    read: FileRead,
}

impl ReadCache {
    /// [`super::load_snapshot`], reading only the files whose name or bytes changed since the
    /// last load through this cache.
    ///
    /// # Errors
    /// As [`super::load_snapshot`].
    pub fn load_snapshot<P: AsRef<Path>>(
        &mut self,
        paths: &[P],
    ) -> Result<(Policy, PolicySnapshot), PolicyError> {
        paths::load_snapshot_with(paths, Some(self))
    }

    /// [`super::parse_files`], reading only the files whose name or text changed since the last
    /// load through this cache.
    ///
    /// # Errors
    /// As [`super::parse_files`].
    pub fn parse_files(&mut self, files: &[(String, String)]) -> Result<Policy, PolicyError> {
        let sources = super::in_memory_sources(files);
        from_sources(&Arc::from("."), &sources, Some(self))
    }

    /// How many files the last load read (the others were as the load before left them).
    #[must_use]
    pub fn last_read(&self) -> usize {
        self.last_read
    }

    /// What reading each of `sources` gives, in order: kept results for files unchanged, the
    /// others read (on every CPU, as [`read_files`] does). Afterwards the cache holds exactly
    /// these files.
    pub(super) fn read(&mut self, sources: &[Source]) -> Vec<FileRead> {
        let mut kept = std::mem::take(&mut self.files);
        let mut reads: Vec<Option<FileRead>> = sources
            .iter()
            .map(|s| {
                kept.remove(&s.display)
                    .filter(|c| c.bytes == s.bytes)
                    .map(|c| c.read)
            })
            .collect();
        // Forgotten at once: a file gone or changed holds nothing anyone reads again.
        drop(kept);
        let missing: Vec<&Source> = sources
            .iter()
            .zip(&reads)
            .filter(|(_, r)| r.is_none())
            .map(|(s, _)| s)
            .collect();
        self.last_read = missing.len();
        let mut fresh = read_files(&missing).into_iter();
        for read in &mut reads {
            if read.is_none() {
                *read = fresh.next();
            }
        }
        let reads: Vec<FileRead> = reads.into_iter().flatten().collect();
        // The copies kept are made on every CPU too. Devices are shared, not copied (see
        // `FileDoc::devices`); what is copied is the rest: rules, zones, networks, tests.
        let both: Vec<(&Source, &FileRead)> = sources.iter().zip(&reads).collect();
        let kept = per_file(
            &both,
            |(s, _)| s.bytes.len(),
            |(s, r)| Cached {
                bytes: s.bytes.clone(),
                read: (*r).clone(),
            },
        );
        self.files = sources
            .iter()
            .map(|s| Arc::clone(&s.display))
            .zip(kept)
            .collect();
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::ReadCache;
    use crate::policy::{
        load::tests::{DEVICES, RULES, ZONES},
        parse_files,
    };

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    }

    /// What a load gave, comparable: the policy as debugged, or the error as shown.
    fn outcome(r: Result<crate::policy::Policy, crate::policy::PolicyError>) -> String {
        match r {
            Ok(p) => format!("{p:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn a_load_through_the_cache_reads_only_changed_files_and_gives_what_a_fresh_read_gives() {
        let mut cache = ReadCache::default();
        let first = files(&[
            ("00-zones.yaml", ZONES),
            ("10-devices.yaml", DEVICES),
            ("20-rules.yaml", RULES),
        ]);
        assert_eq!(
            outcome(cache.parse_files(&first)),
            outcome(parse_files(&first))
        );
        assert_eq!(cache.last_read(), 3, "nothing was kept yet");
        assert_eq!(
            outcome(cache.parse_files(&first)),
            outcome(parse_files(&first))
        );
        assert_eq!(cache.last_read(), 0, "every file as it was");

        let more = RULES.replace("tcp/554", "tcp/554, tcp/80");
        let changed = files(&[
            ("00-zones.yaml", ZONES),
            ("10-devices.yaml", DEVICES),
            ("20-rules.yaml", &more),
        ]);
        let through_cache = outcome(cache.parse_files(&changed));
        assert_eq!(through_cache, outcome(parse_files(&changed)));
        assert!(through_cache.contains("80"), "the change is read");
        assert_eq!(cache.last_read(), 1, "only the changed file is read");
    }

    #[test]
    fn a_kept_file_gives_its_errors_again_and_a_renamed_one_is_read_under_its_new_name() {
        let mut cache = ReadCache::default();
        let tabbed = DEVICES.replacen("  fishtank", "\tfishtank", 1);
        let broken = files(&[("00-zones.yaml", ZONES), ("10-devices.yaml", &tabbed)]);
        let fresh = outcome(parse_files(&broken));
        assert!(fresh.contains("10-devices.yaml:2:1: error: tab"), "{fresh}");
        assert_eq!(outcome(cache.parse_files(&broken)), fresh);
        assert_eq!(
            outcome(cache.parse_files(&broken)),
            fresh,
            "kept, errors too"
        );
        assert_eq!(cache.last_read(), 0);

        let renamed = files(&[("00-zones.yaml", ZONES), ("11-devices.yaml", &tabbed)]);
        let again = outcome(cache.parse_files(&renamed));
        assert!(again.contains("11-devices.yaml:2:1: error: tab"), "{again}");
        assert_eq!(cache.last_read(), 1, "same bytes, another name: read again");
    }

    #[test]
    fn a_file_left_out_of_a_load_is_forgotten() {
        let mut cache = ReadCache::default();
        let both = files(&[("00-zones.yaml", ZONES), ("10-devices.yaml", DEVICES)]);
        let one = files(&[("00-zones.yaml", ZONES)]);
        let _ = cache.parse_files(&both);
        let _ = cache.parse_files(&one);
        assert_eq!(cache.last_read(), 0);
        let _ = cache.parse_files(&both);
        assert_eq!(cache.last_read(), 1, "the file left out was read again");
    }
}
