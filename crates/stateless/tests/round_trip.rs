//! Witness, then stateless validation, for every block of a small chain, in interpreter and JIT
//! mode; and tampered witnesses each rejected for what was tampered with.

mod common;

use alloy_consensus::Header;
use alloy_primitives::{keccak256, Bytes};
use common::TestChain;
use kiln_runtime::Runtime;
use kiln_stateless::{
    validate, validate_all, witness, StateError, StatelessError, StatelessInput, TrieError,
};
use std::sync::{Arc, OnceLock};

fn chain() -> &'static (TestChain, Vec<StatelessInput>) {
    static CHAIN: OnceLock<(TestChain, Vec<StatelessInput>)> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let chain = TestChain::build(12);
        let inputs = chain
            .blocks
            .iter()
            .zip(&chain.rlps)
            .map(|(block, rlp)| StatelessInput {
                block: rlp.clone(),
                witness: witness(&chain.tree, &chain.factory, block).expect("a witness"),
                chain_config: chain.genesis.config.clone(),
            })
            .collect();
        (chain, inputs)
    })
}

fn round_trip(runtime: Arc<Runtime>) {
    let (chain, inputs) = chain();
    for (input, block) in inputs.iter().zip(&chain.blocks) {
        // Through the file format and back.
        let json = serde_json::to_string(input).expect("serialise");
        let input: StatelessInput = serde_json::from_str(&json).expect("parse");
        let validated = validate(&input, &runtime)
            .unwrap_or_else(|e| panic!("block {}: {e}", block.header.number));
        assert_eq!(validated.state_root, block.header.state_root);
        assert_eq!(validated.hash, block.header.hash_slow());
        assert_eq!(validated.gas_used, block.header.gas_used);
    }
    let (results, _) = validate_all(inputs, &runtime, 2);
    assert!(results.iter().all(Result::is_ok));
    runtime.shutdown();
}

#[test]
fn every_block_round_trips_on_the_interpreter() {
    round_trip(Runtime::interpreter());
}

#[test]
fn every_block_round_trips_on_jit_code() {
    let runtime = Runtime::jit();
    round_trip(runtime.clone());
    assert!(runtime.len() >= 2, "the contracts were compiled");
}

#[test]
fn witnesses_hold_what_the_blocks_need() {
    let (chain, inputs) = chain();
    // BLOCKHASH(NUMBER - 2) reaches the grandparent: two headers from block 2 on, in the
    // blocks that call the store contract (all but every fourth).
    for (input, block) in inputs.iter().zip(&chain.blocks) {
        let number = block.header.number;
        let expected = if number >= 2 && (number - 1) % 4 != 2 {
            2
        } else {
            1
        };
        assert_eq!(input.witness.headers.len(), expected);
        assert!(!input.witness.state.is_empty());
        assert!(!input.witness.keys.is_empty());
    }
    assert!(inputs.iter().all(|i| !i.witness.codes.is_empty()));
}

/// A block whose witness has nodes, codes and two headers.
fn sample() -> StatelessInput {
    chain().1[5].clone()
}

fn reject(input: &StatelessInput) -> StatelessError {
    match validate(input, &Runtime::interpreter()) {
        Ok(v) => panic!("tampered witness accepted for block {}", v.number),
        Err(e) => e,
    }
}

fn missing_node(error: &StatelessError) -> alloy_primitives::B256 {
    let StatelessError::Witness { error, .. } = error else {
        panic!("not a witness error: {error}");
    };
    let source = match error {
        StateError::Account { source, .. } | StateError::Storage { source, .. } => source,
        other => panic!("not a trie error: {other}"),
    };
    match source.as_ref() {
        TrieError::MissingNode { hash, .. } => *hash,
        other => panic!("not a missing node: {other}"),
    }
}

#[test]
fn a_flipped_node_is_missing_by_its_hash() {
    let input = sample();
    for index in [
        0,
        input.witness.state.len() / 2,
        input.witness.state.len() - 1,
    ] {
        let mut tampered = input.clone();
        let original = tampered.witness.state[index].clone();
        let mut bytes = original.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        tampered.witness.state[index] = Bytes::from(bytes);
        let error = reject(&tampered);
        assert_eq!(missing_node(&error), keccak256(&original), "{error}");
        assert!(error.to_string().contains("is not in the witness"));
    }
}

#[test]
fn a_removed_node_is_named() {
    let input = sample();
    for index in 0..input.witness.state.len() {
        let mut tampered = input.clone();
        let removed = tampered.witness.state.remove(index);
        let error = reject(&tampered);
        assert_eq!(missing_node(&error), keccak256(&removed), "{error}");
    }
}

#[test]
fn a_swapped_or_removed_code_is_named() {
    let input = sample();
    let original = input.witness.codes[0].clone();
    let expected = keccak256(&original);

    let mut swapped = input.clone();
    let mut code = original.to_vec();
    code.push(0x00);
    swapped.witness.codes[0] = Bytes::from(code);
    let error = reject(&swapped);
    assert!(
        matches!(&error, StatelessError::Witness { error: StateError::MissingCode(h), .. } if *h == expected),
        "{error}"
    );

    let mut removed = input.clone();
    removed.witness.codes.remove(0);
    let error = reject(&removed);
    assert!(
        matches!(&error, StatelessError::Witness { error: StateError::MissingCode(h), .. } if *h == expected),
        "{error}"
    );
}

#[test]
fn a_changed_ancestor_header_breaks_the_chain() {
    let input = sample();
    let decode = |rlp: &Bytes| alloy_rlp::decode_exact::<Header>(rlp).expect("a header");
    let [older, parent] = &input.witness.headers[..] else {
        panic!("two headers expected");
    };
    let (older_header, parent_header) = (decode(older), decode(parent));

    // The grandparent changed: it no longer hashes to what the parent names.
    let mut tampered = input.clone();
    let mut changed = older_header.clone();
    changed.gas_used += 1;
    tampered.witness.headers[0] = Bytes::from(alloy_rlp::encode(&changed));
    match reject(&tampered) {
        StatelessError::BrokenChain {
            number,
            hash,
            expected,
            ..
        } => {
            assert_eq!(number, older_header.number);
            assert_eq!(hash, changed.hash_slow());
            assert_eq!(expected, parent_header.parent_hash);
        }
        other => panic!("{other}"),
    }

    // The grandparent left out: BLOCKHASH has no proven answer.
    let mut tampered = input.clone();
    tampered.witness.headers.remove(0);
    match reject(&tampered) {
        StatelessError::Witness {
            error: StateError::MissingBlockHash(n),
            ..
        } => assert_eq!(n, older_header.number),
        other => panic!("{other}"),
    }

    // The parent changed: it is not the block's parent any more.
    let mut tampered = input.clone();
    let mut changed = parent_header.clone();
    changed.state_root = keccak256(b"another state");
    tampered.witness.headers[1] = Bytes::from(alloy_rlp::encode(&changed));
    assert!(matches!(
        reject(&tampered),
        StatelessError::BrokenChain { .. } | StatelessError::NotParent { .. }
    ),);
    tampered.witness.headers.remove(0);
    match reject(&tampered) {
        StatelessError::NotParent { hash, .. } => assert_eq!(hash, changed.hash_slow()),
        other => panic!("{other}"),
    }
}
