//! Exit codes, a contract for scripts (documented in `docs/cli.md`).

/// Success (warnings may have been printed).
pub const OK: u8 = 0;
/// The policy (or other input) is invalid; nothing was changed.
pub const INVALID: u8 = 1;
/// Usage error (clap's own code).
pub const USAGE: u8 = 2;
/// The environment is not fit: not root, no bpffs, no such interface, no enforcer running.
pub const ENVIRONMENT: u8 = 3;
/// Applying failed; the previous policy keeps enforcing.
pub const APPLY_FAILED: u8 = 4;
/// A bug: an internal error.
pub const INTERNAL: u8 = 5;

/// `enforcer test`: a test or guard failed. The contract's "1 otherwise" covers an invalid policy
/// too ([`INVALID`]); a script tells them apart by the report (`passed` or `valid` in JSON).
pub const TEST_FAILED: u8 = 1;
