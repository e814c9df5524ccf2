//! What the connection-state tables (the program's `flow` module) answer for a packet they let
//! through, packed in one word so it can come back from an out-of-line lookup (`out_of_line`).

use crate::out_of_line::InRegister;

/// A packet that belongs to a remembered flow or datagram: who sent it and which rule allowed the
/// flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub device: u32,
    pub rule: u32,
    /// The packet is its sender's, in audit, on a flow the policy denies
    /// (`enforcer_common::flow::FLOW_F_AUDIT`): counted as `audit`.
    pub audit: bool,
}

/// Set in the word of a hit; a miss is 0. The device id takes the 30 bits below [`AUDIT`].
const HIT: u64 = 1 << 63;
const AUDIT: u64 = 1 << 62;
const _: () = assert!(enforcer_common::MAX_DEVICES <= 1 << 30);

impl InRegister for Option<Hit> {
    #[inline(always)]
    fn into_word(self) -> u64 {
        self.map_or(0, |h| {
            let audit = if h.audit { AUDIT } else { 0 };
            HIT | audit | (u64::from(h.device) << 32) | u64::from(h.rule)
        })
    }

    #[inline(always)]
    fn from_word(word: u64) -> Self {
        (word & HIT != 0).then_some(Hit {
            device: ((word >> 32) as u32) & 0x3fff_ffff,
            rule: word as u32,
            audit: word & AUDIT != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(hit: Option<Hit>) -> Option<Hit> {
        Option::<Hit>::from_word(hit.into_word())
    }

    #[test]
    fn a_miss_is_the_zero_word() {
        assert_eq!(None::<Hit>.into_word(), 0);
        assert_eq!(round_trip(None), None);
    }

    #[test]
    fn a_hit_on_device_and_rule_zero_is_still_a_hit() {
        let h = Hit {
            device: 0,
            rule: 0,
            audit: false,
        };
        assert_eq!(round_trip(Some(h)), Some(h));
    }

    #[test]
    fn the_largest_device_and_rule_ids_survive_the_word() {
        let h = Hit {
            device: enforcer_common::MAX_DEVICES - 1,
            rule: u32::MAX,
            audit: true,
        };
        assert_eq!(round_trip(Some(h)), Some(h));
    }
}
