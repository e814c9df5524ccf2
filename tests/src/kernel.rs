//! Gatekeeping for tests that need the kernel: root (CAP_BPF, CAP_NET_ADMIN).
//!
//! Outside CI a test that cannot run says why and returns; under `CI=true` it fails instead, so a
//! skipped kernel test can never pass as a run one.

/// Whether this process can load BPF programs and make namespaces.
#[must_use]
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns `true` when the test may go on; prints why and returns `false` when it must skip.
/// Panics under `CI=true`, where nothing is skipped.
#[must_use]
pub fn require_root(test: &str) -> bool {
    if can_run() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root (CAP_BPF, CAP_NET_ADMIN) and CI=true forbids skipping"
    );
    eprintln!("SKIPPED {test}: needs root (CAP_BPF, CAP_NET_ADMIN); run `cargo xtask test` as root");
    false
}
