//! Every canonical block of a short demo chain (the DeFi-shaped chain `kiln demo` builds, with
//! its side blocks and reorgs): witnesses made from the chain folder, then validated from them
//! alone in interpreter and JIT mode, the JIT's code compiled ahead.

use kiln_compiler::{CompileOptions, OptLevel};
use kiln_demo::DemoOptions;
use kiln_exex::ServiceConfig;
use kiln_runtime::{Backend, CompilePolicy, Runtime};
use kiln_stateless::{chain_folder_inputs, precompile, validate_all, Blocks};
use std::sync::Arc;

#[test]
fn every_demo_block_round_trips() {
    let out = tempfile::tempdir().expect("a temporary folder");
    let generated = kiln_demo::run::generate(&DemoOptions {
        seed: 1,
        accounts: 24,
        blocks: 24,
        txs_per_block: 40,
        fork_every: 8,
        out: out.path().to_owned(),
        service: ServiceConfig::default(),
        settle: false,
    })
    .expect("the demo chain");
    let dir = out.path().join("chain");
    generated.source.write(&dir).expect("the chain folder");
    let inputs = chain_folder_inputs(&dir, Blocks::All).expect("witnesses");
    assert!(inputs.len() > 24, "{} blocks", inputs.len());

    let (results, _) = validate_all(&inputs, &Runtime::interpreter(), 2);
    for (i, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "block {}: {:?}", i + 1, result);
    }

    // Compiled ahead (at the baseline tier, to keep the test short), looked up only: no
    // compilation on a validation path.
    let jit = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions {
            opt_level: OptLevel::Baseline,
            ..CompileOptions::default()
        },
    ));
    let compiled = precompile(&jit, &inputs, 2);
    assert!(compiled.compiled > 5, "{compiled:?}");
    let before = jit
        .stats
        .compilations
        .load(std::sync::atomic::Ordering::Relaxed);
    let (results, _) = validate_all(&inputs, &jit, 2);
    for (i, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "block {}: {:?}", i + 1, result);
    }
    assert_eq!(
        jit.stats
            .compilations
            .load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    assert!(
        jit.stats
            .compiled_frames
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    jit.shutdown();
}
