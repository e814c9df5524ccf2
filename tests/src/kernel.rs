//! Gatekeeping for tests that need the kernel (root: CAP_BPF, CAP_NET_ADMIN). One implementation,
//! in `netns`; re-exported here for the datapath tests.

pub use crate::netns::require_root;
