//! Hand-built chains: malformed RLP, header fields that disagree with execution, unknown
//! parents, and forks. Every rejection must name its block and field, and nothing may panic.

use alloy_consensus::{
    proofs::calculate_withdrawals_root, Block, BlockBody, Header, TxEnvelope, EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::{
    eip1559::BaseFeeParams,
    eip4895::{Withdrawal, Withdrawals},
};
use alloy_primitives::{address, hex, Address, Bytes, B256, U256, U64};
use alloy_trie::EMPTY_ROOT_HASH;
use kiln_exex::Notification;
use kiln_node::{
    fixture::{BlockchainTest, FixtureAccount, FixtureBlock, GenesisHeader},
    state::{Codes, StateSnapshot},
    Importer, Outcome,
};
use kiln_runtime::Runtime;
use std::{collections::BTreeMap, path::Path};

const RICH: Address = address!("a94f5374fce5edbc8e2a8697c15331677e6ebf0b");
const VALIDATOR: Address = address!("1000000000000000000000000000000000000001");

type EthBlock = Block<TxEnvelope>;

fn pre() -> BTreeMap<Address, FixtureAccount> {
    let mut pre = BTreeMap::new();
    pre.insert(
        RICH,
        FixtureAccount {
            balance: U256::from(10u64).pow(U256::from(18)),
            nonce: U64::ZERO,
            code: Bytes::new(),
            storage: BTreeMap::new(),
        },
    );
    pre
}

fn root_of(accounts: &BTreeMap<Address, FixtureAccount>) -> B256 {
    StateSnapshot::from_pre(accounts, &mut Codes::default()).state_root()
}

fn genesis() -> EthBlock {
    Block {
        header: Header {
            state_root: root_of(&pre()),
            gas_limit: 30_000_000,
            base_fee_per_gas: Some(7),
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            withdrawals_root: Some(EMPTY_ROOT_HASH),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(B256::ZERO),
            ..Default::default()
        },
        body: BlockBody {
            transactions: vec![],
            ommers: vec![],
            withdrawals: Some(Withdrawals::default()),
        },
    }
}

/// A valid empty child of `parent` paying `gwei` to the validator, on top of `state`.
fn child(
    parent: &Header,
    timestamp: u64,
    gwei: u64,
    state: &mut BTreeMap<Address, FixtureAccount>,
) -> EthBlock {
    let withdrawals = Withdrawals::new(vec![Withdrawal {
        index: parent.number,
        validator_index: 0,
        address: VALIDATOR,
        amount: gwei,
    }]);
    state.entry(VALIDATOR).or_default().balance += U256::from(gwei) * U256::from(1_000_000_000u64);
    Block {
        header: Header {
            parent_hash: parent.hash_slow(),
            number: parent.number + 1,
            timestamp,
            state_root: root_of(state),
            gas_limit: parent.gas_limit,
            base_fee_per_gas: parent.next_block_base_fee(BaseFeeParams::ethereum()),
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            withdrawals_root: Some(calculate_withdrawals_root(&withdrawals)),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(B256::with_last_byte(parent.number as u8 + 1)),
            ..Default::default()
        },
        body: BlockBody {
            transactions: vec![],
            ommers: vec![],
            withdrawals: Some(withdrawals),
        },
    }
}

fn rlp(block: &EthBlock) -> String {
    hex::encode_prefixed(alloy_rlp::encode(block))
}

fn fixture_block(rlp: String, expect: Option<&str>) -> FixtureBlock {
    FixtureBlock {
        rlp,
        expect_exception: expect.map(str::to_owned),
        blocknumber: None,
        chainname: None,
    }
}

fn test(
    blocks: Vec<FixtureBlock>,
    last: B256,
    post: BTreeMap<Address, FixtureAccount>,
) -> BlockchainTest {
    let genesis = genesis();
    BlockchainTest {
        genesis_block_header: GenesisHeader {
            hash: genesis.header.hash_slow(),
            state_root: genesis.header.state_root,
        },
        genesis_rlp: alloy_rlp::encode(&genesis).into(),
        blocks,
        lastblockhash: last,
        pre: pre(),
        post_state: Some(post),
        post_state_hash: None,
        network: "Cancun".to_owned(),
        seal_engine: Some("NoProof".to_owned()),
    }
}

fn run(test: &BlockchainTest) -> Outcome {
    let mut importer = Importer::new(Runtime::interpreter(), None);
    let report = importer.import_test(Path::new("hand-built"), "t", test);
    importer.shutdown();
    report.outcome
}

/// The failure messages of a test that must fail.
fn failures(outcome: Outcome) -> Vec<String> {
    match outcome {
        Outcome::Failed(failures) => failures.iter().map(ToString::to_string).collect(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_valid_chain_passes() {
    let mut state = pre();
    let b1 = child(&genesis().header, 12, 5, &mut state);
    let b2 = child(&b1.header, 24, 7, &mut state);
    let last = b2.header.hash_slow();
    let t = test(
        vec![fixture_block(rlp(&b1), None), fixture_block(rlp(&b2), None)],
        last,
        state,
    );
    assert_eq!(run(&t), Outcome::Passed);
}

#[test]
fn bad_rlp_is_a_clean_rejection() {
    let genesis_hash = genesis().header.hash_slow();
    let mut state = pre();
    let good = rlp(&child(&genesis().header, 12, 5, &mut state));
    let cases = [
        "0xzz".to_owned(),
        "0x".to_owned(),
        "0xc0".to_owned(),
        good[..good.len() - 10].to_owned(),
        format!("{good}00"),
    ];
    for bad in cases {
        let t = test(
            vec![fixture_block(
                bad.clone(),
                Some("BlockException.RLP_STRUCTURES_ENCODING"),
            )],
            genesis_hash,
            pre(),
        );
        assert_eq!(run(&t), Outcome::Passed, "{bad}");
        // Expected valid, the same input fails the test with the decoding error.
        let t = test(vec![fixture_block(bad.clone(), None)], genesis_hash, pre());
        let messages = failures(run(&t));
        assert!(
            messages[0].contains("block 0") && messages[0].contains("RLP"),
            "{messages:?}"
        );
    }
}

#[test]
fn header_fields_that_disagree_with_execution_are_named() {
    let genesis_hash = genesis().header.hash_slow();
    let mut state = pre();
    let good = child(&genesis().header, 12, 5, &mut state);
    let tampered = |f: &dyn Fn(&mut Header)| {
        let mut block = good.clone();
        f(&mut block.header);
        block
    };
    let cases: [(EthBlock, &str, &str); 5] = [
        (
            tampered(&|h| h.gas_used = 21_000),
            "BlockException.INVALID_GAS_USED",
            "GasUsed",
        ),
        (
            tampered(&|h| h.state_root = B256::with_last_byte(1)),
            "BlockException.INVALID_STATE_ROOT",
            "StateRoot",
        ),
        (
            tampered(&|h| h.receipts_root = B256::with_last_byte(1)),
            "BlockException.INVALID_RECEIPTS_ROOT",
            "ReceiptsRoot",
        ),
        (
            tampered(&|h| h.base_fee_per_gas = Some(1)),
            "BlockException.INVALID_BASEFEE_PER_GAS",
            "BaseFee",
        ),
        (
            tampered(&|h| h.timestamp = 0),
            "BlockException.INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT",
            "Timestamp",
        ),
    ];
    for (block, exception, field) in cases {
        let number = block.header.number;
        let t = test(
            vec![fixture_block(rlp(&block), Some(exception))],
            genesis_hash,
            pre(),
        );
        assert_eq!(run(&t), Outcome::Passed, "{exception}");
        let t = test(vec![fixture_block(rlp(&block), None)], genesis_hash, pre());
        let messages = failures(run(&t));
        assert!(
            messages[0].contains(&format!("#{number}"))
                && messages[0].contains(field)
                && messages[0].contains(exception),
            "{messages:?}"
        );
    }
}

#[test]
fn a_wrong_parent_is_an_unknown_parent() {
    let genesis_hash = genesis().header.hash_slow();
    let mut state = pre();
    let mut orphan = child(&genesis().header, 12, 5, &mut state);
    orphan.header.parent_hash = B256::with_last_byte(0x42);
    let t = test(
        vec![fixture_block(
            rlp(&orphan),
            Some("BlockException.UNKNOWN_PARENT"),
        )],
        genesis_hash,
        pre(),
    );
    assert_eq!(run(&t), Outcome::Passed);
    let t = test(vec![fixture_block(rlp(&orphan), None)], genesis_hash, pre());
    let messages = failures(run(&t));
    assert!(
        messages[0].contains("unknown parent")
            && messages[0].contains(&format!("{:x}", B256::with_last_byte(0x42))),
        "{messages:?}"
    );
}

#[test]
fn a_block_expected_invalid_but_accepted_fails() {
    let mut state = pre();
    let b1 = child(&genesis().header, 12, 5, &mut state);
    let t = test(
        vec![fixture_block(
            rlp(&b1),
            Some("BlockException.INVALID_STATE_ROOT"),
        )],
        b1.header.hash_slow(),
        state,
    );
    let messages = failures(run(&t));
    assert!(messages[0].contains("block accepted"), "{messages:?}");
}

#[test]
fn forks_reorg_and_report_notifications() {
    let genesis = genesis();
    let mut a_state = pre();
    let a1 = child(&genesis.header, 12, 5, &mut a_state);
    let a2 = child(&a1.header, 24, 5, &mut a_state);
    let mut b_state = pre();
    let b1 = child(&genesis.header, 13, 9, &mut b_state);
    let b2 = child(&b1.header, 25, 9, &mut b_state);
    let b3 = child(&b2.header, 37, 9, &mut b_state);
    // a1 a2 (canonical), then b1 b2 b3 (each forkchoice moves to it), last = a2: back to a.
    let t = test(
        [&a1, &a2, &b1, &b2, &b3]
            .iter()
            .map(|b| fixture_block(rlp(b), None))
            .collect(),
        a2.header.hash_slow(),
        a_state,
    );
    let notifications = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<Notification>>>);
    impl kiln_node::ImportObserver for Shared {
        fn on_notification(&mut self, n: &Notification) {
            self.0.lock().unwrap().push(n.clone());
        }
    }
    let mut importer = Importer::new(Runtime::interpreter(), None)
        .with_observer(Box::new(Shared(notifications.clone())));
    let report = importer.import_test(Path::new("hand-built"), "forks", &t);
    importer.shutdown();
    assert_eq!(report.outcome, Outcome::Passed);

    let numbers = |c: &kiln_exex::Chain| c.blocks.iter().map(|b| b.number).collect::<Vec<_>>();
    let seen = notifications.lock().unwrap();
    let kinds: Vec<String> = seen
        .iter()
        .map(|n| match n {
            Notification::Committed { new } => format!("C{:?}", numbers(new)),
            Notification::Reorged { old, new } => {
                format!("R{:?}->{:?}", numbers(old), numbers(new))
            }
            Notification::Reverted { old } => format!("V{:?}", numbers(old)),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "C[1]",
            "C[2]",
            "R[1, 2]->[1]",
            "C[2]",
            "C[3]",
            "R[1, 2, 3]->[1, 2]"
        ]
    );
    // Records carry what the service needs.
    let Notification::Committed { new } = &seen[0] else {
        unreachable!()
    };
    let record = &new.blocks[0];
    assert_eq!(record.hash, a1.header.hash_slow());
    assert_eq!(record.id.timestamp, 12);
    assert_eq!(record.id.basefee, a1.header.base_fee_per_gas.unwrap());
    assert_eq!(record.usage, None);
}
