//! Wall-clock time as the enforcer shows it: RFC 3339 in UTC, to the second (`jiff` does the
//! calendar). The datapath keeps coarse monotonic timestamps; [`wall_of_monotonic`] turns one into
//! wall-clock time.

/// Seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 (UTC, seconds) for a Unix time; times past jiff's range (year 9999) print as the
/// largest it has.
#[must_use]
pub fn rfc3339(secs: u64) -> String {
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    // Whole seconds: the sub-second part is always zero here, and `Z` marks UTC.
    format!("{ts:.0}")
}

/// Wall-clock time of a datapath (monotonic, nanoseconds) timestamp, given both clocks now.
#[must_use]
pub fn wall_of_monotonic(mono_ns: u64, now_mono_ns: u64, now_unix: u64) -> String {
    rfc3339(now_unix.saturating_sub(now_mono_ns.saturating_sub(mono_ns) / 1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_549_534), "2026-11-24T19:45:34Z");
    }

    #[test]
    fn monotonic_stamps_become_wall_time_seconds_ago() {
        let now_unix = 1_795_549_534;
        let now_mono = 50_000_000_000;
        assert_eq!(
            wall_of_monotonic(now_mono - 4_000_000_000, now_mono, now_unix),
            "2026-11-24T19:45:30Z"
        );
        // A stamp from "the future" (taken after `now_mono` was read) is now, not an underflow.
        assert_eq!(
            wall_of_monotonic(now_mono + 7, now_mono, now_unix),
            rfc3339(now_unix)
        );
    }
}
