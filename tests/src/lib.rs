//! Shared helpers for the datapath and system tests (frame builder, namespaces).

#![allow(
    clippy::print_stderr,
    reason = "test support: what a harness could not clean up is reported on stderr, where the test runner shows it"
)]

pub mod dns;
pub mod frame;
pub mod kernel;
pub mod netns;
pub mod world;
