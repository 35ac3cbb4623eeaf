use kiln_compiler::{compile_jit, CompileOptions, OptLevel};
use revm::primitives::hardfork::SpecId;
use std::time::Instant;
fn main() {
    let which = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(24 * 1024);
    let opt: OptLevel = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or_default();
    let code: Vec<u8> = match which.as_str() {
        "jumpdest" => vec![0x5b; n],
        // A JUMPDEST every other byte, behind a dynamic jump: every JUMPDEST is an entry.
        "jumpdest-dyn" => { let mut c = vec![0x5f, 0x35, 0x56]; while c.len() < n { c.extend([0x5b, 0x50]); } c }
        "random" => { let mut x = 0x9e3779b97f4a7c15u64; (0..n).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect() }
        _ => panic!(),
    };
    let reps: usize = std::env::var("KILN_REPEAT").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let t = Instant::now();
    let mut r = Ok(());
    for _ in 0..reps {
        r = compile_jit(&code, SpecId::CANCUN, &CompileOptions { opt_level: opt, ..Default::default() }).map(|_| ());
    }
    println!("{which} {n} {opt:?}: {:?} in {:?} per compile", r, t.elapsed() / reps as u32);
}
