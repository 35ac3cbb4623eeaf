//! Resident memory each live JIT function costs: compiles the code in a file (hex) several
//! times, keeps every copy, and prints the growth of RSS per copy.
//!
//! `cargo run --release -p kiln-compiler --example jit_memory -- CODE.hex [COPIES]`

use kiln_compiler::{compile_jit, CompileOptions};
use revm::primitives::{hardfork::SpecId, hex};

/// Resident set size of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux only)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm");
    pages * 4
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: jit_memory CODE.hex [COPIES]");
    let copies: u64 = args
        .next()
        .map_or(5, |n| n.parse().expect("COPIES is a number"));
    let code = hex::decode(
        std::fs::read_to_string(&path)
            .expect("read the code file")
            .trim(),
    )
    .expect("the file holds hex");
    let opts = CompileOptions::default();
    // The first compilation sets up LLVM and the JIT; only later copies are counted.
    let _warm = compile_jit(&code, SpecId::CANCUN, &opts, None).expect("compile");
    let before = rss_kib();
    let kept: Vec<_> = (0..copies)
        .map(|_| compile_jit(&code, SpecId::CANCUN, &opts, None).expect("compile"))
        .collect();
    let per_copy = (rss_kib() - before) / copies;
    println!(
        "{} bytes of code: {per_copy} KiB RSS per live compiled function ({} bytes of object)",
        code.len(),
        kept[0].object_bytes()
    );
}
