//! The policy language v1: YAML files in git, compiled into the datapath's map contents.
//! See `docs/policy.md` for the format.

pub mod compiled;

pub use compiled::{CompileOptions, CompiledPolicy, IdTable};
