//! Every opcode byte under every spec from Frontier to Osaka, and every inline arithmetic opcode
//! over a matrix of edge values, compiled vs interpreted.

use kiln_runtime::Runtime;
use kiln_testing::difftest::{compare, Case};
use revm::{
    bytecode::opcode as op,
    primitives::{hardfork::SpecId, U256},
};
use std::sync::Arc;

const SPECS: [SpecId; 13] = [
    SpecId::FRONTIER,
    SpecId::HOMESTEAD,
    SpecId::TANGERINE,
    SpecId::SPURIOUS_DRAGON,
    SpecId::BYZANTIUM,
    SpecId::PETERSBURG,
    SpecId::ISTANBUL,
    SpecId::BERLIN,
    SpecId::LONDON,
    SpecId::MERGE,
    SpecId::SHANGHAI,
    SpecId::CANCUN,
    SpecId::OSAKA,
];

fn push32(code: &mut Vec<u8>, v: U256) {
    code.push(op::PUSH32);
    code.extend_from_slice(&v.to_be_bytes::<32>());
}

fn edge_values() -> Vec<U256> {
    let one = U256::from(1u64);
    vec![
        U256::ZERO,
        one,
        U256::from(2u64),
        U256::from(7u64),
        U256::from(31u64),
        U256::from(32u64),
        U256::from(255u64),
        U256::from(256u64),
        U256::from(u64::MAX),
        one << 128,
        (one << 255) - one,
        one << 255,
        U256::MAX - one,
        U256::MAX,
    ]
}

/// Each opcode with a small stack of mixed values below it, then the top stored and returned.
#[test]
fn every_opcode_under_every_spec() {
    let rt = Runtime::jit();
    let mut mismatches = Vec::new();
    for spec in SPECS {
        for opcode in 0..=255u8 {
            let mut code = Vec::new();
            for v in [
                U256::from(3u64),
                U256::from(0x40u64),
                U256::from(1u64),
                U256::from(2u64),
                U256::from(0x20u64),
                U256::ZERO,
                U256::from(5u64),
            ] {
                push32(&mut code, v);
            }
            code.push(opcode);
            // Return whatever is on top (or STOP if the opcode emptied the stack, which the
            // interpreter reports the same way).
            code.extend_from_slice(&[op::PUSH0, op::MSTORE, op::MSIZE, op::PUSH0, op::RETURN]);
            if !spec.is_enabled_in(SpecId::SHANGHAI) {
                // No PUSH0 before Shanghai: use PUSH1 0.
                code.truncate(code.len() - 5);
                code.extend_from_slice(&[0x60, 0, op::MSTORE, op::MSIZE, 0x60, 0, op::RETURN]);
            }
            let case = Case::call(code, 1_000_000, spec);
            let (a, b) = compare(&case, &rt);
            if a != b {
                mismatches.push(format!(
                    "{spec:?} {opcode:#04x}: interpreter {a:?}\n   compiled {b:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Ends `code` by returning all of memory, runs it with `data` as calldata under Osaka, and
/// asserts that the interpreter and compiled code agree and that the run succeeded.
#[track_caller]
fn assert_returns_memory_alike(rt: &Arc<Runtime>, mut code: Vec<u8>, data: Vec<u8>, opcode: u8) {
    code.extend_from_slice(&[op::MSIZE, op::PUSH0, op::RETURN]);
    // Below the EIP-7825 per-transaction cap (2^24) that Osaka enforces.
    let mut case = Case::call(code, 16_000_000, SpecId::OSAKA);
    case.data = data;
    let (a, b) = compare(&case, rt);
    assert_eq!(a, b, "opcode {opcode:#04x}");
    assert!(
        a.result.as_ref().unwrap().is_success(),
        "opcode {opcode:#04x}: {:?}",
        a.result
    );
}

/// Binary and ternary arithmetic over all pairs of edge values, results returned in memory.
#[test]
fn arithmetic_value_matrix() {
    let binary = [
        op::ADD,
        op::MUL,
        op::SUB,
        op::DIV,
        op::SDIV,
        op::MOD,
        op::SMOD,
        op::EXP,
        op::SIGNEXTEND,
        op::LT,
        op::GT,
        op::SLT,
        op::SGT,
        op::EQ,
        op::AND,
        op::OR,
        op::XOR,
        op::BYTE,
        op::SHL,
        op::SHR,
        op::SAR,
    ];
    let unary = [op::ISZERO, op::NOT, op::CLZ];
    let vals = edge_values();
    let rt = Runtime::jit();
    for opcode in binary.into_iter().chain(unary) {
        let mut code = Vec::new();
        let mut slot = 0u64;
        for a in &vals {
            for b in &vals {
                if !binary.contains(&opcode) && b != &vals[0] {
                    continue;
                }
                push32(&mut code, *b);
                push32(&mut code, *a);
                code.push(opcode);
                if !binary.contains(&opcode) {
                    // unary: drop b below the result
                    code.extend_from_slice(&[op::SWAP1, op::POP]);
                }
                push32(&mut code, U256::from(slot * 32));
                code.push(op::MSTORE);
                slot += 1;
            }
        }
        for m in [op::ADDMOD, op::MULMOD] {
            if opcode == op::ADD {
                for a in &vals {
                    for b in &vals {
                        for n in [vals[0], vals[3], vals[8], vals[13]] {
                            push32(&mut code, n);
                            push32(&mut code, *b);
                            push32(&mut code, *a);
                            code.push(m);
                            push32(&mut code, U256::from(slot * 32));
                            code.push(op::MSTORE);
                            slot += 1;
                        }
                    }
                }
            }
        }
        assert_returns_memory_alike(&rt, code, Vec::new(), opcode);
    }
}

/// DIV, SDIV, MOD and SMOD on operands read from calldata, so that neither the 64-bit fast path
/// nor its guards can be constant-folded: every pair of values around the 64-bit boundaries.
#[test]
fn division_on_runtime_operands() {
    let one = U256::from(1u64);
    let neg = |x: U256| U256::ZERO.wrapping_sub(x);
    let mut vals = edge_values();
    vals.extend([
        one << 63,
        (one << 63) - one,
        one << 64,
        neg(one << 63),
        neg((one << 63) + one),
        neg(one),
        neg(U256::from(7u64)),
        U256::from(i64::MAX as u64),
    ]);
    let rt = Runtime::jit();
    for opcode in [op::DIV, op::SDIV, op::MOD, op::SMOD] {
        // Calldata: the values, one word each. For each (i, j): CALLDATALOAD(j), CALLDATALOAD(i), op.
        let mut code = Vec::new();
        let mut slot = 0u64;
        for i in 0..vals.len() {
            for j in 0..vals.len() {
                push32(&mut code, U256::from(j * 32));
                code.push(op::CALLDATALOAD);
                push32(&mut code, U256::from(i * 32));
                code.push(op::CALLDATALOAD);
                code.push(opcode);
                push32(&mut code, U256::from(slot * 32));
                code.push(op::MSTORE);
                slot += 1;
            }
        }
        let data = vals.iter().flat_map(|v| v.to_be_bytes::<32>()).collect();
        assert_returns_memory_alike(&rt, code, data, opcode);
    }
}

/// DIV, SDIV, MOD and SMOD of runtime dividends by constant divisors: powers of two (DIV and MOD
/// become a shift and a mask), their neighbours, and the signed opcodes, which must not.
#[test]
fn division_by_constant_powers_of_two() {
    let one = U256::from(1u64);
    let neg = |x: U256| U256::ZERO.wrapping_sub(x);
    let mut dividends = edge_values();
    dividends.extend([
        neg(one),
        neg(U256::from(12345u64)),
        one << 200,
        (one << 112) + one,
    ]);
    let mut divisors = Vec::new();
    for k in [0usize, 1, 5, 63, 64, 112, 127, 128, 200, 224, 255] {
        divisors.extend([one << k, (one << k) + one, neg(one << k)]);
    }
    divisors.push(U256::ZERO);
    let rt = Runtime::jit();
    for opcode in [op::DIV, op::SDIV, op::MOD, op::SMOD] {
        let mut code = Vec::new();
        let mut slot = 0u64;
        for i in 0..dividends.len() {
            for d in &divisors {
                push32(&mut code, *d);
                push32(&mut code, U256::from(i * 32));
                code.push(op::CALLDATALOAD);
                code.push(opcode);
                push32(&mut code, U256::from(slot * 32));
                code.push(op::MSTORE);
                slot += 1;
            }
        }
        let data = dividends
            .iter()
            .flat_map(|v| v.to_be_bytes::<32>())
            .collect();
        assert_returns_memory_alike(&rt, code, data, opcode);
    }
}
