//! Shared helpers for the datapath and system tests (frame builder, namespaces).

pub mod netns;
