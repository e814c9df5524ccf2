//! `interfaces:`: the interfaces the router enforces on, each with its role. Names are Linux
//! interface names, not policy identifiers (`eth0.10`, `enp3s0`, `wlan-IoT` are all valid), so
//! they are checked as the kernel checks them (`dev_valid_name`), not as identifiers.

use super::{Cx, INTERFACE_KEYS};
use crate::policy::{
    model::{Interface, Role, scalars::truncate},
    yaml::{Kind, Node},
};

/// Longest interface name: the kernel's `IFNAMSIZ` (16) less the terminating NUL.
pub const MAX_IFNAME: usize = 15;

/// Why `name` is no Linux interface name, or `None` when it is one.
fn invalid_ifname(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_IFNAME {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not interface names")
    } else if name.contains('/') || name.contains(':') {
        Some("it contains `/` or `:`")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else {
        None
    }
}

impl Cx<'_> {
    /// The `interfaces:` section: `NAME: {role: segment|uplink}` entries, in file order.
    pub(super) fn interfaces(&mut self, node: Node<'_>) -> Vec<Interface> {
        if node.is_null() {
            return Vec::new();
        }
        let Kind::Map(entries) = node.kind() else {
            self.err(
                &node.loc(),
                format!(
                    "expected a mapping of interface names for `interfaces`, found {}",
                    node.describe()
                ),
                "write `lan0: {role: segment}` entries",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let raw = k.scalar().filter(|_| !k.is_null()).unwrap_or_default();
            if let Some(why) = invalid_ifname(raw) {
                self.err(
                    &k.loc(),
                    format!("invalid interface name `{}`: {why}", truncate(raw)),
                    "write the name as `ip link` shows it (at most 15 bytes, no `/`, `:` or spaces)",
                );
                continue;
            }
            let what = format!("interface `{raw}`");
            let Some(f) = self.fields(v, &what, INTERFACE_KEYS) else {
                continue;
            };
            let Some(role) = self.require(&f, "role", &k.loc(), &what) else {
                continue;
            };
            let roles = [("segment", Role::Segment), ("uplink", Role::Uplink)];
            if let Some(role) = self.choice(role, "interface role", &roles) {
                out.push(Interface {
                    name: raw.to_owned(),
                    role,
                    loc: k.loc(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SITE, messages};
    use crate::policy::{load, model::Role, parse_str};

    #[test]
    fn interfaces_are_read_with_their_roles() {
        let yaml = format!(
            "{SITE}interfaces:\n  lan0: {{role: segment}}\n  eth0.10: {{role: segment}}\n  wan0: {{role: uplink}}\n"
        );
        let policy = parse_str("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
        let roles: Vec<(&str, Role)> = policy
            .interfaces
            .values()
            .map(|i| (i.name.as_str(), i.role))
            .collect();
        assert_eq!(
            roles,
            [
                ("eth0.10", Role::Segment),
                ("lan0", Role::Segment),
                ("wan0", Role::Uplink)
            ]
        );
        assert_eq!(policy.interfaces["wan0"].loc.to_string(), "p.yaml:7:3");
    }

    #[test]
    fn a_policy_without_interfaces_lists_none() {
        let policy = parse_str("p.yaml", SITE).unwrap_or_else(|e| panic!("{e}"));
        assert!(policy.interfaces.is_empty());
    }

    #[test]
    fn an_unknown_role_is_an_error_at_the_role() {
        let got = messages(&format!("{SITE}interfaces:\n  lan0: {{role: lan}}\n"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("p.yaml:5:16: error: invalid interface role `lan`"),
            "{got:?}"
        );
    }

    #[test]
    fn an_interface_without_a_role_or_with_an_unknown_key_is_an_error() {
        let got = messages(&format!("{SITE}interfaces:\n  lan0: {{}}\n"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("p.yaml:5:3: error: interface `lan0` has no `role`"),
            "{got:?}"
        );
        let got = messages(&format!("{SITE}interfaces:\n  lan0: {{rol: segment}}\n"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("unknown key `rol`"), "{got:?}");
    }

    #[test]
    fn a_name_the_kernel_would_refuse_is_an_error_at_the_name() {
        for (bad, why) in [
            ("\"\"", "it is empty"),
            ("abcdefghijklmnop", "longer than 15 bytes"),
            ("eth/0", "`/`"),
            ("\"eth 0\"", "whitespace"),
            ("eth0:1", "`:`"),
            ("..", "`..`"),
        ] {
            let got = messages(&format!("{SITE}interfaces:\n  {bad}: {{role: segment}}\n"));
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(
                got[0].contains("p.yaml:5:3: error: invalid interface name"),
                "{bad}: {got:?}"
            );
            assert!(got[0].contains(why), "{bad}: {got:?}");
        }
        // 15 bytes is the longest name.
        let ok = messages(&format!(
            "{SITE}interfaces:\n  abcdefghijklmno: {{role: uplink}}\n"
        ));
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn interfaces_as_a_list_is_an_error() {
        let got = messages(&format!("{SITE}interfaces: [lan0, wan0]\n"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("expected a mapping of interface names"),
            "{got:?}"
        );
    }

    #[test]
    fn the_same_interface_in_two_files_is_an_error_citing_both() {
        let dir =
            std::env::temp_dir().join(format!("enforcer-ifaces-twice-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("00-site.yaml", SITE);
        write("10-a.yaml", "interfaces:\n  lan0: {role: segment}\n");
        write(
            "20-b.yaml",
            "interfaces:\n  wan0: {role: uplink}\n  lan0: {role: uplink}\n",
        );
        let err = load(&dir).map(|_| ()).expect_err("lan0 twice");
        let _ = std::fs::remove_dir_all(&dir);
        let all = err.errors();
        assert_eq!(all.len(), 1, "{err}");
        let shown = all[0].to_string();
        assert!(
            shown.contains("20-b.yaml:3:3: error: interface `lan0` is defined twice (first at "),
            "{shown}"
        );
        assert!(shown.contains("10-a.yaml:2:3)"), "{shown}");
    }
}
