//! DHCPv4 and DHCPv6 client messages, decoded by `dhcproto`: the host name, the parameter list
//! (the fingerprint Fingerbank and its peers key on), the vendor class, the client id and the MUD
//! URL (RFC 8520).

use dhcproto::{
    Decodable, Decoder,
    v4::{self, DhcpOption as V4},
    v6::{self, DhcpOption as V6},
};
use hickory_proto::{
    rr::Name,
    serialize::binary::{BinDecodable, BinDecoder},
};

use super::{Observation, ObserveError, clean, clean_bytes, hex, some_text};

/// DHCPv4 option 161 and DHCPv6 option 112: the MUD URL (RFC 8520 §10).
const MUD_URL_V4: u8 = 161;
const MUD_URL_V6: u16 = 112;
/// DHCPv6 option 39: the client FQDN (RFC 4704).
const CLIENT_FQDN_V6: u16 = 39;

/// A DHCPv4 client message (BOOTREQUEST); a server's reply describes no client.
pub fn observe_v4(payload: &[u8]) -> Result<Observation, ObserveError> {
    let msg = v4::Message::decode(&mut Decoder::new(payload))?;
    if msg.opcode() != v4::Opcode::BootRequest {
        return Err(ObserveError::NotEvidence("a DHCPv4 reply"));
    }
    let mut o = Observation::default();
    for (_, opt) in msg.opts().iter() {
        match opt {
            V4::Hostname(name) => o.host_name = some_text(clean(name)),
            V4::ParameterRequestList(codes) => {
                o.fingerprint = some_text(list(codes.iter().map(|c| u16::from(u8::from(*c)))));
            }
            V4::ClassIdentifier(bytes) => o.vendor_class = some_text(clean_bytes(bytes)),
            V4::ClientIdentifier(bytes) => o.client_id = some_text(hex(bytes)),
            V4::Unknown(u) if u8::from(u.code()) == MUD_URL_V4 => {
                o.mud_url = some_text(clean_bytes(u.data()));
            }
            _ => {}
        }
    }
    Ok(o)
}

/// A DHCPv6 message a client sends (solicit, request, renew, information request, ...).
pub fn observe_v6(payload: &[u8]) -> Result<Observation, ObserveError> {
    use v6::MessageType as T;
    let msg = v6::Message::decode(&mut Decoder::new(payload))?;
    if !matches!(
        msg.msg_type(),
        T::Solicit
            | T::Request
            | T::Confirm
            | T::Renew
            | T::Rebind
            | T::Release
            | T::Decline
            | T::InformationRequest
    ) {
        return Err(ObserveError::NotEvidence("not a DHCPv6 client message"));
    }
    let mut o = Observation::default();
    for opt in msg.opts().iter() {
        match opt {
            V6::ClientId(duid) => o.client_id = some_text(hex(duid)),
            V6::ORO(oro) => {
                o.fingerprint_v6 = some_text(list(oro.opts.iter().map(|c| u16::from(*c))))
            }
            V6::VendorClass(vc) => {
                let text: Vec<String> = vc.data.iter().map(|d| clean_bytes(d)).collect();
                o.vendor_class = some_text(clean(&text.join(" ")));
            }
            V6::Unknown(u) => match u16::from(u.code()) {
                MUD_URL_V6 => o.mud_url = some_text(clean_bytes(u.data())),
                CLIENT_FQDN_V6 => o.fqdn = fqdn(u.data()),
                _ => {}
            },
            _ => {}
        }
    }
    if let Some(f) = &o.fqdn {
        o.host_name = f.split('.').next().map(str::to_owned).and_then(some_text);
    }
    Ok(o)
}

/// The domain name of an RFC 4704 FQDN option: a flags byte, then the name in DNS wire format
/// (decoded by `hickory-proto`; a partial name without its root label is read as far as it goes).
fn fqdn(data: &[u8]) -> Option<String> {
    let name = Name::read(&mut BinDecoder::new(data.get(1..)?)).ok()?;
    some_text(clean(name.to_utf8().trim_end_matches('.')))
}

fn list(codes: impl Iterator<Item = u16>) -> String {
    codes.map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use dhcproto::{Encodable, Encoder, v4::OptionCode};

    use super::*;

    fn discover() -> v4::Message {
        let mut msg = v4::Message::default();
        msg.set_opcode(v4::Opcode::BootRequest);
        let opts = msg.opts_mut();
        opts.insert(V4::MessageType(v4::MessageType::Discover));
        opts.insert(V4::Hostname("kitchen-plug".into()));
        opts.insert(V4::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::NtpServers,
        ]));
        opts.insert(V4::ClassIdentifier(b"udhcp 1.30.1".to_vec()));
        opts.insert(V4::ClientIdentifier(vec![1, 0, 0x40, 0x8c, 1, 2, 3]));
        opts.insert(V4::Unknown(v4::UnknownOption::new(
            OptionCode::from(MUD_URL_V4),
            b"https://mud.example.com/plug.json".to_vec(),
        )));
        msg
    }

    fn encode(msg: &impl Encodable) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).expect("encode");
        buf
    }

    #[test]
    fn a_dhcpv4_discover_gives_host_name_fingerprint_vendor_class_and_mud_url() {
        let o = observe_v4(&encode(&discover())).expect("parsed");
        assert_eq!(o.host_name.as_deref(), Some("kitchen-plug"));
        assert_eq!(o.fingerprint.as_deref(), Some("1,3,6,42"));
        assert_eq!(o.vendor_class.as_deref(), Some("udhcp 1.30.1"));
        assert_eq!(o.client_id.as_deref(), Some("0100408c010203"));
        assert_eq!(
            o.mud_url.as_deref(),
            Some("https://mud.example.com/plug.json")
        );
    }

    #[test]
    fn a_dhcpv4_reply_and_garbage_are_refused() {
        let mut offer = discover();
        offer.set_opcode(v4::Opcode::BootReply);
        assert!(observe_v4(&encode(&offer)).is_err());
        assert!(observe_v4(&[0xff; 40]).is_err());
        assert!(observe_v4(&[]).is_err());
    }

    #[test]
    fn a_dhcpv6_solicit_gives_vendor_class_fqdn_and_mud_url() {
        let mut msg = v6::Message::new(v6::MessageType::Solicit);
        let opts = msg.opts_mut();
        opts.insert(V6::ClientId(vec![0, 3, 0, 1, 0, 0x40, 0x8c, 1, 2, 3]));
        // dhcproto 0.15 encodes option 16's length wrong (items, not bytes; its decoder is
        // right): the option is written raw, enterprise number then one length-prefixed class.
        let mut class = 4491u32.to_be_bytes().to_vec();
        class.extend_from_slice(&9u16.to_be_bytes());
        class.extend_from_slice(b"docsis3.0");
        opts.insert(V6::Unknown(v6::UnknownOption::new(
            v6::OptionCode::VendorClass,
            class,
        )));
        let mut fqdn = vec![0u8];
        fqdn.extend_from_slice(b"\x03cam\x04home\x04arpa\x00");
        opts.insert(V6::Unknown(v6::UnknownOption::new(
            v6::OptionCode::from(CLIENT_FQDN_V6),
            fqdn,
        )));
        opts.insert(V6::Unknown(v6::UnknownOption::new(
            v6::OptionCode::from(MUD_URL_V6),
            b"https://mud.example.com/cam.json".to_vec(),
        )));
        let o = observe_v6(&encode(&msg)).expect("parsed");
        assert_eq!(o.vendor_class.as_deref(), Some("docsis3.0"));
        assert_eq!(o.fqdn.as_deref(), Some("cam.home.arpa"));
        assert_eq!(o.host_name.as_deref(), Some("cam"));
        assert_eq!(
            o.mud_url.as_deref(),
            Some("https://mud.example.com/cam.json")
        );
        assert_eq!(
            o.client_id.as_deref(),
            Some("00030001".to_owned() + "00408c010203").as_deref()
        );
        let reply = v6::Message::new(v6::MessageType::Reply);
        assert!(observe_v6(&encode(&reply)).is_err());
    }
}
