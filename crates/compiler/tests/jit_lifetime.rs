//! JIT functions share one linker: each must stay callable while others come and go.

use kiln_compiler::{compile_jit, CompileOptions};
use revm::primitives::hardfork::SpecId;

/// PUSH1 1, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN.
const CODE: &[u8] = &[0x60, 0x01, 0x5f, 0x52, 0x60, 0x20, 0x5f, 0xf3];

#[test]
fn the_same_code_compiles_again_while_the_first_copy_lives() {
    let opts = CompileOptions::default();
    let first = compile_jit(CODE, SpecId::CANCUN, &opts, None).expect("first compile");
    let second = compile_jit(CODE, SpecId::CANCUN, &opts, None).expect("second compile");
    assert_ne!(first.as_fn() as usize, second.as_fn() as usize);
    assert!(first.object_bytes() > 0);
    assert_eq!(first.object_bytes(), second.object_bytes());
}

#[test]
fn functions_compile_and_free_on_many_threads() {
    let opts = CompileOptions::default();
    // Each thread frees functions compiled by another, while compiling its own.
    let batches: Vec<Vec<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..8)
                        .map(|_| compile_jit(CODE, SpecId::CANCUN, &opts, None).expect("compile"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    std::thread::scope(|s| {
        for batch in batches {
            s.spawn(move || {
                let kept = compile_jit(CODE, SpecId::PRAGUE, &opts, None).expect("compile");
                drop(batch);
                assert!(kept.object_bytes() > 0);
            });
        }
    });
}
