//! In-process JIT compile time of the code in a file (hex), at one optimisation level: one
//! warm-up compilation (LLVM and the JIT set up), then the mean of `N` more.
//!
//! `cargo run --release -p kiln-compiler --example compile_time -- CODE.hex [N] [LEVEL]`
//! (`LEVEL`: 0-3 or `baseline`; default 2).

use kiln_compiler::{compile_jit, CompileOptions, OptLevel};
use revm::primitives::{hardfork::SpecId, hex};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: compile_time CODE.hex [N] [LEVEL]");
    let n: u32 = args
        .next()
        .map_or(20, |s| s.parse().expect("N is a number"));
    let opts = CompileOptions {
        opt_level: args
            .next()
            .map_or(Ok(OptLevel::O2), |l| l.parse())
            .expect("LEVEL is 0-3 or baseline"),
        ..Default::default()
    };
    let code = hex::decode(
        std::fs::read_to_string(&path)
            .expect("read the code file")
            .trim(),
    )
    .expect("the file holds hex");
    let _warm = compile_jit(&code, SpecId::CANCUN, &opts, None).expect("compile");
    let start = std::time::Instant::now();
    for _ in 0..n {
        compile_jit(&code, SpecId::CANCUN, &opts, None).expect("compile");
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / f64::from(n);
    println!(
        "{path}: {} bytes at {:?}: {ms:.2} ms, {:.1} ms/KiB",
        code.len(),
        opts.opt_level,
        ms / (code.len() as f64 / 1024.0)
    );
}
