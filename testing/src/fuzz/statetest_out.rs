//! Writing a reproducer as a GeneralStateTests file.
//!
//! The expected post-state root, logs hash and output come from running the file itself through
//! `kiln statetest`'s runner in interpreter mode (the same code `kiln statetest` uses, so the
//! file passes there by construction — and is checked to). The environment mirrors the one
//! `difftest` fuzzes in (block 1, timestamp 1, zero coinbase/basefee/prevrandao, unlimited block
//! gas), except the gas price: it is 1 wei so that gas differences move the sender's balance and
//! therefore the state root.

use std::path::Path;

use alloy_primitives::{Address, Bytes, B256, U256};
use eyre::{bail, WrapErr};
use serde_json::{json, Map, Value};

use super::{exec::ModeRuntime, program::Program};
use crate::{
    difftest::{Outcome, CALLER},
    statetest::{
        backend::Backend,
        report::{CaseReport, Outcome as Verdict},
        runner::{run_file, Fork, RunOptions},
    },
    Mode,
};

/// The key the fixtures in ethereum/tests use for the sender; `sender` overrides the address it
/// derives, so only its presence matters (a state test without one is an unsigned transaction).
const SECRET_KEY: &str = "0x45a915e4d060149eb4365960e6a7a45f334393093061116b197e3240065ff2d8";

fn hex_u256(v: U256) -> String {
    format!("{v:#x}")
}

fn hex_addr(a: Address) -> String {
    format!("{a:#x}")
}

/// The test unit for `program` under `fork` with the given post entry.
fn unit(program: &Program, fork: &Fork, post: Value, out: Option<&Bytes>, info: Value) -> Value {
    let mut pre = Map::new();
    for c in program.pre_contracts() {
        let storage: Map<String, Value> = c
            .storage
            .iter()
            .map(|(k, v)| (hex_u256(*k), Value::String(hex_u256(*v))))
            .collect();
        pre.insert(
            hex_addr(c.address),
            json!({
                "balance": hex_u256(c.balance),
                "code": format!("0x{}", hex::encode(c.code())),
                "nonce": "0x01",
                "storage": storage,
            }),
        );
    }
    pre.insert(
        hex_addr(CALLER),
        json!({ "balance": hex_u256(super::program::caller_balance()), "code": "0x", "nonce": "0x00", "storage": {} }),
    );
    let mut unit = json!({
        "_info": info,
        "env": {
            "currentCoinbase": hex_addr(Address::ZERO),
            "currentDifficulty": "0x00",
            "currentGasLimit": hex_u256(U256::from(u64::MAX)),
            "currentNumber": "0x01",
            "currentTimestamp": "0x01",
            "currentBaseFee": "0x00",
            "currentRandom": format!("{}", B256::ZERO),
            "currentExcessBlobGas": "0x00",
        },
        "pre": pre,
        "transaction": {
            "data": [format!("0x{}", hex::encode(program.tx_data()))],
            "gasLimit": [hex_u256(U256::from(program.gas_limit))],
            "gasPrice": "0x01",
            "nonce": "0x00",
            "secretKey": SECRET_KEY,
            "sender": hex_addr(CALLER),
            // An empty `to` is a contract creation.
            "to": program.to().map(hex_addr).unwrap_or_default(),
            "value": [hex_u256(program.value)],
        },
        "post": { fork.label.clone(): [post] },
    });
    if let Some(out) = out {
        unit["out"] = Value::String(out.to_string());
    }
    unit
}

fn run(path: &Path, backend: Backend, mode: Mode) -> eyre::Result<CaseReport> {
    let opts = RunOptions {
        backend,
        mode,
        filter: None,
        default_fork: Fork::parse("Cancun")?,
        include_slow: false,
    };
    let mut reports = run_file(path, &opts);
    if reports.len() != 1 {
        bail!(
            "expected one case in {}, got {}",
            path.display(),
            reports.len()
        );
    }
    Ok(reports.remove(0))
}

/// Writes `program` as a state test named `name` to `path`, with the interpreter's results as
/// the expectation, and checks that `kiln statetest --mode interpreter` passes it.
pub fn write(
    path: &Path,
    name: &str,
    program: &Program,
    fork: &Fork,
    reference: &Outcome,
    info: Value,
) -> eyre::Result<()> {
    let rejected = reference.result.as_ref().err();
    let post = |hash: B256, logs: B256| {
        let mut p = json!({ "hash": hash.to_string(), "logs": logs.to_string(), "indexes": { "data": 0, "gas": 0, "value": 0 } });
        if let Some(err) = rejected {
            // Any validation error satisfies an expected exception; the text is for humans.
            p["expectException"] = Value::String(format!("TransactionException: {err}"));
        }
        p
    };
    let save = |unit: Value| -> eyre::Result<()> {
        let text = serde_json::to_string_pretty(&json!({ name: unit }))?;
        std::fs::write(path, text + "\n").wrap_err_with(|| format!("writing {}", path.display()))
    };

    // First pass: placeholders, to learn what the interpreter computes for this very file.
    save(unit(
        program,
        fork,
        post(B256::ZERO, B256::ZERO),
        None,
        info.clone(),
    ))?;
    let first = run(path, Backend::Interpreter, Mode::Interpreter)?;
    let (Some(root), Some(logs)) = (first.state_root, first.logs_hash) else {
        bail!(
            "the interpreter computed no state root for {}: {:?}",
            path.display(),
            first.error
        );
    };
    let out = if rejected.is_none() {
        first.output.clone()
    } else {
        None
    };
    save(unit(program, fork, post(root, logs), out.as_ref(), info))?;

    let check = run(path, Backend::Interpreter, Mode::Interpreter)?;
    if check.outcome != Verdict::Passed {
        bail!(
            "the written state test does not pass in interpreter mode: {:?}",
            check.error
        );
    }
    Ok(())
}

/// Whether the state test at `path` passes in `rt`'s compiled mode (with its compile options,
/// i.e. with the injected fault if any), and the failure message if not.
pub fn passes_compiled(path: &Path, rt: &ModeRuntime) -> eyre::Result<(bool, Option<String>)> {
    // The state test runs on whatever the registry holds for its codes (the partial
    // compilations, until the program is forgotten) and compiles the rest as the mode's policy
    // says.
    let report = run(path, Backend::Compiled(rt.runtime.clone()), rt.mode)?;
    Ok((report.outcome == Verdict::Passed, report.error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::difftest::{run_revm, TARGET};
    use crate::fuzz::program::{Chunk, Contract, Insn};
    use revm::bytecode::opcode as op;

    fn program(insns: Vec<Insn>, gas_limit: u64) -> Program {
        Program {
            contracts: vec![Contract {
                address: TARGET,
                balance: U256::from(5),
                storage: vec![(U256::from(1), U256::from(2))],
                chunks: vec![Chunk {
                    kind: "test",
                    insns,
                }],
            }],
            calldata: vec![1, 2, 3],
            value: U256::from(7),
            gas_limit,
            init_codes: vec![],
            create_tx: false,
        }
    }

    fn written(p: &Program, fork: &str) -> Value {
        let fork = Fork::parse(fork).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let reference = run_revm(&p.case(fork.spec));
        write(&path, "t", p, &fork, &reference, json!({}))
            .expect("written and passing in interpreter mode");
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn storage_logs_and_output_are_the_interpreters() {
        // SSTORE(1, 9), LOG1 of 32 bytes, RETURN 32 bytes.
        let insns = vec![
            Insn::push_u64(9),
            Insn::push_u64(1),
            Insn::Op(op::SSTORE),
            Insn::push_u64(0xab),
            Insn::push_u64(0),
            Insn::Op(op::MSTORE),
            Insn::push_u64(5),
            Insn::push_u64(32),
            Insn::push_u64(0),
            Insn::Op(op::LOG1),
            Insn::push_u64(32),
            Insn::push_u64(0),
            Insn::Op(op::RETURN),
        ];
        let json = written(&program(insns, 100_000), "Prague");
        let post = &json["t"]["post"]["Prague"][0];
        // A log was emitted: not the empty-list hash.
        assert_ne!(
            post["logs"],
            "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"
        );
        assert_eq!(json["t"]["out"], format!("0x{:064x}", 0xab));
        assert!(post.get("expectException").is_none());
    }

    #[test]
    fn creations_have_an_empty_to_and_the_init_code_as_data() {
        // Deploys the one byte 0x00 (MSTORE8 0 at 0, RETURN 1 byte).
        let init = vec![
            Insn::push_u64(0),
            Insn::push_u64(0),
            Insn::Op(op::MSTORE8),
            Insn::push_u64(1),
            Insn::push_u64(0),
            Insn::Op(op::RETURN),
        ];
        let mut p = program(init, 200_000);
        p.create_tx = true;
        let json = written(&p, "Cancun");
        let tx = &json["t"]["transaction"];
        assert_eq!(tx["to"], "");
        assert_eq!(
            tx["data"][0],
            format!("0x{}", hex::encode(p.contracts[0].code()))
        );
        assert!(json["t"]["pre"].get(hex_addr(TARGET)).is_none());
    }

    #[test]
    fn rejected_transactions_expect_an_exception() {
        // Over Osaka's 2^24 transaction gas cap (EIP-7825).
        let json = written(&program(vec![Insn::Op(op::STOP)], (1 << 24) + 1), "Osaka");
        let post = &json["t"]["post"]["Osaka"][0];
        assert!(post["expectException"].as_str().is_some());
        assert!(json["t"].get("out").is_none());
    }
}
