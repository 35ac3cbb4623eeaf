//! Code families: one function compiled for contracts that differ only in PUSH immediates runs
//! every member exactly as the interpreter does, and as each member's own compilation does.

use kiln_compiler::{
    compile_object, family, link_jit_object, next_entry_name, CompileOptions, OptLevel,
};
use kiln_runtime::{Backend, CompilePolicy, CompiledCode, Entry, Runtime};
use kiln_testing::difftest::{compare, Case};
use revm::{
    bytecode::opcode as op,
    primitives::{hardfork::SpecId, keccak256},
};
use std::sync::{atomic::Ordering, Arc};

const SPEC: SpecId = SpecId::CANCUN;

/// Immediate widths of the template's "immutables": odd and even, short and full.
const WIDTHS: [usize; 9] = [1, 2, 3, 5, 8, 13, 20, 31, 32];

/// A contract that uses one immutable of each width in arithmetic, comparisons, a storage key,
/// a memory offset (a small one, so memory growth and its gas differ by instance) and a loop
/// bound, then returns what it computed. `imm(i)` gives the bytes of immutable `i`.
fn template(imm: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let push = |code: &mut Vec<u8>, i: usize| {
        let bytes = imm(i);
        code.push(op::PUSH1 + bytes.len() as u8 - 1);
        code.extend(bytes);
    };
    let mut c = vec![op::PUSH0];
    for (i, _) in WIDTHS.iter().enumerate() {
        push(&mut c, i);
        c.extend([op::DUP1, op::PUSH1, 3, op::MUL, op::XOR, op::ADD]);
        push(&mut c, i);
        c.extend([op::DUP2, op::LT, op::ADD]);
    }
    // sstore(imm20, acc); mstore(imm2 % 512, acc)
    c.extend([op::DUP1]);
    push(&mut c, 6);
    c.push(op::SSTORE);
    c.extend([op::DUP1, op::PUSH2, 0x01, 0xff]);
    push(&mut c, 1);
    c.extend([op::AND, op::MSTORE]);
    // A loop that runs imm1 % 8 times, adding imm3 each time.
    push(&mut c, 0);
    c.extend([op::PUSH1, 7, op::AND]);
    let head = c.len();
    c.extend([op::JUMPDEST, op::DUP1, op::ISZERO]);
    let exit_fixup = c.len() + 1;
    c.extend([op::PUSH2, 0, 0, op::JUMPI, op::SWAP1]);
    push(&mut c, 2);
    c.extend([op::ADD, op::SWAP1, op::PUSH1, 1, op::SWAP1, op::SUB]);
    c.extend([op::PUSH2, (head >> 8) as u8, head as u8, op::JUMP]);
    let exit = c.len();
    c[exit_fixup..exit_fixup + 2].copy_from_slice(&[(exit >> 8) as u8, exit as u8]);
    c.extend([
        op::JUMPDEST,
        op::POP,
        op::PUSH0,
        op::MSTORE,
        op::MSIZE,
        op::PUSH0,
        op::RETURN,
    ]);
    c
}

/// Member `seed` of the family: pseudo-random immutables.
fn member(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<Vec<u8>> = WIDTHS
        .iter()
        .map(|&w| {
            (0..w)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    template(|i| values[i].clone())
}

fn runtime_with(code: &[u8], f: CompiledCode) -> Arc<Runtime> {
    let rt = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions::default(),
    ));
    rt.insert(keccak256(code), SPEC, Entry::Ready(Arc::new(f)));
    rt
}

#[track_caller]
fn assert_runs_like_the_interpreter(code: &[u8], rt: &Arc<Runtime>) -> Vec<u8> {
    let (interpreted, compiled) = compare(&Case::call(code.to_vec(), 1_000_000, SPEC), rt);
    assert_eq!(
        interpreted, compiled,
        "interpreter (left) and compiled (right) differ"
    );
    assert!(
        rt.stats.compiled_frames.load(Ordering::Relaxed) > 0,
        "compiled code did not run"
    );
    match interpreted.result.expect("valid transaction") {
        revm::context_interface::result::ExecutionResult::Success { output, .. } => {
            output.into_data().to_vec()
        }
        other => panic!("the template should succeed: {other:?}"),
    }
}

#[test]
fn a_family_function_runs_every_member_as_its_own_compilation_does() {
    let members: Vec<Vec<u8>> = (1..=6).map(member).collect();
    let siblings: Vec<&[u8]> = members[1..].iter().map(|m| &m[..]).collect();
    assert!(members
        .iter()
        .all(|m| family::skeleton(m) == family::skeleton(&members[0])));
    let params = family::params(&members[0], &siblings).expect("one family");
    assert_eq!(params.len(), WIDTHS.len() * 2 + 4, "every immutable PUSH");
    for level in [OptLevel::O2, OptLevel::Baseline] {
        let opts = CompileOptions {
            opt_level: level,
            ..Default::default()
        };
        let digest = family::digest(&members[0], SPEC, &params).unwrap();
        let entry = next_entry_name();
        let object =
            compile_object(&members[0], SPEC, &opts, None, &params, &entry).expect("compiles");
        let shared = Arc::new(CompiledCode::Jit(
            link_jit_object(&object, &entry).expect("links"),
        ));
        let mut outputs = Vec::new();
        for code in &members {
            assert_eq!(family::digest(code, SPEC, &params).unwrap(), digest);
            // The shared function, installed under this member's hash.
            let rt = Arc::new(Runtime::new(Backend::Jit, CompilePolicy::LookupOnly, opts));
            rt.insert(keccak256(code), SPEC, Entry::Ready(shared.clone()));
            let out = assert_runs_like_the_interpreter(code, &rt);
            // The member compiled alone gives the same answer.
            let alone = kiln_compiler::compile_jit(code, SPEC, &opts, None).expect("compiles");
            let own = assert_runs_like_the_interpreter(
                code,
                &runtime_with(code, CompiledCode::Jit(alone)),
            );
            assert_eq!(out, own, "{level:?}");
            outputs.push(out);
        }
        outputs.dedup();
        assert_eq!(
            outputs.len(),
            members.len(),
            "the members compute different things"
        );
    }
}
