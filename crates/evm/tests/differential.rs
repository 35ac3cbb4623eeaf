//! Interpreter vs compiled code on hand-written edge programs: gas used, refund, halt reason,
//! output, logs and state must be identical.

use kiln_runtime::{Entry, Runtime};
use kiln_testing::difftest::{compare, Case, PreAccount, CALLER, TARGET};
use revm::{
    bytecode::opcode as op,
    context_interface::result::{ExecutionResult, HaltReason},
    primitives::{hardfork::SpecId, keccak256, Address, U256},
};
use std::sync::{atomic::Ordering, Arc};

trait Word {
    fn word(self) -> U256;
}
impl Word for u64 {
    fn word(self) -> U256 {
        U256::from(self)
    }
}
impl Word for U256 {
    fn word(self) -> U256 {
        self
    }
}

/// A tiny assembler.
#[derive(Default, Clone)]
struct Asm(Vec<u8>);

impl Asm {
    fn op(mut self, o: u8) -> Self {
        self.0.push(o);
        self
    }
    fn push(mut self, v: impl Word) -> Self {
        let v: U256 = v.word();
        let bytes = v.to_be_bytes::<32>();
        let skip = bytes.iter().take_while(|b| **b == 0).count().min(31);
        let n = 32 - skip;
        self.0.push(op::PUSH1 + n as u8 - 1);
        self.0.extend_from_slice(&bytes[skip..]);
        self
    }
    fn push_addr(mut self, a: Address) -> Self {
        self.0.push(op::PUSH20);
        self.0.extend_from_slice(a.as_slice());
        self
    }
    /// Stores the top of the stack at memory 0 and returns 32 bytes.
    fn ret_top(self) -> Self {
        self.push(0u64)
            .op(op::MSTORE)
            .push(32u64)
            .push(0u64)
            .op(op::RETURN)
    }
    fn pc(&self) -> usize {
        self.0.len()
    }
    fn build(self) -> Vec<u8> {
        self.0
    }
}

fn u(v: u64) -> U256 {
    U256::from(v)
}

#[track_caller]
fn assert_same(case: &Case, rt: &Arc<Runtime>) -> ExecutionResult {
    let (a, b) = compare(case, rt);
    assert_eq!(
        a,
        b,
        "interpreter (left) and compiled (right) differ for code {}",
        hex(&case.pre[0].1.code)
    );
    a.result.expect("transaction should be valid")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn halt_reason(r: &ExecutionResult) -> Option<HaltReason> {
    match r {
        ExecutionResult::Halt { reason, .. } => Some(reason.clone()),
        _ => None,
    }
}

fn run(code: Vec<u8>, gas: u64) -> ExecutionResult {
    let rt = Runtime::jit();
    let r = assert_same(&Case::call(code, gas, SpecId::CANCUN), &rt);
    assert!(
        rt.stats.compiled_frames.load(Ordering::Relaxed) > 0,
        "compiled code did not run"
    );
    r
}

/// Runs `code` at every gas limit in `range` (out-of-gas at every point of the program).
fn sweep(code: Vec<u8>, range: std::ops::Range<u64>, spec: SpecId) {
    let rt = Runtime::jit();
    for gas in range {
        assert_same(&Case::call(code.clone(), gas, spec), &rt);
    }
}

#[test]
fn stack_underflow_at_block_boundary() {
    // PUSH1 1, PUSH1 5, JUMP, (pc 5) JUMPDEST, ADD, STOP
    let code = Asm::default()
        .push(1u64)
        .push(5u64)
        .op(op::JUMP)
        .op(op::JUMPDEST)
        .op(op::ADD)
        .op(op::STOP)
        .build();
    let r = run(code, 100_000);
    assert!(
        matches!(halt_reason(&r), Some(HaltReason::StackUnderflow)),
        "{r:?}"
    );
    run(vec![op::ADD], 100_000);
    run(vec![op::SWAP16], 100_000);
}

#[test]
fn stack_overflow_in_a_loop_and_in_one_block() {
    // JUMPDEST, PUSH0, PUSH0, JUMP: one more item per iteration.
    let code = vec![op::JUMPDEST, op::PUSH0, op::PUSH0, op::JUMP];
    let r = run(code, 1_000_000);
    assert!(
        matches!(halt_reason(&r), Some(HaltReason::StackOverflow)),
        "{r:?}"
    );
    // 1025 PUSH0 in one block.
    let r = run(vec![op::PUSH0; 1025], 1_000_000);
    assert!(
        matches!(halt_reason(&r), Some(HaltReason::StackOverflow)),
        "{r:?}"
    );
    // DUP at exactly 1024.
    let mut code = vec![op::PUSH0; 1024];
    code.push(op::DUP1);
    run(code, 1_000_000);
}

#[test]
fn jump_into_push_data_is_invalid() {
    // PUSH1 4, JUMP, PUSH1 0x5b, STOP: pc 4 is PUSH data that looks like JUMPDEST.
    let code = vec![0x60, 4, op::JUMP, 0x60, 0x5b, op::STOP];
    let r = run(code, 100_000);
    assert!(
        matches!(halt_reason(&r), Some(HaltReason::InvalidJump)),
        "{r:?}"
    );
}

#[test]
fn dynamic_and_invalid_jumps() {
    // Computed target 2 + 6 = 8 is a JUMPDEST: returns 0x2a.
    let a = Asm::default()
        .push(2u64)
        .push(6u64)
        .op(op::ADD)
        .op(op::JUMP)
        .op(op::INVALID)
        .op(op::INVALID);
    assert_eq!(a.pc(), 8);
    let code = a.op(op::JUMPDEST).push(0x2au64).ret_top().build();
    let r = run(code, 100_000);
    assert!(r.is_success(), "{r:?}");
    // Computed target that is not a JUMPDEST, one beyond the code, and a huge one.
    for target in [u(3), u(1000), U256::MAX, U256::from(1u64) << 64] {
        let code = Asm::default()
            .push(target)
            .push(0u64)
            .op(op::ADD)
            .op(op::JUMP)
            .op(op::JUMPDEST)
            .op(op::STOP)
            .build();
        let r = run(code, 100_000);
        assert!(
            matches!(halt_reason(&r), Some(HaltReason::InvalidJump)),
            "{target}: {r:?}"
        );
    }
    // JUMPI: taken and not taken, valid and invalid.
    for cond in [0u64, 1] {
        for target in [7u64, 6] {
            let code = Asm::default()
                .push(cond)
                .push(target)
                .op(op::JUMPI)
                .push(1u64)
                .op(op::JUMPDEST)
                .push(0x11u64)
                .ret_top()
                .build();
            run(code, 100_000);
        }
    }
}

#[test]
fn out_of_gas_at_every_point_including_before_gas() {
    // Arithmetic, GAS in the middle, a memory write, then return GAS again.
    let code = Asm::default()
        .push(1u64)
        .push(2u64)
        .op(op::ADD)
        .op(op::GAS)
        .op(op::MUL)
        .push(64u64)
        .op(op::MSTORE)
        .op(op::GAS)
        .ret_top()
        .build();
    sweep(code, 21_000..21_120, SpecId::CANCUN);
}

#[test]
fn sstore_stipend_check_is_exact() {
    // SSTORE fails when gasleft <= 2300 (EIP-2200) regardless of its cost.
    let code = Asm::default()
        .push(1u64)
        .push(0u64)
        .op(op::SSTORE)
        .op(op::STOP)
        .build();
    for spec in [SpecId::ISTANBUL, SpecId::BERLIN, SpecId::CANCUN] {
        sweep(code.clone(), 21_000 + 2_290..21_000 + 2_320, spec);
        sweep(code.clone(), 21_000 + 22_000..21_000 + 22_120, spec);
    }
}

#[test]
fn memory_expansion_to_huge_offsets() {
    for offset in [U256::MAX, u(u32::MAX as u64), u(1 << 24), u(0x1000_0000)] {
        let code = Asm::default()
            .push(offset)
            .op(op::MLOAD)
            .op(op::STOP)
            .build();
        let r = run(code, 10_000_000);
        assert!(halt_reason(&r).is_some(), "{r:?}");
        let code = Asm::default()
            .push(1u64)
            .push(offset)
            .op(op::MSTORE)
            .op(op::STOP)
            .build();
        run(code, 10_000_000);
        // MCOPY and CALLDATACOPY of length 1 to the huge offset.
        let code = Asm::default()
            .push(1u64)
            .push(0u64)
            .push(offset)
            .op(op::MCOPY)
            .op(op::STOP)
            .build();
        run(code, 10_000_000);
        let code = Asm::default()
            .push(1u64)
            .push(0u64)
            .push(offset)
            .op(op::CALLDATACOPY)
            .op(op::STOP)
            .build();
        run(code, 10_000_000);
    }
    // Moderate growth, then MSIZE.
    let code = Asm::default()
        .push(1u64)
        .push(10_000u64)
        .op(op::MSTORE8)
        .op(op::MSIZE)
        .ret_top()
        .build();
    let r = run(code, 1_000_000);
    assert!(r.is_success());
}

#[test]
fn returndatacopy_out_of_bounds() {
    let code = Asm::default()
        .push(1u64)
        .push(0u64)
        .push(0u64)
        .op(op::RETURNDATACOPY)
        .op(op::STOP)
        .build();
    let r = run(code, 100_000);
    assert!(
        matches!(halt_reason(&r), Some(HaltReason::OutOfOffset)),
        "{r:?}"
    );
}

#[test]
fn revert_with_data() {
    let code = Asm::default()
        .push(0xdeadu64)
        .push(0u64)
        .op(op::MSTORE)
        .push(32u64)
        .push(0u64)
        .op(op::REVERT)
        .build();
    let r = run(code, 100_000);
    assert!(matches!(r, ExecutionResult::Revert { .. }), "{r:?}");
}

const OTHER: Address = Address::new([0x20; 20]);

fn with_other(code: Vec<u8>, other: Vec<u8>, gas: u64) -> Case {
    let mut case = Case::call(code, gas, SpecId::CANCUN);
    case.pre.push((
        OTHER,
        PreAccount {
            code: other,
            balance: u(5),
            ..Default::default()
        },
    ));
    case
}

/// CALL-family call of OTHER with no value: args (gas, addr, [value], in_off, in_len, out_off, out_len).
fn call_other(kind: u8) -> Asm {
    let a = Asm::default().push(32u64).push(0u64).push(0u64).push(0u64);
    let a = if kind == op::CALL || kind == op::CALLCODE {
        a.push(0u64)
    } else {
        a
    };
    a.push_addr(OTHER).op(op::GAS).op(kind)
}

#[test]
fn static_call_violations() {
    // OTHER tries SSTORE; under STATICCALL it must fail and the caller sees 0.
    let other = Asm::default()
        .push(1u64)
        .push(0u64)
        .op(op::SSTORE)
        .op(op::STOP)
        .build();
    let code = call_other(op::STATICCALL)
        .push(0u64)
        .op(op::SSTORE)
        .op(op::STOP)
        .build();
    let rt = Runtime::jit();
    let r = assert_same(&with_other(code, other.clone(), 200_000), &rt);
    assert!(r.is_success());
    // LOG and CALL with value are also violations.
    let other = Asm::default()
        .push(0u64)
        .push(0u64)
        .op(op::LOG0)
        .op(op::STOP)
        .build();
    let code = call_other(op::STATICCALL).ret_top().build();
    assert_same(&with_other(code, other, 200_000), &rt);
    // The other call kinds, and returning data through them.
    let other = Asm::default()
        .op(op::CALLER)
        .op(op::CALLVALUE)
        .op(op::ADD)
        .op(op::ADDRESS)
        .op(op::ADD)
        .ret_top()
        .build();
    for kind in [op::CALL, op::CALLCODE, op::DELEGATECALL, op::STATICCALL] {
        let code = call_other(kind)
            .op(op::POP)
            .push(0u64)
            .op(op::MLOAD)
            .op(op::RETURNDATASIZE)
            .op(op::ADD)
            .ret_top()
            .build();
        assert_same(&with_other(code, other.clone(), 200_000), &rt);
    }
}

/// Init code that returns `runtime` as the deployed code.
fn init_code(runtime: &[u8]) -> Vec<u8> {
    let mut a = Asm::default();
    for (i, chunk) in runtime.chunks(32).enumerate() {
        let mut word = [0u8; 32];
        word[..chunk.len()].copy_from_slice(chunk);
        a = a
            .push(U256::from_be_bytes(word))
            .push((i * 32) as u64)
            .op(op::MSTORE);
    }
    // Also touch storage in the constructor.
    a = a.push(7u64).push(1u64).op(op::SSTORE);
    a.push(runtime.len() as u64)
        .push(0u64)
        .op(op::RETURN)
        .build()
}

#[test]
fn create_and_create2_with_compiled_init_code() {
    let runtime_code = Asm::default().push(0x99u64).ret_top().build();
    let init = init_code(&runtime_code);
    let rt = Runtime::jit();
    for kind in [op::CREATE, op::CREATE2] {
        // Copy init code into memory from calldata, create, then call the new contract.
        let mut a = Asm::default()
            .op(op::CALLDATASIZE)
            .push(0u64)
            .push(0u64)
            .op(op::CALLDATACOPY);
        if kind == op::CREATE2 {
            a = a.push(0x5a17u64);
        }
        let code = a
            .op(op::CALLDATASIZE)
            .push(0u64)
            .push(0u64)
            .op(kind)
            // stack: addr
            .push(32u64)
            .push(0u64)
            .push(0u64)
            .push(0u64)
            .op(op::DUP5)
            .op(op::GAS)
            .op(op::STATICCALL)
            .op(op::POP)
            .push(0u64)
            .op(op::MLOAD)
            .op(op::ADD)
            .ret_top()
            .build();
        let mut case = Case::call(code, 1_000_000, SpecId::CANCUN);
        case.data = init.clone();
        let r = assert_same(&case, &rt);
        assert!(r.is_success(), "{r:?}");
        // Out of gas at many points of the create.
        for gas in (60_000..140_000).step_by(997) {
            case.gas_limit = gas;
            assert_same(&case, &rt);
        }
    }
    // A contract-creation transaction whose init code is compiled.
    let mut case = Case::call(vec![], 1_000_000, SpecId::CANCUN);
    case.to = None;
    case.data = init;
    let r = assert_same(&case, &rt);
    assert!(r.is_success(), "{r:?}");
    let hash = keccak256(&case.data);
    assert!(
        matches!(rt.get(hash, SpecId::CANCUN), Some(Entry::Ready(_))),
        "init code was not compiled"
    );
}

#[test]
fn selfdestruct() {
    let code = Asm::default()
        .push(1u64)
        .push(0u64)
        .op(op::SSTORE)
        .push_addr(OTHER)
        .op(op::SELFDESTRUCT)
        .build();
    for spec in [SpecId::LONDON, SpecId::CANCUN] {
        let rt = Runtime::jit();
        let mut case = with_other(code.clone(), vec![], 100_000);
        case.spec = spec;
        let r = assert_same(&case, &rt);
        assert!(r.is_success(), "{r:?}");
    }
}

#[test]
fn deep_call_chain_alternating_compiled_and_interpreted() {
    // A calls B, B calls A, ... each stores the depth it saw; the chain ends at depth 1024.
    // code(X): SSTORE(0, CALLDATALOAD(0)); mstore(0, depth+1); CALL(gas, other, 0, 0, 32, 0, 0)
    let body = |other: Address| {
        Asm::default()
            .push(0u64)
            .op(op::CALLDATALOAD)
            .op(op::DUP1)
            .push(0u64)
            .op(op::SSTORE)
            .push(1u64)
            .op(op::ADD)
            .push(0u64)
            .op(op::MSTORE)
            .push(0u64)
            .push(0u64)
            .push(32u64)
            .push(0u64)
            .push(0u64)
            .push_addr(other)
            .op(op::GAS)
            .op(op::CALL)
            .push(1u64)
            .op(op::SSTORE)
            .op(op::STOP)
            .build()
    };
    let code_a = body(OTHER);
    let code_b = body(TARGET);
    let rt = Runtime::jit();
    // Keep B on the interpreter, as if its compilation had failed.
    rt.insert(
        keccak256(&code_b),
        SpecId::CANCUN,
        Entry::Failed("forced for this test".into()),
    );
    let mut case = with_other(code_a, code_b, 1u64 << 50);
    case.caller = CALLER;
    let (a, b) = compare(&case, &rt);
    assert_eq!(a, b);
    let r = a.result.unwrap();
    assert!(r.is_success(), "{r:?}");
    // The deepest frame (depth 1024) was reached and stored its depth at slot 0.
    let deepest = a
        .state
        .iter()
        .flat_map(|(_, _, s, _)| s.iter())
        .filter(|(k, _)| *k == U256::ZERO)
        .map(|(_, v)| *v)
        .max();
    assert_eq!(deepest, Some(u(1024)));
    assert!(rt.stats.compiled_frames.load(Ordering::Relaxed) >= 512);
    assert!(rt.stats.interpreted_frames.load(Ordering::Relaxed) >= 512);
}

#[test]
fn logs_and_keccak_and_exp() {
    let code = Asm::default()
        .push(0x1234u64)
        .push(0u64)
        .op(op::MSTORE)
        .push(3u64)
        .push(0xffu64)
        .op(op::EXP)
        .push(32u64)
        .push(0u64)
        .op(op::KECCAK256)
        .push(32u64)
        .push(0u64)
        .op(op::LOG2)
        .push(7u64)
        .push(2u64)
        .op(op::EXP)
        .ret_top()
        .build();
    sweep(code, 21_000..21_900, SpecId::CANCUN);
}

/// Bad bytecode deployed as contract code runs the same way compiled or not (or, when the
/// compiler refuses it, on the interpreter), and never takes the process down.
#[test]
fn bad_bytecode_runs_like_the_interpreter() {
    let mut blob = vec![0u8; 1 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in blob.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated PUSH32", vec![0x7f, 1, 2, 3]),
        ("only INVALID", vec![0xfe; 64]),
        (
            "only unknown opcodes",
            vec![0x0c, 0x0d, 0x0e, 0x0f, 0x1e, 0x1f],
        ),
        ("24 KiB of JUMPDEST", vec![0x5b; 24 * 1024]),
        ("24 KiB of random bytes", blob[..24 * 1024].to_vec()),
        ("1 MiB of random bytes", blob),
    ];
    let rt = Runtime::jit();
    for (name, code) in cases {
        let (a, b) = compare(&Case::call(code, 1_000_000, SpecId::CANCUN), &rt);
        assert_eq!(a, b, "{name}");
    }
}

/// Inline memory access inside the current size, the builtin outside it, and the hand-off to
/// the interpreter right after an inline access (values still in registers) at every gas limit.
#[test]
fn memory_fast_path_edges() {
    let mut a = Asm::default().push(U256::MAX).push(64u64).op(op::MSTORE); // memory is 96 bytes
    for offset in [0u64, 1, 31, 32, 33, 63, 64, 65, 95, 96, 1000] {
        a = a.push(offset).op(op::MLOAD).push(offset).op(op::ADD);
        a = a.push(0xabu64).push(offset).op(op::MSTORE8);
        a = a.op(op::DUP1).push(offset).op(op::MSTORE);
    }
    let code = a.op(op::MSIZE).op(op::ADD).ret_top().build();
    run(code.clone(), 1_000_000);
    sweep(code, 21_000..21_700, SpecId::CANCUN);
    // Dirty register values when a later section bails out: DUPs after an inline MLOAD up to an
    // overflow, with the stack almost full.
    let mut code = vec![op::PUSH0; 1010];
    code.extend([
        op::PUSH0,
        op::MLOAD,
        op::DUP1,
        op::DUP1,
        op::MSIZE,
        op::MLOAD,
    ]);
    code.extend([op::DUP1; 16]);
    run(code.clone(), 1_000_000);
    sweep(code, 21_000 + 3_000..21_000 + 3_200, SpecId::CANCUN);
}

/// Static edges pass the target block's entry slots in registers: a loop whose state never
/// goes through the stack buffer, out of gas at every point of it (the bail-out writes the
/// registers back), and blocks entered by a static edge with too few items, where the entry
/// slots are read and written through a clamped address.
#[test]
fn entry_slots_in_registers_across_static_edges() {
    // n = 10, acc = 0; while n != 0 { acc += n; n -= 1 }; return acc
    #[rustfmt::skip]
    let code = vec![
        0x60, 10, op::PUSH0, // 0: n, acc
        op::JUMPDEST, op::DUP2, op::ISZERO, 0x60, 20, op::JUMPI, // 3: loop head
        op::DUP2, op::ADD, op::SWAP1, 0x60, 1, op::SWAP1, op::SUB, op::SWAP1, 0x60, 3, op::JUMP, // 9: body
        op::JUMPDEST, op::PUSH0, op::MSTORE, 0x60, 32, op::PUSH0, op::RETURN, // 20: exit
    ];
    assert_eq!(returned_word(&run(code.clone(), 100_000)), u(55));
    sweep(code, 21_000..21_500, SpecId::CANCUN);
    // JUMPI whose edges enter blocks reading 2 and 17 items below a stack of 1 (underflow on
    // either path) and of 17 (both paths run).
    for depth in [1usize, 17] {
        for cond in [0u64, 1] {
            let mut code = vec![op::PUSH0; depth - 1];
            code.extend([0x60, 0xaa]); // the item the blocks read
            let jumpi_at = code.len();
            code.extend([0x60, cond as u8, 0x60, 0, op::JUMPI]); // target patched below
            code.extend([
                op::SWAP1,
                op::POP,
                op::PUSH0,
                op::MSTORE,
                0x60,
                32,
                op::PUSH0,
                op::RETURN,
            ]);
            let target = code.len() as u8;
            code[jumpi_at + 3] = target;
            code.extend([
                op::JUMPDEST,
                op::SWAP16,
                op::PUSH0,
                op::MSTORE,
                0x60,
                32,
                op::PUSH0,
                op::RETURN,
            ]);
            run(code, 100_000);
        }
    }
}

/// The word a successful run returned.
#[track_caller]
fn returned_word(r: &ExecutionResult) -> U256 {
    match r {
        ExecutionResult::Success { output, .. } => U256::from_be_slice(output.data()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn memory_known_from_earlier_constant_offsets() {
    // Straight line: an access inside memory an earlier constant access grew needs no check;
    // one past it still grows (and runs out of gas at every limit in the sweep).
    let code = Asm::default()
        .push(0xaau64)
        .push(0x40u64)
        .op(op::MSTORE) // memory 0x60
        .push(0u64)
        .op(op::MLOAD)
        .op(op::POP)
        .push(0xbbu64)
        .push(0x5fu64)
        .op(op::MSTORE8)
        .push(0x40u64)
        .op(op::MLOAD)
        .push(0x60u64)
        .op(op::MLOAD)
        .op(op::ADD) // grows to 0x80
        .op(op::MSIZE)
        .op(op::ADD)
        .ret_top()
        .build();
    assert_eq!(returned_word(&run(code.clone(), 100_000)), u(0xbb + 0x80));
    sweep(code, 21_000..21_200, SpecId::CANCUN);

    // A JUMPDEST entered by a static edge after memory grew, and first by a dynamic jump with
    // no memory at all: what the static edge knows must not count.
    let l = 16u8;
    #[rustfmt::skip]
    let code = vec![
        0x60, l, op::DUP1, op::POP, op::JUMP, // 0: dynamic jump to L
        op::JUMPDEST, 0x60, 0xaa, 0x61, 0x01, 0x00, op::MSTORE, 0x60, l, op::JUMP, // 5: static edge into L, memory 0x120
        op::INVALID,
        op::JUMPDEST, 0x61, 0x01, 0x00, op::MLOAD, op::MSIZE, op::ADD, // 16: L
        op::PUSH0, op::MSTORE, 0x60, 32, op::PUSH0, op::RETURN,
    ];
    assert_eq!(code[l as usize], op::JUMPDEST);
    assert_eq!(returned_word(&run(code.clone(), 100_000)), u(0x120));
    sweep(code, 21_000..21_100, SpecId::CANCUN);

    // A loop head: the first entry (fallthrough) grew memory to 0x40, the back edge comes later,
    // and the body grows it further on its first iteration only.
    #[rustfmt::skip]
    let code = vec![
        0x60, 0xaa, 0x60, 0x20, op::MSTORE, 0x60, 3, // 0: memory 0x40, counter 3
        op::JUMPDEST, 0x61, 0x02, 0x00, op::MLOAD, op::POP, 0x60, 0x20, op::MLOAD, op::POP, // 7: loop head
        0x60, 1, op::SWAP1, op::SUB, op::DUP1, 0x60, 7, op::JUMPI,
        op::MSIZE, op::PUSH0, op::MSTORE, 0x60, 32, op::PUSH0, op::RETURN,
    ];
    assert_eq!(returned_word(&run(code.clone(), 100_000)), u(0x220));
    sweep(code, 21_000..21_200, SpecId::CANCUN);

    // What the block at pc 0 grew holds in every later block, also one a dynamic jump enters;
    // past it, memory still grows. Block 0 runs out of gas before its store in the sweep.
    let l = 14u8;
    #[rustfmt::skip]
    let code = vec![
        0x60, 0x80, 0x60, 0x40, op::MSTORE, // 0: memory 0x60
        0x60, l, op::DUP1, op::POP, op::JUMP, // dynamic jump to L
        op::INVALID, op::INVALID, op::INVALID, op::INVALID,
        op::JUMPDEST, 0x60, 0x40, op::MLOAD, 0x60, 0x60, op::MLOAD, op::ADD, // 14: L
        op::MSIZE, op::ADD, op::PUSH0, op::MSTORE, 0x60, 32, op::PUSH0, op::RETURN,
    ];
    assert_eq!(code[l as usize], op::JUMPDEST);
    assert_eq!(returned_word(&run(code.clone(), 100_000)), u(0x80 + 0x80));
    sweep(code, 21_000..21_100, SpecId::CANCUN);

    // JUMPI's fallthrough (not a JUMPDEST) inherits what the block before it knew.
    let code = Asm::default()
        .push(0xaau64)
        .push(0x80u64)
        .op(op::MSTORE)
        .push(0u64)
        .push(0u64)
        .op(op::JUMPI) // condition 0: falls through
        .push(0x80u64)
        .op(op::MLOAD)
        .ret_top()
        .build();
    assert_eq!(returned_word(&run(code, 100_000)), u(0xaa));
}

#[test]
fn storage_reads_after_stores_and_calls() {
    // The slot cache comes into use after a stretch's first few SLOADs; these warm it up.
    let warm_up = |a: Asm| {
        a.push(1u64)
            .op(op::SLOAD)
            .op(op::POP)
            .push(1u64)
            .op(op::SLOAD)
            .op(op::POP)
            .push(2u64)
            .op(op::SLOAD)
            .op(op::POP)
            .push(2u64)
            .op(op::SLOAD)
            .op(op::POP)
    };
    // a = slot 1; slot 1 = a + 10; b = slot 1 (the stored value, not the loaded one).
    let code = warm_up(Asm::default())
        .push(1u64)
        .op(op::SLOAD)
        .op(op::DUP1)
        .push(10u64)
        .op(op::ADD)
        .push(1u64)
        .op(op::SSTORE)
        .push(1u64)
        .op(op::SLOAD);
    // OTHER writes slot 1 of this account through DELEGATECALL: c = slot 1 must see it.
    let code = call_other(op::DELEGATECALL)
        .0
        .iter()
        .fold(code, |a, &b| a.op(b));
    let code = warm_up(code.op(op::POP)).push(1u64).op(op::SLOAD);
    // Five times slot 2 += 1, in a loop whose later iterations load through the cache.
    let code = code.push(5u64);
    let head = code.pc();
    let code = code
        .op(op::JUMPDEST)
        .push(2u64)
        .op(op::SLOAD)
        .push(1u64)
        .op(op::ADD)
        .push(2u64)
        .op(op::SSTORE)
        .push(1u64)
        .op(op::SWAP1)
        .op(op::SUB)
        .op(op::DUP1)
        .push(head as u64)
        .op(op::JUMPI)
        .op(op::POP)
        .push(2u64)
        .op(op::SLOAD);
    // Return a * 10^9 + b * 10^6 + c * 10^3 + d.
    let code = code
        .op(op::SWAP1)
        .push(1_000u64)
        .op(op::MUL)
        .op(op::ADD)
        .op(op::SWAP1)
        .push(1_000_000u64)
        .op(op::MUL)
        .op(op::ADD)
        .op(op::SWAP1)
        .push(1_000_000_000u64)
        .op(op::MUL)
        .op(op::ADD)
        .ret_top()
        .build();
    let other = Asm::default()
        .push(77u64)
        .push(1u64)
        .op(op::SSTORE)
        .op(op::STOP)
        .build();
    let rt = Runtime::jit();
    for spec in [SpecId::ISTANBUL, SpecId::CANCUN] {
        let mut case = with_other(code.clone(), other.clone(), 200_000);
        case.spec = spec;
        case.pre[0].1.storage = vec![(u(1), u(5)), (u(2), u(7))];
        let r = assert_same(&case, &rt);
        assert_eq!(returned_word(&r), u(5_015_077_012), "{spec:?}");
        // Out of gas at points all through, including at each SSTORE.
        for gas in (21_000..case.gas_limit.min(120_000)).step_by(89) {
            case.gas_limit = gas;
            assert_same(&case, &rt);
        }
    }
    assert!(rt.stats.compiled_frames.load(Ordering::Relaxed) > 0);
}

/// A run of stores off one base that the compiled code grows memory for at once (the first
/// store reaches ahead to the last), with what may or may not sit inside such a run.
#[test]
fn memory_growth_ahead_for_a_run_of_accesses_off_one_base() {
    let store = |a: Asm, offset: u64, value: u64, o: u8| {
        let a = a.op(op::DUP1);
        let a = if offset > 0 {
            a.push(offset).op(op::ADD)
        } else {
            a
        };
        a.push(value).op(op::SWAP1).op(o)
    };
    // Bases the analysis cannot know: CALLDATALOAD of empty calldata plus 0x100, and products
    // near the ends of the offset range (2^64 - 0x40; 2^256 - 0x30, whose later offsets wrap).
    let bases = [
        Asm::default()
            .push(0u64)
            .op(op::CALLDATALOAD)
            .push(0x100u64)
            .op(op::ADD),
        Asm::default().push(u64::MAX - 0x3f).push(1u64).op(op::MUL),
        Asm::default()
            .push(U256::MAX - u(0x2f))
            .push(1u64)
            .op(op::MUL),
    ];
    // Put between the run's second and third store: nothing; instructions that end the run
    // (GAS, MSIZE, KECCAK256) or a constant-offset access that itself grows memory; one inside
    // memory; and a stack underflow in a later section of the run.
    let middles: [&[u8]; 7] = [
        &[],
        &[op::GAS, op::POP],
        &[op::MSIZE, op::POP],
        &[0x60, 0x20, op::PUSH0, op::KECCAK256, op::POP],
        &[0x61, 0x04, 0x00, op::MLOAD, op::POP],
        &[0x60, 0x20, op::MLOAD, op::POP],
        &[op::SWAP5],
    ];
    let rt = Runtime::jit();
    for (b, base) in bases.iter().enumerate() {
        for middle in middles {
            let mut a = store(base.clone(), 0, 0x11, op::MSTORE);
            a = store(a, 0x20, 0x22, op::MSTORE);
            a.0.extend_from_slice(middle);
            a = store(a, 0x60, 0x33, op::MSTORE);
            a = store(a, 0x90, 0x44, op::MSTORE8);
            let code = a
                .op(op::DUP1)
                .push(0x20u64)
                .op(op::ADD)
                .op(op::MLOAD)
                .op(op::MSIZE)
                .op(op::ADD)
                .op(op::ADD)
                .ret_top()
                .build();
            if b == 0 && middle.is_empty() {
                let r = assert_same(&Case::call(code.clone(), 100_000, SpecId::CANCUN), &rt);
                assert_eq!(returned_word(&r), u(0x100 + 0x22 + 0x1a0), "{}", hex(&code));
            }
            for gas in 21_000..21_400 {
                assert_same(&Case::call(code.clone(), gas, SpecId::CANCUN), &rt);
            }
        }
    }
    assert!(rt.stats.compiled_frames.load(Ordering::Relaxed) > 0);
}

/// Profile-guided compilation: a block the profile did not enter hands the frame to the
/// interpreter at its first pc, with the stack written back (entry slots passed in registers
/// included) and nothing of the block charged. Every subset of compiled blocks must run exactly
/// like the interpreter, at every gas limit around the program's cost.
#[test]
fn cold_blocks_hand_off_to_the_interpreter() {
    use kiln_compiler::{analysis::analyze, CompileOptions, Coverage};
    use kiln_runtime::{Backend, CompilePolicy};
    // n = 4, acc = 0; while n != 0 { acc += n; mstore(0x40, acc); n -= 1 } (back through a
    // dynamic jump); CALL OTHER (a resume point); return acc
    #[rustfmt::skip]
    let mut code = vec![
        0x60, 4, op::PUSH0, // 0: n, acc
        op::JUMPDEST, op::DUP2, op::ISZERO, 0x60, 0, op::JUMPI, // 3: head; exit patched below
        op::DUP2, op::ADD, op::DUP1, 0x60, 0x40, op::MSTORE, // 9: acc += n, mstore(0x40, acc)
        op::SWAP1, 0x60, 1, op::SWAP1, op::SUB, op::SWAP1, // n -= 1
        0x60, 3, op::DUP1, op::POP, op::JUMP, // dynamic jump to the head
    ];
    let exit = code.len() as u8;
    code[7] = exit;
    code.extend([op::JUMPDEST, op::SWAP1, op::POP]);
    code.extend(call_other(op::CALL).op(op::POP).ret_top().build());
    let other = Asm::default().push(7u64).ret_top().build();

    let spec = SpecId::CANCUN;
    let analysis = analyze(&code, spec);
    let starts: Vec<usize> = analysis
        .blocks
        .iter()
        .map(|b| analysis.insts[b.start].pc as usize)
        .collect();
    assert!(starts.len() >= 5, "blocks at {starts:?}");
    let hash = keccak256(&code);
    let mut handoffs = 0;
    for mask in 0u32..1 << starts.len() {
        let coverage: Coverage = starts
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, &pc)| pc)
            .collect();
        let rt = Arc::new(Runtime::new(
            Backend::Jit,
            CompilePolicy::LookupOnly,
            CompileOptions::default(),
        ));
        let f = rt
            .compile(hash, spec, &code, Some(&coverage))
            .expect("compiles");
        rt.insert(hash, spec, Entry::Ready(Arc::new(f)));
        let full = assert_same(&with_other(code.clone(), other.clone(), 200_000), &rt);
        assert_eq!(returned_word(&full), u(10), "mask {mask:b}");
        for gas in (21_000..full.tx_gas_used() + 40).step_by(23) {
            assert_same(&with_other(code.clone(), other.clone(), gas), &rt);
        }
        let stats = &rt.stats;
        assert!(
            stats.compiled_frames.load(Ordering::Relaxed) > 0,
            "mask {mask:b}"
        );
        handoffs += stats.handoffs.load(Ordering::Relaxed);
    }
    assert!(handoffs > 0, "no cold block was entered");
}
