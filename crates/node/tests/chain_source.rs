//! Chain sources (geth genesis, RLP blocks, forkchoice updates) imported as a node imports them:
//! side blocks leave no heat, a reorg moves heat to the new branch, and a broken source stops the
//! import at its last valid block with an error naming the block and the field.

mod common;

use alloy_primitives::{keccak256, Bytes, B256};
use common::{counter_code, genesis, DevChain, A, B};
use kiln_exex::{Notification, ServiceConfig};
use kiln_node::{
    decode::decode_block, ChainError, ChainSource, Field, ForkchoiceUpdate, ImportMode,
    ImportOptions, Importer, Reject,
};
use kiln_runtime::Runtime;
use revm::primitives::{hardfork::SpecId, U256};
use std::ops::ControlFlow;

fn source(blocks: &[&Bytes], forkchoice: Option<Vec<ForkchoiceUpdate>>) -> ChainSource {
    ChainSource {
        genesis: genesis(),
        blocks: blocks.iter().map(|b| (*b).clone()).collect(),
        malformed: None,
        forkchoice,
    }
}

/// A tiered importer whose service never compiles (thresholds out of reach): heat only.
fn tiered() -> Importer {
    Importer::for_options(&ImportOptions {
        mode: ImportMode::Tiered,
        service: ServiceConfig {
            isolation: false,
            hot_threshold_gas: u64::MAX,
            optimise_threshold_gas: u64::MAX,
            half_life_blocks: 1e12,
            ..ServiceConfig::default()
        },
        ..ImportOptions::default()
    })
    .expect("importer")
}

fn heat(importer: &Importer, code: &Bytes) -> f64 {
    importer
        .service()
        .expect("tiered")
        .heat()
        .score((keccak256(code), SpecId::CANCUN))
}

fn import(importer: &mut Importer, source: &ChainSource) -> kiln_node::ChainImport {
    importer
        .import_chain(source, &mut |_| ControlFlow::Continue(()))
        .expect("a usable genesis")
}

#[test]
fn a_side_block_leaves_no_heat_and_a_reorg_moves_heat_to_the_new_branch() {
    let mut dev = DevChain::new(&genesis());
    let g = dev.genesis_hash();
    let b1 = dev.block(g, &[A, A], 1);
    dev.set_nonce(0);
    let s1 = dev.block(g, &[B, B], 2);
    let s2 = dev.block(s1.hash, &[B], 2);

    // Block 1 becomes canonical; its sibling is executed (a new payload) and never is.
    let mut importer = tiered().with_observer(Box::new(Vec::<Notification>::new()));
    let done = import(
        &mut importer,
        &source(
            &[&b1.rlp, &s1.rlp],
            Some(vec![ForkchoiceUpdate {
                after: 2,
                head: b1.hash,
            }]),
        ),
    );
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!(done.imported, 2);
    assert_eq!(done.tree.head().hash, b1.hash);
    assert!(heat(&importer, &counter_code(40)) > 0.0);
    assert_eq!(heat(&importer, &counter_code(41)), 0.0);
    importer.shutdown();

    // Then the side branch grows and the head moves to it: A's heat leaves with block 1.
    let mut notifications = Vec::new();
    let mut importer = tiered();
    let done = import(
        &mut importer,
        &source(
            &[&b1.rlp, &s1.rlp, &s2.rlp],
            Some(vec![
                ForkchoiceUpdate {
                    after: 1,
                    head: b1.hash,
                },
                ForkchoiceUpdate {
                    after: 3,
                    head: s2.hash,
                },
            ]),
        ),
    );
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!(heat(&importer, &counter_code(40)), 0.0);
    let b_heat = heat(&importer, &counter_code(41));
    assert!(b_heat > 0.0);
    let head = done.tree.head();
    assert_eq!(head.hash, s2.hash);
    assert_eq!(head.state.state_root(), s2.block.header.state_root);
    let slot0 = |address| {
        head.state
            .accounts
            .get(&address)
            .and_then(|a| a.storage.get(&U256::ZERO).copied())
            .unwrap_or_default()
    };
    assert_eq!(slot0(A), U256::ZERO, "the old branch's writes are gone");
    assert_eq!(slot0(B), U256::from(3));
    let (_, jit) = importer.shutdown();
    notifications.extend(jit.service.map(|s| s.notifications));
    assert_eq!(notifications, vec![2], "one commit, one reorg");
}

#[test]
fn a_chain_folder_round_trips_and_each_block_becomes_the_head_without_forkchoice() {
    let mut dev = DevChain::new(&genesis());
    let g = dev.genesis_hash();
    let b1 = dev.block(g, &[A, B], 1);
    let b2 = dev.block(b1.hash, &[A], 1);
    let dir = tempfile::tempdir().expect("tempdir");
    source(&[&b1.rlp, &b2.rlp], None)
        .write(dir.path())
        .expect("written");
    let read = ChainSource::open(dir.path()).expect("read back");
    assert_eq!(read.blocks, vec![b1.rlp.clone(), b2.rlp.clone()]);
    assert!(read.forkchoice.is_none());
    let mut importer = Importer::new(Runtime::interpreter(), None);
    let mut seen = Vec::new();
    let done = importer
        .import_chain(&read, &mut |b| {
            seen.push((b.number, b.gas_used > 0));
            ControlFlow::Continue(())
        })
        .expect("genesis");
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!(done.head().1, b2.hash);
    assert_eq!(seen, vec![(1, true), (2, true)]);
    importer.shutdown();
}

fn import_broken(source: &ChainSource) -> (kiln_node::ChainImport, String) {
    let mut importer = Importer::new(Runtime::interpreter(), None);
    let done = import(&mut importer, source);
    importer.shutdown();
    let message = done
        .error
        .as_ref()
        .map(ToString::to_string)
        .expect("the source is broken");
    (done, message)
}

#[test]
fn a_broken_source_stops_at_the_last_valid_block_naming_the_block_and_field() {
    let mut dev = DevChain::new(&genesis());
    let g = dev.genesis_hash();
    let b1 = dev.block(g, &[A], 1);
    let b2 = dev.block(b1.hash, &[A], 1);

    // A truncated file: the whole block before the cut is imported.
    let dir = tempfile::tempdir().expect("tempdir");
    source(&[&b1.rlp, &b2.rlp], None)
        .write(dir.path())
        .expect("written");
    let rlp_file = dir.path().join("chain.rlp");
    let bytes = std::fs::read(&rlp_file).expect("read");
    std::fs::write(&rlp_file, &bytes[..bytes.len() - 10]).expect("truncate");
    let truncated = ChainSource::open(dir.path()).expect("readable");
    let (done, message) = import_broken(&truncated);
    assert_eq!(done.imported, 1);
    assert_eq!(done.head().1, b1.hash);
    assert!(
        matches!(done.error, Some(ChainError::Malformed { index: 1, .. })),
        "{message}"
    );
    assert!(
        message.contains("block 1") && message.contains("truncated"),
        "{message}"
    );

    // A header field that disagrees with execution.
    let mut bad = decode_block(&b2.rlp).expect("decodes");
    bad.header.gas_used += 1;
    let bad_rlp = Bytes::from(alloy_rlp::encode(&bad));
    let (done, message) = import_broken(&source(&[&b1.rlp, &bad_rlp], None));
    assert_eq!(done.imported, 1);
    match &done.error {
        Some(ChainError::Block(e)) => {
            assert_eq!((e.index, e.number), (1, Some(2)));
            assert!(
                matches!(
                    e.reason,
                    Reject::Header {
                        field: Field::GasUsed,
                        ..
                    }
                ),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(message.contains("GasUsed"), "{message}");

    // A block whose parent the node does not have.
    let mut orphan = decode_block(&b2.rlp).expect("decodes");
    orphan.header.parent_hash = B256::repeat_byte(7);
    let orphan_rlp = Bytes::from(alloy_rlp::encode(&orphan));
    let (done, message) = import_broken(&source(&[&b1.rlp, &orphan_rlp], None));
    assert_eq!(done.imported, 1);
    assert!(message.contains("unknown parent"), "{message}");

    // Bytes that are not RLP at all.
    let garbage = Bytes::from_static(&[0xf9, 0xff, 0xff, 0x00]);
    let (done, message) = import_broken(&source(&[&b1.rlp, &garbage], None));
    assert_eq!(done.imported, 1);
    assert!(
        message.contains("block 1") && message.contains("RLP"),
        "{message}"
    );

    // A forkchoice update to a block nobody sent.
    let (done, message) = import_broken(&source(
        &[&b1.rlp],
        Some(vec![ForkchoiceUpdate {
            after: 1,
            head: B256::repeat_byte(9),
        }]),
    ));
    assert_eq!(done.imported, 1);
    assert!(message.contains("unknown head"), "{message}");

    // A genesis whose fork schedule kiln does not run.
    let mut genesis = genesis();
    genesis.config.cancun_time = None;
    let mut importer = Importer::new(Runtime::interpreter(), None);
    let err = importer
        .import_chain(
            &ChainSource {
                genesis,
                blocks: vec![],
                malformed: None,
                forkchoice: None,
            },
            &mut |_| ControlFlow::Continue(()),
        )
        .expect_err("refused");
    importer.shutdown();
    assert!(err.to_string().contains("cancunTime"), "{err}");
}
