//! Bytecode analysis: decoding, JUMPDEST map, basic blocks and gas/stack sections.
//!
//! The analysis decides where compiled code may leave the static world:
//! - A *block* starts at pc 0, at every JUMPDEST, after JUMPI, after a terminator and after a call
//!   or create (a resume point). Code after a terminator that is not a JUMPDEST is unreachable and
//!   is not compiled.
//! - A *section* is a run of instructions inside a block whose static gas and stack bounds are
//!   checked once, at its start. A section ends after every instruction that observes or changes
//!   gas beyond its static cost (every host builtin, GAS), so that such an instruction sees exactly
//!   the gas the interpreter would see (see "Gas sections" in docs/architecture.md). When a
//!   section's check fails, the compiled code hands the frame to the interpreter at the section's
//!   first pc, and the interpreter, which executes the section one instruction at a time,
//!   produces the exact halt reason.

use revm::{
    bytecode::opcode::{self, OpCode},
    interpreter::{instructions::gas_table_spec, InstructionResult},
    primitives::{hardfork::SpecId, U256},
};

/// The EVM's stack limit.
pub const STACK_LIMIT: u64 = 1024;

/// What one instruction does, as far as code generation is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstKind {
    /// Lowered inline to LLVM IR.
    Inline,
    /// A pure stack builtin (DIV, MOD, ADDMOD, ...) with its operand count.
    StackBuiltin(&'static str, usize),
    /// A value builtin (CALLDATALOAD, CALLER, ...) with its operand count: reads the frame's
    /// input, has static gas only and cannot fail, so it does not end the section.
    ValueBuiltin(&'static str, usize),
    /// A host builtin; ends the section. `suspends` for calls and creates.
    HostBuiltin {
        /// The builtin's symbol.
        name: &'static str,
        /// True for CALL*/CREATE*: the frame may return a call request here.
        suspends: bool,
    },
    /// MLOAD, MSTORE, MSTORE8: inline inside the current memory; growth goes through
    /// [`kiln_builtins::GROW_MEMORY_BUILTIN`], which charges dynamic gas, so it ends the section.
    Memory,
    /// Always halts the frame with this result (after its static gas is charged).
    Halt(InstructionResult),
}

/// One decoded instruction.
#[derive(Clone, Debug)]
pub struct Inst {
    /// Its pc.
    pub pc: u32,
    /// Its opcode byte.
    pub op: u8,
    /// The PUSH immediate (zero-padded past the end of the code, as revm's padding does).
    pub imm: U256,
    /// How it is lowered.
    pub kind: InstKind,
    /// Static gas from the spec's gas table.
    pub static_gas: u64,
    /// Stack items it needs.
    pub inputs: u16,
    /// Stack items it leaves.
    pub outputs: u16,
    /// If this instruction starts a section: the section's checks.
    pub section: Option<Section>,
    /// For a memory access that starts a run of accesses off one base: how far its growth may
    /// reach ahead (see [`GrowAhead`]).
    pub grow_ahead: Option<GrowAhead>,
    /// A PUSH whose immediate is a parameter of a code family: the compiled code reads it from
    /// the running code instead of folding it in (see [`crate::family`]).
    pub param: bool,
}

/// Memory growth done once for a run of accesses at `base + c` in one block (Solidity fills a
/// new struct or array field by field, each store one word past the last, so each grows memory
/// by a word, and code that builds structs in a loop grows memory at almost every store).
///
/// The first access of the run may grow memory to the end of the run's furthest access at once.
/// Between the accesses lie only instructions that cannot observe gas or memory size or fail by
/// value (inline arithmetic and stack operations, pure and value builtins, the run's own
/// accesses), so growing and charging early is invisible as long as the gas left afterwards
/// covers the static gas of the rest of the run: then the run reaches its last access in the
/// interpreter too, and the interpreter's growths telescope to the same total charge. The
/// growth builtin checks that and otherwise grows only for the access itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrowAhead {
    /// Bytes from this access's offset to the end of the furthest access of the run.
    pub bytes: u64,
    /// Static gas of the run's instructions after this access, through its furthest-reaching
    /// access.
    pub gas_after: u64,
    /// The end of the furthest constant-offset access inside the run (0 if none): growing ahead
    /// is sound only where memory already reaches it, so that those accesses cannot grow
    /// memory (and charge) themselves.
    pub const_end: u64,
}

/// The checks done once at a section's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Section {
    /// Sum of the static gas of the section's instructions.
    pub gas: u64,
    /// The stack height the section needs at its start.
    pub min_height: u16,
    /// The most the stack grows above its start height inside the section.
    pub max_growth: u16,
}

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockEnd {
    /// Falls through to the block starting at the next instruction (or off the end of the code,
    /// which is STOP).
    Fallthrough,
    /// Ends with JUMP.
    Jump,
    /// Ends with JUMPI; falls through otherwise.
    JumpI,
    /// Ends with a call or create; resumes at the next instruction.
    Suspend,
    /// Ends with an instruction that always leaves the frame.
    Exit,
}

/// A basic block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Index range into [`Analysis::insts`].
    pub start: usize,
    /// One past the last instruction.
    pub end: usize,
    /// How it ends.
    pub end_kind: BlockEnd,
    /// No profiled run entered it ([`Analysis::apply_coverage`]): its compiled form hands the
    /// frame to the interpreter at its first pc.
    pub cold: bool,
}

/// The result of analysing one bytecode for one spec.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// The spec the analysis (gas, activations) is for.
    pub spec: SpecId,
    /// Code length in bytes.
    pub code_len: usize,
    /// Every decoded instruction, in pc order, reachable or not.
    pub insts: Vec<Inst>,
    /// Reachable blocks, in pc order.
    pub blocks: Vec<Block>,
    /// Valid jump destinations, exactly revm's legacy jump table.
    pub jumpdests: Vec<u32>,
    /// pcs at which a suspended frame resumes (the instruction after each call/create).
    pub resume_pcs: Vec<u32>,
    /// True if any JUMP/JUMPI has a target that is not a constant pushed just before it (then
    /// every JUMPDEST starts a block).
    pub has_dynamic_jumps: bool,
}

/// What one run of loop-free code does, for deciding whether compiling it pays
/// ([`Analysis::straight_line`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StraightLine {
    /// Reachable instructions lowered inline or to pure builtins: the work compiled code saves.
    pub inline_ops: usize,
    /// Reachable host calls (SLOAD, LOG, CALLDATACOPY, ...): each costs compiled code a builtin
    /// call and a sync of the frame state.
    pub host_calls: usize,
    /// Reachable calls and creates: each suspends the frame and enters the compiled code again
    /// when the child returns.
    pub suspends: usize,
}

impl StraightLine {
    /// Interpreted instructions that one entry into compiled code costs (dispatch, context set-up
    /// and the status conversion). Fitted with `kiln bench` to loop-free contracts on either
    /// side of break-even: a forwarding proxy that ran slower compiled, system contracts that
    /// ran as fast, and a byte-swapping contract that ran faster (the calibration is in
    /// docs/performance-history.md).
    pub const ENTRY_COST: usize = 32;
    /// Interpreted instructions that one host call from compiled code costs beyond the
    /// interpreter's own call of the same function.
    pub const HOST_CALL_COST: usize = 2;

    /// Whether compiled code is expected to run faster than the interpreter: every instruction
    /// runs at most once per entry, so the saving is bounded by `inline_ops`.
    pub fn pays_off(&self) -> bool {
        self.inline_ops
            >= Self::ENTRY_COST * (1 + self.suspends) + Self::HOST_CALL_COST * self.host_calls
    }
}

impl Analysis {
    /// Marks the PUSH instructions at `pcs` as family parameters ([`Inst::param`]). Each must be
    /// a PUSH1..PUSH32 whose immediate lies inside the code and that does not feed a JUMP or
    /// JUMPI directly (a static jump target shapes the control flow).
    pub fn set_params(&mut self, pcs: &[u32]) -> Result<(), String> {
        for &pc in pcs {
            let i = self
                .insts
                .binary_search_by_key(&pc, |inst| inst.pc)
                .map_err(|_| format!("pc {pc} is not an instruction"))?;
            let inst = &self.insts[i];
            let n = match inst.op {
                opcode::PUSH1..=opcode::PUSH32 => (inst.op - opcode::PUSH1) as usize + 1,
                op => return Err(format!("pc {pc} holds opcode {op:#04x}, not PUSH1..PUSH32")),
            };
            if pc as usize + 1 + n > self.code_len {
                return Err(format!(
                    "the PUSH at pc {pc} is cut off by the end of the code"
                ));
            }
            if matches!(
                self.insts.get(i + 1).map(|next| next.op),
                Some(opcode::JUMP | opcode::JUMPI)
            ) {
                return Err(format!("the PUSH at pc {pc} is a static jump target"));
            }
            self.insts[i].param = true;
        }
        Ok(())
    }

    /// A digest of everything code generation reads from the analysis, except the immediates
    /// of parameters: two codes whose analyses have the same digest (same spec, same
    /// parameters) compile to the same function (see [`crate::family`]).
    pub fn digest(&self) -> revm::primitives::B256 {
        use std::hash::{Hash, Hasher};
        struct Keccak(Vec<u8>);
        impl Hasher for Keccak {
            fn write(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
            fn finish(&self) -> u64 {
                unreachable!("only finalised as a whole digest")
            }
        }
        let mut h = Keccak(Vec::with_capacity(self.insts.len() * 64));
        (self.spec as u8, self.code_len, self.has_dynamic_jumps).hash(&mut h);
        for inst in &self.insts {
            (inst.pc, inst.op, inst.param, inst.kind, inst.static_gas).hash(&mut h);
            (inst.inputs, inst.outputs, inst.section, inst.grow_ahead).hash(&mut h);
            if !inst.param {
                inst.imm.hash(&mut h);
            }
        }
        for b in &self.blocks {
            (b.start, b.end, b.end_kind, b.cold).hash(&mut h);
        }
        (&self.jumpdests, &self.resume_pcs).hash(&mut h);
        revm::primitives::keccak256(&h.0)
    }

    /// For code that cannot loop (no dynamic jump, no static jump backwards), what one run does
    /// at most; `None` for code that may loop, where compiled code's savings have no bound.
    pub fn straight_line(&self) -> Option<StraightLine> {
        if self.has_dynamic_jumps {
            return None;
        }
        let backward = self.insts.windows(2).any(|w| {
            matches!(w[1].op, opcode::JUMP | opcode::JUMPI)
                && is_push(w[0].op)
                && u32::try_from(w[0].imm).is_ok_and(|target| target <= w[1].pc)
        });
        if backward {
            return None;
        }
        let mut s = StraightLine {
            inline_ops: 0,
            host_calls: 0,
            suspends: 0,
        };
        for inst in self.blocks.iter().flat_map(|b| &self.insts[b.start..b.end]) {
            match inst.kind {
                InstKind::HostBuiltin { suspends, .. } => {
                    s.host_calls += 1;
                    s.suspends += usize::from(suspends);
                }
                // Inline, but each has a growth check and call site; counted as a host call,
                // as when it always called the builtin (the cost model was measured so).
                InstKind::Memory => s.host_calls += 1,
                InstKind::Halt(_) => {}
                InstKind::Inline | InstKind::StackBuiltin(..) | InstKind::ValueBuiltin(..) => {
                    s.inline_ops += 1
                }
            }
        }
        Some(s)
    }

    /// Number of gas sections in the code (the pass pipeline is chosen by it, so that a profile
    /// does not change which pipeline the rest gets).
    pub fn section_count(&self) -> usize {
        self.insts.iter().filter(|i| i.section.is_some()).count()
    }

    /// Number of gas sections in the blocks that are compiled (the compile budgets are sized by
    /// it).
    pub fn hot_section_count(&self) -> usize {
        self.hot_insts().filter(|i| i.section.is_some()).count()
    }

    /// Marks every block whose first instruction `coverage` does not hold as cold (see
    /// [`crate::Coverage`]) and returns how many are. Cold blocks are cheap to compile: they
    /// hand the frame to the interpreter.
    pub fn apply_coverage(&mut self, coverage: &crate::Coverage) -> usize {
        for b in &mut self.blocks {
            b.cold = !coverage.contains(self.insts[b.start].pc as usize);
        }
        self.blocks.iter().filter(|b| b.cold).count()
    }

    /// Number of blocks that are compiled (not cold).
    pub fn hot_block_count(&self) -> usize {
        self.blocks.iter().filter(|b| !b.cold).count()
    }

    /// What the baseline tier's compile time grows with: the compiled instructions, a SWAP
    /// counting 4 (two words of limbs in and out) and a DUP 2: the weights that make compile
    /// time proportional to the cost on one-block worst cases (`kiln fuzz --bombs --opt-level
    /// baseline`).
    pub fn baseline_cost(&self) -> usize {
        self.hot_insts()
            .map(|i| match i.op {
                opcode::SWAP1..=opcode::SWAP16 => 4,
                opcode::DUP1..=opcode::DUP16 => 2,
                _ => 1,
            })
            .sum()
    }

    /// The instructions of the blocks that are compiled (not cold), in pc order.
    pub fn hot_insts(&self) -> impl Iterator<Item = &Inst> {
        self.blocks
            .iter()
            .filter(|b| !b.cold)
            .flat_map(|b| &self.insts[b.start..b.end])
    }

    /// Index of the block that starts at `pc`, if any.
    pub fn block_at(&self, pc: u32) -> Option<usize> {
        self.blocks
            .binary_search_by_key(&pc, |b| self.insts[b.start].pc)
            .ok()
    }

    /// Fault injection: changes `opcode`'s static gas by `delta` in every section.
    pub fn inject_gas_fault(&mut self, opcode: u8, delta: i64) {
        let mut section_start = 0;
        for i in 0..self.insts.len() {
            if self.insts[i].section.is_some() {
                section_start = i;
            }
            if self.insts[i].op == opcode {
                if let Some(s) = self.insts[section_start].section.as_mut() {
                    s.gas = s.gas.wrapping_add_signed(delta);
                }
            }
        }
    }

    /// Whether `pc` is a valid jump destination.
    pub fn is_jumpdest(&self, pc: u32) -> bool {
        self.jumpdests.binary_search(&pc).is_ok()
    }

    /// The block a constant jump target enters, if it is a valid one.
    pub fn static_jump_block(&self, target: U256) -> Option<usize> {
        u32::try_from(target)
            .ok()
            .filter(|&t| self.is_jumpdest(t))
            .and_then(|t| self.block_at(t))
    }

    /// The blocks block `bi`'s static edges enter: the next block (fallthrough, a suspend's
    /// resume point, JUMPI's not-taken edge) and a PUSH+JUMP(I)'s constant target.
    pub fn static_successors(&self, bi: usize) -> [Option<usize>; 2] {
        let b = &self.blocks[bi];
        let next = self.insts.get(b.end).and_then(|i| self.block_at(i.pc));
        let const_target = (b.end - 1 > b.start && is_push(self.insts[b.end - 2].op))
            .then(|| self.insts[b.end - 2].imm);
        let jump_target = || const_target.and_then(|t| self.static_jump_block(t));
        match b.end_kind {
            BlockEnd::Fallthrough | BlockEnd::Suspend => [next, None],
            BlockEnd::JumpI => [
                self.blocks
                    .get(bi + 1)
                    .filter(|nb| nb.start == b.end)
                    .map(|_| bi + 1),
                jump_target(),
            ],
            BlockEnd::Jump => [jump_target(), None],
            BlockEnd::Exit => [None, None],
        }
    }

    /// Whether static edges close a cycle: a loop that runs without dynamic jumps, as compilers
    /// emit `for`/`while` loops. A backward jump alone is not one (Solidity jumps back to
    /// shared code that leaves through a dynamic jump or a halt); loops closed only by dynamic
    /// jumps (recursion through internal functions) are not seen.
    pub fn has_static_loop(&self) -> bool {
        // Depth-first search over all blocks, cold ones too, so that a profile does not change
        // the answer; a cycle is an edge to a block still on the search path.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.blocks.len()];
        for root in 0..self.blocks.len() {
            if mark[root] != Mark::New {
                continue;
            }
            mark[root] = Mark::OnPath;
            let mut path = vec![(root, 0usize)];
            while let Some((bi, next_edge)) = path.last_mut() {
                let succs = self.static_successors(*bi);
                let Some(succ) = succs.get(*next_edge).copied() else {
                    mark[*bi] = Mark::Done;
                    path.pop();
                    continue;
                };
                *next_edge += 1;
                let Some(t) = succ else { continue };
                match mark[t] {
                    Mark::OnPath => return true,
                    Mark::Done => {}
                    Mark::New => {
                        mark[t] = Mark::OnPath;
                        path.push((t, 0));
                    }
                }
            }
        }
        false
    }
}

/// The spec in which an inline opcode became valid. Delegated opcodes are checked by revm itself.
fn inline_activation(op: u8) -> SpecId {
    match op {
        opcode::SHL | opcode::SHR | opcode::SAR => SpecId::PETERSBURG,
        opcode::PUSH0 => SpecId::SHANGHAI,
        opcode::CLZ => SpecId::OSAKA,
        _ => SpecId::FRONTIER,
    }
}

fn classify(op: u8, spec: SpecId) -> InstKind {
    use opcode::*;
    if OpCode::new(op).is_none() {
        return InstKind::Halt(InstructionResult::OpcodeNotFound);
    }
    if op == INVALID {
        return InstKind::Halt(InstructionResult::InvalidFEOpcode);
    }
    if !spec.is_enabled_in(inline_activation(op)) {
        return InstKind::Halt(InstructionResult::NotActivated);
    }
    if let Some((name, n)) = kiln_builtins::stack_builtin_name(op) {
        return InstKind::StackBuiltin(name, n);
    }
    if let Some((name, n)) = kiln_builtins::value_builtin_name(op) {
        return InstKind::ValueBuiltin(name, n);
    }
    if matches!(op, MLOAD | MSTORE | MSTORE8) {
        return InstKind::Memory;
    }
    if let Some(name) = kiln_builtins::host_builtin_name(op) {
        let suspends = matches!(
            op,
            CALL | CALLCODE | DELEGATECALL | STATICCALL | CREATE | CREATE2
        );
        return InstKind::HostBuiltin { name, suspends };
    }
    InstKind::Inline
}

/// Whether an instruction always leaves the frame (so the rest of its block is unreachable).
fn always_exits(op: u8, kind: InstKind, spec: SpecId) -> bool {
    use opcode::*;
    match kind {
        InstKind::Halt(_) => true,
        _ => match op {
            STOP | RETURN | REVERT | SELFDESTRUCT => true,
            // Not active through Osaka: revm's function reports NotActivated, and their immediate
            // byte must not be decoded as an instruction (revm's jump analysis does not skip it).
            DUPN | SWAPN | EXCHANGE | SLOTNUM => !spec.is_enabled_in(SpecId::AMSTERDAM),
            _ => false,
        },
    }
}

/// revm's legacy JUMPDEST analysis: every 0x5B byte that is not PUSH data.
fn jumpdests(code: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < code.len() {
        let op = code[i];
        if op == opcode::JUMPDEST {
            out.push(i as u32);
            i += 1;
        } else if (opcode::PUSH1..=opcode::PUSH32).contains(&op) {
            i += (op - opcode::PUSH1) as usize + 2;
        } else {
            i += 1;
        }
    }
    out
}

/// Analyses `code` for `spec`.
pub fn analyze(code: &[u8], spec: SpecId) -> Analysis {
    let gas_table = gas_table_spec(spec);
    let jumpdests = jumpdests(code);

    // Linear decode. Every reachable instruction lies on this decode: execution only enters code
    // at pc 0 or a JUMPDEST, both of which are instruction boundaries here.
    let mut insts = Vec::with_capacity(code.len());
    let mut pc = 0usize;
    while pc < code.len() {
        let op = code[pc];
        let kind = classify(op, spec);
        let (inputs, outputs) = match kind {
            InstKind::Halt(_) => (0, 0),
            _ => OpCode::new(op)
                .map(|o| (o.inputs() as u16, o.outputs() as u16))
                .unwrap_or((0, 0)),
        };
        let mut imm = U256::ZERO;
        let mut size = 1usize;
        if (opcode::PUSH1..=opcode::PUSH32).contains(&op) {
            let n = (op - opcode::PUSH1) as usize + 1;
            let mut bytes = [0u8; 32];
            let avail = code.len().saturating_sub(pc + 1).min(n);
            bytes[32 - n..32 - n + avail].copy_from_slice(&code[pc + 1..pc + 1 + avail]);
            imm = U256::from_be_bytes(bytes);
            size += n;
        }
        insts.push(Inst {
            pc: pc as u32,
            op,
            imm,
            kind,
            static_gas: gas_table[op as usize] as u64,
            inputs,
            outputs,
            section: None,
            grow_ahead: None,
            param: false,
        });
        pc += size;
    }

    // Jump targets. With any dynamic jump every JUMPDEST may be entered by a jump; otherwise only
    // the constant targets can be, and the other JUMPDESTs are plain 1-gas instructions inside
    // their block (so 24 KiB of JUMPDESTs without jumps is one block, not 24K).
    let has_dynamic_jumps = insts.iter().enumerate().any(|(i, inst)| {
        matches!(inst.op, opcode::JUMP | opcode::JUMPI) && (i == 0 || !is_push(insts[i - 1].op))
    });
    let mut targets: Vec<u32> = if has_dynamic_jumps {
        jumpdests.clone()
    } else {
        insts
            .windows(2)
            .filter(|w| matches!(w[1].op, opcode::JUMP | opcode::JUMPI))
            .filter_map(|w| u32::try_from(w[0].imm).ok())
            .filter(|t| jumpdests.binary_search(t).is_ok())
            .collect()
    };
    targets.sort_unstable();
    targets.dedup();
    let is_target = |pc: u32| targets.binary_search(&pc).is_ok();

    // Blocks: split the linear decode at leaders and ends, keep the reachable ones.
    let mut blocks = Vec::new();
    let mut resume_pcs = Vec::new();
    let mut i = 0usize;
    // Whether control can fall into the instruction at `i` from the previous block.
    let mut live = true;
    while i < insts.len() {
        let start = i;
        let reachable = live || is_target(insts[i].pc);
        let mut end_kind = BlockEnd::Fallthrough;
        loop {
            let inst = &insts[i];
            let op = inst.op;
            i += 1;
            if always_exits(op, inst.kind, spec) {
                end_kind = BlockEnd::Exit;
                break;
            }
            match (op, inst.kind) {
                (opcode::JUMP, _) | (opcode::JUMPI, _) => {
                    end_kind = if op == opcode::JUMP {
                        BlockEnd::Jump
                    } else {
                        BlockEnd::JumpI
                    };
                    break;
                }
                (_, InstKind::HostBuiltin { suspends: true, .. }) => {
                    end_kind = BlockEnd::Suspend;
                    break;
                }
                _ => {}
            }
            if i >= insts.len() || is_target(insts[i].pc) {
                break;
            }
        }
        live = matches!(
            end_kind,
            BlockEnd::Fallthrough | BlockEnd::JumpI | BlockEnd::Suspend
        );
        if reachable {
            if end_kind == BlockEnd::Suspend {
                // The resume pc is the next instruction, even past the end of the code (then the
                // interpreter, or the compiled STOP at the end, finishes the frame).
                let inst = &insts[i - 1];
                resume_pcs.push(inst.pc + 1);
            }
            blocks.push(Block {
                start,
                end: i,
                end_kind,
                cold: false,
            });
        }
    }

    // Sections.
    for block in &blocks {
        let mut j = block.start;
        while j < block.end {
            let first = j;
            let mut s = Section::default();
            let mut h: i32 = 0; // height relative to the section start
            loop {
                let inst = &insts[j];
                s.gas += inst.static_gas;
                let need = inst.inputs as i32 - h;
                if need > s.min_height as i32 {
                    s.min_height = need as u16;
                }
                h += inst.outputs as i32 - inst.inputs as i32;
                if h > s.max_growth as i32 {
                    s.max_growth = h as u16;
                }
                j += 1;
                let ends = matches!(inst.kind, InstKind::HostBuiltin { .. } | InstKind::Memory)
                    || inst.op == opcode::GAS;
                if ends || j >= block.end {
                    break;
                }
            }
            insts[first].section = Some(s);
        }
    }

    for block in &blocks {
        plan_growth_ahead(&mut insts[block.start..block.end]);
    }

    Analysis {
        spec,
        code_len: code.len(),
        insts,
        blocks,
        jumpdests,
        resume_pcs,
        has_dynamic_jumps,
    }
}

/// Bytes MLOAD, MSTORE (32) and MSTORE8 (1) access.
pub fn memory_access_size(op: u8) -> u64 {
    if op == opcode::MSTORE8 {
        1
    } else {
        32
    }
}

/// A stack value of a block as far as [`plan_growth_ahead`] follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sym {
    /// A known constant.
    Const(U256),
    /// Value number `.0` (an unknown value, one number per value) plus `.1`.
    Offset(u32, u64),
}

/// An open run of memory accesses off one base.
struct Run {
    /// Index (in the block) of its first access.
    first: usize,
    /// The base's value number and the first access's offset from it and end.
    base: u32,
    start: u64,
    first_end: u64,
    /// The furthest end (offset from the base) of its accesses so far.
    end: u64,
    /// Static gas of its instructions after the first so far, and through the access that
    /// reached `end`.
    gas: u64,
    gas_at_end: u64,
    /// The furthest end of a constant-offset access in it.
    const_end: u64,
}

impl Run {
    fn close(self, insts: &mut [Inst]) {
        if self.end > self.first_end {
            insts[self.first].grow_ahead = Some(GrowAhead {
                bytes: self.end - self.start,
                gas_after: self.gas_at_end,
                const_end: self.const_end,
            });
        }
    }
}

/// Finds the runs of [`GrowAhead`] in one block by following its stack symbolically: constants,
/// and unknown values plus a constant (through ADD, DUP, SWAP), so that `mstore(p, ..)`,
/// `mstore(add(p, 32), ..)` are seen to share the base `p`.
fn plan_growth_ahead(insts: &mut [Inst]) {
    let mut stack: Vec<Sym> = Vec::new();
    let mut numbers = 0u32;
    let mut fresh = || {
        numbers += 1;
        Sym::Offset(numbers, 0)
    };
    let mut run: Option<Run> = None;
    for j in 0..insts.len() {
        let (op, kind) = (insts[j].op, insts[j].kind);
        let depth = match op {
            opcode::DUP1..=opcode::DUP16 => (op - opcode::DUP1) as usize + 1,
            opcode::SWAP1..=opcode::SWAP16 => (op - opcode::SWAP1) as usize + 2,
            _ => insts[j].inputs as usize,
        };
        if stack.len() < depth {
            // Values the block found on entry, each its own unknown.
            let missing = depth - stack.len();
            stack.splice(0..0, (0..missing).map(|_| fresh()));
        }
        // Whether this instruction may sit inside a run, and as which access.
        let access =
            (kind == InstKind::Memory).then(|| (stack[stack.len() - 1], memory_access_size(op)));
        let inert = match kind {
            // MSIZE is a host builtin; GAS is the one inline instruction that observes gas.
            InstKind::Inline => op != opcode::GAS,
            InstKind::StackBuiltin(..) | InstKind::ValueBuiltin(..) => true,
            InstKind::Memory => true,
            InstKind::HostBuiltin { .. } | InstKind::Halt(_) => false,
        };
        if let Some(r) = run.as_mut().filter(|_| inert) {
            r.gas += insts[j].static_gas;
            match access {
                Some((Sym::Offset(base, c), size)) if base == r.base => {
                    if let Some(end) = c.checked_add(size).filter(|&e| e > r.end) {
                        r.end = end;
                        r.gas_at_end = r.gas;
                    }
                }
                Some((Sym::Const(k), size)) => {
                    match u64::try_from(k).ok().and_then(|k| k.checked_add(size)) {
                        Some(end) => r.const_end = r.const_end.max(end),
                        // An access that cannot fit ends the run (and the frame).
                        None => run.take().unwrap().close(insts),
                    }
                }
                Some(_) => run.take().unwrap().close(insts),
                None => {}
            }
        } else if let Some(r) = run.take() {
            r.close(insts);
        }
        if run.is_none() {
            if let Some((Sym::Offset(base, c), size)) = access {
                if let Some(end) = c.checked_add(size) {
                    run = Some(Run {
                        first: j,
                        base,
                        start: c,
                        first_end: end,
                        end,
                        gas: 0,
                        gas_at_end: 0,
                        const_end: 0,
                    });
                }
            }
        }

        // The instruction's effect on the symbolic stack.
        let n = stack.len();
        match op {
            opcode::PUSH0..=opcode::PUSH32 => stack.push(Sym::Const(insts[j].imm)),
            opcode::DUP1..=opcode::DUP16 => stack.push(stack[n - depth]),
            opcode::SWAP1..=opcode::SWAP16 => stack.swap(n - 1, n - depth),
            opcode::ADD if kind == InstKind::Inline => {
                let (a, b) = (stack[n - 1], stack[n - 2]);
                stack.truncate(n - 2);
                let sum = match (a, b) {
                    (Sym::Const(x), Sym::Const(y)) => Some(Sym::Const(x.wrapping_add(y))),
                    (Sym::Offset(v, c), Sym::Const(k)) | (Sym::Const(k), Sym::Offset(v, c)) => {
                        u64::try_from(k)
                            .ok()
                            .and_then(|k| c.checked_add(k))
                            .map(|c| Sym::Offset(v, c))
                    }
                    _ => None,
                };
                let sum = sum.unwrap_or_else(&mut fresh);
                stack.push(sum);
            }
            _ => {
                stack.truncate(n - insts[j].inputs as usize);
                for _ in 0..insts[j].outputs {
                    let v = fresh();
                    stack.push(v);
                }
            }
        }
    }
    if let Some(r) = run {
        r.close(insts);
    }
}

/// Whether `op` is PUSH0..PUSH32.
pub(crate) fn is_push(op: u8) -> bool {
    (opcode::PUSH0..=opcode::PUSH32).contains(&op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumpdest_inside_push_data_is_not_valid() {
        // PUSH2 0x5b5b, JUMPDEST
        let a = analyze(&[0x61, 0x5b, 0x5b, 0x5b], SpecId::CANCUN);
        assert_eq!(a.jumpdests, vec![3]);
        assert_eq!(a.insts.len(), 2);
    }

    #[test]
    fn truncated_push_is_zero_padded_on_the_right() {
        let a = analyze(&[0x62, 0xab], SpecId::CANCUN);
        assert_eq!(a.insts[0].imm, U256::from(0xab0000u64));
    }

    #[test]
    fn code_after_stop_is_unreachable_unless_jump_target() {
        // STOP, ADD, JUMPDEST, STOP: nothing jumps, so the JUMPDEST is dead code.
        let a = analyze(&[0x00, 0x01, 0x5b, 0x00], SpecId::CANCUN);
        let starts: Vec<u32> = a.blocks.iter().map(|b| a.insts[b.start].pc).collect();
        assert_eq!(starts, vec![0]);
        // With a dynamic jump (CALLDATALOAD-computed target), every JUMPDEST is an entry.
        let a = analyze(&[0x5f, 0x35, 0x56, 0x00, 0x01, 0x5b, 0x00], SpecId::CANCUN);
        let starts: Vec<u32> = a.blocks.iter().map(|b| a.insts[b.start].pc).collect();
        assert_eq!(starts, vec![0, 5]);
        // PUSH1 4, JUMP, STOP, JUMPDEST (target), JUMPDEST (not a block start), STOP
        let a = analyze(&[0x60, 4, 0x56, 0x00, 0x5b, 0x5b, 0x00], SpecId::CANCUN);
        let starts: Vec<u32> = a.blocks.iter().map(|b| a.insts[b.start].pc).collect();
        assert_eq!(starts, vec![0, 4]);
    }

    #[test]
    fn static_loops_are_cycles_of_static_edges_not_backward_jumps() {
        let spec = SpecId::CANCUN;
        // JUMPDEST, PUSH1 0, JUMP: a block that jumps to itself.
        assert!(analyze(&[0x5b, 0x60, 0, 0x56], spec).has_static_loop());
        // A JUMPI loop: JUMPDEST, GAS, PUSH1 0, JUMPI, STOP.
        assert!(analyze(&[0x5b, 0x5a, 0x60, 0, 0x57, 0x00], spec).has_static_loop());
        // A backward jump to shared code that stops: PUSH1 5, JUMP, JUMPDEST, STOP,
        // JUMPDEST, PUSH1 3, JUMP.
        let back = analyze(&[0x60, 5, 0x56, 0x5b, 0x00, 0x5b, 0x60, 3, 0x56], spec);
        assert!(back.straight_line().is_none(), "a backward jump");
        assert!(!back.has_static_loop());
        // Straight-line code; and a loop closed by a dynamic jump (JUMPDEST, PUSH0,
        // CALLDATALOAD, JUMP), which is not seen.
        assert!(!analyze(&[0x60, 1, 0x60, 2, 0x01, 0x00], spec).has_static_loop());
        assert!(!analyze(&[0x5b, 0x5f, 0x35, 0x56], spec).has_static_loop());
    }

    #[test]
    fn coverage_marks_blocks_never_entered_cold() {
        // Three blocks: sload(0) and a jump; a JUMPDEST block with GAS, SLOAD and a jump (7
        // instructions); a JUMPDEST block that stops.
        let code = [
            0x60, 0, 0x54, 0x60, 8, 0x56, 0x00, 0x00, // 0..8: sload(0), jump 8
            0x5b, 0x5a, 0x60, 1, 0x54, 0x50, 0x60, 17, 0x56, // 8: gas, sload(1), jump 17
            0x5b, 0x00, // 17: stop
        ];
        let mut a = analyze(&code, SpecId::CANCUN);
        let starts: Vec<u32> = a.blocks.iter().map(|b| a.insts[b.start].pc).collect();
        assert_eq!(starts, vec![0, 8, 17]);
        let (all_sections, all_hot) = (a.section_count(), a.hot_insts().count());
        // A pc inside block 8 that is not its first does not make it hot.
        let cold = a.apply_coverage(&[0, 9, 17].into_iter().collect());
        assert_eq!(cold, 1);
        assert_eq!(
            a.blocks.iter().map(|b| b.cold).collect::<Vec<_>>(),
            vec![false, true, false]
        );
        assert_eq!(a.hot_block_count(), 2);
        // Block 8 has two sections (ended by GAS and SLOAD) and one more (the jump).
        assert_eq!(a.hot_section_count(), all_sections - 3);
        assert_eq!(a.section_count(), all_sections);
        assert_eq!(a.hot_insts().count(), all_hot - 7);
        assert_eq!(a.apply_coverage(&crate::Coverage::new()), 3);
        assert_eq!(a.apply_coverage(&(0..code.len()).collect()), 0);
    }

    #[test]
    fn sections_end_at_builtins_and_gas() {
        // PUSH1 1, PUSH1 2, ADD, GAS, POP, PUSH1 0, SLOAD, POP, STOP
        let code = [
            0x60, 1, 0x60, 2, 0x01, 0x5a, 0x50, 0x60, 0, 0x54, 0x50, 0x00,
        ];
        let a = analyze(&code, SpecId::CANCUN);
        let sections: Vec<(u32, Section)> = a
            .insts
            .iter()
            .filter_map(|i| i.section.map(|s| (i.pc, s)))
            .collect();
        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].0, 0);
        assert_eq!(
            sections[0].1,
            Section {
                gas: 3 + 3 + 3 + 2,
                min_height: 0,
                max_growth: 2
            }
        );
        assert_eq!(sections[1].0, 6);
        // POP(2) + PUSH1(3) + SLOAD(100 warm base in Berlin+)
        assert_eq!(sections[1].1.gas, 2 + 3 + 100);
        assert_eq!(sections[1].1.min_height, 1);
    }

    #[test]
    fn growth_ahead_for_runs_of_accesses_off_one_base() {
        // p = calldataload(0) + 0x100; mstore(p, ..), mstore(p + 0x20, ..), [middle],
        // mstore(p + 0x60, ..), mstore8(p + 0x90, ..), mload(p + 0x20)
        let code = |middle: &[u8]| {
            let mut c = vec![0x5f, 0x35, 0x61, 0x01, 0x00, 0x01];
            let store = |c: &mut Vec<u8>, off: u8, op: u8| {
                c.extend([0x80, 0x60, off, 0x01, 0x60, 0xaa, 0x90, op]);
            };
            store(&mut c, 0, opcode::MSTORE);
            store(&mut c, 0x20, opcode::MSTORE);
            c.extend_from_slice(middle);
            store(&mut c, 0x60, opcode::MSTORE);
            store(&mut c, 0x90, opcode::MSTORE8);
            c.extend([0x80, 0x60, 0x20, 0x01, opcode::MLOAD, 0x00]);
            c
        };
        let plans = |code: &[u8]| {
            let a = analyze(code, SpecId::CANCUN);
            a.insts
                .iter()
                .filter_map(|i| i.grow_ahead.map(|g| (i.pc, g)))
                .collect::<Vec<_>>()
        };
        // One run: the first store reaches to p + 0x91; after it, 3 x (DUP1 PUSH1 ADD PUSH1
        // SWAP1 MSTORE(8)) = 54 gas.
        let ahead = |bytes, gas_after, const_end| GrowAhead {
            bytes,
            gas_after,
            const_end,
        };
        assert_eq!(plans(&code(&[])), vec![(13, ahead(0x91, 54, 0))]);
        // A host builtin splits it in two; the second starts at the store at p + 0x60.
        assert_eq!(
            plans(&code(&[0x60, 0x20, 0x5f, opcode::KECCAK256, 0x50])),
            vec![(13, ahead(0x40, 18, 0)), (34, ahead(0x31, 18, 0))]
        );
        // GAS ends it too; a constant-offset access stays inside and is recorded.
        assert_eq!(plans(&code(&[opcode::GAS, 0x50])).len(), 2);
        assert_eq!(
            plans(&code(&[0x61, 0x04, 0x00, opcode::MLOAD, 0x50])),
            vec![(13, ahead(0x91, 54 + 3 + 3 + 2, 0x420))]
        );
        // Another base is a new run; an unknown base never matches.
        assert_eq!(
            plans(&code(&[0x5f, opcode::MLOAD, opcode::MLOAD, 0x50])).len(),
            2
        );
    }

    #[test]
    fn push0_is_not_activated_before_shanghai() {
        let a = analyze(&[0x5f], SpecId::MERGE);
        assert_eq!(
            a.insts[0].kind,
            InstKind::Halt(InstructionResult::NotActivated)
        );
        let a = analyze(&[0x5f], SpecId::SHANGHAI);
        assert_eq!(a.insts[0].kind, InstKind::Inline);
    }

    #[test]
    fn calls_create_resume_points() {
        // 7 x PUSH1 0, CALL, STOP
        let mut code = vec![];
        for _ in 0..7 {
            code.extend([0x60, 0]);
        }
        code.extend([0xf1, 0x00]);
        let a = analyze(&code, SpecId::CANCUN);
        assert_eq!(a.resume_pcs, vec![15]);
        assert!(a.block_at(15).is_some());
    }
}
