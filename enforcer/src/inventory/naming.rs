//! Names for discovered devices, from what they call themselves: the host name made into a policy
//! name (lowercase ASCII, a letter first, then letters, digits, `-` or `_`, at most 64), unique
//! among the names already taken.

use std::collections::BTreeSet;

/// Longest policy name.
const MAX_NAME: usize = 64;

/// `host` as a policy name, or `None` when nothing of it is usable.
#[must_use]
pub fn sanitise(host: &str) -> Option<String> {
    let mut out = String::new();
    for c in host.chars() {
        let c = c.to_ascii_lowercase();
        let keep = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            c
        } else {
            '-'
        };
        if keep == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(keep);
    }
    let out = out.trim_end_matches('-');
    let start = out.find(|c: char| c.is_ascii_lowercase())?;
    let name: String = out[start..].chars().take(MAX_NAME).collect();
    Some(name.trim_end_matches('-').to_owned())
}

/// A unique name for a device: its sanitised host name, `-2`, `-3`... on a clash, or `fallback`
/// when it announced no usable name. The name is added to `taken`.
pub fn unique(host: Option<&str>, fallback: &str, taken: &mut BTreeSet<String>) -> String {
    let base = host
        .and_then(sanitise)
        .unwrap_or_else(|| fallback.to_owned());
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        let suffix = format!("-{n}");
        let keep = MAX_NAME.saturating_sub(suffix.len()).min(base.len());
        name = format!("{}{suffix}", &base[..keep]);
        n += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_policy_names() {
        assert_eq!(sanitise("Kitchen Plug").as_deref(), Some("kitchen-plug"));
        assert_eq!(
            sanitise("  ESP_7F12.local ").as_deref(),
            Some("esp_7f12-local")
        );
        assert_eq!(sanitise("42-living--room!").as_deref(), Some("living-room"));
        assert_eq!(sanitise("\u{1b}[31m").as_deref(), Some("m"));
        assert_eq!(sanitise("1234"), None);
        assert_eq!(sanitise(&"a".repeat(100)).map(|n| n.len()), Some(MAX_NAME));
    }

    #[test]
    fn clashing_and_missing_names_are_made_unique() {
        let mut taken = BTreeSet::from(["cam-1".to_owned()]);
        assert_eq!(unique(Some("CAM-1"), "x", &mut taken), "cam-1-2");
        assert_eq!(unique(Some("cam 1"), "x", &mut taken), "cam-1-3");
        assert_eq!(
            unique(None, "unknown-00408c000001", &mut taken),
            "unknown-00408c000001"
        );
        assert_eq!(
            unique(Some("???"), "unknown-00408c000001", &mut taken),
            "unknown-00408c000001-2"
        );
    }
}
