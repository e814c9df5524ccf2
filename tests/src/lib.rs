//! Shared helpers for the datapath and system tests (frame builder, namespaces).

pub mod frame;
pub mod kernel;
pub mod netns;
