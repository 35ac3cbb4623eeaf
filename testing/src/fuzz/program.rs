//! The fuzzer's program representation: an instruction list per contract that assembles to
//! bytecode, so that the minimizer can delete instructions and still produce well-formed code
//! (no PUSH loses its immediate, jump targets are re-resolved after every deletion).

use std::fmt::Write as _;

use crate::difftest::{Case, PreAccount, CALLER, TARGET};
use alloy_primitives::{keccak256, Address, B256, U256};
use revm::{bytecode::opcode, primitives::hardfork::SpecId};

/// Helper contracts the entry contract calls, at fixed addresses so generated code can name them.
pub const HELPERS: [Address; 2] = [Address::new([0x20; 20]), Address::new([0x30; 20])];

/// Balance of the transaction sender. The same figure `difftest` funds an absent sender with;
/// naming it explicitly keeps the state-test pre-state identical to the fuzzed one.
pub fn caller_balance() -> U256 {
    U256::from(10u128.pow(30))
}

/// One generator-level instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insn {
    /// A single opcode byte (any byte, including undefined ones).
    Op(u8),
    /// `PUSH<n>` with its immediate; an empty immediate is `PUSH0`.
    Push(Vec<u8>),
    /// A `JUMPDEST` that jumps refer to by id.
    Label(u32),
    /// A position that jumps refer to by id; emits nothing (used to aim into PUSH data).
    Mark(u32),
    /// `PUSH2` of a label's or mark's offset plus a delta. A target that no longer exists (the
    /// minimizer removed it) resolves to 0xffff, an invalid jump, so the code stays well formed.
    PushLabel(u32, u8),
    /// Bytes emitted verbatim: an opcode with an immediate that is not PUSH data (DUPN, SWAPN,
    /// EXCHANGE) or a PUSH truncated by the end of the code.
    Raw(Vec<u8>),
}

impl Insn {
    /// `PUSH` of `v` in the fewest bytes (`PUSH0` for zero).
    pub fn push_u256(v: U256) -> Self {
        let bytes = v.to_be_bytes::<32>();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        Insn::Push(bytes[skip..].to_vec())
    }

    /// `PUSH` of a small number.
    pub fn push_u64(v: u64) -> Self {
        Self::push_u256(U256::from(v))
    }

    /// `PUSH20` of an address.
    pub fn push_addr(a: Address) -> Self {
        Insn::Push(a.to_vec())
    }

    fn size(&self) -> usize {
        match self {
            Insn::Op(_) | Insn::Label(_) => 1,
            Insn::Push(imm) => 1 + imm.len(),
            Insn::Mark(_) => 0,
            Insn::PushLabel(..) => 3,
            Insn::Raw(b) => b.len(),
        }
    }
}

/// A group of instructions the generator emitted for one purpose; the minimizer's first unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// What the chunk exercises (for summaries).
    pub kind: &'static str,
    /// Its instructions.
    pub insns: Vec<Insn>,
}

/// A contract in the pre-state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contract {
    /// Where it lives.
    pub address: Address,
    /// Its balance.
    pub balance: U256,
    /// Its storage before the transaction (non-zero originals exercise EIP-2200 paths).
    pub storage: Vec<(U256, U256)>,
    /// Its code.
    pub chunks: Vec<Chunk>,
}

impl Contract {
    /// The assembled bytecode.
    pub fn code(&self) -> Vec<u8> {
        assemble(self.chunks.iter().flat_map(|c| c.insns.iter()))
    }
}

/// One generated test: contracts, and the transaction that calls the first one (or runs it as
/// init code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Contracts; the first is the transaction's target ([`TARGET`]).
    pub contracts: Vec<Contract>,
    /// Calldata.
    pub calldata: Vec<u8>,
    /// Value sent with the transaction.
    pub value: U256,
    /// Transaction gas limit.
    pub gas_limit: u64,
    /// Init codes the program's CREATEs may run; only used to drop their compiled code from the
    /// registry after the program ran.
    pub init_codes: Vec<Vec<u8>>,
    /// The transaction is a contract creation whose init code is the first contract's code
    /// (which then is not in the pre-state) instead of a call of it.
    pub create_tx: bool,
}

impl Program {
    /// The contracts that exist before the transaction.
    pub fn pre_contracts(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.iter().skip(usize::from(self.create_tx))
    }

    /// The transaction's recipient (`None` for a creation).
    pub fn to(&self) -> Option<Address> {
        (!self.create_tx).then_some(TARGET)
    }

    /// The transaction's data: calldata, or the init code of a creation.
    pub fn tx_data(&self) -> Vec<u8> {
        match (self.create_tx, self.contracts.first()) {
            (true, Some(entry)) => entry.code(),
            (true, None) => Vec::new(),
            (false, _) => self.calldata.clone(),
        }
    }

    /// The differential case for `spec`.
    pub fn case(&self, spec: SpecId) -> Case {
        let mut pre: Vec<(Address, PreAccount)> = self
            .pre_contracts()
            .map(|c| {
                let acc = PreAccount {
                    balance: c.balance,
                    nonce: 1,
                    code: c.code(),
                    storage: c.storage.clone(),
                };
                (c.address, acc)
            })
            .collect();
        pre.push((
            CALLER,
            PreAccount {
                balance: caller_balance(),
                ..Default::default()
            },
        ));
        Case {
            pre,
            caller: CALLER,
            to: self.to(),
            data: self.tx_data(),
            value: self.value,
            gas_limit: self.gas_limit,
            spec,
        }
    }

    /// Total code size over all contracts.
    pub fn code_size(&self) -> usize {
        self.contracts.iter().map(|c| c.code().len()).sum()
    }

    /// Hashes of every code this program may run (pre-state contracts and init codes).
    pub fn code_hashes(&self) -> Vec<B256> {
        self.contracts
            .iter()
            .map(|c| keccak256(c.code()))
            .chain(self.init_codes.iter().map(keccak256))
            .collect()
    }
}

/// Assembles instructions into bytecode, resolving label references.
pub fn assemble<'a>(insns: impl Iterator<Item = &'a Insn> + Clone) -> Vec<u8> {
    let mut offsets = std::collections::HashMap::new();
    let mut pc = 0usize;
    for insn in insns.clone() {
        if let Insn::Label(id) | Insn::Mark(id) = insn {
            offsets.insert(*id, pc);
        }
        pc += insn.size();
    }
    let mut code = Vec::with_capacity(pc);
    for insn in insns {
        match insn {
            Insn::Op(op) => code.push(*op),
            Insn::Push(imm) => {
                debug_assert!(imm.len() <= 32);
                code.push(if imm.is_empty() {
                    opcode::PUSH0
                } else {
                    opcode::PUSH1 + imm.len() as u8 - 1
                });
                code.extend_from_slice(imm);
            }
            Insn::Label(_) => code.push(opcode::JUMPDEST),
            Insn::Mark(_) => {}
            Insn::PushLabel(id, delta) => {
                let target = offsets
                    .get(id)
                    .map_or(0xffff, |o| (o + *delta as usize).min(0xffff));
                code.push(opcode::PUSH2);
                code.extend_from_slice(&(target as u16).to_be_bytes());
            }
            Insn::Raw(bytes) => code.extend_from_slice(bytes),
        }
    }
    code
}

/// One decoded instruction: `(pc, text)`.
pub fn disassemble(code: &[u8]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < code.len() {
        let op = code[pc];
        let name = match revm::bytecode::opcode::OpCode::new(op) {
            Some(o) => o.as_str().to_owned(),
            None => format!("0x{op:02x}"),
        };
        if (opcode::PUSH1..=opcode::PUSH32).contains(&op) {
            let n = (op - opcode::PUSH1 + 1) as usize;
            let end = (pc + 1 + n).min(code.len());
            let mut text = format!("{name} 0x{}", hex::encode(&code[pc + 1..end]));
            if end - pc - 1 < n {
                text.push_str("(truncated)");
            }
            out.push((pc, text));
            pc += 1 + n;
        } else {
            out.push((pc, name));
            pc += 1;
        }
    }
    out
}

/// Disassembly on one line, `|`-separated; long immediates are shortened.
pub fn disassemble_line(code: &[u8], max_insns: usize) -> String {
    let insns = disassemble(code);
    let mut s = String::new();
    for (i, (_, text)) in insns.iter().take(max_insns).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&shorten(text));
    }
    if insns.len() > max_insns {
        let _ = write!(s, " ... (+{} more)", insns.len() - max_insns);
    }
    s
}

/// Shortens `PUSH32 0x<64 hex digits>` to its first and last bytes.
pub fn shorten(text: &str) -> String {
    match text.split_once(" 0x") {
        Some((name, rest)) => {
            let digits = rest
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(rest.len());
            let (hex, tail) = rest.split_at(digits);
            if hex.len() > 12 {
                format!("{name} 0x{}..{}{tail}", &hex[..4], &hex[hex.len() - 4..])
            } else {
                text.to_owned()
            }
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_and_missing_ones_are_invalid_targets() {
        let insns = [
            Insn::PushLabel(7, 0),
            Insn::Op(opcode::JUMP),
            Insn::Op(opcode::STOP),
            Insn::Label(7),
        ];
        assert_eq!(
            assemble(insns.iter()),
            vec![0x61, 0x00, 0x05, 0x56, 0x00, 0x5b]
        );
        let missing = [Insn::PushLabel(9, 0), Insn::Op(opcode::JUMP)];
        assert_eq!(assemble(missing.iter()), vec![0x61, 0xff, 0xff, 0x56]);
    }

    #[test]
    fn pushes_use_the_fewest_bytes() {
        assert_eq!(assemble([Insn::push_u64(0)].iter()), vec![opcode::PUSH0]);
        assert_eq!(
            assemble([Insn::push_u64(0x1234)].iter()),
            vec![0x61, 0x12, 0x34]
        );
        assert_eq!(assemble([Insn::push_u256(U256::MAX)].iter()).len(), 33);
    }

    #[test]
    fn disassembly_marks_truncated_pushes() {
        assert_eq!(
            disassemble_line(&[0x60, 0x01, 0x01, 0x62, 0xaa], 10),
            "PUSH1 0x01 ADD PUSH3 0xaa(truncated)"
        );
    }
}
