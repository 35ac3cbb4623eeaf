//! Lowering of an [`Analysis`] to LLVM IR.
//!
//! The generated function has the signature `i8 (ptr ctx)` where `ctx` is a
//! [`kiln_builtins::KilnCtx`]. It works directly on revm's stack buffer; the stack height and the
//! remaining gas live in locals that LLVM promotes to registers, and are written back to `ctx`
//! before every builtin call and every exit. The return value is revm's `InstructionResult`
//! (`0` never), [`kiln_builtins::STATUS_CONTINUE_IN_INTERPRETER`] or
//! [`kiln_builtins::STATUS_COLD_CODE`].

use crate::{
    analysis::{is_push, memory_access_size, Analysis, BlockEnd, GrowAhead, InstKind, STACK_LIMIT},
    CompileError,
};
use inkwell::{
    attributes::{Attribute, AttributeLoc},
    basic_block::BasicBlock,
    builder::Builder,
    context::Context,
    intrinsics::Intrinsic,
    module::{Linkage, Module},
    types::{FunctionType, IntType},
    values::BasicValue,
    values::{
        BasicMetadataValueEnum, CallSiteValue, FunctionValue, IntValue, PhiValue, PointerValue,
    },
    AddressSpace, IntPredicate,
};
use kiln_builtins::{
    builtin_for_opcode, Builtin, BuiltinKind, Signature, GROW_MEMORY_BUILTIN, OFFSET_CODE,
    OFFSET_GAS, OFFSET_MEM, OFFSET_MEM_LEN, OFFSET_PC, OFFSET_SP, OFFSET_STACK, STATUS_COLD_CODE,
    STATUS_CONTINUE_IN_INTERPRETER,
};
use revm::{bytecode::opcode, interpreter::InstructionResult, primitives::U256};
use std::num::NonZeroU32;

/// How builtins are reached from the generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Linking {
    /// Direct calls to external functions; the JIT maps each symbol to its address.
    Direct,
    /// Calls through a pointer global per builtin, `kiln_rt_<symbol>`, which the AOT loader fills
    /// in by symbol name after loading the shared library. The host executable need not export
    /// anything.
    PointerTable,
}

/// Options that change the generated code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LowerOptions {
    pub gas_metering: bool,
    pub debug_assertions: bool,
    pub linking: Linking,
    /// Fault injection: lower LT as GT.
    pub flip_lt: bool,
    /// The baseline tier ([`crate::OptLevel::Baseline`]): no 256-bit values, a call per
    /// arithmetic opcode, the stack always in the buffer.
    pub baseline: bool,
    /// Pass entry stack slots along static edges in registers (see `Lowerer::entry_phis`).
    pub pass_entry_slots: bool,
}

/// The prefix of AOT pointer globals (see [`kiln_builtins::Builtin::pointer_symbol`]), for the
/// loader in `aot`.
pub(crate) const POINTER_PREFIX: &str = kiln_builtins::POINTER_SYMBOL_PREFIX;

type Res<T> = Result<T, CompileError>;

fn llvm<T, E: std::fmt::Display>(r: Result<T, E>) -> Res<T> {
    r.map_err(|e| CompileError::Llvm(e.to_string()))
}

/// The LLVM function type of builtins with signature `sig`.
fn builtin_type(cx: &Context, sig: Signature) -> FunctionType<'_> {
    let ptr = cx.ptr_type(AddressSpace::default()).into();
    let (i8, i64) = (cx.i8_type(), cx.i64_type().into());
    match sig {
        Signature::Context => i8.fn_type(&[ptr], false),
        Signature::Slots => cx.void_type().fn_type(&[ptr], false),
        Signature::ContextWord => cx.void_type().fn_type(&[ptr, ptr], false),
        Signature::GrowMemory => i8.fn_type(&[ptr, i64, i64, i64, i64, i64], false),
    }
}

/// The baseline tier's word builtin for `op`.
fn word_builtin(op: u8) -> Res<&'static Builtin> {
    builtin_for_opcode(op, BuiltinKind::Word)
        .ok_or_else(|| CompileError::Internal(format!("opcode {op:#04x} has no baseline lowering")))
}

/// The builtin whose symbol the analysis chose.
fn named_builtin(name: &str) -> Res<&'static Builtin> {
    kiln_builtins::by_name(name)
        .ok_or_else(|| CompileError::Internal(format!("no builtin is named {name}")))
}

struct Lowerer<'a, 'ctx> {
    cx: &'ctx Context,
    module: &'a Module<'ctx>,
    b: Builder<'ctx>,
    a: &'a Analysis,
    opts: LowerOptions,
    func: FunctionValue<'ctx>,
    i1: IntType<'ctx>,
    i8: IntType<'ctx>,
    i64: IntType<'ctx>,
    i256: IntType<'ctx>,
    ctx_ptr: PointerValue<'ctx>,
    stack_base: PointerValue<'ctx>,
    sp_var: PointerValue<'ctx>,
    gas_var: PointerValue<'ctx>,
    scratch: PointerValue<'ctx>,
    exit_bb: BasicBlock<'ctx>,
    exit_phi: PhiValue<'ctx>,
    block_bbs: Vec<BasicBlock<'ctx>>,
    /// Block for a frame that runs off the end of the code (STOP).
    end_bb: BasicBlock<'ctx>,
    /// Shared dispatch for dynamic jumps, with the target as a phi.
    dyn_jump: Option<(BasicBlock<'ctx>, PhiValue<'ctx>)>,
    to_interp: Option<(BasicBlock<'ctx>, PhiValue<'ctx>, PhiValue<'ctx>)>,
    /// The same for cold blocks (status [`STATUS_COLD_CODE`]).
    to_interp_cold: Option<(BasicBlock<'ctx>, PhiValue<'ctx>, PhiValue<'ctx>)>,
    /// The LLVM type of each builtin [`Signature`], indexed by it.
    builtin_tys: [FunctionType<'ctx>; Signature::ALL.len()],
    // Per-block state: the stack height at block entry, the stack pointer at that height, and
    // the static offset from it.
    sp0: Option<IntValue<'ctx>>,
    base: Option<PointerValue<'ctx>>,
    off: i64,
    /// The virtual stack: SSA values of slots (index relative to `base`) known in this block, and
    /// whether the value still has to be written to the stack buffer.
    cache: std::collections::BTreeMap<i64, (IntValue<'ctx>, bool)>,
    /// Per block: phis for the top slots of its entry stack, which static edges (fallthrough,
    /// PUSH+JUMP, JUMPI) pass in registers instead of through the stack buffer. Empty for blocks
    /// that only the entry switch or a dynamic jump enters.
    entry_phis: Vec<Vec<PhiValue<'ctx>>>,
    /// Per block with entry phis: the LLVM block through which edges that pass nothing in
    /// registers (the entry switch, dynamic jumps) enter, loading the slots from the buffer.
    mem_entry: Vec<Option<BasicBlock<'ctx>>>,
    /// Slots this deep below `base` are known to exist: a section check proved the height.
    proven: i64,
    /// Per block with entry phis: which entry slots some edge lowered so far passes modified
    /// (not written back). Only meaningful for blocks whose static predecessors all come
    /// before them (`late_pred` false); the others treat every entry slot as modified.
    entry_dirty: Vec<Vec<bool>>,
    /// Per block: whether a static edge comes from a block lowered after it (a loop's back edge).
    late_pred: Vec<bool>,
    /// Bytes of memory this frame is known to have at the current point. Memory never shrinks
    /// within a frame, so an access at a constant offset below this needs no bounds check.
    mem_known: u64,
    /// Bytes of memory every block but the first is known to have: what the block at pc 0 made
    /// sure of. Every frame starts there, memory never shrinks, and a frame that does not get
    /// past that block halts, so any later block runs with at least this much (Solidity's
    /// prologue stores the free memory pointer at 0x40, so its reads and writes need no check).
    mem_floor: u64,
    /// Per block: the least `mem_known` over the static edges lowered into it so far.
    mem_in: Vec<Option<u64>>,
    /// Per block: entered where nothing is known of memory (the entry switch, a dynamic jump).
    mem_unknown_entry: Vec<bool>,
    /// The values of the constants `const256` made (constant memory offsets, constant divisors).
    consts: std::cell::RefCell<std::collections::HashMap<IntValue<'ctx>, U256>>,
}

/// Lowers `analysis` into a new function named `name` in `module`.
pub(crate) fn lower<'ctx>(
    cx: &'ctx Context,
    module: &Module<'ctx>,
    analysis: &Analysis,
    name: &str,
    opts: LowerOptions,
) -> Res<FunctionValue<'ctx>> {
    let i8 = cx.i8_type();
    let i64 = cx.i64_type();
    let i256 = cx
        .custom_width_int_type(NonZeroU32::new(256).unwrap())
        .map_err(|e| CompileError::Llvm(e.into()))?;
    let ptr = cx.ptr_type(AddressSpace::default());
    let fn_ty = i8.fn_type(&[ptr.into()], false);
    let func = module.add_function(name, fn_ty, Some(Linkage::External));
    // Nothing unwinds through compiled code (builtins are `extern "C"`, which abort on a
    // panic), so it needs no unwind tables: without them code generation skips inserting CFI
    // directives after every frame change, work a baseline compilation would notice.
    let nounwind = cx.create_enum_attribute(Attribute::get_named_enum_kind_id("nounwind"), 0);
    func.add_attribute(AttributeLoc::Function, nounwind);
    let b = cx.create_builder();

    let entry = cx.append_basic_block(func, "entry");
    let exit_bb = cx.append_basic_block(func, "exit");
    let end_bb = cx.append_basic_block(func, "end_of_code");
    b.position_at_end(exit_bb);
    let exit_phi = llvm(b.build_phi(i8, "status"))?;

    b.position_at_end(entry);
    let ctx_ptr = func.get_nth_param(0).unwrap().into_pointer_value();
    let sp_var = llvm(b.build_alloca(i64, "sp"))?;
    let gas_var = llvm(b.build_alloca(i64, "gas"))?;
    // Operands of the pure stack builtins: passing them here instead of in the stack buffer
    // keeps the rest of the virtual stack in registers across DIV/MOD/ADDMOD/...
    let scratch = llvm(b.build_array_alloca(i256, i64.const_int(3, false), "scratch"))?;
    if let Some(inst) = scratch.as_instruction() {
        let _ = inst.set_alignment(16);
    }

    let mut l = Lowerer {
        cx,
        module,
        b,
        a: analysis,
        opts,
        func,
        i1: cx.bool_type(),
        i8,
        i64,
        i256,
        ctx_ptr,
        stack_base: ptr.const_null(),
        sp_var,
        gas_var,
        scratch,
        exit_bb,
        exit_phi,
        block_bbs: Vec::new(),
        end_bb,
        dyn_jump: None,
        to_interp: None,
        to_interp_cold: None,
        builtin_tys: Signature::ALL.map(|sig| builtin_type(cx, sig)),
        sp0: None,
        base: None,
        off: 0,
        cache: Default::default(),
        entry_phis: Vec::new(),
        entry_dirty: Vec::new(),
        late_pred: Vec::new(),
        mem_entry: vec![None; analysis.blocks.len()],
        proven: 0,
        mem_known: 0,
        mem_floor: 0,
        mem_in: vec![None; analysis.blocks.len()],
        // With a dynamic jump anywhere, any JUMPDEST may be entered from anywhere.
        mem_unknown_entry: analysis
            .blocks
            .iter()
            .map(|b| analysis.has_dynamic_jumps && analysis.is_jumpdest(analysis.insts[b.start].pc))
            .collect(),
        consts: Default::default(),
    };
    l.emit_entry()?;
    l.emit_exit()?;
    for i in 0..analysis.blocks.len() {
        l.emit_block(i)?;
        if i == 0 && analysis.insts[analysis.blocks[0].start].pc == 0 {
            l.mem_floor = l.mem_known;
        }
    }
    l.emit_end_of_code()?;
    l.emit_dyn_jump()?;
    Ok(func)
}

impl<'a, 'ctx> Lowerer<'a, 'ctx> {
    fn ctx_field(&self, offset: u32, name: &str) -> Res<PointerValue<'ctx>> {
        // SAFETY: (LLVM IR semantics, not Rust) the offsets are KilnCtx's repr(C) layout.
        unsafe {
            llvm(self.b.build_in_bounds_gep(
                self.i8,
                self.ctx_ptr,
                &[self.i64.const_int(offset as u64, false)],
                name,
            ))
        }
    }

    fn load_i64(&self, p: PointerValue<'ctx>, name: &str) -> Res<IntValue<'ctx>> {
        Ok(llvm(self.b.build_load(self.i64, p, name))?.into_int_value())
    }

    fn store<V: inkwell::values::BasicValue<'ctx>>(&self, p: PointerValue<'ctx>, v: V) -> Res<()> {
        llvm(self.b.build_store(p, v))?;
        Ok(())
    }

    fn emit_entry(&mut self) -> Res<()> {
        let ptr = self.cx.ptr_type(AddressSpace::default());
        let stack_field = self.ctx_field(OFFSET_STACK, "stack.field")?;
        self.stack_base = llvm(self.b.build_load(ptr, stack_field, "stack"))?.into_pointer_value();
        let sp = self.load_i64(self.ctx_field(OFFSET_SP, "sp.field")?, "sp.in")?;
        self.store(self.sp_var, sp)?;
        let gas = self.load_i64(self.ctx_field(OFFSET_GAS, "gas.field")?, "gas.in")?;
        self.store(self.gas_var, gas)?;
        let pc = self.load_i64(self.ctx_field(OFFSET_PC, "pc.field")?, "pc.in")?;

        for (i, _) in self.a.blocks.iter().enumerate() {
            let pc = self.a.insts[self.a.blocks[i].start].pc;
            let bb = self.cx.append_basic_block(self.func, &format!("pc{pc}"));
            self.block_bbs.push(bb);
        }
        let entry = self.b.get_insert_block().unwrap();
        for (i, (has_static_pred, late_pred)) in static_predecessors(self.a).into_iter().enumerate()
        {
            let block = &self.a.blocks[i];
            let first_section = self.a.insts[block.start].section.unwrap_or_default();
            // A cold block takes no entry slots in registers: its predecessors write them back.
            let n = if has_static_pred && self.opts.pass_entry_slots && !block.cold {
                i64::from(first_section.min_height).min(PASSED_SLOTS)
            } else {
                0
            };
            self.b.position_at_end(self.block_bbs[i]);
            let phis = (0..n)
                .map(|_| llvm(self.b.build_phi(self.i256, "in")))
                .collect::<Res<Vec<_>>>()?;
            self.entry_phis.push(phis);
            self.entry_dirty.push(vec![false; n as usize]);
            self.late_pred.push(late_pred);
        }
        self.b.position_at_end(entry);

        // Entry at pc 0 or at a resume point; anything else continues in the interpreter.
        let unknown = self.cx.append_basic_block(self.func, "unknown_entry");
        let mut cases = Vec::new();
        // An entry into a cold block hands the frame over at the entry pc with nothing changed.
        let mut cold = None;
        for pc in std::iter::once(0).chain(self.a.resume_pcs.iter().copied()) {
            let target = match self.a.block_at(pc) {
                Some(i) if self.a.blocks[i].cold => {
                    *cold.get_or_insert_with(|| self.cx.append_basic_block(self.func, "cold_entry"))
                }
                Some(i) => self.enter_from_memory(i)?,
                None => self.end_bb,
            };
            cases.push((self.i64.const_int(pc as u64, false), target));
        }
        llvm(self.b.build_switch(pc, unknown, &cases))?;
        self.b.position_at_end(unknown);
        self.exit_with(STATUS_CONTINUE_IN_INTERPRETER)?;
        if let Some(cold) = cold {
            self.b.position_at_end(cold);
            self.exit_with(STATUS_COLD_CODE)?;
        }
        Ok(())
    }

    fn emit_exit(&mut self) -> Res<()> {
        self.b.position_at_end(self.exit_bb);
        let sp = self.load_i64(self.sp_var, "sp.out")?;
        self.store(self.ctx_field(OFFSET_SP, "sp.field")?, sp)?;
        let gas = self.load_i64(self.gas_var, "gas.out")?;
        self.store(self.ctx_field(OFFSET_GAS, "gas.field")?, gas)?;
        llvm(self.b.build_return(Some(&self.exit_phi.as_basic_value())))?;
        Ok(())
    }

    /// Branches to the common exit with `status`; the current sp must already be in `sp_var`.
    fn exit_with(&mut self, status: u8) -> Res<()> {
        let bb = self.b.get_insert_block().unwrap();
        self.exit_phi
            .add_incoming(&[(&self.i8.const_int(status as u64, false), bb)]);
        llvm(self.b.build_unconditional_branch(self.exit_bb))?;
        Ok(())
    }

    fn exit_result(&mut self, r: InstructionResult) -> Res<()> {
        // A halt discards the stack: only the height is written back, no slot.
        let sp = self.cur_sp()?;
        self.store(self.sp_var, sp)?;
        self.exit_with(r as u8)
    }

    fn emit_end_of_code(&mut self) -> Res<()> {
        self.b.position_at_end(self.end_bb);
        self.exit_with(InstructionResult::Stop as u8)
    }

    /// The current stack height as an IR value.
    fn cur_sp(&self) -> Res<IntValue<'ctx>> {
        let sp0 = self.sp0.unwrap();
        if self.off == 0 {
            return Ok(sp0);
        }
        llvm(
            self.b
                .build_int_add(sp0, self.i64.const_int(self.off as u64, true), "sp.cur"),
        )
    }

    /// Makes the stack buffer and `sp_var` exact (before leaving the block).
    fn sync_sp(&mut self) -> Res<()> {
        self.flush()?;
        let sp = self.cur_sp()?;
        self.store(self.sp_var, sp)
    }

    /// Address of the stack item `k` below the top (0 = top).
    fn slot(&self, k: i64) -> Res<PointerValue<'ctx>> {
        let idx = self.off - 1 - k;
        // SAFETY: (IR) section checks guarantee 0 <= sp0 + idx < 1024.
        unsafe {
            llvm(self.b.build_gep(
                self.i256,
                self.base.unwrap(),
                &[self.i64.const_int(idx as u64, true)],
                "slot",
            ))
        }
    }

    /// Calls the pure stack builtin `builtin` on the top values it takes and pops them; returns
    /// the result.
    fn call_stack_builtin(&mut self, builtin: &Builtin) -> Res<IntValue<'ctx>> {
        let n = builtin.operands as i64;
        // Laid out as on the stack: the deepest operand first, the result in its place.
        for k in 0..n {
            let v = self.peek(k)?;
            let p = self.scratch_slot(n - 1 - k)?;
            let st = llvm(self.b.build_store(p, v))?;
            let _ = st.set_alignment(8);
        }
        self.call_builtin(builtin, &[self.scratch.into()], "")?;
        let r = llvm(self.b.build_load(self.i256, self.scratch, "r"))?;
        if let Some(inst) = r.as_instruction_value() {
            let _ = inst.set_alignment(8);
        }
        self.off -= n;
        let off = self.off;
        self.cache.retain(|idx, _| *idx < off);
        Ok(r.into_int_value())
    }

    /// DIV, SDIV, MOD, SMOD: native 64-bit division when both operands fit in 64 bits (the
    /// common case in fixed-point code), the 256-bit builtin otherwise.
    fn emit_division(&mut self, op: u8, builtin: &Builtin) -> Res<()> {
        let signed = matches!(op, opcode::SDIV | opcode::SMOD);
        let (a, b) = (self.peek(0)?, self.peek(1)?);
        // An unsigned division by a constant power of two is a shift, a remainder a mask: code
        // from before SHR (Solidity < 0.5) unpacks storage words (`word / 2^112 & mask`) and
        // reads the selector (`calldataload(0) / 2^224`) this way, and the dividend is wide, so
        // the 64-bit path below would send it to the builtin.
        let pow2 = self
            .consts
            .borrow()
            .get(&b)
            .filter(|d| d.is_power_of_two())
            .copied();
        if let (false, Some(d)) = (signed, pow2) {
            let r = if op == opcode::DIV {
                let k = self.i256.const_int(d.trailing_zeros() as u64, false);
                llvm(self.b.build_right_shift(a, k, false, "q"))?
            } else {
                llvm(self.b.build_and(a, self.const256(d - U256::ONE), "r"))?
            };
            self.off -= 1;
            return self.poke(0, r);
        }
        let (a64, b64) = (
            llvm(self.b.build_int_truncate(a, self.i64, "a64"))?,
            llvm(self.b.build_int_truncate(b, self.i64, "b64"))?,
        );
        let fits = |l: &Self, x: IntValue<'ctx>, x64: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
            let back = if signed {
                llvm(l.b.build_int_s_extend(x64, l.i256, "back"))?
            } else {
                llvm(l.b.build_int_z_extend(x64, l.i256, "back"))?
            };
            llvm(l.b.build_int_compare(IntPredicate::EQ, back, x, "fits"))
        };
        let mut small = llvm(
            self.b
                .build_and(fits(self, a, a64)?, fits(self, b, b64)?, "small"),
        )?;
        if signed {
            // i64::MIN / -1 overflows (and traps on x86); the builtin handles it.
            let a_min = llvm(self.b.build_int_compare(
                IntPredicate::EQ,
                a64,
                self.i64.const_int(i64::MIN as u64, true),
                "a.min",
            ))?;
            let b_m1 = llvm(self.b.build_int_compare(
                IntPredicate::EQ,
                b64,
                self.i64.const_all_ones(),
                "b.m1",
            ))?;
            let overflow = llvm(self.b.build_and(a_min, b_m1, "ovf"))?;
            let no_overflow = llvm(self.b.build_not(overflow, "no.ovf"))?;
            small = llvm(self.b.build_and(small, no_overflow, "small"))?;
        }
        let fast = self.cx.append_basic_block(self.func, "div.fast");
        let slow = self.cx.append_basic_block(self.func, "div.slow");
        let join = self.cx.append_basic_block(self.func, "div.join");
        self.branch_weighted(small, fast, slow, true)?;

        self.b.position_at_end(fast);
        let zero =
            llvm(
                self.b
                    .build_int_compare(IntPredicate::EQ, b64, self.i64.const_zero(), "b.zero"),
            )?;
        let divisor =
            llvm(
                self.b
                    .build_select(zero, self.i64.const_int(1, false), b64, "divisor"),
            )?
            .into_int_value();
        let q = match op {
            opcode::DIV => llvm(self.b.build_int_unsigned_div(a64, divisor, "q"))?,
            opcode::SDIV => llvm(self.b.build_int_signed_div(a64, divisor, "q"))?,
            opcode::MOD => llvm(self.b.build_int_unsigned_rem(a64, divisor, "q"))?,
            _ => llvm(self.b.build_int_signed_rem(a64, divisor, "q"))?,
        };
        let q = llvm(self.b.build_select(zero, self.i64.const_zero(), q, "q0"))?.into_int_value();
        let q = if signed {
            llvm(self.b.build_int_s_extend(q, self.i256, "q256"))?
        } else {
            llvm(self.b.build_int_z_extend(q, self.i256, "q256"))?
        };
        let fast_end = self.b.get_insert_block().unwrap();
        llvm(self.b.build_unconditional_branch(join))?;

        // Both paths leave the virtual stack as it was; only the popped operands differ.
        let saved = self.cache.clone();
        self.b.position_at_end(slow);
        let r = self.call_stack_builtin(builtin)?;
        let slow_end = self.b.get_insert_block().unwrap();
        llvm(self.b.build_unconditional_branch(join))?;

        self.b.position_at_end(join);
        let phi = llvm(self.b.build_phi(self.i256, "div"))?;
        phi.add_incoming(&[(&q, fast_end), (&r, slow_end)]);
        // The slow path only read the cache; restore the entries it dropped, minus the operands.
        self.cache = saved;
        let off = self.off;
        self.cache.retain(|idx, _| *idx < off);
        self.push(phi.as_basic_value().into_int_value())
    }

    /// After a host builtin: returns its status from the function unless it is 0 (the builtin
    /// already synced sp, gas and, for suspends, pc into ctx and the interpreter); otherwise
    /// continues with the gas the builtin left.
    fn leave_unless_ok(&mut self, status: IntValue<'ctx>, name: &str) -> Res<()> {
        let failed = llvm(self.b.build_int_compare(
            IntPredicate::NE,
            status,
            self.i8.const_zero(),
            "failed",
        ))?;
        let cont = self
            .cx
            .append_basic_block(self.func, &format!("{name}.after"));
        let bail = self
            .cx
            .append_basic_block(self.func, &format!("{name}.leave"));
        self.branch_weighted(failed, bail, cont, false)?;
        self.b.position_at_end(bail);
        llvm(self.b.build_return(Some(&status)))?;
        self.b.position_at_end(cont);
        let gas = self.load_i64(self.ctx_field(OFFSET_GAS, "gas.field")?, "gas.after")?;
        self.store(self.gas_var, gas)
    }

    /// Address of operand `i` in the stack builtins' scratch area.
    fn scratch_slot(&self, i: i64) -> Res<PointerValue<'ctx>> {
        // SAFETY: (IR) the scratch area holds 3 words and stack builtins take at most 3.
        unsafe {
            llvm(self.b.build_gep(
                self.i256,
                self.scratch,
                &[self.i64.const_int(i as u64, false)],
                "scratch.op",
            ))
        }
    }

    fn peek(&mut self, k: i64) -> Res<IntValue<'ctx>> {
        let idx = self.off - 1 - k;
        if let Some((v, _)) = self.cache.get(&idx) {
            return Ok(*v);
        }
        let p = self.slot(k)?;
        let v = llvm(self.b.build_load(self.i256, p, "v"))?;
        if let Some(inst) = v.as_instruction_value() {
            let _ = inst.set_alignment(8);
        }
        let v = v.into_int_value();
        self.cache.insert(idx, (v, false));
        Ok(v)
    }

    fn poke(&mut self, k: i64, v: IntValue<'ctx>) -> Res<()> {
        self.cache.insert(self.off - 1 - k, (v, true));
        Ok(())
    }

    /// Modified slots of the virtual stack that are still on the stack.
    fn dirty_live_slots(&self) -> Vec<(i64, IntValue<'ctx>)> {
        self.cache
            .iter()
            .filter(|(idx, (_, dirty))| *dirty && **idx < self.off)
            .map(|(idx, (v, _))| (*idx, *v))
            .collect()
    }

    fn store_slots(&self, slots: &[(i64, IntValue<'ctx>)]) -> Res<()> {
        for &(idx, v) in slots {
            let p = self.slot_at(idx)?;
            let st = llvm(self.b.build_store(p, v))?;
            let _ = st.set_alignment(8);
        }
        Ok(())
    }

    /// Address of the slot `idx` relative to `base`. A slot no section check has proved to exist
    /// (an entry slot that an edge loads before the target block's stack check) may lie below
    /// the buffer when the stack underflows: the target's check then fails, the frame halts and
    /// the value does not matter, so such an access goes to the scratch area instead.
    fn slot_at(&self, idx: i64) -> Res<PointerValue<'ctx>> {
        // SAFETY: (IR) proven slots lie between 0 and the current height; others are clamped.
        let p = unsafe {
            llvm(self.b.build_gep(
                self.i256,
                self.base.unwrap(),
                &[self.i64.const_int(idx as u64, true)],
                "slot",
            ))?
        };
        if idx >= -self.proven {
            return Ok(p);
        }
        let abs = llvm(self.b.build_int_add(
            self.sp0.unwrap(),
            self.i64.const_int(idx as u64, true),
            "abs",
        ))?;
        let below =
            llvm(
                self.b
                    .build_int_compare(IntPredicate::SLT, abs, self.i64.const_zero(), "below"),
            )?;
        Ok(llvm(self.b.build_select(below, self.scratch, p, "slot.safe"))?.into_pointer_value())
    }

    /// Loads the slot `idx` relative to `base` from the stack buffer (see [`Self::slot_at`]).
    fn load_slot(&self, idx: i64) -> Res<IntValue<'ctx>> {
        let p = self.slot_at(idx)?;
        let v = llvm(self.b.build_load(self.i256, p, "v"))?;
        if let Some(inst) = v.as_instruction_value() {
            let _ = inst.set_alignment(8);
        }
        Ok(v.into_int_value())
    }

    /// Leaves the current block for block `target` along a static edge. The target's entry
    /// slots go along in registers (from the virtual stack, or loaded); everything else that
    /// is modified is written back. The virtual stack itself is left as it was, for the other
    /// edge of a JUMPI.
    fn branch_to_block(&mut self, target: usize) -> Res<()> {
        let phis = self.entry_phis[target].clone();
        let first = self.off - phis.len() as i64;
        let mut values = Vec::with_capacity(phis.len());
        for k in 0..phis.len() as i64 {
            let idx = first + k;
            let v = match self.cache.get(&idx) {
                Some(&(v, dirty)) => {
                    self.entry_dirty[target][k as usize] |= dirty;
                    v
                }
                None => self.load_slot(idx)?,
            };
            values.push(v);
        }
        let rest: Vec<_> = self
            .dirty_live_slots()
            .into_iter()
            .filter(|(idx, _)| *idx < first)
            .collect();
        self.store_slots(&rest)?;
        let sp = self.cur_sp()?;
        self.store(self.sp_var, sp)?;
        let bb = self.b.get_insert_block().unwrap();
        for (phi, v) in phis.iter().zip(&values) {
            phi.add_incoming(&[(v, bb)]);
        }
        let known = self.mem_in[target].map_or(self.mem_known, |k| k.min(self.mem_known));
        self.mem_in[target] = Some(known);
        llvm(self.b.build_unconditional_branch(self.block_bbs[target]))?;
        Ok(())
    }

    /// The LLVM block through which an edge that passes nothing in registers enters block `i`
    /// (with `sp_var` synced and the stack buffer exact).
    fn enter_from_memory(&mut self, i: usize) -> Res<BasicBlock<'ctx>> {
        self.mem_unknown_entry[i] = true;
        if self.entry_phis[i].is_empty() {
            return Ok(self.block_bbs[i]);
        }
        if let Some(bb) = self.mem_entry[i] {
            return Ok(bb);
        }
        let cur = self.b.get_insert_block();
        let pc = self.a.insts[self.a.blocks[i].start].pc;
        let bb = self
            .cx
            .append_basic_block(self.func, &format!("pc{pc}.from_stack"));
        self.b.position_at_end(bb);
        let (sp0, base, proven) = (self.sp0, self.base, self.proven);
        let sp = self.load_i64(self.sp_var, "sp")?;
        self.sp0 = Some(sp);
        // SAFETY: (IR) sp <= 1024 and the buffer holds 1024 items.
        self.base =
            Some(unsafe { llvm(self.b.build_gep(self.i256, self.stack_base, &[sp], "base"))? });
        self.proven = 0;
        let phis = self.entry_phis[i].clone();
        for (k, phi) in phis.iter().enumerate() {
            let v = self.load_slot(k as i64 - phis.len() as i64)?;
            phi.add_incoming(&[(&v, bb)]);
        }
        llvm(self.b.build_unconditional_branch(self.block_bbs[i]))?;
        (self.sp0, self.base, self.proven) = (sp0, base, proven);
        if let Some(cur) = cur {
            self.b.position_at_end(cur);
        }
        self.mem_entry[i] = Some(bb);
        Ok(bb)
    }

    /// Writes the modified live slots of the virtual stack to the stack buffer; forgets the
    /// dead ones (above the current height), which are never stored.
    fn flush(&mut self) -> Res<()> {
        let live = self.dirty_live_slots();
        let off = self.off;
        self.cache.retain(|idx, _| *idx < off);
        self.store_slots(&live)?;
        for (idx, v) in live {
            self.cache.insert(idx, (v, false));
        }
        Ok(())
    }

    /// MLOAD / MSTORE / MSTORE8, inline. An access outside the current memory first calls the
    /// growth builtin, which charges the expansion and does not touch the stack, so the virtual
    /// stack stays in registers on both paths and they join before the access.
    ///
    /// With `ahead`, a growth may reach ahead for the rest of the run (see [`GrowAhead`]), unless
    /// one of the run's constant-offset accesses could still grow memory itself.
    fn emit_memory_op(&mut self, pc: u32, op: u8, ahead: Option<GrowAhead>) -> Res<()> {
        let size = memory_access_size(op);
        let offset = self.peek(0)?;
        let value = if op == opcode::MLOAD {
            None
        } else {
            Some(self.peek(1)?)
        };
        let const_end = self
            .consts
            .borrow()
            .get(&offset)
            .and_then(|o| u64::try_from(*o).ok())
            .and_then(|o| o.checked_add(size));
        if const_end.is_none_or(|end| end > self.mem_known) {
            let access = self
                .cx
                .append_basic_block(self.func, &format!("pc{pc}.mem"));
            let ahead = ahead
                .filter(|a| a.const_end <= self.mem_known)
                .map_or((size, 0), |a| (a.bytes, a.gas_after));
            self.emit_memory_check(pc, offset, size, ahead, access)?;
            self.b.position_at_end(access);
        }
        if let Some(end) = const_end {
            // Memory grows in words: the access leaves at least `end` rounded up.
            self.mem_known = self.mem_known.max(end.div_ceil(32) * 32);
        }
        let ptr_ty = self.cx.ptr_type(AddressSpace::default());
        let mem = llvm(
            self.b
                .build_load(ptr_ty, self.ctx_field(OFFSET_MEM, "mem.field")?, "mem"),
        )?
        .into_pointer_value();
        let off64 = llvm(self.b.build_int_truncate(offset, self.i64, "off"))?;
        // SAFETY: (IR) offset + size <= mem_len, checked above or made so by the growth.
        let p = unsafe { llvm(self.b.build_gep(self.i8, mem, &[off64], "p"))? };
        self.emit_memory_access(op, p, value)
    }

    /// Branches to `access` if `offset + size` lies inside the current memory, else grows it
    /// first (or leaves the frame with the halt the growth reports). `(ahead, gas_after)`: the
    /// growth may reach `offset + ahead` if `gas_after` gas is left after it.
    fn emit_memory_check(
        &mut self,
        pc: u32,
        offset: IntValue<'ctx>,
        size: u64,
        (ahead, gas_after): (u64, u64),
        access: BasicBlock<'ctx>,
    ) -> Res<()> {
        let mem_len = self.load_i64(self.ctx_field(OFFSET_MEM_LEN, "mem_len.field")?, "mem_len")?;
        let fits = llvm(self.b.build_int_compare(
            IntPredicate::UGE,
            mem_len,
            self.i64.const_int(size, false),
            "fits",
        ))?;
        let limit = llvm(
            self.b
                .build_int_sub(mem_len, self.i64.const_int(size, false), "limit"),
        )?;
        let limit = llvm(self.b.build_int_z_extend(limit, self.i256, "limit256"))?;
        let inside = llvm(
            self.b
                .build_int_compare(IntPredicate::ULE, offset, limit, "inside"),
        )?;
        let ok = llvm(self.b.build_and(fits, inside, "ok"))?;
        let grow = self
            .cx
            .append_basic_block(self.func, &format!("pc{pc}.grow"));
        self.branch_weighted(ok, access, grow, true)?;

        // Growth: sp and gas go to ctx (a failure halts the frame from here).
        self.b.position_at_end(grow);
        let off64 = llvm(self.b.build_int_truncate(offset, self.i64, "off"))?;
        let high = llvm(self.b.build_right_shift(
            offset,
            self.i256.const_int(64, false),
            false,
            "off.high",
        ))?;
        let high = llvm(self.b.build_int_compare(
            IntPredicate::NE,
            high,
            self.i256.const_zero(),
            "off.big",
        ))?;
        let high = llvm(self.b.build_int_z_extend(high, self.i64, "off.big64"))?;
        let sp = self.cur_sp()?;
        self.store(self.ctx_field(OFFSET_SP, "sp.field")?, sp)?;
        let gas = self.load_i64(self.gas_var, "gas")?;
        self.store(self.ctx_field(OFFSET_GAS, "gas.field")?, gas)?;
        let args = [
            self.ctx_ptr.into(),
            off64.into(),
            high.into(),
            self.i64.const_int(size, false).into(),
            self.i64.const_int(ahead, false).into(),
            self.i64.const_int(gas_after, false).into(),
        ];
        let status = self
            .call_builtin(GROW_MEMORY_BUILTIN, &args, "status")?
            .try_as_basic_value()
            .unwrap_basic()
            .into_int_value();
        self.leave_unless_ok(status, &format!("pc{pc}.grow"))?;
        llvm(self.b.build_unconditional_branch(access))?;
        Ok(())
    }

    /// The load or store of a memory instruction at `p`, inside memory.
    fn emit_memory_access(
        &mut self,
        op: u8,
        p: PointerValue<'ctx>,
        value: Option<IntValue<'ctx>>,
    ) -> Res<()> {
        let bswap = self.intrinsic("llvm.bswap", self.i256)?;
        match op {
            opcode::MLOAD => {
                let raw = llvm(self.b.build_load(self.i256, p, "raw"))?;
                if let Some(i) = raw.as_instruction_value() {
                    let _ = i.set_alignment(1);
                }
                let v = llvm(self.b.build_call(bswap, &[raw.into()], "be"))?
                    .try_as_basic_value()
                    .unwrap_basic()
                    .into_int_value();
                self.poke(0, v)?;
            }
            opcode::MSTORE => {
                let v = llvm(self.b.build_call(bswap, &[value.unwrap().into()], "be"))?
                    .try_as_basic_value()
                    .unwrap_basic();
                let st = llvm(self.b.build_store(p, v))?;
                let _ = st.set_alignment(1);
            }
            _ => {
                let byte = llvm(self.b.build_int_truncate(value.unwrap(), self.i8, "byte"))?;
                llvm(self.b.build_store(p, byte))?;
            }
        }
        if op != opcode::MLOAD {
            self.off -= 2;
            let off = self.off;
            self.cache.retain(|idx, _| *idx < off);
        }
        Ok(())
    }

    fn push(&mut self, v: IntValue<'ctx>) -> Res<()> {
        self.off += 1;
        self.poke(0, v)?;
        if self.cache.len() > 2 * VSTACK_WINDOW as usize {
            self.trim_cache()?;
        }
        Ok(())
    }

    /// Writes back and forgets the values more than [`VSTACK_WINDOW`] items deep.
    fn trim_cache(&mut self) -> Res<()> {
        let floor = self.off - VSTACK_WINDOW;
        let deep: Vec<_> = self
            .cache
            .range(..floor)
            .filter(|(_, (_, dirty))| *dirty)
            .map(|(i, (v, _))| (*i, *v))
            .collect();
        self.store_slots(&deep)?;
        self.cache = self.cache.split_off(&floor);
        Ok(())
    }

    fn const256(&self, v: U256) -> IntValue<'ctx> {
        let c = self.i256.const_int_arbitrary_precision(v.as_limbs());
        self.consts.borrow_mut().insert(c, v);
        c
    }

    /// A conditional branch that almost always goes to `then_bb` if `likely_then`, else to
    /// `else_bb`. The weights go on the branch itself (not through `llvm.expect`), so block
    /// placement sees them in every pipeline: the lean one has no pass that lowers `llvm.expect`.
    fn branch_weighted(
        &self,
        cond: IntValue<'ctx>,
        then_bb: BasicBlock<'ctx>,
        else_bb: BasicBlock<'ctx>,
        likely_then: bool,
    ) -> Res<()> {
        let br = llvm(self.b.build_conditional_branch(cond, then_bb, else_bb))?;
        let i32t = self.cx.i32_type();
        let (t, e) = if likely_then { (2000, 1) } else { (1, 2000) };
        let weights = self.cx.metadata_node(&[
            self.cx.metadata_string("branch_weights").into(),
            i32t.const_int(t, false).into(),
            i32t.const_int(e, false).into(),
        ]);
        br.set_metadata(weights, self.cx.get_kind_id("prof"))
            .map_err(|e| CompileError::Internal(format!("branch weights: {e}")))
    }

    /// A code family parameter ([`crate::family`]): the immediate of the PUSH `op` at `pc`,
    /// read big-endian from the running code ([`kiln_builtins::KilnCtx::code`]). The analysis
    /// checked that the immediate lies inside the code.
    fn param_value(&self, pc: u32, op: u8) -> Res<IntValue<'ctx>> {
        let n = u32::from(op - opcode::PUSH1) + 1;
        let ptr_ty = self.cx.ptr_type(AddressSpace::default());
        let code = llvm(self.b.build_load(
            ptr_ty,
            self.ctx_field(OFFSET_CODE, "code.field")?,
            "code",
        ))?
        .into_pointer_value();
        // SAFETY: (LLVM IR semantics, not Rust) the immediate's bytes lie inside the code.
        let at = unsafe {
            llvm(self.b.build_in_bounds_gep(
                self.i8,
                code,
                &[self.i64.const_int(u64::from(pc) + 1, false)],
                "imm.ptr",
            ))?
        };
        let int = |bytes: u32| {
            std::num::NonZeroU32::new(8 * bytes)
                .and_then(|bits| self.cx.custom_width_int_type(bits).ok())
                .ok_or_else(|| CompileError::Internal(format!("no {bytes}-byte integer type")))
        };
        let raw_ty = int(n)?;
        let raw = llvm(self.b.build_load(raw_ty, at, "imm.raw"))?;
        if let Some(i) = raw.as_instruction_value() {
            let _ = i.set_alignment(1);
        }
        // bswap needs a whole number of 16-bit units: an odd byte count gets a zero low byte,
        // which the swap moves to the top.
        let raw = raw.into_int_value();
        let (wide, ty) = if n % 2 == 1 {
            let ty = int(n + 1)?;
            let z = llvm(self.b.build_int_z_extend(raw, ty, "imm.z"))?;
            (
                llvm(self.b.build_left_shift(z, ty.const_int(8, false), "imm.sh"))?,
                ty,
            )
        } else {
            (raw, raw_ty)
        };
        let v = llvm(
            self.b
                .build_call(self.intrinsic("llvm.bswap", ty)?, &[wide.into()], "imm"),
        )?
        .try_as_basic_value()
        .unwrap_basic()
        .into_int_value();
        if ty == self.i256 {
            Ok(v)
        } else {
            llvm(self.b.build_int_z_extend(v, self.i256, "imm256"))
        }
    }

    fn intrinsic(&self, name: &str, ty: IntType<'ctx>) -> Res<FunctionValue<'ctx>> {
        Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[ty.into()]))
            .ok_or_else(|| CompileError::Llvm(format!("intrinsic {name} not found")))
    }

    /// Calls `builtin` with `args`, declaring it with the LLVM type of its signature.
    fn call_builtin(
        &self,
        builtin: &Builtin,
        args: &[BasicMetadataValueEnum<'ctx>],
        name: &str,
    ) -> Res<CallSiteValue<'ctx>> {
        let ty = self.builtin_tys[builtin.signature() as usize];
        let f = self.callee(builtin, ty)?;
        llvm(self.b.build_indirect_call(ty, f, args, name))
    }

    /// The callee for `builtin`, of type `ty`.
    fn callee(&self, builtin: &Builtin, ty: FunctionType<'ctx>) -> Res<PointerValue<'ctx>> {
        let ptr_ty = self.cx.ptr_type(AddressSpace::default());
        let name = builtin.name;
        match self.opts.linking {
            Linking::Direct => {
                let f = self
                    .module
                    .get_function(name)
                    .unwrap_or_else(|| self.module.add_function(name, ty, Some(Linkage::External)));
                Ok(f.as_global_value().as_pointer_value())
            }
            Linking::PointerTable => {
                let gname = builtin.pointer_symbol();
                let g = match self.module.get_global(&gname) {
                    Some(g) => g,
                    None => {
                        let g = self.module.add_global(ptr_ty, None, &gname);
                        g.set_initializer(&ptr_ty.const_null());
                        g.set_linkage(Linkage::External);
                        g
                    }
                };
                Ok(llvm(self.b.build_load(ptr_ty, g.as_pointer_value(), name))?
                    .into_pointer_value())
            }
        }
    }

    fn emit_block(&mut self, bi: usize) -> Res<()> {
        let block = self.a.blocks[bi].clone();
        self.b.position_at_end(self.block_bbs[bi]);
        let sp0 = self.load_i64(self.sp_var, "sp0")?;
        self.sp0 = Some(sp0);
        // SAFETY: (IR) sp0 <= 1024 and the buffer holds 1024 items.
        self.base =
            Some(unsafe { llvm(self.b.build_gep(self.i256, self.stack_base, &[sp0], "base"))? });
        self.off = 0;
        self.cache.clear();
        self.proven = 0;
        // A back edge is lowered after its target, so a loop head knows nothing of memory.
        self.mem_known = match self.mem_in[bi] {
            Some(k) if !self.late_pred[bi] && !self.mem_unknown_entry[bi] => k,
            _ => 0,
        }
        .max(self.mem_floor);
        let n = self.entry_phis[bi].len() as i64;
        for (k, phi) in self.entry_phis[bi].iter().enumerate() {
            // Modified if some edge did not write it back; a back edge is not lowered yet, so
            // a loop's entry slots count as modified.
            let dirty = self.late_pred[bi] || self.entry_dirty[bi][k];
            self.cache
                .insert(k as i64 - n, (phi.as_basic_value().into_int_value(), dirty));
        }
        if block.cold {
            // The interpreter runs this block from its first pc, its section check included:
            // leave before charging anything. It takes no entry slots in registers, so the
            // stack buffer is already exact.
            debug_assert!(self.entry_phis[bi].is_empty());
            let sp = self.cur_sp()?;
            let (to_interp, pc_phi, sp_phi) = self.interpreter_exit_block(true)?;
            let bb = self.b.get_insert_block().unwrap();
            let pc = self.a.insts[block.start].pc;
            pc_phi.add_incoming(&[(&self.i64.const_int(pc as u64, false), bb)]);
            sp_phi.add_incoming(&[(&sp, bb)]);
            llvm(self.b.build_unconditional_branch(to_interp))?;
            return Ok(());
        }

        for idx in block.start..block.end {
            let inst = &self.a.insts[idx];
            if let Some(section) = inst.section {
                self.emit_section_check(inst.pc, section)?;
            }
            let is_last = idx + 1 == block.end;
            // A constant jump target pushed by the previous instruction in this block.
            let const_target =
                if idx > block.start && (inst.op == opcode::JUMP || inst.op == opcode::JUMPI) {
                    let prev = &self.a.insts[idx - 1];
                    is_push(prev.op).then_some(prev.imm)
                } else {
                    None
                };
            if self.opts.baseline {
                match self.emit_baseline(idx, const_target, is_last, block.end_kind, bi)? {
                    Some(true) => return Ok(()),
                    Some(false) => continue,
                    None => {}
                }
            }
            match inst.kind {
                InstKind::Halt(r) => {
                    self.exit_result(r)?;
                    return Ok(());
                }
                InstKind::StackBuiltin(name, _)
                    if matches!(
                        inst.op,
                        opcode::DIV | opcode::SDIV | opcode::MOD | opcode::SMOD
                    ) =>
                {
                    self.emit_division(inst.op, named_builtin(name)?)?;
                }
                InstKind::StackBuiltin(name, _) => {
                    let r = self.call_stack_builtin(named_builtin(name)?)?;
                    self.push(r)?;
                }
                InstKind::ValueBuiltin(name, n) => {
                    if n == 1 {
                        let v = self.peek(0)?;
                        let st = llvm(self.b.build_store(self.scratch, v))?;
                        let _ = st.set_alignment(8);
                    }
                    self.call_builtin(
                        named_builtin(name)?,
                        &[self.ctx_ptr.into(), self.scratch.into()],
                        "",
                    )?;
                    let r = llvm(self.b.build_load(self.i256, self.scratch, "r"))?;
                    if let Some(inst) = r.as_instruction_value() {
                        let _ = inst.set_alignment(8);
                    }
                    self.off -= n as i64;
                    let off = self.off;
                    self.cache.retain(|idx, _| *idx < off);
                    self.push(r.into_int_value())?;
                }
                InstKind::Memory => self.emit_memory_op(inst.pc, inst.op, inst.grow_ahead)?,
                InstKind::HostBuiltin { name, suspends } => {
                    self.emit_host_call(
                        inst.pc,
                        inst.op,
                        named_builtin(name)?,
                        suspends,
                        inst.inputs,
                        inst.outputs,
                        is_last,
                        block.end_kind,
                    )?;
                    if block.end_kind == BlockEnd::Exit && is_last {
                        return Ok(());
                    }
                }
                InstKind::Inline if inst.param => {
                    let v = self.param_value(inst.pc, inst.op)?;
                    self.push(v)?;
                }
                InstKind::Inline => {
                    if self.emit_inline(inst.pc, inst.op, inst.imm, const_target, bi)? {
                        return Ok(());
                    }
                }
            }
        }
        // Fell through the end of the block.
        let next_pc = self.a.insts.get(block.end).map(|i| i.pc);
        match next_pc.and_then(|pc| self.a.block_at(pc)) {
            Some(i) => self.branch_to_block(i),
            None => {
                self.sync_sp()?;
                llvm(self.b.build_unconditional_branch(self.end_bb))?;
                Ok(())
            }
        }
    }

    fn emit_section_check(&mut self, pc: u32, s: crate::analysis::Section) -> Res<()> {
        let mut ok: Option<IntValue<'ctx>> = None;
        let and =
            |l: &Self, ok: Option<IntValue<'ctx>>, c: IntValue<'ctx>| -> Res<IntValue<'ctx>> {
                match ok {
                    None => Ok(c),
                    Some(o) => llvm(l.b.build_and(o, c, "ok")),
                }
            };
        let sp = self.cur_sp()?;
        let (min, growth) = (u64::from(s.min_height), u64::from(s.max_growth));
        if growth > STACK_LIMIT || (min > 0 && growth > 0 && min > STACK_LIMIT - growth) {
            // Overflows (or underflows) whatever the entry height: always the interpreter's to
            // report.
            ok = Some(self.i1.const_zero());
        } else if min > 0 && growth > 0 {
            // Both bounds in one unsigned comparison: min <= sp <= limit - growth.
            let off = llvm(self.b.build_int_sub(
                sp,
                self.i64.const_int(min, false),
                "stack.above",
            ))?;
            let c = llvm(self.b.build_int_compare(
                IntPredicate::ULE,
                off,
                self.i64.const_int(STACK_LIMIT - growth - min, false),
                "stack.ok",
            ))?;
            ok = Some(c);
        } else if min > 0 {
            let c = llvm(self.b.build_int_compare(
                IntPredicate::UGE,
                sp,
                self.i64.const_int(min, false),
                "stack.under.ok",
            ))?;
            ok = Some(c);
        } else if growth > 0 {
            let c = llvm(self.b.build_int_compare(
                IntPredicate::ULE,
                sp,
                self.i64.const_int(STACK_LIMIT - growth, false),
                "stack.over.ok",
            ))?;
            ok = Some(c);
        }
        let mut new_gas = None;
        if self.opts.gas_metering && s.gas > 0 {
            let gas = self.load_i64(self.gas_var, "gas")?;
            let cost = self.i64.const_int(s.gas, false);
            // One overflow-checked subtraction gives both the new gas and the failure bit. (An
            // `icmp uge` per section makes InstCombine's dominating-condition analysis quadratic
            // in the number of sections, of which code can have thousands.)
            let f = self.intrinsic("llvm.usub.with.overflow", self.i64)?;
            let r = llvm(self.b.build_call(f, &[gas.into(), cost.into()], "gas.sub"))?
                .try_as_basic_value()
                .unwrap_basic()
                .into_struct_value();
            let left = llvm(self.b.build_extract_value(r, 0, "gas.left"))?.into_int_value();
            let oog = llvm(self.b.build_extract_value(r, 1, "gas.oog"))?.into_int_value();
            let c = llvm(self.b.build_not(oog, "gas.ok"))?;
            ok = Some(and(self, ok, c)?);
            new_gas = Some(left);
        }
        if let Some(ok) = ok {
            let cont = self.cx.append_basic_block(self.func, &format!("pc{pc}.go"));
            let (to_interp, pc_phi, sp_phi) = self.interpreter_exit_block(false)?;
            // The values still only in registers are not written back: a failed check means the
            // interpreter halts inside this section (out of gas before its last static charge,
            // or a stack underflow/overflow), and nothing in a section can fail by value before
            // that point: it is straight-line inline code, with the one instruction that has
            // dynamic gas or reads memory (a host call, a memory access) at its end, after its
            // static charge and stack check. A halt discards the stack; only the height counts.
            let pred = self.b.get_insert_block().unwrap();
            self.branch_weighted(ok, cont, to_interp, true)?;
            pc_phi.add_incoming(&[(&self.i64.const_int(pc as u64, false), pred)]);
            sp_phi.add_incoming(&[(&sp, pred)]);
            self.b.position_at_end(cont);
        }
        if let Some(g) = new_gas {
            self.store(self.gas_var, g)?;
        }
        self.proven = self.proven.max(i64::from(s.min_height) - self.off);
        Ok(())
    }

    /// The one block that hands the frame to the interpreter at a section start (with `cold`,
    /// at the start of a cold block), with the pc and stack height as phis (one shared block
    /// keeps huge functions cheap to compile).
    fn interpreter_exit_block(
        &mut self,
        cold: bool,
    ) -> Res<(BasicBlock<'ctx>, PhiValue<'ctx>, PhiValue<'ctx>)> {
        if let Some(t) = if cold {
            self.to_interp_cold
        } else {
            self.to_interp
        } {
            return Ok(t);
        }
        let (status, name) = if cold {
            (STATUS_COLD_CODE, "cold_block")
        } else {
            (STATUS_CONTINUE_IN_INTERPRETER, "to_interpreter")
        };
        let cur = self.b.get_insert_block().unwrap();
        let bb = self.cx.append_basic_block(self.func, name);
        self.b.position_at_end(bb);
        let pc = llvm(self.b.build_phi(self.i64, "pc"))?;
        let sp = llvm(self.b.build_phi(self.i64, "sp"))?;
        self.store(self.sp_var, sp.as_basic_value().into_int_value())?;
        self.store(
            self.ctx_field(OFFSET_PC, "pc.field")?,
            pc.as_basic_value().into_int_value(),
        )?;
        self.exit_with(status)?;
        self.b.position_at_end(cur);
        let slot = if cold {
            &mut self.to_interp_cold
        } else {
            &mut self.to_interp
        };
        *slot = Some((bb, pc, sp));
        Ok((bb, pc, sp))
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_host_call(
        &mut self,
        pc: u32,
        op: u8,
        builtin: &Builtin,
        suspends: bool,
        inputs: u16,
        outputs: u16,
        is_last: bool,
        end_kind: BlockEnd,
    ) -> Res<()> {
        // The builtin reads and writes revm's stack: it must be exact, and afterwards only the
        // slots below its operands are still known.
        self.flush()?;
        let below = self.off - inputs as i64;
        self.cache.retain(|idx, _| *idx < below);
        let sp = self.cur_sp()?;
        self.store(self.ctx_field(OFFSET_SP, "sp.field")?, sp)?;
        let gas = self.load_i64(self.gas_var, "gas")?;
        self.store(self.ctx_field(OFFSET_GAS, "gas.field")?, gas)?;
        let exits = is_last && end_kind == BlockEnd::Exit;
        if suspends || exits {
            // Where the interpreter state continues if this call suspends the frame (or, for an
            // instruction that should always leave, unexpectedly does not).
            self.store(
                self.ctx_field(OFFSET_PC, "pc.field")?,
                self.i64.const_int(pc as u64 + 1, false),
            )?;
        }
        let status = self
            .call_builtin(builtin, &[self.ctx_ptr.into()], "status")?
            .try_as_basic_value()
            .unwrap_basic()
            .into_int_value();
        if exits {
            // RETURN, REVERT, SELFDESTRUCT and the not-yet-active opcodes always leave; the
            // builtin synced ctx. A 0 status would mean "continue": hand that to the interpreter.
            let is_zero = llvm(self.b.build_int_compare(
                IntPredicate::EQ,
                status,
                self.i8.const_zero(),
                "cont",
            ))?;
            let fixed = llvm(
                self.b.build_select(
                    is_zero,
                    self.i8
                        .const_int(STATUS_CONTINUE_IN_INTERPRETER as u64, false),
                    status,
                    "status.out",
                ),
            )?;
            llvm(self.b.build_return(Some(&fixed)))?;
            return Ok(());
        }
        self.leave_unless_ok(status, &format!("pc{pc}"))?;
        self.off += outputs as i64 - inputs as i64;
        if self.opts.debug_assertions {
            let actual = self.load_i64(self.ctx_field(OFFSET_SP, "sp.field")?, "sp.actual")?;
            let expected = self.cur_sp()?;
            let bad = llvm(
                self.b
                    .build_int_compare(IntPredicate::NE, actual, expected, "sp.bad"),
            )?;
            let trap_bb = self
                .cx
                .append_basic_block(self.func, &format!("pc{pc}.assert"));
            let ok_bb = self
                .cx
                .append_basic_block(self.func, &format!("pc{pc}.asserted"));
            llvm(self.b.build_conditional_branch(bad, trap_bb, ok_bb))?;
            self.b.position_at_end(trap_bb);
            let trap = self.intrinsic_void("llvm.trap")?;
            llvm(self.b.build_call(trap, &[], ""))?;
            llvm(self.b.build_unreachable())?;
            self.b.position_at_end(ok_bb);
        }
        let _ = op;
        Ok(())
    }

    fn intrinsic_void(&self, name: &str) -> Res<FunctionValue<'ctx>> {
        Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, &[]))
            .ok_or_else(|| CompileError::Llvm(format!("intrinsic {name} not found")))
    }

    /// Lowers one inline instruction. Returns true if it ended the block's code.
    fn emit_inline(
        &mut self,
        pc: u32,
        op: u8,
        imm: U256,
        const_target: Option<U256>,
        bi: usize,
    ) -> Res<bool> {
        use opcode::*;
        macro_rules! bin {
            ($f:ident) => {{
                let a = self.peek(0)?;
                let c = self.peek(1)?;
                let r = llvm(self.b.$f(a, c, "r"))?;
                self.off -= 1;
                self.poke(0, r)?;
            }};
        }
        macro_rules! cmp {
            ($pred:expr, $swap:expr) => {{
                let a = self.peek(0)?;
                let c = self.peek(1)?;
                let (x, y) = if $swap { (c, a) } else { (a, c) };
                let r = llvm(self.b.build_int_compare($pred, x, y, "c"))?;
                let r = llvm(self.b.build_int_z_extend(r, self.i256, "r"))?;
                self.off -= 1;
                self.poke(0, r)?;
            }};
        }
        match op {
            STOP => {
                self.exit_result(InstructionResult::Stop)?;
                return Ok(true);
            }
            ADD => bin!(build_int_add),
            MUL => bin!(build_int_mul),
            SUB => bin!(build_int_sub),
            AND => bin!(build_and),
            OR => bin!(build_or),
            XOR => bin!(build_xor),
            LT if self.opts.flip_lt => cmp!(IntPredicate::UGT, false),
            LT => cmp!(IntPredicate::ULT, false),
            GT => cmp!(IntPredicate::UGT, false),
            SLT => cmp!(IntPredicate::SLT, false),
            SGT => cmp!(IntPredicate::SGT, false),
            EQ => cmp!(IntPredicate::EQ, false),
            ISZERO => {
                let a = self.peek(0)?;
                let r = llvm(self.b.build_int_compare(
                    IntPredicate::EQ,
                    a,
                    self.i256.const_zero(),
                    "z",
                ))?;
                let r = llvm(self.b.build_int_z_extend(r, self.i256, "r"))?;
                self.poke(0, r)?;
            }
            NOT => {
                let a = self.peek(0)?;
                let r = llvm(self.b.build_not(a, "r"))?;
                self.poke(0, r)?;
            }
            BYTE => {
                let i = self.peek(0)?;
                let x = self.peek(1)?;
                let in_range = llvm(self.b.build_int_compare(
                    IntPredicate::ULT,
                    i,
                    self.i256.const_int(32, false),
                    "in",
                ))?;
                let rev = llvm(
                    self.b
                        .build_int_sub(self.i256.const_int(31, false), i, "rev"),
                )?;
                let sh = llvm(
                    self.b
                        .build_int_mul(rev, self.i256.const_int(8, false), "sh"),
                )?;
                let sh = llvm(self.b.build_and(sh, self.i256.const_int(255, false), "sh"))?;
                let v = llvm(self.b.build_right_shift(x, sh, false, "v"))?;
                let v = llvm(self.b.build_and(v, self.i256.const_int(0xff, false), "v"))?;
                let r = llvm(
                    self.b
                        .build_select(in_range, v, self.i256.const_zero(), "r"),
                )?
                .into_int_value();
                self.off -= 1;
                self.poke(0, r)?;
            }
            SHL | SHR | SAR => {
                let shift = self.peek(0)?;
                let x = self.peek(1)?;
                let in_range = llvm(self.b.build_int_compare(
                    IntPredicate::ULT,
                    shift,
                    self.i256.const_int(256, false),
                    "in",
                ))?;
                // Mask so the shift amount is never poison; out-of-range amounts are selected away.
                let s = llvm(
                    self.b
                        .build_and(shift, self.i256.const_int(255, false), "s"),
                )?;
                let (v, other) = match op {
                    SHL => (
                        llvm(self.b.build_left_shift(x, s, "v"))?,
                        self.i256.const_zero(),
                    ),
                    SHR => (
                        llvm(self.b.build_right_shift(x, s, false, "v"))?,
                        self.i256.const_zero(),
                    ),
                    _ => (
                        llvm(self.b.build_right_shift(x, s, true, "v"))?,
                        llvm(self.b.build_right_shift(
                            x,
                            self.i256.const_int(255, false),
                            true,
                            "sign",
                        ))?,
                    ),
                };
                let r = llvm(self.b.build_select(in_range, v, other, "r"))?.into_int_value();
                self.off -= 1;
                self.poke(0, r)?;
            }
            SIGNEXTEND => {
                let k = self.peek(0)?;
                let x = self.peek(1)?;
                let in_range = llvm(self.b.build_int_compare(
                    IntPredicate::ULT,
                    k,
                    self.i256.const_int(31, false),
                    "in",
                ))?;
                let k = llvm(self.b.build_and(k, self.i256.const_int(31, false), "k"))?;
                let k8 = llvm(self.b.build_int_mul(k, self.i256.const_int(8, false), "k8"))?;
                let s = llvm(
                    self.b
                        .build_int_sub(self.i256.const_int(248, false), k8, "s"),
                )?;
                let up = llvm(self.b.build_left_shift(x, s, "up"))?;
                let v = llvm(self.b.build_right_shift(up, s, true, "v"))?;
                let r = llvm(self.b.build_select(in_range, v, x, "r"))?.into_int_value();
                self.off -= 1;
                self.poke(0, r)?;
            }
            CLZ => {
                let x = self.peek(0)?;
                let f = self.intrinsic("llvm.ctlz", self.i256)?;
                let r = llvm(self.b.build_call(
                    f,
                    &[x.into(), self.i1.const_zero().into()],
                    "clz",
                ))?
                .try_as_basic_value()
                .unwrap_basic()
                .into_int_value();
                self.poke(0, r)?;
            }
            POP => self.off -= 1,
            JUMPDEST => {}
            PC => self.push(self.i256.const_int(pc as u64, false))?,
            GAS => {
                let g = self.load_i64(self.gas_var, "gas")?;
                let g = llvm(self.b.build_int_z_extend(g, self.i256, "gas256"))?;
                self.push(g)?;
            }
            PUSH0..=PUSH32 => self.push(self.const256(imm))?,
            DUP1..=DUP16 => {
                let n = (op - DUP1) as i64;
                let v = self.peek(n)?;
                self.push(v)?;
            }
            SWAP1..=SWAP16 => {
                let n = (op - SWAP1) as i64 + 1;
                let top = self.peek(0)?;
                let other = self.peek(n)?;
                self.poke(0, other)?;
                self.poke(n, top)?;
            }
            JUMP => {
                let target = self.peek(0)?;
                self.off -= 1;
                self.emit_jump(target, const_target)?;
                return Ok(true);
            }
            JUMPI => {
                let target = self.peek(0)?;
                let cond = self.peek(1)?;
                self.off -= 2;
                let nz = llvm(self.b.build_int_compare(
                    IntPredicate::NE,
                    cond,
                    self.i256.const_zero(),
                    "nz",
                ))?;
                self.emit_jumpi(pc, target, nz, const_target, bi)?;
                return Ok(true);
            }
            _ => {
                return Err(CompileError::Internal(format!(
                    "opcode {op:#04x} has no inline lowering"
                )))
            }
        }
        Ok(false)
    }

    /// JUMPI with its operands popped: `nz` is whether the condition is non-zero.
    fn emit_jumpi(
        &mut self,
        pc: u32,
        target: IntValue<'ctx>,
        nz: IntValue<'ctx>,
        const_target: Option<U256>,
        bi: usize,
    ) -> Res<()> {
        {
            {
                let taken = self
                    .cx
                    .append_basic_block(self.func, &format!("pc{pc}.taken"));
                let fall = self
                    .cx
                    .append_basic_block(self.func, &format!("pc{pc}.fall"));
                llvm(self.b.build_conditional_branch(nz, taken, fall))?;
                // Each edge writes back what its target does not take in registers.
                let saved = self.cache.clone();
                self.b.position_at_end(taken);
                self.emit_jump(target, const_target)?;
                self.cache = saved;
                self.b.position_at_end(fall);
                match self.a.blocks.get(bi + 1) {
                    Some(nb) if nb.start == self.a.blocks[bi].end => {
                        self.branch_to_block(bi + 1)?
                    }
                    _ => {
                        self.sync_sp()?;
                        llvm(self.b.build_unconditional_branch(self.end_bb))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Lowers instruction `idx` in the baseline tier, where no 256-bit value appears in the IR:
    /// arithmetic is a call on the stack slots, stack shuffles copy 64-bit limbs in the buffer,
    /// memory accesses are host builtins. Returns whether it ended the block's code, or `None`
    /// for what both tiers lower alike (halts, host builtins).
    fn emit_baseline(
        &mut self,
        idx: usize,
        const_target: Option<U256>,
        is_last: bool,
        end_kind: BlockEnd,
        bi: usize,
    ) -> Res<Option<bool>> {
        use opcode::*;
        let inst = &self.a.insts[idx];
        let (pc, op, imm) = (inst.pc, inst.op, inst.imm);
        match inst.kind {
            InstKind::Halt(_) | InstKind::HostBuiltin { .. } => return Ok(None),
            InstKind::StackBuiltin(name, _) => self.call_on_slots(named_builtin(name)?)?,
            InstKind::ValueBuiltin(name, n) => {
                // The operand's slot, or the new top's: the builtin writes its result there.
                let io = self.slot(n as i64 - 1)?;
                let args = [self.ctx_ptr.into(), io.into()];
                self.call_builtin(named_builtin(name)?, &args, "")?;
                self.off += 1 - n as i64;
            }
            InstKind::Memory => {
                let builtin = builtin_for_opcode(op, BuiltinKind::Memory).ok_or_else(|| {
                    CompileError::Internal(format!("opcode {op:#04x} has no memory builtin"))
                })?;
                let (inputs, outputs) = (inst.inputs, inst.outputs);
                self.emit_host_call(pc, op, builtin, false, inputs, outputs, is_last, end_kind)?;
            }
            InstKind::Inline => match op {
                STOP => {
                    self.exit_result(InstructionResult::Stop)?;
                    return Ok(Some(true));
                }
                LT if self.opts.flip_lt => self.call_on_slots(word_builtin(GT)?)?,
                POP => self.off -= 1,
                JUMPDEST => {}
                PC => self.push_limbs([pc as u64, 0, 0, 0])?,
                // A target that the next instruction jumps to at once is never read: the jump
                // branches to it statically and pops it (sections never start at that jump).
                PUSH0..=PUSH32
                    if !is_last
                        && matches!(
                            self.a.insts.get(idx + 1).map(|i| i.op),
                            Some(JUMP | JUMPI)
                        ) =>
                {
                    // A section check at the jump would hand the frame to the interpreter
                    // without the target on the stack.
                    debug_assert!(self.a.insts[idx + 1].section.is_none());
                    self.off += 1
                }
                PUSH1..=PUSH32 if inst.param => {
                    let v = self.param_value(pc, op)?;
                    let s = self.slot(-1)?;
                    let st = llvm(self.b.build_store(s, v))?;
                    let _ = st.set_alignment(8);
                    self.off += 1;
                }
                PUSH0..=PUSH32 => self.push_limbs(*imm.as_limbs())?,
                GAS => {
                    let gas = self.load_i64(self.gas_var, "gas")?;
                    let zero = self.i64.const_zero();
                    self.store_limbs(-1, [gas, zero, zero, zero])?;
                    self.off += 1;
                }
                DUP1..=DUP16 => {
                    let (from, to) = (self.slot((op - DUP1) as i64)?, self.slot(-1)?);
                    self.copy_word(to, from)?;
                    self.off += 1;
                }
                SWAP1..=SWAP16 => {
                    let n = (op - SWAP1) as i64 + 1;
                    let (top, other) = (self.load_limbs(0)?, self.load_limbs(n)?);
                    self.store_limbs(0, other)?;
                    self.store_limbs(n, top)?;
                }
                JUMP => {
                    let target = self.baseline_jump_target(const_target)?;
                    self.off -= 1;
                    self.emit_jump(target, const_target)?;
                    return Ok(Some(true));
                }
                JUMPI => {
                    let target = self.baseline_jump_target(const_target)?;
                    let [a, b, c, d] = self.load_limbs(1)?;
                    let ab = llvm(self.b.build_or(a, b, "ab"))?;
                    let cd = llvm(self.b.build_or(c, d, "cd"))?;
                    let any = llvm(self.b.build_or(ab, cd, "cond"))?;
                    let nz = llvm(self.b.build_int_compare(
                        IntPredicate::NE,
                        any,
                        self.i64.const_zero(),
                        "nz",
                    ))?;
                    self.off -= 2;
                    self.emit_jumpi(pc, target, nz, const_target, bi)?;
                    return Ok(Some(true));
                }
                _ => self.call_on_slots(word_builtin(op)?)?,
            },
        }
        Ok(Some(false))
    }

    /// Calls the stack or word builtin `builtin` on the top slots it takes, in place; the
    /// result replaces the deepest of them.
    fn call_on_slots(&mut self, builtin: &Builtin) -> Res<()> {
        let n = builtin.operands as i64;
        let p = self.slot(n - 1)?;
        self.call_builtin(builtin, &[p.into()], "")?;
        self.off -= n - 1;
        Ok(())
    }

    /// Addresses of the four limbs (least significant first) of the stack item `k` below the
    /// top.
    fn limbs(&self, k: i64) -> Res<[PointerValue<'ctx>; 4]> {
        let idx = (self.off - 1 - k) * 4;
        let mut p = [self.base.unwrap(); 4];
        for (i, p) in p.iter_mut().enumerate() {
            // SAFETY: (IR) section checks guarantee the slot lies in the buffer.
            *p = unsafe {
                llvm(self.b.build_gep(
                    self.i64,
                    *p,
                    &[self.i64.const_int((idx + i as i64) as u64, true)],
                    "limb",
                ))?
            };
        }
        Ok(p)
    }

    fn load_limbs(&self, k: i64) -> Res<[IntValue<'ctx>; 4]> {
        let mut v = [self.i64.const_zero(); 4];
        for (l, p) in v.iter_mut().zip(self.limbs(k)?) {
            *l = self.load_i64(p, "limb.v")?;
        }
        Ok(v)
    }

    fn store_limbs(&self, k: i64, v: [IntValue<'ctx>; 4]) -> Res<()> {
        for (l, p) in v.into_iter().zip(self.limbs(k)?) {
            self.store(p, l)?;
        }
        Ok(())
    }

    /// Copies a stack word. A 32-byte `memcpy` is one IR instruction that FastISel expands to
    /// four loads and stores, against eight instructions and eight addresses for the limbs.
    fn copy_word(&self, to: PointerValue<'ctx>, from: PointerValue<'ctx>) -> Res<()> {
        llvm(
            self.b
                .build_memcpy(to, 8, from, 8, self.i64.const_int(32, false)),
        )?;
        Ok(())
    }

    fn push_limbs(&mut self, limbs: [u64; 4]) -> Res<()> {
        self.store_limbs(-1, limbs.map(|l| self.i64.const_int(l, false)))?;
        self.off += 1;
        Ok(())
    }

    /// The top of the stack as a 64-bit jump target, `u64::MAX` if any higher bit is set (an
    /// invalid target either way). A constant target needs no load.
    fn baseline_jump_target(&self, const_target: Option<U256>) -> Res<IntValue<'ctx>> {
        if const_target.is_some() {
            return Ok(self.i64.const_zero());
        }
        let [low, a, b, c] = self.load_limbs(0)?;
        let ab = llvm(self.b.build_or(a, b, "hi"))?;
        let high = llvm(self.b.build_or(ab, c, "hi"))?;
        let wide =
            llvm(
                self.b
                    .build_int_compare(IntPredicate::NE, high, self.i64.const_zero(), "wide"),
            )?;
        Ok(llvm(
            self.b
                .build_select(wide, self.i64.const_all_ones(), low, "target"),
        )?
        .into_int_value())
    }

    /// Jumps to `target` (already popped).
    fn emit_jump(&mut self, target: IntValue<'ctx>, const_target: Option<U256>) -> Res<()> {
        if let Some(t) = const_target {
            match self.a.static_jump_block(t) {
                Some(i) => self.branch_to_block(i)?,
                None => {
                    self.sync_sp()?;
                    self.exit_with(InstructionResult::InvalidJump as u8)?;
                }
            }
            return Ok(());
        }
        self.sync_sp()?;
        let (bb, phi) = match self.dyn_jump {
            Some(d) => d,
            None => {
                let cur = self.b.get_insert_block().unwrap();
                let bb = self.cx.append_basic_block(self.func, "dyn_jump");
                self.b.position_at_end(bb);
                let phi = llvm(self.b.build_phi(target.get_type(), "target"))?;
                self.b.position_at_end(cur);
                self.dyn_jump = Some((bb, phi));
                (bb, phi)
            }
        };
        let cur = self.b.get_insert_block().unwrap();
        phi.add_incoming(&[(&target, cur)]);
        llvm(self.b.build_unconditional_branch(bb))?;
        Ok(())
    }

    fn emit_dyn_jump(&mut self) -> Res<()> {
        let Some((bb, phi)) = self.dyn_jump else {
            return Ok(());
        };
        self.b.position_at_end(bb);
        let target = phi.as_basic_value().into_int_value();
        let invalid = self.cx.append_basic_block(self.func, "invalid_jump");
        let small = llvm(self.b.build_int_compare(
            IntPredicate::ULE,
            target,
            target.get_type().const_int(u32::MAX as u64, false),
            "small",
        ))?;
        let sw = self.cx.append_basic_block(self.func, "jump_table");
        llvm(self.b.build_conditional_branch(small, sw, invalid))?;
        self.b.position_at_end(sw);
        let t32 = llvm(self.b.build_int_truncate(target, self.cx.i32_type(), "t32"))?;
        // Jumps into cold blocks share one hand-over at the target pc (the jump synced the
        // stack), instead of a case block each.
        let mut cold = None;
        let mut cases = Vec::new();
        for &d in &self.a.jumpdests {
            if let Some(i) = self.a.block_at(d) {
                let dest = if self.a.blocks[i].cold {
                    *cold.get_or_insert_with(|| self.cx.append_basic_block(self.func, "cold_jump"))
                } else {
                    self.enter_from_memory(i)?
                };
                cases.push((self.cx.i32_type().const_int(d as u64, false), dest));
            }
        }
        if self.opts.baseline {
            self.emit_jump_table(t32, invalid, &cases)?;
        } else {
            llvm(self.b.build_switch(t32, invalid, &cases))?;
        }
        if let Some(cold) = cold {
            self.b.position_at_end(cold);
            let pc = llvm(self.b.build_int_z_extend(t32, self.i64, "pc"))?;
            self.store(self.ctx_field(OFFSET_PC, "pc.field")?, pc)?;
            self.exit_with(STATUS_COLD_CODE)?;
        }
        self.b.position_at_end(invalid);
        self.exit_with(InstructionResult::InvalidJump as u8)
    }
}

impl<'ctx> Lowerer<'_, 'ctx> {
    /// The baseline tier's dynamic jump: an indirect branch through a table of block addresses
    /// indexed by pc, instead of a `switch`. Code generation without optimisation lowers a
    /// switch to one comparison per case in a row, so every dynamic jump (each return from a
    /// Solidity function) walked hundreds of them, and jump-heavy code ran slower than on the
    /// interpreter, whose jump is one table lookup.
    /// Two constant tables, so that only one entry per target needs a relocation: pc -> target
    /// number (0 for not a target), target number -> block address.
    fn emit_jump_table(
        &mut self,
        t32: IntValue<'ctx>,
        invalid: BasicBlock<'ctx>,
        cases: &[(IntValue<'ctx>, BasicBlock<'ctx>)],
    ) -> Res<()> {
        let too_many = || CompileError::TooManyJumpTargets {
            targets: cases.len(),
            limit: u16::MAX as usize - 1,
        };
        let mut index = vec![0u16; self.a.code_len];
        let mut dests = vec![invalid];
        for &(pc, bb) in cases {
            let pc = pc.get_zero_extended_constant().unwrap_or(u64::MAX) as usize;
            let slot = index.get_mut(pc).ok_or_else(|| {
                CompileError::Internal(format!("jump target {pc} lies outside the code"))
            })?;
            *slot = u16::try_from(dests.len()).map_err(|_| too_many())?;
            dests.push(bb);
        }
        let i16t = self.cx.i16_type();
        let ptr_ty = self.cx.ptr_type(AddressSpace::default());
        let index_values: Vec<_> = index
            .iter()
            .map(|&i| i16t.const_int(i as u64, false))
            .collect();
        let index_table = self.constant_table(
            i16t.array_type(index.len() as u32),
            &i16t.const_array(&index_values),
            "kiln.jump_index",
        );
        let addresses = dests
            .iter()
            .map(|bb| {
                // SAFETY: every block here belongs to this function and is not its entry.
                unsafe { bb.get_address() }
                    .ok_or_else(|| CompileError::Internal("a jump target has no address".into()))
            })
            .collect::<Res<Vec<_>>>()?;
        let address_table = self.constant_table(
            ptr_ty.array_type(addresses.len() as u32),
            &ptr_ty.const_array(&addresses),
            "kiln.jump_addresses",
        );

        let in_code = llvm(self.b.build_int_compare(
            IntPredicate::ULT,
            t32,
            self.cx.i32_type().const_int(self.a.code_len as u64, false),
            "in_code",
        ))?;
        let lookup = self.cx.append_basic_block(self.func, "jump_lookup");
        llvm(self.b.build_conditional_branch(in_code, lookup, invalid))?;
        self.b.position_at_end(lookup);
        let t64 = llvm(self.b.build_int_z_extend(t32, self.i64, "t64"))?;
        // `t64 < code_len`, the index table's length, and the index table holds only numbers
        // below the address table's length.
        let n = self
            .table_entry(i16t.into(), index_table, t64)?
            .into_int_value();
        let n = llvm(self.b.build_int_z_extend(n, self.i64, "jump.n64"))?;
        let address = self
            .table_entry(ptr_ty.into(), address_table, n)?
            .into_pointer_value();
        let mut unique = dests.clone();
        unique.sort_by_key(|bb| bb.as_mut_ptr() as usize);
        unique.dedup();
        llvm(self.b.build_indirect_branch(address, &unique))?;
        Ok(())
    }

    /// A private constant global array holding `init`.
    fn constant_table(
        &self,
        ty: inkwell::types::ArrayType<'ctx>,
        init: &inkwell::values::ArrayValue<'ctx>,
        name: &str,
    ) -> PointerValue<'ctx> {
        let table = self.module.add_global(ty, None, name);
        table.set_initializer(init);
        table.set_constant(true);
        table.set_linkage(Linkage::Private);
        table.as_pointer_value()
    }

    /// Loads element `i` of the constant `table` whose elements are `elem`s; the caller knows
    /// `i` is in bounds.
    fn table_entry(
        &self,
        elem: inkwell::types::BasicTypeEnum<'ctx>,
        table: PointerValue<'ctx>,
        i: IntValue<'ctx>,
    ) -> Res<inkwell::values::BasicValueEnum<'ctx>> {
        // SAFETY: (IR) the caller guarantees `i` is within the table.
        let at = unsafe { llvm(self.b.build_gep(elem, table, &[i], "table.at"))? };
        llvm(self.b.build_load(elem, at, "table.v"))
    }
}

/// Most values the virtual stack keeps in registers. EVM code reaches at most 17 items deep
/// (SWAP16), so deeper values are written back: keeping them only makes the live ranges of a
/// long block, and the register allocator's work, grow with the block.
const VSTACK_WINDOW: i64 = 32;

/// Most entry slots a block takes in registers along static edges (EVM code reaches 17 deep).
const PASSED_SLOTS: i64 = 17;

/// Per block: whether a static edge (fallthrough, JUMPI's not-taken edge, PUSH+JUMP(I)) enters
/// it, and whether one comes from the block itself or a later one (blocks are lowered in pc
/// order). Such blocks take their entry slots in registers; the lowering must add an incoming
/// value on exactly these edges, so this mirrors `emit_block`'s choice of successors.
fn static_predecessors(a: &Analysis) -> Vec<(bool, bool)> {
    let mut preds = vec![(false, false); a.blocks.len()];
    for bi in 0..a.blocks.len() {
        let targets = a.static_successors(bi);
        for t in targets.into_iter().flatten() {
            preds[t].0 = true;
            preds[t].1 |= bi >= t;
        }
    }
    preds
}
