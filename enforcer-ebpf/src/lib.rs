//! Host-testable pieces of the XDP program: pure functions with no kernel dependency, unit-tested
//! on the host (`cargo test -p enforcer-ebpf --lib`) and inlined into the program (src/main.rs).
//!
//! Being a library also lets the `enforcer` crate list this package as a build dependency, so cargo
//! rebuilds the embedded object when the program changes.
#![cfg_attr(not(test), no_std)]

use aya_ebpf as _;
use enforcer_common as _;

pub mod hit;
pub mod out_of_line;
pub mod scope;
