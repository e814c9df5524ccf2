//! Rebuild the program when bpf-linker changes (a new linker can change the object), and link it
//! with small copies and fills expanded in place (see below).
use which::which;

fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // bpf-linker passes `--bpf-expand-memcpy-in-order` to LLVM by default, which turns off LLVM's
    // own expansion of memset/memcpy/memmove: every fill or copy of a key, a judgement or a pad
    // became a call to a byte-at-a-time loop (a 37-byte fill: some 220 instructions). Without
    // it, LLVM writes them as a few stores, as clang does for C programs.
    println!("cargo:rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
