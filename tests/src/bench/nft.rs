//! The nftables equivalent of a compiled policy, and how long `nft -f` takes to load it.
//!
//! Shape (the best nftables offers for this policy; see BENCHMARKS.md for why the forward hook):
//! - `ct state established,related accept` first (the flow table's job);
//! - source class into `meta mark`: the unknown class, then `ip saddr` in an interval map of the
//!   networks, then `ether saddr . ip saddr` in an exact map of the devices (as the program:
//!   devices first, networks by longest prefix, else unknown);
//! - destination class into `ct mark` the same way from `ip daddr`;
//! - `meta mark . ct mark vmap @pairs` jumps to one chain per class pair, which holds the port
//!   verdict map (`meta l4proto . th dport vmap`) and the pair's per-protocol verdicts;
//! - chain policy = the default action. IPv6 has its own maps and the same structure.
//!
//! Not modelled: MAC-only devices, spoofing and quarantine (the synthetic policy's devices all
//! have a MAC and addresses; the traffic measured is neither spoofed nor quarantined).

use std::{fmt::Write as _, net::Ipv6Addr, process::Command, time::Instant};

use anyhow::{Context as _, Result};
use enforcer::policy::CompiledPolicy;
use enforcer_common::{Action, Decision, PROTO_TCP, PROTO_UDP};
use serde_json::{Value, json};

use super::{control, stats};

fn verdict(d: Decision) -> Option<&'static str> {
    if !d.is_set() {
        return None;
    }
    Some(if d.action() == Action::Allow {
        "accept"
    } else {
        "drop"
    })
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn v6(a: [u8; 16]) -> String {
    Ipv6Addr::from(a).to_string()
}

fn elements(out: &mut String, items: impl Iterator<Item = String>) {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        return;
    }
    out.push_str("    elements = { ");
    out.push_str(&items.join(", "));
    out.push_str(" }\n");
}

/// The ruleset (`table inet enforcer`), forward hook.
pub fn ruleset(p: &CompiledPolicy) -> String {
    let mut s = String::with_capacity(p.maps.macs.len() * 160 + 4096);
    s.push_str("table inet enforcer {\n");
    let dev = |e: &enforcer_common::identity::AddrEntry| {
        e.kind == enforcer_common::identity::ADDR_KIND_DEVICE
    };
    s.push_str("  map src4 {\n    type ether_addr . ipv4_addr : mark\n");
    elements(
        &mut s,
        p.maps
            .addrs_v4
            .iter()
            .filter(|(_, e)| dev(e) && e.mac != [0; 6])
            .map(|(a, e)| {
                format!(
                    "{} . {}.{}.{}.{} : {}",
                    mac(e.mac),
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    e.class
                )
            }),
    );
    s.push_str("  }\n  map src6 {\n    type ether_addr . ipv6_addr : mark\n");
    elements(
        &mut s,
        p.maps
            .addrs_v6
            .iter()
            .filter(|(_, e)| dev(e) && e.mac != [0; 6])
            .map(|(a, e)| format!("{} . {} : {}", mac(e.mac), v6(*a), e.class)),
    );
    s.push_str("  }\n  map dst4 {\n    type ipv4_addr : mark\n");
    elements(
        &mut s,
        p.maps
            .addrs_v4
            .iter()
            .map(|(a, e)| format!("{}.{}.{}.{} : {}", a[0], a[1], a[2], a[3], e.class)),
    );
    s.push_str("  }\n  map dst6 {\n    type ipv6_addr : mark\n");
    elements(
        &mut s,
        p.maps
            .addrs_v6
            .iter()
            .map(|(a, e)| format!("{} : {}", v6(*a), e.class)),
    );
    s.push_str("  }\n  map net4 {\n    type ipv4_addr : mark\n    flags interval\n");
    elements(
        &mut s,
        p.maps
            .nets_v4
            .iter()
            .filter(|(k, _)| k.len > 0)
            .map(|(k, e)| {
                let a = k.addr;
                format!(
                    "{}.{}.{}.{}/{} : {}",
                    a[0], a[1], a[2], a[3], k.len, e.class
                )
            }),
    );
    s.push_str("  }\n  map net6 {\n    type ipv6_addr : mark\n    flags interval\n");
    elements(
        &mut s,
        p.maps
            .nets_v6
            .iter()
            .filter(|(k, _)| k.len > 0)
            .map(|(k, e)| format!("{}/{} : {}", v6(k.addr), k.len, e.class)),
    );
    s.push_str("  }\n");
    // One chain per class pair.
    let mut pair_elems = Vec::new();
    for (k, (key, pv)) in p.maps.pairs.iter().enumerate() {
        let (sc, dc) = (key.src, key.dst);
        let name = format!("p{k}");
        let _ = writeln!(s, "  chain {name} {{");
        if pv.pair != 0 {
            let ports: Vec<String> = p
                .maps
                .ports
                .iter()
                .filter(|(key, _)| key.pair == pv.pair)
                .filter_map(|(key, d)| {
                    let port = key.port;
                    let pr = match key.proto {
                        PROTO_TCP => "tcp",
                        PROTO_UDP => "udp",
                        _ => return None,
                    };
                    verdict(*d).map(|v| format!("{pr} . {port} : {v}"))
                })
                .collect();
            if !ports.is_empty() {
                let _ = writeln!(
                    s,
                    "    meta l4proto . th dport vmap {{ {} }}",
                    ports.join(", ")
                );
            }
        }
        if let Some(v) = verdict(pv.tcp) {
            let _ = writeln!(s, "    meta l4proto tcp {v}");
        }
        if let Some(v) = verdict(pv.udp) {
            let _ = writeln!(s, "    meta l4proto udp {v}");
        }
        if let Some(v) = verdict(pv.icmp) {
            let _ = writeln!(s, "    icmp type echo-request {v}");
            let _ = writeln!(s, "    icmpv6 type echo-request {v}");
        }
        if let Some(v) = verdict(pv.other) {
            let _ = writeln!(s, "    {v}");
        }
        s.push_str("  }\n");
        pair_elems.push(format!("{sc} . {dc} : jump {name}"));
    }
    s.push_str("  map pairs {\n    type mark . mark : verdict\n");
    elements(&mut s, pair_elems.into_iter());
    s.push_str("  }\n");
    // Interval maps may not overlap, so a /0 network (every address not otherwise matched) is the
    // starting class instead of an element: the same longest-prefix result.
    let d4 = p
        .maps
        .nets_v4
        .iter()
        .find(|(k, _)| k.len == 0)
        .map_or(p.unknown_class, |(_, e)| e.class);
    let d6 = p
        .maps
        .nets_v6
        .iter()
        .find(|(k, _)| k.len == 0)
        .map_or(p.unknown_class, |(_, e)| e.class);
    let policy = if p.default_action == Action::Allow {
        "accept"
    } else {
        "drop"
    };
    let _ = write!(
        s,
        "  chain forward {{\n    type filter hook forward priority filter; policy {policy};\n    \
         ct state established,related accept\n    \
         meta nfproto ipv4 meta mark set {d4}\n    meta nfproto ipv4 ct mark set {d4}\n    \
         meta nfproto ipv6 meta mark set {d6}\n    meta nfproto ipv6 ct mark set {d6}\n    \
         meta nfproto ipv4 meta mark set ip saddr map @net4\n    \
         meta nfproto ipv4 meta mark set ether saddr . ip saddr map @src4\n    \
         meta nfproto ipv4 ct mark set ip daddr map @net4\n    \
         meta nfproto ipv4 ct mark set ip daddr map @dst4\n    \
         meta nfproto ipv6 meta mark set ip6 saddr map @net6\n    \
         meta nfproto ipv6 meta mark set ether saddr . ip6 saddr map @src6\n    \
         meta nfproto ipv6 ct mark set ip6 daddr map @net6\n    \
         meta nfproto ipv6 ct mark set ip6 daddr map @dst6\n    \
         meta mark . ct mark vmap @pairs\n  }}\n}}\n",
        d4 = d4,
        d6 = d6,
    );
    s
}

/// Loads `text` into namespace `ns` with `nft -f`; wall-clock seconds (nft is a userspace
/// program: its parse, netlink and kernel time are all in it).
pub fn load(ns: &str, text: &str) -> Result<f64> {
    let path = std::env::temp_dir().join(format!("enforcer-bench-{}.nft", std::process::id()));
    std::fs::write(&path, text).context("write the nft ruleset")?;
    let _ = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "delete", "table", "inet", "enforcer",
        ])
        .output();
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f"])
        .arg(&path)
        .output()
        .context("run nft")?;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    if !out.status.success() {
        anyhow::bail!(
            "nft -f failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(secs)
}

/// `nft -f` load time of the equivalent ruleset for each size, in a scratch namespace.
pub fn load_times(sizes: &[usize], quick: bool) -> Value {
    let ns = format!("enfb-nft-{}", std::process::id());
    if Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        return json!({"error": "ip netns add failed"});
    }
    let mut rows = Vec::new();
    for &n in sizes {
        let row = (|| -> Result<Value> {
            let (_, compiled, _, _) = control::build(n)?;
            let text = ruleset(&compiled);
            let reps = if quick || n >= 100_000 { 2 } else { 5 };
            let mut ms = Vec::new();
            for _ in 0..reps {
                ms.push(load(&ns, &text)? * 1e3);
            }
            Ok(json!({"devices": n, "ruleset_bytes": text.len(), "load_ms": stats::summary(&ms)}))
        })();
        rows.push(row.unwrap_or_else(|e| json!({"devices": n, "error": format!("{e:#}")})));
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    Value::Array(rows)
}
