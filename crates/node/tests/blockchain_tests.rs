//! Every Ethereum `BlockchainTests` fixture imported on the interpreter: valid blocks accepted
//! with the fixture's post-state, invalid ones rejected for the reason the fixture names.

use alloy_consensus::{Block, TxEnvelope};
use alloy_primitives::{hex, B256};
use kiln_node::{fixture::TestFile, import_paths, ImportMode, ImportOptions, Importer, Outcome};
use kiln_runtime::Runtime;
use kiln_testing::fixtures::fixture_or_skip;
use std::path::{Path, PathBuf};

/// The BlockchainTests folder, or `None` when the fixtures are absent and not required.
fn blockchain_tests() -> Option<PathBuf> {
    fixture_or_skip("BlockchainTests")
}

#[test]
fn every_blockchain_test_passes_on_the_interpreter() {
    let Some(dir) = blockchain_tests() else {
        return;
    };
    let summary = import_paths(&[dir], &ImportOptions::default()).expect("import");
    let failures: Vec<String> = summary
        .reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(f) => Some(format!("{}: {f:?}", r.name)),
            _ => None,
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(summary.skipped, 0);
    assert!(summary.passed >= 573, "only {} tests ran", summary.passed);
    assert!(summary.timings.blocks_executed > 1000);
}

/// A real block whose header is tampered with after the fact (and the hash hence changed) is
/// rejected for the tampered field.
#[test]
fn a_tampered_fixture_block_is_rejected_for_its_field() {
    let Some(dir) = blockchain_tests() else {
        return;
    };
    let path = dir.join("ValidBlocks/bcExample/optionsTest.json");
    let file: TestFile =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    let (name, original) = file.into_iter().next().expect("one test");
    let decode = |rlp: &str| -> Block<TxEnvelope> {
        alloy_rlp::Decodable::decode(&mut &hex::decode(rlp).expect("hex")[..]).expect("rlp")
    };
    let tamper = |f: &dyn Fn(&mut Block<TxEnvelope>), exception: &str| {
        let mut test = original.clone();
        let mut block = decode(&test.blocks[0].rlp);
        f(&mut block);
        test.blocks.truncate(1);
        test.blocks[0].rlp = hex::encode_prefixed(alloy_rlp::encode(&block));
        test.blocks[0].expect_exception = Some(exception.to_owned());
        test.lastblockhash = test.genesis_block_header.hash;
        test.post_state = Some(test.pre.clone());
        let mut importer = Importer::new(Runtime::interpreter(), None);
        let report = importer.import_test(Path::new(&path), &name, &test);
        importer.shutdown();
        assert_eq!(report.outcome, Outcome::Passed, "{exception}");
        // The same block expected valid: the failure names the field.
        test.blocks[0].expect_exception = None;
        let mut importer = Importer::new(Runtime::interpreter(), None);
        let report = importer.import_test(Path::new(&path), &name, &test);
        importer.shutdown();
        match report.outcome {
            Outcome::Failed(f) => f[0].to_string(),
            other => panic!("{other:?}"),
        }
    };
    let got = tamper(
        &|b| b.header.gas_used += 1,
        "BlockException.INVALID_GAS_USED",
    );
    assert!(got.contains("GasUsed") && got.contains("#1"), "{got}");
    let got = tamper(
        &|b| b.header.state_root = B256::with_last_byte(7),
        "BlockException.INVALID_STATE_ROOT",
    );
    assert!(got.contains("StateRoot"), "{got}");
    let got = tamper(
        &|b| b.header.logs_bloom.0[0] ^= 1,
        "BlockException.INVALID_LOG_BLOOM",
    );
    assert!(got.contains("LogsBloom"), "{got}");
}

/// A sample on JIT code (compiled at first sight) and as a node runs it (lookup-only runtime
/// filled by the hot-code service, compiling in this process, settling after each block).
#[test]
fn a_sample_passes_in_compiled_modes() {
    let Some(dir) = blockchain_tests() else {
        return;
    };
    let sample = [
        dir.join("ValidBlocks/bcStateTests"),
        dir.join("InvalidBlocks/bcEIP1559"),
    ];
    for mode in [ImportMode::Jit, ImportMode::Tiered] {
        let mut opts = ImportOptions {
            mode,
            settle: true,
            ..ImportOptions::default()
        };
        opts.service.hot_threshold_gas = 1;
        opts.service.optimise_threshold_gas = 100_000;
        opts.service.verify_runs = 1;
        let summary = import_paths(&sample, &opts).expect("import");
        assert_eq!(summary.failed, 0, "{mode}: {:#?}", summary.reports);
        assert!(summary.passed > 50, "{mode}");
        match mode {
            ImportMode::Jit => assert!(summary.jit.compilations > 0),
            _ => {
                let service = summary.jit.service.expect("tiered mode has a service");
                assert!(service.notifications > 50);
                assert!(service.compiled_quick + service.compiled_optimised > 0);
            }
        }
    }
}
