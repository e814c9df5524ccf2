//! The read-only "explain" entry point: one crafted frame judged against the maps it shares with
//! the enforcing program, its verdict handed back here instead of acted on.
//!
//! `enforcer test`, `enforcer explain` and the guards before every policy switch run a probe frame
//! through [`EXPLAIN_PROGRAM`] with `BPF_PROG_TEST_RUN`. That program parses the frame, resolves
//! both ends and judges it as the first packet of a new flow exactly as [`crate::PROGRAM`] does,
//! but writes nothing the enforcing program keeps: no counter, flow, fragment, quarantine,
//! discovery entry, event or budget. Its only write is [`EXPLAIN_MAP`], which is never pinned, so
//! every loaded instance (the daemon's, a probe's) has its own.

/// Name of the explain program symbol (an XDP program in the same object as [`crate::PROGRAM`]).
pub const EXPLAIN_PROGRAM: &str = "enforcer_explain";

/// `EXPLAIN`: `Array<Explanation>`, one row. Userspace writes the request
/// ([`Explanation::request`]) before a run; the program overwrites the row with its answer. Not
/// pinned: private to each loaded instance.
pub const EXPLAIN_MAP: &str = "EXPLAIN";

/// Request flag: judge the frame as the router's own packet (`from: router`), as the egress
/// program judges what the router sends, whatever its source address.
pub const EXPLAIN_REQ_ROUTER_SOURCE: u32 = 1;

/// What the program made of the frame ([`Explanation::outcome`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExplainOutcome {
    /// The program never wrote the row (it was not run, or a run failed before the end).
    NotRun = 0,
    /// Parsed and judged: the verdict fields are meaningful.
    Judged = 1,
    /// Not an IP packet the policy judges (ARP, neighbour discovery, malformed).
    NotJudged = 2,
    /// No policy is loaded in the live slot: the enforcing program would drop it.
    NoPolicy = 3,
}

impl ExplainOutcome {
    #[must_use]
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Judged,
            2 => Self::NotJudged,
            3 => Self::NoPolicy,
            _ => Self::NotRun,
        }
    }
}

/// The source is in quarantine now (its class is the quarantine class).
pub const EXPLAIN_F_SRC_QUARANTINED: u8 = 1;
/// The destination is a device in quarantine now.
pub const EXPLAIN_F_DST_QUARANTINED: u8 = 2;
/// MAC and source address disagree with the policy.
pub const EXPLAIN_F_SRC_SPOOFED: u8 = 4;
/// The source is no listed device and in no network (`defaults.unknown`).
pub const EXPLAIN_F_SRC_UNKNOWN: u8 = 8;
/// The source is in audit (`mode:` of its device or zone, or `defaults.mode`): the verdict is what
/// the policy says, but a deny would only be counted.
pub const EXPLAIN_F_AUDIT: u8 = 16;
/// The frame was judged as the router's own packet ([`EXPLAIN_REQ_ROUTER_SOURCE`]).
pub const EXPLAIN_F_ROUTER_SOURCE: u8 = 32;

/// The one row of [`EXPLAIN_MAP`]: the request going in, the verdict and each end's resolution
/// coming out. Device ids are rows of the per-device arrays: a listed device, a network
/// ([`crate::network_device`]), [`crate::ROUTER_DEVICE`] or [`crate::UNKNOWN_DEVICE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Explanation {
    /// Generation of the live policy that judged the frame (0: none).
    pub generation: u64,
    /// `EXPLAIN_REQ_*`, written by userspace before the run and left as it was.
    pub request: u32,
    /// The deciding rule id (`DEFAULT_RULE` for the default, spoofing and no-flow denials).
    pub rule: u32,
    pub src_device: u32,
    pub dst_device: u32,
    /// Classes after quarantine (a quarantined end has the quarantine class).
    pub src_class: u16,
    pub dst_class: u16,
    /// [`ExplainOutcome`].
    pub outcome: u8,
    /// [`crate::Verdict`] as u8: `Allow` or `Deny`, the policy's verdict as enforced (never
    /// `Audit`: audit mode is in `flags`).
    pub verdict: u8,
    /// [`crate::event::DenyReason`] as u8 when denied; 0 when allowed.
    pub reason: u8,
    /// `EXPLAIN_F_*`.
    pub flags: u8,
    /// `DST_F_*` of the destination's entry (a tripwire, an on-link network).
    pub dst_flags: u8,
    /// The live slot read.
    pub slot: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Explanation>() == 40);

impl Explanation {
    /// A request row: everything zero but `request`.
    #[must_use]
    pub const fn request(request: u32) -> Self {
        Self {
            generation: 0,
            request,
            rule: 0,
            src_device: 0,
            dst_device: 0,
            src_class: 0,
            dst_class: 0,
            outcome: ExplainOutcome::NotRun as u8,
            verdict: 0,
            reason: 0,
            flags: 0,
            dst_flags: 0,
            slot: 0,
            _pad: [0; 2],
        }
    }

    #[must_use]
    pub const fn outcome(&self) -> ExplainOutcome {
        ExplainOutcome::from_u8(self.outcome)
    }

    #[must_use]
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}
