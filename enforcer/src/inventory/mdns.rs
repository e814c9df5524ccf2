//! mDNS announcements (RFC 6762, DNS-SD RFC 6763), decoded by `hickory-proto`: the host name
//! (owner of A/AAAA records and SRV targets), service types and instance names (PTR), and model or
//! firmware from TXT keys where the device gives them.

use hickory_proto::{
    op::Message,
    rr::{Name, RData},
};

use super::{MAX_NAMES, Observation, ObserveError, clean, clean_bytes, some_text};

/// TXT keys that name a model: `md` (HomeKit, Chromecast), `model`/`mdl` (AirPlay, IPP), `ty`
/// (IPP printers), `product`.
const MODEL_KEYS: [&str; 5] = ["md", "model", "mdl", "ty", "product"];
/// TXT keys that name firmware: `fv` (HomeKit), `fw`, `firmware`, `fwversion`, `srcvers`
/// (AirPlay), `vers`.
const FIRMWARE_KEYS: [&str; 6] = ["fv", "fw", "firmware", "fwversion", "srcvers", "vers"];

/// The meta-query name whose PTR records list service types (RFC 6763 §9).
const SERVICES_META: &str = "_services._dns-sd._udp.local";

pub fn observe(payload: &[u8]) -> Result<Observation, ObserveError> {
    let msg = Message::from_vec(payload)?;
    let mut o = Observation::default();
    // Probes carry the records they claim in the authority section; announcements in answers
    // and additionals.
    for r in msg
        .answers
        .iter()
        .chain(&msg.authorities)
        .chain(&msg.additionals)
    {
        match &r.data {
            RData::A(_) | RData::AAAA(_) if o.host_name.is_none() => {
                o.host_name = local_host(&r.name);
            }
            RData::SRV(srv) => {
                if o.host_name.is_none() {
                    o.host_name = local_host(&srv.target);
                }
                push(&mut o.instances, first_label(&r.name));
            }
            RData::PTR(ptr) => {
                let owner = text_of(&r.name);
                if owner.eq_ignore_ascii_case(SERVICES_META) {
                    push(&mut o.services, service_type(&ptr.0));
                } else if !owner.ends_with(".in-addr.arpa") && !owner.ends_with(".ip6.arpa") {
                    push(&mut o.services, service_type(&r.name));
                    push(&mut o.instances, first_label(&ptr.0));
                }
            }
            RData::TXT(txt) => {
                for entry in &txt.txt_data {
                    read_txt(entry, &mut o);
                }
            }
            _ => {}
        }
    }
    Ok(o)
}

/// A `key=value` TXT string (RFC 6763 §6.3, keys case-insensitive).
fn read_txt(entry: &[u8], o: &mut Observation) {
    let text = String::from_utf8_lossy(entry);
    let Some((key, value)) = text.split_once('=') else {
        return;
    };
    let key = key.to_ascii_lowercase();
    if o.model.is_none() && MODEL_KEYS.contains(&key.as_str()) {
        o.model = some_text(clean(value));
    } else if o.firmware.is_none() && FIRMWARE_KEYS.contains(&key.as_str()) {
        o.firmware = some_text(clean(value));
    }
}

fn text_of(name: &Name) -> String {
    clean(name.to_utf8().trim_end_matches('.'))
}

/// `host` of `host.local.`; names outside `.local` are not the device's own.
fn local_host(name: &Name) -> Option<String> {
    let text = text_of(name);
    let host = text.strip_suffix(".local")?;
    some_text(clean(host))
}

/// The first label, as the device wrote it (an instance name may hold dots and spaces).
fn first_label(name: &Name) -> Option<String> {
    name.iter().next().map(clean_bytes).and_then(some_text)
}

/// `_hap._tcp` of `_hap._tcp.local.` or of `Instance._hap._tcp.local.`.
fn service_type(name: &Name) -> Option<String> {
    let labels: Vec<String> = name.iter().map(clean_bytes).collect();
    let at = labels.iter().position(|l| l == "_tcp" || l == "_udp")?;
    let service = labels.get(at.checked_sub(1)?)?;
    some_text(format!("{service}.{}", labels[at]))
}

fn push(list: &mut Vec<String>, item: Option<String>) {
    if let Some(item) = item
        && list.len() < MAX_NAMES
        && !list.contains(&item)
    {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, str::FromStr};

    use hickory_proto::{
        op::{Message, MessageType, OpCode},
        rr::{
            Record,
            rdata::{A, PTR, SRV, TXT},
        },
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).expect("a name")
    }

    /// A HomeKit accessory's announcement, as a responder sends it.
    pub(crate) fn announcement() -> Vec<u8> {
        let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
        // An instance name may hold spaces: built from raw labels.
        let instance = Name::from_labels(["Kitchen Plug".as_bytes(), b"_hap", b"_tcp", b"local"])
            .expect("a name");
        msg.answers.push(Record::from_rdata(
            name("_hap._tcp.local."),
            120,
            RData::PTR(PTR(instance.clone())),
        ));
        msg.additionals.push(Record::from_rdata(
            instance.clone(),
            120,
            RData::SRV(SRV::new(0, 0, 80, name("plug-7f.local."))),
        ));
        msg.additionals.push(Record::from_rdata(
            instance,
            120,
            RData::TXT(TXT::new(vec![
                "md=Eve Energy".into(),
                "fv=3.2.1".into(),
                "c#=2".into(),
            ])),
        ));
        msg.additionals.push(Record::from_rdata(
            name("plug-7f.local."),
            120,
            RData::A(A(Ipv4Addr::new(10, 1, 1, 50))),
        ));
        msg.to_vec().expect("encode")
    }

    #[test]
    fn an_announcement_gives_host_service_instance_model_and_firmware() {
        let o = observe(&announcement()).expect("parsed");
        assert_eq!(o.host_name.as_deref(), Some("plug-7f"));
        assert_eq!(o.services, ["_hap._tcp"]);
        assert_eq!(o.instances, ["Kitchen Plug"]);
        assert_eq!(o.model.as_deref(), Some("Eve Energy"));
        assert_eq!(o.firmware.as_deref(), Some("3.2.1"));
    }

    #[test]
    fn a_cut_or_garbage_message_is_refused() {
        let whole = announcement();
        assert!(observe(&whole[..whole.len() / 2]).is_err());
        assert!(observe(&[0xc0; 64]).is_err());
    }
}
