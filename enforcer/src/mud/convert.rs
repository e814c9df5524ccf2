//! MUD entries to policy rules for one device.
//!
//! Rules here are stateful (a flow's replies pass with it), so each pair of ACEs (the request one
//! way, the reply the other) becomes one rule from the initiator, in the initiator's direction:
//! `direction-initiated` says who initiates TCP; otherwise an entry matching only a source port is
//! the reply half. A reply half whose request half the profile lacks cannot be expressed (the
//! policy has no source ports) and is refused by name, as is every match `profile` does not read.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    MudError, entry_error,
    profile::{Direction, Entry, Peer, Ports},
};
use crate::inventory::naming;

/// The operator's destinations for abstractions: `local-networks` -> `zone:lan`, ...
pub type Maps = BTreeMap<String, String>;

/// Endpoints a mapping may give.
const ENDPOINT_PREFIXES: [&str; 3] = ["zone:", "device:", "network:"];

/// Reads `--map ABSTRACTION=DESTINATION` arguments (split at the last `=`: a controller's URI
/// may hold one, a destination never does).
pub fn parse_maps(args: &[String]) -> Result<Maps, MudError> {
    args.iter()
        .map(|a| {
            let (k, v) = a
                .rsplit_once('=')
                .ok_or_else(|| MudError::BadMap(a.clone()))?;
            let endpoint = ENDPOINT_PREFIXES
                .iter()
                .any(|p| v.starts_with(p) && v.len() > p.len())
                || v == "router"
                || v == "any";
            if k.is_empty() || !endpoint {
                return Err(MudError::BadMap(a.clone()));
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// One rule of the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The converted profile: networks for address matches, and rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Converted {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Vec<String>>,
    pub rules: Vec<Rule>,
}

/// Whether `e` is the reply half of a flow the other side initiates.
fn is_reply(e: &Entry) -> bool {
    match e.initiated {
        Some(initiator) => initiator != e.direction,
        None => e.source_ports.is_some() && e.destination_ports.is_none(),
    }
}

/// Whether `request` is the request half `reply` answers.
fn answers(reply: &Entry, request: &Entry) -> bool {
    request.direction != reply.direction
        && !is_reply(request)
        && request.peer == reply.peer
        && request.protocol == reply.protocol
        && request.accept == reply.accept
        && (reply.source_ports.is_none() || reply.source_ports == request.destination_ports)
}

fn ports(p: Ports) -> String {
    if p.0 == p.1 {
        p.0.to_string()
    } else {
        format!("{}-{}", p.0, p.1)
    }
}

/// The service an initiating entry allows.
fn service(e: &Entry) -> Result<String, MudError> {
    if e.source_ports.is_some() {
        return Err(entry_error(
            &e.name,
            "a source-port match on the initiating side cannot be expressed (rules name destination ports)",
        ));
    }
    match (e.protocol, e.destination_ports) {
        (None, None) => Ok("any".into()),
        (Some(6), p) | (Some(17), p) => {
            let proto = if e.protocol == Some(6) { "tcp" } else { "udp" };
            Ok(p.map_or_else(|| proto.to_owned(), |p| format!("{proto}/{}", ports(p))))
        }
        (Some(1 | 58), None) => Ok("icmp".into()),
        (Some(p), _) => Err(entry_error(
            &e.name,
            format!("protocol {p} with these matches cannot be expressed (tcp, udp, icmp or any)"),
        )),
        (None, Some(_)) => Err(entry_error(&e.name, "ports without a protocol")),
    }
}

/// Converts the entries into rules of `device`.
pub fn convert(device: &str, entries: &[Entry], maps: &Maps) -> Result<Converted, MudError> {
    if naming::sanitise(device).as_deref() != Some(device) {
        return Err(MudError::BadDevice(device.to_owned()));
    }
    let mut out = Converted::default();
    let mut taken = BTreeSet::new();
    for e in entries {
        if is_reply(e) {
            if !entries.iter().any(|r| answers(e, r)) {
                return Err(entry_error(
                    &e.name,
                    "a reply half whose request half the profile lacks cannot be expressed (rules allow flows from their initiator)",
                ));
            }
            continue;
        }
        let base = format!(
            "mud-{device}-{}",
            naming::sanitise(&e.ace).unwrap_or_else(|| "entry".into())
        );
        let name = naming::unique(Some(&base), &base, &mut taken);
        let peer = match &e.peer {
            Peer::Any => "any".to_owned(),
            Peer::Name(n) => format!("dns:{}", n.trim_end_matches('.').to_ascii_lowercase()),
            Peer::Network(cidr) => {
                if cidr.parse::<ipnet::IpNet>().is_err() {
                    return Err(entry_error(&e.name, format!("`{cidr}` is no CIDR")));
                }
                out.networks.insert(name.clone(), vec![cidr.clone()]);
                format!("network:{name}")
            }
            Peer::Abstraction(a) => maps.get(a).cloned().ok_or_else(|| {
                entry_error(
                    &e.name,
                    format!("the abstraction `{a}` needs a destination: --map {a}=zone:NAME (or device:, network:)"),
                )
            })?,
        };
        let me = format!("device:{device}");
        let (from, to) = match e.direction {
            Direction::FromDevice => (me, peer),
            Direction::ToDevice => {
                if peer.starts_with("dns:") {
                    return Err(entry_error(
                        &e.name,
                        "a DNS name as the side that initiates cannot be expressed (dns: names are destinations)",
                    ));
                }
                (peer, me)
            }
        };
        let svc = vec![service(e)?];
        let (allow, deny) = if e.accept {
            (svc, vec![])
        } else {
            (vec![], svc)
        };
        out.rules.push(Rule {
            name,
            from,
            to,
            allow,
            deny,
        });
    }
    Ok(out)
}

/// The rules as policy YAML, with a header saying where they came from and what to check.
pub fn to_yaml(
    c: &Converted,
    source: &str,
    about: &super::profile::About,
) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(c)?;
    let line = |k: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!("# {k}: {}\n", crate::inventory::clean(v)))
            .unwrap_or_default()
    };
    Ok(format!(
        "# Converted by `enforcer import mud` from {source}: review, then add to the policy.\n\
         # Nothing was applied. `dns:` destinations need the policy's `dns:` section.\n{}{}{body}",
        line("mud-url", &about.mud_url),
        line("systeminfo", &about.systeminfo),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mud::profile::read;

    /// (from, to, first allowed service) of each rule.
    fn flows(c: &Converted) -> Vec<(&str, &str, &str)> {
        c.rules
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str(), r.allow[0].as_str()))
            .collect()
    }

    fn load(json: &str) -> Vec<Entry> {
        read(&serde_json::from_str(json).expect("json"))
            .expect("a MUD file")
            .1
    }

    const PLUG: &str = include_str!("../../../tests/mud/plug.json");
    const HUB_DEVICE: &str = include_str!("../../../tests/mud/bulb-with-controller.json");
    const UNSUPPORTED: &str = include_str!("../../../tests/mud/unsupported.json");

    #[test]
    fn the_plug_talks_to_ntp_and_its_cloud_by_name_and_replies_fold_into_flows() {
        let c = convert("plug", &load(PLUG), &Maps::new()).expect("converted");
        assert_eq!(
            flows(&c),
            [
                ("device:plug", "dns:cloud.plug.example.com", "tcp/443"),
                ("device:plug", "dns:pool.ntp.org", "udp/123"),
            ]
        );
    }

    #[test]
    fn local_networks_and_controller_become_the_mapped_destinations() {
        let maps = parse_maps(&[
            "local-networks=zone:lan".into(),
            "controller:https://hub.example.com/mud=device:hub".into(),
        ])
        .expect("maps");
        let c = convert("bulb", &load(HUB_DEVICE), &maps).expect("converted");
        assert_eq!(
            flows(&c),
            [
                ("device:bulb", "device:hub", "tcp/8443"),
                ("zone:lan", "device:bulb", "tcp/80"),
                ("device:hub", "device:bulb", "udp/5683"),
            ]
        );
    }

    #[test]
    fn an_abstraction_without_a_mapping_is_refused_by_entry() {
        let err = convert("bulb", &load(HUB_DEVICE), &Maps::new()).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("mud-bulb-v4fr/cntrl0-frdev"), "{text}");
        assert!(
            text.contains("--map controller:https://hub.example.com/mud="),
            "{text}"
        );
    }

    #[test]
    fn an_unsupported_entry_is_refused_by_name() {
        let json: serde_json::Value = serde_json::from_str(UNSUPPORTED).expect("json");
        let err = read(&json).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "entry mud-cam-v4fr/ttl-limited: the match `ipv4.ttl` cannot be expressed"
        );
    }

    #[test]
    fn a_reply_half_without_its_request_is_refused() {
        let mut entries = load(PLUG);
        entries.retain(|e| e.direction == Direction::ToDevice);
        let err = convert("plug", &entries, &Maps::new()).expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("entry mud-plug-v4to/cl0-todev: a reply half"),
            "{err}"
        );
    }

    #[test]
    fn bad_maps_and_device_names_are_refused() {
        assert!(parse_maps(&["local-networks".into()]).is_err());
        assert!(parse_maps(&["local-networks=lan".into()]).is_err());
        assert!(convert("Bad Name", &[], &Maps::new()).is_err());
    }
}
