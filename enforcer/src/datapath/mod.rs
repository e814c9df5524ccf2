//! The facade over the XDP program and its maps: load, attach, apply a compiled policy, read.

/// The eBPF object, built by `build.rs` and embedded so the binary is all a router needs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer-xdp"));
