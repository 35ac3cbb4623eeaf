//! Code families: contracts whose bytecode differs only in PUSH immediates (Solidity's
//! immutables, constructor constants written into the code) share one compiled function.
//!
//! A family function is compiled from one member with a list of *parameters*: the PUSHes whose
//! immediates differ between the members known at the time. It reads those immediates from the
//! running code ([`kiln_builtins::KilnCtx::code`]) instead of folding them in, so it runs any
//! member correctly as long as everything else code generation reads is the same. That is what
//! [`digest`] captures: the analysis with the parameters' immediates left out. An immediate the
//! analysis relies on (a static jump target, a constant memory offset it reasons about) shows
//! up in the digest, so a member whose value there differs gets another digest and its own
//! function.
//!
//! ```text
//! skeleton(code)  = keccak256(code with every PUSH immediate zeroed)   groups candidates
//! params(code, siblings) = PUSH pcs whose immediates differ            what the function reads
//! digest(code, spec, params) = analysis digest without those immediates   who may share it
//! ```

use crate::{analysis, CompileError};
use revm::{
    bytecode::opcode,
    primitives::{hardfork::SpecId, keccak256, B256},
};

/// PUSH1..PUSH32 instructions of `code` as (pc, immediate length), in pc order; the immediate
/// of the last may be cut off by the end of the code.
pub fn pushes(code: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pc = 0usize;
    std::iter::from_fn(move || {
        while pc < code.len() {
            let (at, op) = (pc, code[pc]);
            if (opcode::PUSH1..=opcode::PUSH32).contains(&op) {
                let n = (op - opcode::PUSH1) as usize + 1;
                pc += 1 + n;
                return Some((at, n));
            }
            pc += 1;
        }
        None
    })
}

/// keccak256 of `code` with every PUSH immediate zeroed: codes that may share a function have
/// the same skeleton.
pub fn skeleton(code: &[u8]) -> B256 {
    let mut masked = code.to_vec();
    for (pc, n) in pushes(code) {
        let end = (pc + 1 + n).min(masked.len());
        masked[pc + 1..end].fill(0);
    }
    keccak256(&masked)
}

/// The PUSH instructions (by pc) whose immediates differ between `code` and any of `siblings`:
/// the parameters of a function they share. `None` when a sibling has another skeleton, or when
/// a differing immediate is cut off by the end of the code or is the target of the JUMP or JUMPI
/// right after it (such code is not one family). An empty list means the codes are the same.
pub fn params(code: &[u8], siblings: &[&[u8]]) -> Option<Vec<u32>> {
    if siblings.iter().any(|s| s.len() != code.len()) {
        return None;
    }
    let mut out = Vec::new();
    let mut last = 0usize;
    for (pc, n) in pushes(code) {
        // Opcodes between PUSHes must agree byte for byte.
        if siblings
            .iter()
            .any(|s| s[last..pc + 1] != code[last..pc + 1])
        {
            return None;
        }
        let end = pc + 1 + n;
        last = end.min(code.len());
        if siblings
            .iter()
            .all(|s| s[pc + 1..last] == code[pc + 1..last])
        {
            continue;
        }
        let feeds_jump = matches!(code.get(end), Some(&(opcode::JUMP | opcode::JUMPI)));
        if end > code.len() || feeds_jump {
            return None;
        }
        out.push(pc as u32);
    }
    siblings
        .iter()
        .all(|s| s[last..] == code[last..])
        .then_some(out)
}

/// What a function compiled from `code` for `spec` with `params` computes, apart from the
/// parameters' values: a code with the same digest (same spec and parameters) may run the
/// function compiled from another. An error when `params` are not parameters of `code`.
pub fn digest(code: &[u8], spec: SpecId, params: &[u32]) -> Result<B256, CompileError> {
    let mut analysis = analysis::analyze(code, spec);
    analysis
        .set_params(params)
        .map_err(|e| CompileError::Internal(format!("family parameters: {e}")))?;
    Ok(analysis.digest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::bytecode::opcode::*;

    /// `PUSH32 k, PUSH0, MSTORE, PUSH1 32, PUSH0, RETURN`: returns an immutable.
    fn returns(k: u8) -> Vec<u8> {
        let mut code = vec![PUSH32];
        code.extend([k; 32]);
        code.extend([PUSH0, MSTORE, PUSH1, 32, PUSH0, RETURN]);
        code
    }

    #[test]
    fn siblings_differ_in_their_immediates_only() {
        let (a, b) = (returns(1), returns(2));
        assert_eq!(skeleton(&a), skeleton(&b));
        assert_eq!(params(&a, &[&b]), Some(vec![0]));
        assert_eq!(params(&a, &[&a]), Some(vec![]));
        assert_eq!(
            digest(&a, SpecId::CANCUN, &[0]).unwrap(),
            digest(&b, SpecId::CANCUN, &[0]).unwrap()
        );
        // Without the parameter, the immediates tell them apart.
        assert_ne!(
            digest(&a, SpecId::CANCUN, &[]).unwrap(),
            digest(&b, SpecId::CANCUN, &[]).unwrap()
        );
        // Another opcode is another skeleton, and not a sibling.
        let mut c = returns(1);
        *c.last_mut().unwrap() = REVERT;
        assert_ne!(skeleton(&a), skeleton(&c));
        assert_eq!(params(&a, &[&c]), None);
        assert_eq!(params(&a, &[&a[..a.len() - 1]]), None);
    }

    #[test]
    fn jump_targets_and_cut_off_immediates_are_not_parameters() {
        // PUSH1 t, JUMP, JUMPDEST, STOP, JUMPDEST, STOP
        let jump = |t| vec![PUSH1, t, JUMP, JUMPDEST, STOP, JUMPDEST, STOP];
        assert_eq!(params(&jump(3), &[&jump(5)]), None);
        assert!(digest(&jump(3), SpecId::CANCUN, &[0]).is_err());
        let cut = |k| vec![PUSH0, PUSH2, k];
        assert_eq!(params(&cut(1), &[&cut(2)]), None);
        assert!(digest(&cut(1), SpecId::CANCUN, &[1]).is_err());
        // Not a PUSH at all.
        assert!(digest(&returns(1), SpecId::CANCUN, &[33]).is_err());
    }

    /// A constant the analysis reasons about (a constant-offset store inside a run of stores
    /// off one base, which bounds how far the run may grow memory ahead) changes the digest, so
    /// members that differ there do not share a function.
    #[test]
    fn immediates_the_analysis_relies_on_split_the_family() {
        // v = CALLDATASIZE; mstore(v, 1); mstore(off, 2); mstore(v + 32, 3)
        let stores = |off: u16| {
            let o = off.to_be_bytes();
            vec![
                CALLDATASIZE,
                PUSH1,
                1,
                DUP2,
                MSTORE,
                PUSH1,
                2,
                PUSH2,
                o[0],
                o[1],
                MSTORE,
                PUSH1,
                3,
                DUP2,
                PUSH1,
                32,
                ADD,
                MSTORE,
                POP,
                STOP,
            ]
        };
        let (x, y) = (stores(0x80), stores(0x1000));
        let p = params(&x, &[&y]).unwrap();
        assert_eq!(p, vec![7]);
        assert!(analysis::analyze(&x, SpecId::CANCUN).insts[3]
            .grow_ahead
            .is_some_and(|g| g.const_end == 0x80 + 32));
        assert_ne!(
            digest(&x, SpecId::CANCUN, &p).unwrap(),
            digest(&y, SpecId::CANCUN, &p).unwrap()
        );
        // A value the analysis does not reason about (the stored word) is a parameter that
        // keeps the family together.
        let value = |k: u8| {
            let mut c = stores(0x80);
            c[2] = k;
            c
        };
        let p = params(&value(1), &[&value(9)]).unwrap();
        assert_eq!(p, vec![1]);
        assert_eq!(
            digest(&value(1), SpecId::CANCUN, &p).unwrap(),
            digest(&value(9), SpecId::CANCUN, &p).unwrap()
        );
    }
}
