//! enforcer: zero-trust microsegmentation for IoT networks.
//!
//! - [`policy`]: the policy language: loading, validation and compilation into map contents.
//! - [`datapath`]: the facade over the XDP program and its maps (load, attach, apply, read).
//! - [`probe`]: policy tests, guards and `explain`, run through the real program.
//! - [`cli`] and [`commands`]: the command line.

#![warn(
    clippy::too_many_lines,
    reason = "functions of 100 lines or more become named steps (threshold in clippy.toml)"
)]

pub mod cli;
pub mod commands;
pub mod daemon;
pub mod datapath;
pub mod exit;
pub mod graph;
pub mod inventory;
pub mod learn;
pub mod logging;
pub mod mud;
pub mod observe;
mod parallel;
pub mod policy;
pub mod probe;
pub mod time;
