//! Host-testable pieces of the XDP program: pure functions with no kernel dependency.
#![cfg_attr(not(test), no_std)]
