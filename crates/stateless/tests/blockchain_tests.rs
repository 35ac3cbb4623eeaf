//! Every block of every Cancun `BlockchainTests/ValidBlocks` test: executed on its parent's
//! state, its witness made, then validated from the witness alone in interpreter and JIT mode.

use kiln_node::{collect_files, fixture::TestFile};
use kiln_runtime::Runtime;
use kiln_stateless::{
    fixture::{supported, test_inputs},
    validate_all,
};
use kiln_testing::fixtures::fixture_or_skip;
use std::path::PathBuf;

/// The ValidBlocks folder, or `None` when the fixtures are absent and not required.
fn valid_blocks() -> Option<PathBuf> {
    fixture_or_skip("BlockchainTests/ValidBlocks")
}

#[test]
fn every_valid_block_round_trips() {
    let Some(dir) = valid_blocks() else {
        return;
    };
    let (mut inputs, mut names, mut tests) = (Vec::new(), Vec::new(), 0);
    for path in collect_files(&[dir]).expect("fixture files") {
        let text = std::fs::read_to_string(&path).expect("read");
        let file: TestFile = serde_json::from_str(&text).expect("parse");
        for (name, test) in file.iter().filter(|(_, t)| supported(t)) {
            tests += 1;
            let made = test_inputs(test).unwrap_or_else(|e| panic!("{name}: {e}"));
            names.extend((0..made.len()).map(|i| format!("{name} valid block {i}")));
            inputs.extend(made);
        }
    }
    assert!(tests > 400, "only {tests} Cancun tests");
    assert!(inputs.len() > 800, "only {} blocks", inputs.len());
    for runtime in [Runtime::interpreter(), Runtime::jit()] {
        let (results, _) = validate_all(&inputs, &runtime, 2);
        let failures: Vec<String> = results
            .iter()
            .zip(&names)
            .filter_map(|(r, name)| r.as_ref().err().map(|e| format!("{name}: {e}")))
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
        runtime.shutdown();
    }
    println!("{tests} tests, {} blocks round-tripped", inputs.len());
}
