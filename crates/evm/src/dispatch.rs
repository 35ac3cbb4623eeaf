//! Running one frame: compiled code when the registry has it, revm's interpreter otherwise.

use kiln_builtins::{
    with_slot_cache, CompiledFn, KilnCtx, STATUS_COLD_CODE, STATUS_CONTINUE_IN_INTERPRETER,
};
use kiln_compiler::Coverage;
use kiln_runtime::{
    BlockId, BlockUsage, CodeUsage, CompiledCode, Lookup, Profile, Runtime, RuntimeStats,
};
use revm::primitives::B256;
use revm::{
    interpreter::{
        interpreter::{EthInterpreter, STACK_LIMIT},
        interpreter_action::FrameInput,
        interpreter_types::{Jumps, LoopControl},
        GasTable, Host, InstructionResult, InstructionTable, Interpreter, InterpreterAction,
    },
    primitives::hardfork::SpecId,
};
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::sync::{atomic::Ordering, Arc};

/// Compiled functions one EVM has already found in the [`Runtime`], so that its later frames of
/// the same code take no lock and no reference-count traffic (a measurable share of a small
/// contract's frame). Code that never runs compiled (a failed or refused compilation) is kept as
/// `None`; code not compiled yet is not kept, since a background compile may fill it in.
///
/// Before each transaction the cache forgets what it found when the runtime's
/// [`Runtime::epoch`] has moved (a promotion landed, an entry was inserted, removed or sent back
/// to profiling), so a long-lived EVM runs what the registry holds now; and, while it holds
/// baseline code waiting for promotion, every [`TIERED_RELOOKUP_TRANSACTIONS`] transactions, so
/// that its use of that code counts towards promotion as a new EVM's would.
#[derive(Debug)]
pub struct FrameCache {
    /// The runtime whose counters this cache's frames add to.
    runtime: Arc<Runtime>,
    hits: FxHashMap<(B256, SpecId), Option<Arc<CompiledCode>>>,
    /// The function each live frame started on, by frame depth: a frame resumed after a call
    /// finds it here instead of hashing its code key again (a proxy's frame runs twice per
    /// transaction). The `Arc` in `hits` keeps each function alive.
    by_depth: Vec<Option<CompiledFn>>,
    /// The live frames (by depth) whose code is being profiled, in depth order; kept apart from
    /// `by_depth` so that frames of compiled code pay nothing for profiling.
    profiling: Vec<(usize, Arc<Profile>)>,
    /// The last code key looked up in `hits` and its answer: consecutive frames often run the
    /// same code (a loop of calls into one contract), and comparing one hash is cheaper than
    /// hashing it.
    last: Option<((B256, SpecId), Option<CompiledFn>)>,
    /// Frame counters not yet added to the runtime's. A shared atomic per frame was a
    /// measurable part of a small contract's frame, and even one per transaction was 0.6% of
    /// uniswap_v2_pair's `getReserves` (a locked add waits for every store before it), so they
    /// are added once [`STATS_BATCH`] frames have gathered, and when the cache is dropped.
    compiled_frames: u64,
    interpreted_frames: u64,
    handoffs: u64,
    /// Hand-overs at cold code, by code (rare: only profile-guided functions have cold code).
    cold_handoffs: FxHashMap<(B256, SpecId), u64>,
    /// The runtime's epoch when `hits` was last emptied.
    epoch: u64,
    /// Transactions since `hits` was last emptied.
    transactions: u64,
    /// Whether the runtime's policy is tiered (it never changes).
    tiered: bool,
    /// Entries of `hits` that were baseline code waiting for promotion when looked up.
    baseline_held: usize,
    /// Gas and frames per code for the block being executed, when the runtime collects usage.
    tally: Option<Box<Tally>>,
    /// Codes of `hits` that were waiting for verification when looked up.
    verifying: Vec<(B256, SpecId)>,
    /// Codes waiting for verification that the current transaction's frames ran.
    candidates: Vec<(B256, SpecId)>,
}

/// One EVM's usage of each code in one block. A frame finds its code's slot once, when it
/// starts; every run of it then adds to a vector element, with no hashing and no shared write.
#[derive(Debug, Default)]
struct Tally {
    block: Option<BlockId>,
    /// The spec of the frames tallied (one per EVM).
    spec: SpecId,
    index: FxHashMap<B256, u32>,
    codes: Vec<(B256, CodeUsage)>,
    /// The slot of each live frame, by depth.
    by_depth: Vec<u32>,
}

impl Tally {
    /// Counts one frame run: `start` is whether the frame started with this run, `native`
    /// whether it ran compiled code.
    fn record(
        &mut self,
        depth: usize,
        start: bool,
        key: impl FnOnce() -> (B256, SpecId),
        gas: u64,
        native: bool,
    ) {
        let slot = if start {
            let (hash, spec) = key();
            self.spec = spec;
            let next = self.codes.len() as u32;
            let slot = *self.index.entry(hash).or_insert(next);
            if slot == next {
                self.codes.push((hash, CodeUsage::default()));
            }
            if self.by_depth.len() <= depth {
                self.by_depth.resize(depth + 1, u32::MAX);
            }
            self.by_depth[depth] = slot;
            self.codes[slot as usize].1.frames += 1;
            slot
        } else {
            match self.by_depth.get(depth) {
                Some(&slot) if slot != u32::MAX => slot,
                _ => return,
            }
        };
        if let Some((_, usage)) = self.codes.get_mut(slot as usize) {
            usage.gas += gas;
            if native {
                usage.native_gas += gas;
            }
        }
    }

    /// Hands the tally so far to the runtime and starts afresh for `next`.
    fn hand_over(&mut self, runtime: &Runtime, next: Option<BlockId>) {
        if let Some(block) = self.block {
            if !self.codes.is_empty() {
                self.index.clear();
                runtime.usage_reports().report(BlockUsage {
                    block,
                    spec: self.spec,
                    codes: std::mem::take(&mut self.codes),
                });
            }
        }
        self.block = next;
    }
}

/// Whether and why compiled code handed its frame to the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handover {
    /// It did not.
    No,
    /// At a failed check or an unknown entry pc.
    Check,
    /// At code its profile-guided compilation left out.
    Cold,
}

/// Frames a [`FrameCache`] counts before adding its counters to the runtime's.
pub const STATS_BATCH: u64 = 64;

/// Under [`kiln_runtime::CompilePolicy::Tiered`], a [`FrameCache`] that holds baseline code waiting
/// for promotion looks its codes up again after this many transactions: each such lookup counts
/// towards the promotion, so code that an EVM keeps running is promoted after about
/// `promote_after` times this many transactions, whether the EVM lives for one block or for
/// good (a builder's, a simulator's).
pub const TIERED_RELOOKUP_TRANSACTIONS: u64 = 8;

impl Drop for FrameCache {
    fn drop(&mut self) {
        self.flush_stats();
        if let Some(mut tally) = self.tally.take() {
            tally.hand_over(&self.runtime, None);
        }
    }
}

impl FrameCache {
    /// An empty cache for the EVM of `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let (runtime_epoch, tiered) = (runtime.epoch(), runtime.is_tiered());
        let tally = runtime
            .usage_reports()
            .collecting()
            .then(Box::<Tally>::default);
        Self {
            runtime,
            hits: FxHashMap::default(),
            by_depth: Vec::new(),
            profiling: Vec::new(),
            last: None,
            compiled_frames: 0,
            interpreted_frames: 0,
            handoffs: 0,
            cold_handoffs: FxHashMap::default(),
            epoch: runtime_epoch,
            transactions: 0,
            tiered,
            baseline_held: 0,
            tally,
            verifying: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// The runtime this cache looks functions up in and counts frames for.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Called before each transaction of the block `block` identifies: forgets the functions
    /// found so far when they may be out of date (see the type's documentation), and hands the
    /// usage tally over when the block changed. No frame is running here, so no frame loses the
    /// function it started in.
    #[inline]
    pub fn begin_transaction(&mut self, block: impl FnOnce() -> BlockId) {
        if !self.runtime.is_enabled() {
            return;
        }
        if let Some(tally) = &mut self.tally {
            let block = block();
            if tally.block != Some(block) {
                tally.hand_over(&self.runtime, Some(block));
            }
        }
        // Installs what the background compiler finished, so that the epoch shows it; a load
        // of a flag when nothing is pending. Only the tiered policy promotes.
        if self.tiered {
            self.runtime.apply_promotions();
        }
        self.transactions += 1;
        self.candidates.clear();
        let epoch = self.runtime.epoch();
        let relookup = self.baseline_held > 0 && self.transactions > TIERED_RELOOKUP_TRANSACTIONS;
        if epoch != self.epoch || relookup {
            self.hits.clear();
            // The functions `by_depth` points at may be freed once `hits` lets them go.
            self.by_depth.clear();
            self.last = None;
            self.verifying.clear();
            self.epoch = epoch;
            self.transactions = 1;
            self.baseline_held = 0;
        }
    }

    /// Called after each transaction: adds the frame counters to the runtime's once at least
    /// [`STATS_BATCH`] frames have gathered.
    #[inline]
    pub fn end_transaction(&mut self) {
        if self.compiled_frames + self.interpreted_frames >= STATS_BATCH {
            self.flush_stats();
        }
    }

    /// The codes waiting for verification that the last transaction's frames ran (see
    /// [`kiln_runtime::Capture`]); empties the list.
    pub fn take_candidates(&mut self) -> Vec<(B256, SpecId)> {
        std::mem::take(&mut self.candidates)
    }

    /// Adds the frame counters gathered so far to the runtime's.
    pub fn flush_stats(&mut self) {
        let stats: &RuntimeStats = &self.runtime.stats;
        for (local, shared) in [
            (&mut self.compiled_frames, &stats.compiled_frames),
            (&mut self.interpreted_frames, &stats.interpreted_frames),
            (&mut self.handoffs, &stats.handoffs),
        ] {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Ordering::Relaxed);
            }
        }
        for ((hash, spec), n) in self.cold_handoffs.drain() {
            self.runtime.note_cold_handoffs(hash, spec, n);
        }
    }

    /// The compiled function for the frame's code, if there is one; a frame of code being
    /// profiled is added to `profiling` at `depth`.
    fn lookup(
        &mut self,
        depth: usize,
        interpreter: &mut Interpreter<EthInterpreter>,
    ) -> Option<CompiledFn> {
        // Empty code stops at once; there is nothing to compile.
        if !interpreter.bytecode.is_legacy()
            || interpreter.bytecode.original_byte_slice().is_empty()
        {
            return None;
        }
        let key = (
            interpreter.bytecode.get_or_calculate_hash(),
            interpreter.runtime_flag.spec_id,
        );
        if !self.verifying.is_empty() && self.verifying.contains(&key) {
            self.note_candidate(key);
        }
        if let Some((last, f)) = self.last {
            if last == key {
                return f;
            }
        }
        let f = match self.hits.entry(key) {
            Entry::Occupied(e) => e.get().as_deref().map(CompiledCode::as_fn),
            Entry::Vacant(e) => {
                let bytecode = &interpreter.bytecode;
                match self
                    .runtime
                    .lookup(key.0, key.1, || bytecode.original_byte_slice().to_vec())
                {
                    Lookup::Ready(f) => e.insert(Some(f)).as_deref().map(CompiledCode::as_fn),
                    Lookup::Baseline(f) => {
                        self.baseline_held += 1;
                        e.insert(Some(f)).as_deref().map(CompiledCode::as_fn)
                    }
                    Lookup::Never => {
                        e.insert(None);
                        None
                    }
                    Lookup::Verifying(f) => {
                        self.verifying.push(key);
                        if !self.candidates.contains(&key) {
                            self.candidates.push(key);
                        }
                        e.insert(f).as_deref().map(CompiledCode::as_fn)
                    }
                    // Not remembered: a background compilation may fill it in.
                    Lookup::NotYet => return None,
                    // Not remembered: the profile ends in a compilation.
                    Lookup::Profile(p) => {
                        self.profiling.push((depth, p));
                        return None;
                    }
                }
            }
        };
        self.last = Some((key, f));
        f
    }

    fn note_candidate(&mut self, key: (B256, SpecId)) {
        if !self.candidates.contains(&key) {
            self.candidates.push(key);
        }
    }

    /// The function for the frame at `depth`: looked up when the frame starts (pc 0), remembered
    /// for its resumptions (a resumption is always after a call, so never at pc 0).
    fn function_for(
        &mut self,
        depth: usize,
        interpreter: &mut Interpreter<EthInterpreter>,
    ) -> Option<CompiledFn> {
        if interpreter.bytecode.pc() != 0 {
            if let Some(f) = self.by_depth.get(depth) {
                return *f;
            }
        }
        // Frames at this depth and deeper have ended.
        if !self.profiling.is_empty() {
            self.profiling.retain(|(d, _)| *d < depth);
        }
        let f = self.lookup(depth, interpreter);
        if self.by_depth.len() <= depth {
            self.by_depth.resize(depth + 1, None);
        }
        self.by_depth[depth] = f;
        f
    }

    /// The profile the interpreted frame at `depth` records into, if its code is profiled.
    #[inline]
    fn profile_for(&mut self, depth: usize) -> Option<&Profile> {
        if self.profiling.is_empty() {
            return None;
        }
        // Deeper frames have ended (this one resumed after its call returned).
        while self.profiling.last().is_some_and(|(d, _)| *d > depth) {
            self.profiling.pop();
        }
        match self.profiling.last() {
            Some((d, p)) if *d == depth => Some(p),
            _ => None,
        }
    }
}

/// Runs the frame's interpreter until it returns an action, on compiled code if the cache's
/// runtime has (or, by its policy, makes) a function for the frame's code; and, when the runtime
/// collects usage, adds the gas the frame's own instructions spent to its code's tally.
#[inline]
pub fn run_frame<H: Host>(
    cache: &mut FrameCache,
    depth: usize,
    interpreter: &mut Interpreter<EthInterpreter>,
    host: &mut H,
    table: &InstructionTable<EthInterpreter, H>,
    gas_table: &GasTable,
) -> InterpreterAction {
    if cache.tally.is_none() {
        return run_frame_untallied(cache, depth, interpreter, host, table, gas_table);
    }
    let start = interpreter.bytecode.pc() == 0;
    let before = interpreter.gas.remaining();
    let compiled_before = cache.compiled_frames;
    let action = run_frame_untallied(cache, depth, interpreter, host, table, gas_table);
    let native = cache.compiled_frames != compiled_before;
    // A call or create charges its callee's whole gas limit here; what the callee spends counts
    // for the callee's code, and what it leaves comes back before this frame runs again.
    let forwarded = match &action {
        InterpreterAction::NewFrame(FrameInput::Call(call)) => call.gas_limit,
        InterpreterAction::NewFrame(FrameInput::Create(create)) => create.gas_limit(),
        _ => 0,
    };
    let spent = before
        .saturating_sub(interpreter.gas.remaining())
        .saturating_sub(forwarded);
    if let Some(tally) = &mut cache.tally {
        let (bytecode, spec) = (&mut interpreter.bytecode, interpreter.runtime_flag.spec_id);
        tally.record(
            depth,
            start,
            || (bytecode.get_or_calculate_hash(), spec),
            spent,
            native,
        );
    }
    action
}

/// [`run_frame`] without the usage tally.
fn run_frame_untallied<H: Host>(
    cache: &mut FrameCache,
    depth: usize,
    interpreter: &mut Interpreter<EthInterpreter>,
    host: &mut H,
    table: &InstructionTable<EthInterpreter, H>,
    gas_table: &GasTable,
) -> InterpreterAction {
    if let Some(f) = cache.function_for(depth, interpreter) {
        cache.compiled_frames += 1;
        let (action, handover) = run_compiled_inner(f, interpreter, host, table, gas_table);
        if handover != Handover::No {
            cache.handoffs += 1;
            tracing::trace!(
                pc = interpreter.bytecode.pc(),
                ?handover,
                "compiled code handed the frame to the interpreter"
            );
            if handover == Handover::Cold {
                let key = (
                    interpreter.bytecode.get_or_calculate_hash(),
                    interpreter.runtime_flag.spec_id,
                );
                *cache.cold_handoffs.entry(key).or_default() += 1;
            }
        }
        return action;
    }
    cache.interpreted_frames += 1;
    if let Some(profile) = cache.profile_for(depth) {
        return interpret_recording(interpreter, host, table, gas_table, profile);
    }
    interpret(interpreter, host, table, gas_table)
}

/// revm's interpreter loop ([`Interpreter::run_plain`]) that also records the pc of every
/// instruction it executes into `profile`.
#[inline(never)]
fn interpret_recording<H: Host>(
    interpreter: &mut Interpreter<EthInterpreter>,
    host: &mut H,
    table: &InstructionTable<EthInterpreter, H>,
    gas_table: &GasTable,
    profile: &Profile,
) -> InterpreterAction {
    let mut run = Coverage::new();
    let result = loop {
        run.record(interpreter.bytecode.pc());
        if let Err(result) = interpreter.step(table, gas_table, host) {
            break result;
        }
    };
    profile.record(&run);
    if interpreter.bytecode.action().is_none() {
        interpreter.halt(result);
    }
    interpreter.take_next_action()
}

/// revm's interpreter loop, kept out of line: inlined into `run_frame` it was register-allocated
/// together with the dispatch code and ran up to 2x slower than in stock revm (factorial).
#[inline(never)]
fn interpret<H: Host>(
    interpreter: &mut Interpreter<EthInterpreter>,
    host: &mut H,
    table: &InstructionTable<EthInterpreter, H>,
    gas_table: &GasTable,
) -> InterpreterAction {
    interpreter.run_plain(table, gas_table, host)
}

/// Calls compiled code on the frame and converts its status into the frame's next action, the
/// way `Interpreter::run_plain` does for the interpreter.
pub fn run_compiled<H: Host>(
    f: CompiledFn,
    interpreter: &mut Interpreter<EthInterpreter>,
    host: &mut H,
    table: &InstructionTable<EthInterpreter, H>,
    gas_table: &GasTable,
) -> InterpreterAction {
    run_compiled_inner(f, interpreter, host, table, gas_table).0
}

/// [`run_compiled`], also telling whether (and why) the frame went on in the interpreter.
fn run_compiled_inner<H: Host>(
    f: CompiledFn,
    interpreter: &mut Interpreter<EthInterpreter>,
    host: &mut H,
    table: &InstructionTable<EthInterpreter, H>,
    gas_table: &GasTable,
) -> (InterpreterAction, Handover) {
    let stack = interpreter.stack.data_mut();
    if stack.capacity() < STACK_LIMIT {
        // Compiled code writes the stack buffer without growing it.
        return (
            interpreter.run_plain(table, gas_table, host),
            Handover::Check,
        );
    }
    let (stack_ptr, sp) = (stack.as_mut_ptr(), stack.len() as u64);
    let (mem, mem_len) = {
        let mut m = interpreter.memory.context_memory_mut();
        (m.as_mut_ptr(), m.len() as u64)
    };
    let mut cx = KilnCtx {
        stack: stack_ptr,
        sp,
        gas: interpreter.gas.remaining(),
        pc: interpreter.bytecode.pc() as u64,
        mem,
        mem_len,
        interpreter: interpreter as *mut _,
        gas_params: host.gas_params() as *const _,
        host: host as &mut dyn Host as *mut dyn Host,
        slots: std::ptr::null_mut(),
        code: interpreter.bytecode.bytecode_ptr(),
    };
    let status = with_slot_cache(|slots| {
        cx.slots = slots;
        // SAFETY: `cx` points at this frame's interpreter and host, which stay exclusively
        // borrowed for the call, and at a slot cache emptied for this stretch (or none); the
        // stack buffer has STACK_LIMIT capacity, which the compiled code's section checks never
        // exceed; `f` was compiled for this code and spec (registry key).
        unsafe { f(&mut cx) }
    });
    // SAFETY: the compiled code and builtins only count initialised slots.
    unsafe { interpreter.stack.data_mut().set_len(cx.sp as usize) };
    interpreter.gas.set_remaining(cx.gas);
    if status == STATUS_CONTINUE_IN_INTERPRETER || status == STATUS_COLD_CODE {
        interpreter.bytecode.absolute_jump(cx.pc as usize);
        let handover = if status == STATUS_COLD_CODE {
            Handover::Cold
        } else {
            Handover::Check
        };
        return (interpreter.run_plain(table, gas_table, host), handover);
    }
    let result = instruction_result(status);
    if result == InstructionResult::Suspend {
        interpreter.bytecode.absolute_jump(cx.pc as usize);
    }
    if interpreter.bytecode.action().is_none() {
        interpreter.halt(result);
    }
    (interpreter.take_next_action(), Handover::No)
}

macro_rules! results {
    ($($v:ident),* $(,)?) => {
        /// Maps a status byte from compiled code back to revm's `InstructionResult`. Unknown
        /// bytes (a compiler bug) become `FatalExternalError`, which fails the transaction
        /// loudly instead of corrupting state.
        fn instruction_result(status: u8) -> InstructionResult {
            $( if status == InstructionResult::$v as u8 { return InstructionResult::$v; } )*
            tracing::error!(status, "compiled code returned an unknown status");
            InstructionResult::FatalExternalError
        }
    };
}

results!(
    Stop,
    Return,
    SelfDestruct,
    Suspend,
    Revert,
    CallTooDeep,
    OutOfFunds,
    CreateInitCodeStartingEF00,
    InvalidEOFInitCode,
    InvalidExtDelegateCallTarget,
    OutOfGas,
    MemoryOOG,
    MemoryLimitOOG,
    PrecompileOOG,
    InvalidOperandOOG,
    ReentrancySentryOOG,
    OpcodeNotFound,
    CallNotAllowedInsideStatic,
    StateChangeDuringStaticCall,
    InvalidFEOpcode,
    InvalidJump,
    NotActivated,
    StackUnderflow,
    StackOverflow,
    OutOfOffset,
    CreateCollision,
    OverflowPayment,
    PrecompileError,
    NonceOverflow,
    CreateContractSizeLimit,
    CreateContractStartingWithEF,
    CreateInitCodeSizeLimit,
    FatalExternalError,
    InvalidImmediateEncoding,
);
