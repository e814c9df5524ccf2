//! The XDP program is the `enforcer-xdp` binary (src/main.rs). This library target exists so the
//! `enforcer` crate can list the package as a build dependency (cargo then rebuilds the embedded
//! object when the program changes); it holds nothing the program needs.
#![no_std]

use aya_ebpf as _;
use enforcer_common as _;
