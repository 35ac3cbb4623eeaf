//! Running programs through the interpreter and the compiled modes, and comparing the results.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use alloy_primitives::B256;
use eyre::WrapErr;
use kiln_compiler::{CompileOptions, Coverage};
use kiln_runtime::{Entry, Runtime};
use revm::{context_interface::result::ExecutionResult, primitives::hardfork::SpecId};

use super::program::Program;
use crate::{
    difftest::{run_kiln, run_revm, Case, Outcome},
    statetest::Fork,
    Mode,
};

/// A compiled mode with its runtime. Runtimes are shared by every program of a batch and then
/// shut down and dropped, which frees whatever compiled code the per-program cleanup missed
/// (and, for AOT, the temporary artifact directory).
pub struct ModeRuntime {
    /// The mode.
    pub mode: Mode,
    /// Its runtime ([`Mode::runtime_config`]).
    pub runtime: Arc<Runtime>,
}

impl ModeRuntime {
    /// A fresh runtime for `mode` compiling with `options`.
    pub fn new(mode: Mode, options: CompileOptions) -> eyre::Result<Self> {
        let config = mode
            .runtime_config(options, None)
            .ok_or_else(|| eyre::eyre!("{mode} runs no kiln runtime"))?;
        let runtime = config
            .build()
            .wrap_err_with(|| format!("cannot build the {mode} runtime"))?;
        Ok(Self { mode, runtime })
    }
}

/// A pseudo-random half of `code`'s pcs (pc 0 always), the same for the same code: about half
/// of its blocks then compile and the rest hand the frame to the interpreter.
pub fn partial_coverage(code: &[u8]) -> Coverage {
    let hash = revm::primitives::keccak256(code);
    let mut x = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes")) | 1;
    (0..code.len())
        .filter(|&pc| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pc == 0 || x & 1 == 1
        })
        .collect()
}

/// A sibling of `code` for `jit-family`: every PUSH immediate that does not feed a JUMP or
/// JUMPI directly, changed (the same way for the same code).
pub fn family_sibling(code: &[u8]) -> Vec<u8> {
    use revm::bytecode::opcode::{JUMP, JUMPI};
    let hash = revm::primitives::keccak256(code);
    let mut sibling = code.to_vec();
    for (pc, n) in kiln_compiler::family::pushes(code) {
        let end = pc + 1 + n;
        if matches!(code.get(end), Some(&(JUMP | JUMPI))) {
            continue;
        }
        for (i, b) in sibling[pc + 1..end.min(code.len())].iter_mut().enumerate() {
            *b ^= hash[(pc + i) % 32] | 1;
        }
    }
    sibling
}

/// For `jit-family`: `code`'s function compiled from [`family_sibling`] with the differing
/// PUSHes as parameters, when the two share a family (else `None`: compile `code` itself).
fn family_function(
    code: &[u8],
    spec: SpecId,
    options: &CompileOptions,
) -> Option<Result<kiln_runtime::CompiledCode, String>> {
    use kiln_compiler::family;
    let sibling = family_sibling(code);
    let params = family::params(code, &[&sibling]).filter(|p| !p.is_empty())?;
    let digest = family::digest(code, spec, &params).ok()?;
    (family::digest(&sibling, spec, &params).ok()? == digest).then_some(())?;
    let entry = kiln_compiler::next_entry_name();
    Some(
        kiln_compiler::compile_object(&sibling, spec, options, None, &params, &entry)
            .and_then(|object| kiln_compiler::link_jit_object(&object, &entry))
            .map(kiln_runtime::CompiledCode::Jit)
            .map_err(|e| e.to_string()),
    )
}

/// Runs `case` on kiln; a panic becomes an outcome that differs from any real one.
pub fn run_compiled(case: &Case, rt: &ModeRuntime) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| {
        if rt.mode == Mode::JitFamily {
            for (_, account) in &case.pre {
                let hash = revm::primitives::keccak256(&account.code);
                if account.code.is_empty() || rt.runtime.get(hash, case.spec).is_some() {
                    continue;
                }
                let compiled = family_function(&account.code, case.spec, rt.runtime.options())
                    .unwrap_or_else(|| {
                        rt.runtime
                            .compile(hash, case.spec, &account.code, None)
                            .map_err(|e| e.to_string())
                    });
                let entry = match compiled {
                    Ok(code) => Entry::Ready(Arc::new(code)),
                    Err(e) => Entry::Failed(e.into()),
                };
                rt.runtime.insert(hash, case.spec, entry);
            }
        }
        if rt.mode == Mode::JitPartial {
            for (_, account) in &case.pre {
                let hash = revm::primitives::keccak256(&account.code);
                if account.code.is_empty() || rt.runtime.get(hash, case.spec).is_some() {
                    continue;
                }
                let coverage = partial_coverage(&account.code);
                let entry =
                    match rt
                        .runtime
                        .compile(hash, case.spec, &account.code, Some(&coverage))
                    {
                        Ok(code) => Entry::Ready(Arc::new(code)),
                        Err(e) => Entry::Failed(e.to_string().into()),
                    };
                rt.runtime.insert(hash, case.spec, entry);
            }
        }
        let outcome = run_kiln(case, &rt.runtime);
        if rt.mode != Mode::JitProfiled {
            return outcome;
        }
        let compiled = run_kiln(case, &rt.runtime);
        if compiled == outcome {
            compiled
        } else {
            Outcome {
                result: Err(format!(
                    "the profiling run ({}) and the run compiled from its profile ({}) differ",
                    ending(&outcome),
                    ending(&compiled)
                )),
                state: vec![],
            }
        }
    }))
    .unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".into());
        Outcome {
            result: Err(format!("kiln panicked: {msg}")),
            state: vec![],
        }
    })
}

/// Drops the compiled code of everything `program` ran under `spec` from the registry, so a
/// long campaign does not keep thousands of never-reused functions alive.
pub fn forget(program: &Program, spec: SpecId, outcomes: &[&Outcome], rt: &ModeRuntime) {
    let mut hashes: BTreeSet<B256> = program.code_hashes().into_iter().collect();
    // Code deployed by CREATEs and then called.
    for outcome in outcomes {
        hashes.extend(outcome.state.iter().map(|(_, info, ..)| info.code_hash));
    }
    for hash in hashes {
        rt.runtime.remove(hash, spec);
    }
}

/// Whether `program` still diverges under `fork` in `rt` (the minimizer's predicate).
pub fn diverges(program: &Program, fork: &Fork, rt: &ModeRuntime) -> bool {
    let case = program.case(fork.spec);
    let reference = run_revm(&case);
    let got = run_compiled(&case, rt);
    forget(program, fork.spec, &[&reference, &got], rt);
    reference != got
}

/// The compared outcomes of one divergent run.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// The interpreter's outcome.
    pub reference: Outcome,
    /// The compiled mode's outcome.
    pub got: Outcome,
}

impl Mismatch {
    /// What differs, one item per aspect, interpreter value first.
    pub fn describe(&self, mode: Mode) -> String {
        describe(&self.reference, &self.got, mode.as_str()).join("; ")
    }
}

/// A short name for how a run ended (validation errors lumped together).
pub fn ending(o: &Outcome) -> String {
    match &o.result {
        Ok(r) => kind(r),
        Err(_) => "Rejected".into(),
    }
}

fn kind(r: &ExecutionResult) -> String {
    match r {
        ExecutionResult::Success { reason, .. } => format!("Success({reason:?})"),
        ExecutionResult::Revert { .. } => "Revert".into(),
        ExecutionResult::Halt { reason, .. } => format!("Halt({reason:?})"),
    }
}

fn output(r: &ExecutionResult) -> Vec<u8> {
    r.output().map(|o| o.to_vec()).unwrap_or_default()
}

/// The differences between two outcomes.
pub fn describe(a: &Outcome, b: &Outcome, mode: &str) -> Vec<String> {
    let mut d = Vec::new();
    match (&a.result, &b.result) {
        (Err(x), Err(y)) if x != y => d.push(format!("error: interpreter {x:?}, {mode} {y:?}")),
        (Err(x), Ok(y)) => d.push(format!(
            "interpreter rejected ({x}), {mode} ran: {}",
            kind(y)
        )),
        (Ok(x), Err(y)) => d.push(format!("interpreter ran: {}, {mode} failed: {y}", kind(x))),
        (Ok(x), Ok(y)) => {
            if kind(x) != kind(y) {
                d.push(format!("result {} vs {}", kind(x), kind(y)));
            }
            let (gx, gy) = (x.gas(), y.gas());
            if gx.total_gas_spent() != gy.total_gas_spent() {
                d.push(format!(
                    "gas spent {} vs {}",
                    gx.total_gas_spent(),
                    gy.total_gas_spent()
                ));
            }
            if gx.inner_refunded() != gy.inner_refunded() {
                d.push(format!(
                    "refund {} vs {}",
                    gx.inner_refunded(),
                    gy.inner_refunded()
                ));
            }
            if gx != gy
                && d.iter()
                    .all(|s| !s.starts_with("gas") && !s.starts_with("refund"))
            {
                d.push(format!("gas accounting {gx:?} vs {gy:?}"));
            }
            if output(x) != output(y) {
                d.push(format!(
                    "output 0x{} vs 0x{}",
                    hex::encode(output(x)),
                    hex::encode(output(y))
                ));
            }
            if x.logs() != y.logs() {
                d.push(format!(
                    "logs differ ({} vs {} entries)",
                    x.logs().len(),
                    y.logs().len()
                ));
            }
        }
        (Err(_), Err(_)) => {}
    }
    if a.state != b.state {
        d.push(describe_state(a, b));
    }
    if d.is_empty() {
        d.push("outcomes differ".into());
    }
    d
}

fn describe_state(a: &Outcome, b: &Outcome) -> String {
    let mut s = String::from("state:");
    let addrs: BTreeSet<_> = a
        .state
        .iter()
        .chain(&b.state)
        .map(|(addr, ..)| *addr)
        .collect();
    for addr in addrs {
        let x = a.state.iter().find(|(x, ..)| *x == addr);
        let y = b.state.iter().find(|(y, ..)| *y == addr);
        match (x, y) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                if x.1 != y.1 {
                    let _ = write!(
                        s,
                        " {addr} balance/nonce/code {}/{}/{} vs {}/{}/{};",
                        x.1.balance,
                        x.1.nonce,
                        x.1.code_hash,
                        y.1.balance,
                        y.1.nonce,
                        y.1.code_hash
                    );
                }
                if x.2 != y.2 {
                    let _ = write!(s, " {addr} storage {:?} vs {:?};", x.2, y.2);
                }
                if x.3 != y.3 {
                    let _ = write!(s, " {addr} selfdestructed {} vs {};", x.3, y.3);
                }
            }
            (Some(_), None) => {
                let _ = write!(s, " {addr} touched only by the interpreter;");
            }
            (None, Some(_)) => {
                let _ = write!(s, " {addr} touched only by the compiled code;");
            }
            (None, None) => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most generated contracts have immediates to vary, so `jit-family` runs family functions,
    /// not mostly the fallback.
    #[test]
    fn jit_family_compiles_most_contracts_from_a_sibling() {
        let (mut family, mut total) = (0, 0);
        for index in 0..60 {
            let program = super::super::gen::generate(11, index, &Default::default());
            for contract in program.pre_contracts() {
                let code = contract.code();
                total += 1;
                let sibling = family_sibling(&code);
                assert_eq!(
                    kiln_compiler::family::skeleton(&sibling),
                    kiln_compiler::family::skeleton(&code)
                );
                if let Some(f) = family_function(&code, SpecId::CANCUN, &CompileOptions::default())
                {
                    f.expect("a family function compiles");
                    family += 1;
                }
            }
        }
        assert!(family * 2 > total, "{family} of {total} contracts");
    }
}
