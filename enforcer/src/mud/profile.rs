//! A MUD file read into entries: one per ACE of the ACLs that `from-device-policy` and
//! `to-device-policy` name, with the matches this enforcer can express. Matches are read key by
//! key from the JSON, and any key not understood is an error naming the entry and the key.

use serde_json::{Map, Value};

use super::{MudError, entry_error};

/// Which way the ACL looks at packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `from-device-policy`: packets the device sends.
    FromDevice,
    /// `to-device-policy`: packets sent to the device.
    ToDevice,
}

/// The other end of an entry: what is not the device.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// Every address (no address match).
    Any,
    /// `ietf-acldns:dst-dnsname` / `src-dnsname`.
    Name(String),
    /// `destination-ipv4-network` and kin.
    Network(String),
    /// An abstraction of `ietf-mud:mud` matches, as `local-networks`, `controller:URI`,
    /// `manufacturer:NAME`, `model:URI`, `same-manufacturer`, `my-controller`.
    Abstraction(String),
}

/// Ports as a match gives them: inclusive range.
pub type Ports = (u16, u16);

/// One ACE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `ACL/ACE`, for errors and rule names.
    pub name: String,
    pub ace: String,
    pub direction: Direction,
    pub peer: Peer,
    /// IP protocol, `None` for any.
    pub protocol: Option<u8>,
    pub source_ports: Option<Ports>,
    pub destination_ports: Option<Ports>,
    /// `ietf-mud:direction-initiated` (TCP only): `Some(FromDevice)` or `Some(ToDevice)`.
    pub initiated: Option<Direction>,
    /// `accept` (true) or `drop`/`reject` (false).
    pub accept: bool,
}

/// What the MUD container says about itself.
#[derive(Clone, Debug, Default)]
pub struct About {
    pub mud_url: Option<String>,
    pub systeminfo: Option<String>,
}

/// Reads a MUD file's entries, from-device ACLs first.
pub fn read(doc: &Value) -> Result<(About, Vec<Entry>), MudError> {
    let mud = doc
        .get("ietf-mud:mud")
        .and_then(Value::as_object)
        .ok_or_else(|| MudError::NotMud("no `ietf-mud:mud` container".into()))?;
    let about = About {
        mud_url: mud
            .get("mud-url")
            .and_then(Value::as_str)
            .map(str::to_owned),
        systeminfo: mud
            .get("systeminfo")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let acls = doc
        .pointer("/ietf-access-control-list:acls/acl")
        .and_then(Value::as_array)
        .ok_or_else(|| MudError::NotMud("no `ietf-access-control-list:acls` list".into()))?;
    let mut entries = Vec::new();
    for (key, direction) in [
        ("from-device-policy", Direction::FromDevice),
        ("to-device-policy", Direction::ToDevice),
    ] {
        let Some(policy) = mud.get(key) else {
            continue;
        };
        let names = policy
            .pointer("/access-lists/access-list")
            .and_then(Value::as_array)
            .ok_or_else(|| MudError::NotMud(format!("`{key}` lists no access-lists")))?;
        for n in names {
            let name = n.get("name").and_then(Value::as_str).ok_or_else(|| {
                MudError::NotMud(format!("an access list of `{key}` has no name"))
            })?;
            let acl = acls
                .iter()
                .find(|a| a.get("name").and_then(Value::as_str) == Some(name))
                .ok_or_else(|| {
                    MudError::NotMud(format!(
                        "`{key}` names ACL {name}, which the file does not hold"
                    ))
                })?;
            let aces = acl
                .pointer("/aces/ace")
                .and_then(Value::as_array)
                .ok_or_else(|| MudError::NotMud(format!("ACL {name} has no aces")))?;
            for ace in aces {
                entries.push(read_ace(name, direction, ace)?);
            }
        }
    }
    Ok((about, entries))
}

fn read_ace(acl: &str, direction: Direction, ace: &Value) -> Result<Entry, MudError> {
    let ace_name = ace
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let name = format!("{acl}/{ace_name}");
    let err = |why: String| entry_error(&name, why);
    let accept = match ace.pointer("/actions/forwarding").and_then(Value::as_str) {
        Some("accept" | "ietf-access-control-list:accept") => true,
        Some(
            "drop" | "reject" | "ietf-access-control-list:drop" | "ietf-access-control-list:reject",
        ) => false,
        other => {
            return Err(err(format!(
                "action {other:?} is not accept, drop or reject"
            )));
        }
    };
    let mut e = Entry {
        name: name.clone(),
        ace: ace_name.to_owned(),
        direction,
        peer: Peer::Any,
        protocol: None,
        source_ports: None,
        destination_ports: None,
        initiated: None,
        accept,
    };
    let matches = ace
        .get("matches")
        .and_then(Value::as_object)
        .ok_or_else(|| err("no matches".into()))?;
    for (key, value) in matches {
        let body = value
            .as_object()
            .ok_or_else(|| err(format!("`{key}` is not an object")))?;
        match key.as_str() {
            "ipv4" | "ipv6" => read_ip(&mut e, key, body).map_err(err)?,
            "tcp" | "udp" => read_l4(&mut e, key, body).map_err(err)?,
            "icmp" => {
                if !body.is_empty() {
                    return Err(err(
                        "ICMP type and code matches cannot be expressed (only `icmp`: echo)".into(),
                    ));
                }
                e.protocol.get_or_insert(1);
            }
            "ietf-mud:mud" => read_abstraction(&mut e, body).map_err(err)?,
            other => return Err(err(format!("the match `{other}` cannot be expressed"))),
        }
    }
    Ok(e)
}

fn set_peer(e: &mut Entry, peer: Peer) -> Result<(), String> {
    if e.peer != Peer::Any && e.peer != peer {
        return Err(format!(
            "two peers ({:?} and {peer:?}) in one entry",
            e.peer
        ));
    }
    e.peer = peer;
    Ok(())
}

fn read_ip(e: &mut Entry, family: &str, body: &Map<String, Value>) -> Result<(), String> {
    for (key, value) in body {
        let text = || {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("`{family}.{key}` is not text"))
        };
        // The device's own side is the device: an address match there says nothing to convert.
        let (ours, theirs) = match e.direction {
            Direction::FromDevice => ("source", "destination"),
            Direction::ToDevice => ("destination", "source"),
        };
        match key.as_str() {
            "protocol" => {
                let p = value
                    .as_u64()
                    .and_then(|p| u8::try_from(p).ok())
                    .ok_or(format!("`{family}.protocol` is not a protocol number"))?;
                e.protocol = Some(p);
            }
            "ietf-acldns:dst-dnsname" | "ietf-acldns:src-dnsname" => {
                let theirs_name = match e.direction {
                    Direction::FromDevice => "ietf-acldns:dst-dnsname",
                    Direction::ToDevice => "ietf-acldns:src-dnsname",
                };
                if key != theirs_name {
                    return Err(format!("`{key}` names the device's own side"));
                }
                set_peer(e, Peer::Name(text()?))?;
            }
            k if k == format!("{theirs}-{family}-network") => set_peer(e, Peer::Network(text()?))?,
            k if k == format!("{ours}-{family}-network") => {
                return Err(format!(
                    "`{k}` matches the device's own address, which the policy gives"
                ));
            }
            other => return Err(format!("the match `{family}.{other}` cannot be expressed")),
        }
    }
    Ok(())
}

fn read_ports(v: &Value) -> Result<Ports, String> {
    let port = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
    };
    if let (Some(lo), Some(hi)) = (port("lower-port"), port("upper-port")) {
        return if lo <= hi {
            Ok((lo, hi))
        } else {
            Err(format!("port range {lo}-{hi} is empty"))
        };
    }
    let p = port("port").ok_or("a port match without a port 1-65535")?;
    match v.get("operator").and_then(Value::as_str).unwrap_or("eq") {
        "eq" => Ok((p, p)),
        "lte" => Ok((1, p)),
        "gte" => Ok((p, u16::MAX)),
        other => Err(format!("the port operator `{other}` cannot be expressed")),
    }
}

fn read_l4(e: &mut Entry, proto: &str, body: &Map<String, Value>) -> Result<(), String> {
    let number = if proto == "tcp" { 6 } else { 17 };
    if e.protocol.is_some_and(|p| p != number) {
        return Err(format!("`{proto}` with another protocol number"));
    }
    e.protocol = Some(number);
    for (key, value) in body {
        match key.as_str() {
            "source-port" => e.source_ports = Some(read_ports(value)?),
            "destination-port" => e.destination_ports = Some(read_ports(value)?),
            "ietf-mud:direction-initiated" if proto == "tcp" => {
                e.initiated = Some(match value.as_str() {
                    Some("from-device") => Direction::FromDevice,
                    Some("to-device") => Direction::ToDevice,
                    _ => {
                        return Err(
                            "direction-initiated is neither from-device nor to-device".into()
                        );
                    }
                });
            }
            other => return Err(format!("the match `{proto}.{other}` cannot be expressed")),
        }
    }
    Ok(())
}

fn read_abstraction(e: &mut Entry, body: &Map<String, Value>) -> Result<(), String> {
    for (key, value) in body {
        let abstraction = match key.as_str() {
            "local-networks" | "same-manufacturer" | "my-controller" => key.clone(),
            "controller" | "manufacturer" | "model" => {
                let v = value.as_str().ok_or(format!("`{key}` is not text"))?;
                format!("{key}:{v}")
            }
            other => return Err(format!("the abstraction `{other}` is unknown")),
        };
        set_peer(e, Peer::Abstraction(abstraction))?;
    }
    Ok(())
}
