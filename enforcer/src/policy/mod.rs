//! The policy language v1: YAML files in git, compiled into the datapath's map contents.
//! See `docs/policy.md` for the format.
//!
//! The pipeline is `load` (read with caps, parse in `yaml`, type in `model`, merge, `validate`),
//! then `compile` (ids, classes, deny precedence, map images). `plan` renders a compiled policy and
//! diffs two of them; `synth` generates large policies for benchmarks and scale tests.

mod compile;
pub mod compiled;
mod diag;
pub mod json_schema;
mod load;
pub mod maps;
pub mod model;
pub mod modes;
pub mod names;
pub mod plan;
pub mod router_rules;
pub mod synth;
mod validate;
mod yaml;

pub use compile::{PAIR_WORK_BUDGET, compile, compile_with_diagnostics};
pub use compiled::{CompileOptions, CompiledPolicy, IdTable};
pub use diag::{
    Diagnostic, Loc, MAX_MESSAGE_CHARS, MAX_REPORTED, Omitted, PolicyError, Severity, render_all,
};
pub use load::{
    MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, PolicySnapshot, ReadCache, SnapshotFile, load,
    load_all, load_snapshot, parse_files, parse_str, shown_paths,
};
pub use model::Policy;
pub use plan::{PlanDiff, PlanView, diff};

/// [`load`] then [`compile`].
///
/// # Errors
/// As [`load`] and [`compile`].
pub fn compile_path(
    path: &std::path::Path,
    opts: &CompileOptions,
) -> Result<CompiledPolicy, PolicyError> {
    compile(&load(path)?, opts)
}
