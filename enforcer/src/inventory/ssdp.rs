//! SSDP (UPnP device architecture): NOTIFY announcements and M-SEARCH responses, whose headers
//! `httparse` reads. SERVER is `OS/version UPnP/1.x product/version`; its product part is the
//! model hint and its version the firmware hint.

use super::{MAX_NAMES, Observation, ObserveError, clean, some_text};

/// Most headers read; an announcement carries about ten.
const MAX_HEADERS: usize = 32;

pub fn observe(payload: &[u8]) -> Result<Observation, ObserveError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = if payload.starts_with(b"HTTP/") {
        let mut resp = httparse::Response::new(&mut headers);
        let status = resp.parse(payload)?;
        if resp.code != Some(200) {
            return Err(ObserveError::NotEvidence("an SSDP error response"));
        }
        status
    } else {
        let mut req = httparse::Request::new(&mut headers);
        let status = req.parse(payload)?;
        // M-SEARCH comes from control points looking for others: it describes no device.
        if req.method != Some("NOTIFY") {
            return Err(ObserveError::NotEvidence("not an SSDP NOTIFY"));
        }
        status
    };
    if parsed.is_partial() {
        return Err(ObserveError::NotEvidence("an SSDP message cut short"));
    }
    let mut o = Observation::default();
    for h in headers.iter().take_while(|h| !h.name.is_empty()) {
        let value = || some_text(clean(&String::from_utf8_lossy(h.value)));
        match h.name.to_ascii_uppercase().as_str() {
            "SERVER" => o.ssdp_server = value(),
            "USN" => o.ssdp_usn = value(),
            "LOCATION" => o.ssdp_location = value(),
            "NT" | "ST" => {
                if let Some(v) = value()
                    && o.services.len() < MAX_NAMES
                {
                    o.services.push(v);
                }
            }
            _ => {}
        }
    }
    if let Some((model, firmware)) = o.ssdp_server.as_deref().and_then(product) {
        o.model = some_text(model);
        o.firmware = some_text(firmware);
    }
    Ok(o)
}

/// The product token of a SERVER string: the one after `UPnP/x.y`, split at its `/`.
fn product(server: &str) -> Option<(String, String)> {
    let mut tokens = server.split_whitespace();
    tokens.find(|t| t.to_ascii_lowercase().starts_with("upnp/"))?;
    let (model, version) = tokens.next()?.split_once('/')?;
    Some((clean(model), clean(version)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const NOTIFY: &[u8] = b"NOTIFY * HTTP/1.1\r\n\
        HOST: 239.255.255.250:1900\r\n\
        CACHE-CONTROL: max-age=100\r\n\
        LOCATION: http://10.1.1.60:80/description.xml\r\n\
        SERVER: Linux/3.14.0 UPnP/1.0 IpBridge/1.26.0\r\n\
        NTS: ssdp:alive\r\n\
        NT: urn:schemas-upnp-org:device:basic:1\r\n\
        USN: uuid:2f402f80-da50-11e1-9b23-001788255acc::urn:schemas-upnp-org:device:basic:1\r\n\
        \r\n";

    #[test]
    fn a_notify_gives_server_usn_location_and_product_hints() {
        let o = observe(NOTIFY).expect("parsed");
        assert_eq!(
            o.ssdp_server.as_deref(),
            Some("Linux/3.14.0 UPnP/1.0 IpBridge/1.26.0")
        );
        assert_eq!(o.model.as_deref(), Some("IpBridge"));
        assert_eq!(o.firmware.as_deref(), Some("1.26.0"));
        assert_eq!(
            o.ssdp_location.as_deref(),
            Some("http://10.1.1.60:80/description.xml")
        );
        assert!(
            o.ssdp_usn
                .as_deref()
                .is_some_and(|u| u.starts_with("uuid:2f402f80"))
        );
        assert_eq!(o.services, ["urn:schemas-upnp-org:device:basic:1"]);
    }

    #[test]
    fn a_search_response_counts_and_a_search_a_cut_message_and_garbage_do_not() {
        let response = b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nSERVER: RTOS/1 UPnP/1.1 Cam/7.2\r\nUSN: uuid:1::upnp:rootdevice\r\n\r\n";
        let o = observe(response).expect("parsed");
        assert_eq!(
            (o.model.as_deref(), o.firmware.as_deref()),
            (Some("Cam"), Some("7.2"))
        );
        let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n";
        assert!(observe(search).is_err());
        assert!(observe(&NOTIFY[..60]).is_err());
        assert!(observe(&[0u8; 30]).is_err());
    }
}
