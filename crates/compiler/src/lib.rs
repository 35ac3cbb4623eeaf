//! kiln's EVM compiler: bytecode analysis ([`analysis`]), lowering to LLVM IR, and two back ends:
//! in-process JIT ([`JitFunction`]) and ahead-of-time shared libraries ([`aot`]).
//!
//! ```text
//! bytecode ──analyze──> blocks + sections ──lower──> LLVM IR ──opt──> JIT memory | .o -> .so
//! ```
//!
//! The compiled function has the signature [`kiln_builtins::CompiledFn`]. See `crates/evm` for the
//! dispatcher that calls it.

#![warn(missing_docs)]

pub mod analysis;
pub mod aot;
mod coverage;
mod exit_guard;
pub mod family;
mod jit;
mod lower;

pub use coverage::Coverage;
pub use jit::{compile_object, link_jit_object, next_entry_name, JitFunction};

use inkwell::{
    context::Context,
    memory_buffer::MemoryBuffer,
    module::Module,
    passes::PassBuilderOptions,
    targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine},
    OptimizationLevel,
};
use lower::{Linking, LowerOptions};
use revm::primitives::hardfork::SpecId;
use std::sync::OnceLock;

/// The version of the compiler's output. Part of every artifact key: artifacts built by another
/// version are never loaded.
pub const COMPILER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+abi4");

/// The newest spec the compiler supports. Frames of newer specs stay on the interpreter.
pub const MAX_SPEC: SpecId = SpecId::OSAKA;

/// Largest bytecode accepted by default: 2 x the EIP-7907 proposed limit, well above mainnet's
/// 24 KiB, so that init code (up to 48 KiB) compiles.
pub const DEFAULT_MAX_CODE_SIZE: usize = 128 * 1024;

/// Name of the compiled function inside an AOT library.
pub const AOT_ENTRY_SYMBOL: &str = "kiln_entry";

/// Why a compilation did not produce code.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The code is empty; there is nothing to compile (the frame stops immediately).
    #[error("empty bytecode")]
    Empty,
    /// The code is larger than the configured limit.
    #[error("bytecode of {size} bytes exceeds the compile limit of {limit} bytes")]
    TooLarge {
        /// Code size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The spec is newer than the compiler supports.
    #[error("spec {0:?} is not supported by this compiler (newest: {MAX_SPEC:?})")]
    UnsupportedSpec(SpecId),
    /// The code is EOF or an EIP-7702 delegation, not legacy bytecode.
    #[error("not legacy bytecode: {0}")]
    NotLegacy(&'static str),
    /// LLVM reported an error.
    #[error("LLVM: {0}")]
    Llvm(String),
    /// A file or process operation of AOT linking failed.
    #[error("AOT: cannot {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The linker rejected the object file.
    #[error("AOT: {linker} -shared failed: {stderr}")]
    Link {
        /// The linker that ran.
        linker: String,
        /// What it printed.
        stderr: String,
    },
    /// A shared library could not be loaded, or lacks the entry symbol.
    #[error("AOT: cannot load {}", path.display())]
    Load {
        /// The library.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: libloading::Error,
    },
    /// A compilation mode that cannot be used as asked.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The code's control flow is larger than the compile budget allows.
    #[error("{blocks} basic blocks exceed the compile budget of {limit}")]
    TooComplex {
        /// Basic blocks in the code.
        blocks: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Too many JUMPDESTs reachable by a dynamic jump: every one is an entry of the dynamic-jump
    /// switch, all in one loop, and LLVM's block placement grows faster than quadratically in
    /// them.
    #[error("{targets} dynamic jump targets exceed the compile budget of {limit}")]
    TooManyJumpTargets {
        /// JUMPDESTs in code that has a dynamic jump.
        targets: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The code exceeds one of the other compile budgets ([`CompileOptions`]): gas sections (each
    /// a bail-out edge and, for host calls, a call site) or 256-bit multiplications and divisions
    /// (each expands to dozens of machine instructions).
    #[error("{count} {what} exceed the compile budget of {limit}")]
    OverBudget {
        /// What was counted.
        what: &'static str,
        /// How many the code has.
        count: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The code cannot loop and does too little inline work for compiled code to beat the
    /// interpreter (see [`analysis::StraightLine`]); only with
    /// [`CompileOptions::skip_unprofitable`].
    #[error(
        "straight-line code with {} inline instructions, {} host calls and {} calls would run \
         slower compiled than interpreted", .0.inline_ops, .0.host_calls, .0.suspends
    )]
    Unprofitable(analysis::StraightLine),
    /// An invariant of the compiler itself was broken.
    #[error("internal compiler error: {0}")]
    Internal(String),
    /// The process is exiting: LLVM's global state is being destroyed, so nothing compiles.
    #[error("the process is exiting; compilation refused")]
    Exiting,
}

/// LLVM optimisation level.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum OptLevel {
    /// No optimisation (fastest compile).
    O0,
    /// Light optimisation.
    O1,
    /// The default.
    #[default]
    O2,
    /// Aggressive optimisation.
    O3,
    /// The baseline tier: no 256-bit value in the IR (every arithmetic opcode is a call on
    /// stack slots, every stack value lives in revm's stack buffer), no optimisation, FastISel.
    /// Compiles several times faster than `O0` for code that runs at interpreter-plus speed; see
    /// [`kiln_builtins::words`].
    Baseline,
}

impl OptLevel {
    fn llvm(self) -> OptimizationLevel {
        match self {
            OptLevel::O0 | OptLevel::Baseline => OptimizationLevel::None,
            OptLevel::O1 => OptimizationLevel::Less,
            OptLevel::O2 => OptimizationLevel::Default,
            OptLevel::O3 => OptimizationLevel::Aggressive,
        }
    }

    fn pipeline(self) -> &'static str {
        match self {
            OptLevel::O0 | OptLevel::Baseline => "default<O0>",
            OptLevel::O1 => "default<O1>",
            OptLevel::O2 => "default<O2>",
            OptLevel::O3 => "default<O3>",
        }
    }
}

impl std::str::FromStr for OptLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_start_matches(['O', 'o']) {
            "0" => Ok(Self::O0),
            "1" => Ok(Self::O1),
            "2" => Ok(Self::O2),
            "3" => Ok(Self::O3),
            "baseline" | "b" => Ok(Self::Baseline),
            _ => Err(format!(
                "unknown optimisation level {s:?} (expected 0-3 or baseline)"
            )),
        }
    }
}

/// A deliberate miscompilation, for proving that the differential fuzzer finds bugs. Never set
/// outside tests and `kiln fuzz --inject-fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fault {
    /// Charge `delta` more (or less) static gas for every `opcode`.
    StaticGas {
        /// The opcode whose cost is wrong.
        opcode: u8,
        /// Added to its static cost (wrapping at zero).
        delta: i64,
    },
    /// Lower LT as GT.
    FlipLt,
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `gas:<opcode hex>:<delta>` or `flip-lt`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "flip-lt" {
            return Ok(Fault::FlipLt);
        }
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["gas", op, delta] => Ok(Fault::StaticGas {
                opcode: u8::from_str_radix(op.trim_start_matches("0x"), 16)
                    .map_err(|e| format!("opcode: {e}"))?,
                delta: delta.parse().map_err(|e| format!("delta: {e}"))?,
            }),
            _ => Err(format!(
                "unknown fault {s:?} (expected gas:<opcode hex>:<delta> or flip-lt)"
            )),
        }
    }
}

/// Compiler options.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct CompileOptions {
    /// LLVM optimisation level.
    pub opt_level: OptLevel,
    /// Charge gas. Turning it off is only for trusted re-execution of known-good blocks; it is
    /// never the default.
    pub gas_metering: bool,
    /// Emit run-time checks of the compiler's own invariants (traps on violation).
    pub debug_assertions: bool,
    /// Refuse code larger than this.
    pub max_code_size: usize,
    /// Refuse code with more basic blocks than this (LLVM's code generation grows faster than
    /// linearly in them, whether they are small loops or call resume points). Counts
    /// cold blocks too, as `max_dynamic_targets` counts cold JUMPDESTs (each is still a block or
    /// a switch case); the section and wide-arithmetic budgets count compiled code only.
    pub max_blocks: usize,
    /// Refuse code with a dynamic jump and more JUMPDESTs than this
    /// ([`CompileError::TooManyJumpTargets`]).
    pub max_dynamic_targets: usize,
    /// Refuse code with more gas sections than this: each is a bail-out edge to the shared
    /// hand-over block and, for a host call, a call site, and code generation grows faster than
    /// linearly in them.
    pub max_sections: usize,
    /// Refuse code with more MUL/DIV/SDIV/MOD/SMOD/ADDMOD/MULMOD/EXP than this: each expands to
    /// dozens of machine instructions, so long chains of them take LLVM longer than the code
    /// could save. The heaviest real contract measured stays below it.
    pub max_wide_arith: usize,
    /// At the baseline tier, refuse code whose [`analysis::Analysis::baseline_cost`] exceeds
    /// this, which bounds the baseline tier's compile time; the tiered runtime then compiles
    /// it at the default level, whose virtual stack and constant folding make such code cheap.
    /// Deployed contracts (at most 24 KiB) stay well below it.
    pub baseline_max_cost: usize,
    /// Above this many basic blocks, skip LLVM's optimisation passes (see [`Pipeline`]).
    pub optimize_max_blocks: usize,
    /// Above this many gas sections, use the lean pass pipeline instead of the loop one
    /// (see [`Pipeline`]).
    pub full_opt_max_sections: usize,
    /// Up to this many basic blocks, static edges pass the target block's entry stack slots in
    /// registers (phis) instead of through revm's stack buffer. That pays on tight loops
    /// (fibonacci, factorial), whose values then stay in registers around the loop; in large
    /// functions the values live across many blocks, which makes greedy register allocation
    /// much slower for no measurable run-time gain.
    pub pass_slots_max_blocks: usize,
    /// Refuse loop-free code whose compiled form would not beat the interpreter
    /// ([`CompileError::Unprofitable`]). Off by default, so that asking for a compilation
    /// compiles; execution paths that choose what to compile (the bench, the hot-code compiler)
    /// turn it on.
    pub skip_unprofitable: bool,
    /// A deliberate miscompilation (tests of the fuzzer only).
    #[doc(hidden)]
    pub fault: Option<Fault>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            opt_level: OptLevel::O2,
            gas_metering: true,
            debug_assertions: false,
            max_code_size: DEFAULT_MAX_CODE_SIZE,
            max_blocks: 2048,
            max_dynamic_targets: 1024,
            max_sections: 4096,
            max_wide_arith: 2048,
            baseline_max_cost: 32_768,
            optimize_max_blocks: 2048,
            full_opt_max_sections: 64,
            pass_slots_max_blocks: 64,
            skip_unprofitable: false,
            fault: None,
        }
    }
}

/// What `kiln compile --emit` can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Optimised LLVM IR, as text.
    Ir,
    /// Native assembly, as text.
    Asm,
    /// A relocatable object file.
    Obj,
    /// A loadable shared library.
    So,
}

pub(crate) fn init_llvm() -> Result<(), CompileError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        // The machine scheduler builds a dependence graph per scheduling region that is
        // quadratic in its memory operations; EVM blocks lowered to straight-line code can hold
        // thousands. Out-of-order x86 cores gain little from it. Store merging in the DAG
        // combiner is quadratic in adjacent stores the same way (a block that leaves 1,000
        // values on the stack writes 4,000 adjacent words).
        // The greedy register allocator's region splitting grows each region over the CFG with
        // a budget of 10,000 edge visits per live range; a large contract is one function of
        // thousands of blocks with values (the context, the stack base) live across all of
        // them, so growing regions is a large part of a large contract's code generation. A
        // budget of 1,000 compiles large contracts faster, and their code runs as fast.
        // Loop strength reduction (a code-generation IR pass) builds scalar evolutions of the
        // 256-bit induction variables and rewrites them into the same loops: a noticeable part
        // of the compile time of small loops, for code that runs no faster.
        // Machine LICM hoists every rematerialisable constant (zeroes, call arguments) out of
        // any loop into its preheader, trusting the register allocator to sink them again: in a
        // large contract that makes a few values with thousands of uses, which the coalescer
        // then rematerialises copy by copy (quadratic). The allocator does put them back, so
        // without the pass the code is the same and that work is gone. Small functions that
        // loop have had IR-level LICM already (see [`Pipeline`]).
        // Extra LLVM options for experiments (e.g. `-regalloc=basic`), never needed in normal
        // use; they come last, and LLVM keeps an option's last value, so they can replace a
        // default.
        let extra = std::env::var("KILN_LLVM_ARGS").unwrap_or_default();
        if !extra.trim().is_empty() {
            tracing::info!(options = %extra.trim(), "extra LLVM options from KILN_LLVM_ARGS");
        }
        let args: Vec<std::ffi::CString> = [
            "kiln",
            "-enable-misched=false",
            "-enable-post-misched=false",
            "-combiner-store-merging=false",
            "-grow-region-complexity-budget=1000",
            "-disable-lsr",
            "-disable-machine-licm",
        ]
        .into_iter()
        .chain(extra.split_whitespace())
        .map(|a| std::ffi::CString::new(a).expect("no NUL in option"))
        .collect();
        let argv: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: argv holds valid NUL-terminated strings that outlive the call, and this runs
        // once, before any other LLVM use in this process. The C API parses with its error
        // stream discarded, so an option LLVM does not know (a misspelt `KILN_LLVM_ARGS`) is
        // ignored rather than ending the process.
        unsafe {
            llvm_sys::support::LLVMParseCommandLineOptions(
                argv.len() as i32,
                argv.as_ptr(),
                std::ptr::null(),
            )
        };
        Target::initialize_native(&InitializationConfig::default())
    })
    .clone()
    .map_err(CompileError::Llvm)
}

/// What a target machine is configured for: code generation differs only in these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CodegenKey {
    opt: OptLevel,
    /// Select instructions with FastISel where it can, SelectionDAG elsewhere.
    fast_isel: bool,
}

impl CodegenKey {
    /// The code generation `analysis`'s function gets on `pipeline` under `opts`.
    fn of(opts: &CompileOptions, pipeline: Pipeline, analysis: &analysis::Analysis) -> Self {
        Self {
            opt: opts.opt_level,
            fast_isel: pipeline.fast_isel(analysis),
        }
    }
}

thread_local! {
    /// Building a target machine costs milliseconds (feature tables, lowering tables), which
    /// would dominate compiling a small contract; each thread keeps one per configuration.
    static TARGET_MACHINES: std::cell::RefCell<std::collections::HashMap<CodegenKey, std::rc::Rc<TargetMachine>>> =
        Default::default();
}

/// This thread's host target machine for `key`.
fn host_target_machine(key: CodegenKey) -> Result<std::rc::Rc<TargetMachine>, CompileError> {
    TARGET_MACHINES.with(|tms| {
        if let Some(tm) = tms.borrow().get(&key) {
            return Ok(tm.clone());
        }
        let tm = new_host_target_machine(key.opt)?;
        if key.fast_isel {
            // SAFETY: `tm` is a valid target machine owned here; the setter only flips an
            // option that code generation reads.
            unsafe { llvm_sys::target_machine::LLVMSetTargetMachineFastISel(tm.as_mut_ptr(), 1) };
        }
        let tm = std::rc::Rc::new(tm);
        tms.borrow_mut().insert(key, tm.clone());
        Ok(tm)
    })
}

/// A target machine for the host's architecture, position independent so that objects link
/// into shared libraries (AOT) and wherever the JIT's linker places them.
///
/// It targets the architecture's baseline CPU, not the host's model (as the JIT's MCJIT
/// engines did before the JIT moved to ORC and this machine). On an AVX-512 host the host
/// model's vector registers made greedy register allocation of the 256-bit words several times
/// slower, and the code no faster. The artifacts also run on any CPU of the architecture.
fn new_host_target_machine(opt: OptLevel) -> Result<TargetMachine, CompileError> {
    init_llvm()?;
    let triple = TargetMachine::get_default_triple();
    let target = Target::from_triple(&triple).map_err(|e| CompileError::Llvm(e.to_string()))?;
    target
        .create_target_machine(
            &triple,
            "generic",
            "",
            opt.llvm(),
            RelocMode::PIC,
            CodeModel::Default,
        )
        .ok_or_else(|| CompileError::Llvm(format!("no target machine for {triple}")))
}

/// The target description that goes into artifact keys: triple and CPU.
pub fn host_target_id() -> String {
    let triple = TargetMachine::get_default_triple();
    let cpu = TargetMachine::get_host_cpu_name();
    format!(
        "{}-{}",
        triple.as_str().to_string_lossy(),
        cpu.to_string_lossy()
    )
}

/// Opcodes whose 256-bit lowering is large (a multiplication or a division).
fn is_wide_arith(op: u8) -> bool {
    use revm::bytecode::opcode::*;
    matches!(op, MUL | DIV | SDIV | MOD | SMOD | ADDMOD | MULMOD | EXP)
}

/// Validates `code` and `spec` before any LLVM work.
fn check_input(code: &[u8], spec: SpecId, opts: &CompileOptions) -> Result<(), CompileError> {
    if code.is_empty() {
        return Err(CompileError::Empty);
    }
    if code.len() > opts.max_code_size {
        return Err(CompileError::TooLarge {
            size: code.len(),
            limit: opts.max_code_size,
        });
    }
    if code.starts_with(&[0xEF, 0x01, 0x00]) {
        return Err(CompileError::NotLegacy("EIP-7702 delegation designator"));
    }
    if !MAX_SPEC.is_enabled_in(spec) {
        return Err(CompileError::UnsupportedSpec(spec));
    }
    Ok(())
}

/// [`CompileError::OverBudget`] when `count` of `what` exceeds `limit`.
fn within_budget(what: &'static str, count: usize, limit: usize) -> Result<(), CompileError> {
    if count > limit {
        return Err(CompileError::OverBudget { what, count, limit });
    }
    Ok(())
}

/// Builds and optimises the module for `code` in `cx`; with `coverage`, only the blocks it
/// entered are compiled (see [`Coverage`]); the PUSHes at `params` are read from the running
/// code (see [`family`]).
#[allow(clippy::too_many_arguments)]
fn build_module<'ctx>(
    cx: &'ctx Context,
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
    params: &[u32],
    linking: Linking,
    entry: &str,
) -> Result<Built<'ctx>, CompileError> {
    check_input(code, spec, opts)?;
    let mut analysis = analysis::analyze(code, spec);
    analysis
        .set_params(params)
        .map_err(|e| CompileError::Internal(format!("family parameters: {e}")))?;
    if let Some(Fault::StaticGas { opcode, delta }) = opts.fault {
        analysis.inject_gas_fault(opcode, delta);
    }
    if let Some(coverage) = coverage {
        let cold = analysis.apply_coverage(coverage);
        tracing::debug!(cold, blocks = analysis.blocks.len(), "profile applied");
    }
    let blocks = analysis.blocks.len();
    if blocks > opts.max_blocks {
        return Err(CompileError::TooComplex {
            blocks,
            limit: opts.max_blocks,
        });
    }
    within_budget(
        "gas sections",
        analysis.hot_section_count(),
        opts.max_sections,
    )?;
    if opts.opt_level == OptLevel::Baseline {
        within_budget(
            "baseline instruction units",
            analysis.baseline_cost(),
            opts.baseline_max_cost,
        )?;
    }
    within_budget(
        "256-bit multiplications and divisions",
        analysis.hot_insts().filter(|i| is_wide_arith(i.op)).count(),
        opts.max_wide_arith,
    )?;
    if analysis.has_dynamic_jumps && analysis.jumpdests.len() > opts.max_dynamic_targets {
        return Err(CompileError::TooManyJumpTargets {
            targets: analysis.jumpdests.len(),
            limit: opts.max_dynamic_targets,
        });
    }
    if opts.skip_unprofitable {
        if let Some(line) = analysis.straight_line().filter(|l| !l.pays_off()) {
            return Err(CompileError::Unprofitable(line));
        }
    }
    let pipeline = Pipeline::choose(opts, &analysis);
    let codegen = CodegenKey::of(opts, pipeline, &analysis);
    tracing::debug!(
        ?pipeline,
        blocks,
        fast_isel = codegen.fast_isel,
        "optimisation pipeline"
    );
    let tm = host_target_machine(codegen)?;
    let module = cx.create_module("kiln");
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    let lower_opts = LowerOptions {
        gas_metering: opts.gas_metering,
        debug_assertions: opts.debug_assertions,
        linking,
        flip_lt: opts.fault == Some(Fault::FlipLt),
        baseline: opts.opt_level == OptLevel::Baseline,
        pass_entry_slots: opts.opt_level != OptLevel::Baseline
            && analysis.hot_block_count() <= opts.pass_slots_max_blocks,
    };
    lower::lower(cx, &module, &analysis, entry, lower_opts)?;
    module
        .verify()
        .map_err(|e| CompileError::Internal(format!("invalid IR: {}", e.to_string())))?;
    // `default<O0>` would only run passes this IR does not need (always-inline, annotation
    // and allocation-token passes, ...), a fixed cost that is visible in a baseline
    // compilation.
    if pipeline != Pipeline::None {
        module
            .run_passes(pipeline.passes(), &tm, PassBuilderOptions::create())
            .map_err(|e| CompileError::Llvm(e.to_string()))?;
    }
    Ok(Built { module, tm })
}

/// An optimised module and the target machine that generates its code.
struct Built<'ctx> {
    module: Module<'ctx>,
    tm: std::rc::Rc<TargetMachine>,
}

impl Built<'_> {
    /// Native code for the module: an object file or assembly text.
    fn emit(&self, file_type: FileType) -> Result<MemoryBuffer<'_>, CompileError> {
        self.tm
            .write_to_memory_buffer(&self.module, file_type)
            .map_err(|e| CompileError::Llvm(e.to_string()))
    }
}

/// The LLVM middle-end pipeline a function gets.
///
/// Small functions (up to `full_opt_max_sections` gas sections) at the default level get a
/// scalar pipeline with one loop pass group (loop rotation and LICM): the part of LLVM's
/// `default<O2>` that pays on EVM loops, whose bodies reload the stack pointer and gas and
/// recompute the stack base each iteration. The rest of `default<O2>` (the inliner and
/// interprocedural passes, vectorizers, unrolling, a dozen analyses built per function) is
/// fixed work per function that a contract, one function calling only external builtins, does
/// not use: leaving it out compiles small contracts faster, and their code runs as fast.
/// Without the loop passes, loops run slower. `--opt-level 1` and `3` keep LLVM's
/// `default<O1>`/`default<O3>` for small functions.
///
/// Larger functions get a lean scalar pipeline: SROA, early CSE, instcombine,
/// CFG simplification, GVN and dead-store elimination, with no loop passes and no inliner (a
/// compiled contract is one function that calls only external builtins). On large contracts
/// their code runs as fast as under the small functions' pipeline, and compiles faster. Lean
/// functions also select instructions with FastISel, which handles the 64-bit bookkeeping (gas,
/// stack pointer, memory bounds) and leaves the 256-bit arithmetic to SelectionDAG: large
/// contracts compile faster again, and run as fast. Small functions keep SelectionDAG where they
/// loop (a cycle of static edges, [`analysis::Analysis::has_static_loop`]): FastISel made the
/// loops slower for no compile-time gain. Loop-free small functions (a contract's dispatcher and
/// straight-line methods) use FastISel too: they compile faster and run as fast.
///
/// The lean pipeline also bounds compile time: every section's bail-out edge leaves any loop it
/// sits in, so a loop body with `n` sections has `n` exits, and LCSSA (run before every loop
/// pass) inserts phis for each value at each exit it dominates, quadratic in `n`.
///
/// Above `optimize_max_blocks` jump targets even the lean pipeline grows faster than linearly
/// (the shared dynamic-jump switch has an edge to every JUMPDEST), so such code gets no
/// middle-end passes at all; instruction selection stays linear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// No optimisation (`--opt-level 0`).
    None,
    /// Scalar clean-up without loop passes, for larger functions.
    Lean,
    /// Scalar clean-up with loop rotation and LICM, for small functions at the default level.
    Loops,
    /// LLVM's `default<On>` pipeline, for small functions at `--opt-level 1` or `3`.
    Full(OptLevel),
}

impl Pipeline {
    /// Picks the pipeline for `analysis` under `opts`.
    pub fn choose(opts: &CompileOptions, analysis: &analysis::Analysis) -> Self {
        if matches!(opts.opt_level, OptLevel::O0 | OptLevel::Baseline)
            || analysis.blocks.len() > opts.optimize_max_blocks
        {
            return Pipeline::None;
        }
        let sections = analysis.section_count();
        if sections > opts.full_opt_max_sections {
            Pipeline::Lean
        } else if opts.opt_level == OptLevel::O2 {
            Pipeline::Loops
        } else {
            Pipeline::Full(opts.opt_level)
        }
    }

    /// Whether code generation for `analysis`'s function on this pipeline uses FastISel (see
    /// the type's docs).
    fn fast_isel(self, analysis: &analysis::Analysis) -> bool {
        match self {
            Pipeline::Lean => true,
            Pipeline::Loops | Pipeline::Full(_) => !analysis.has_static_loop(),
            Pipeline::None => false,
        }
    }

    /// The pass pipeline, in `opt -passes=` syntax.
    pub fn passes(self) -> &'static str {
        match self {
            Pipeline::None => "default<O0>",
            Pipeline::Lean => {
                "function(sroa,early-cse<memssa>,instcombine<no-verify-fixpoint>,simplifycfg,gvn,dse,simplifycfg)"
            }
            Pipeline::Loops => {
                "function(sroa,early-cse<memssa>,instcombine<no-verify-fixpoint>,simplifycfg,loop-mssa(loop-rotate,licm),gvn,dse,simplifycfg)"
            }
            Pipeline::Full(level) => level.pipeline(),
        }
    }
}

/// Compiles `code` for `spec` into executable memory in this process: the whole code, or with
/// `coverage` only the blocks a profiled run entered (the others hand the frame to the
/// interpreter; see [`Coverage`]).
pub fn compile_jit(
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
) -> Result<JitFunction, CompileError> {
    jit::compile(code, spec, opts, coverage)
}

/// Compiles `code` for `spec` (all of it, or the blocks `coverage` holds, as in
/// [`compile_jit`]) and returns what `emit` asks for, as bytes.
pub fn compile_to_bytes(
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
    emit: Emit,
) -> Result<Vec<u8>, CompileError> {
    let _active = exit_guard::enter()?;
    let cx = Context::create();
    let built = build_module(
        &cx,
        code,
        spec,
        opts,
        coverage,
        &[],
        Linking::PointerTable,
        AOT_ENTRY_SYMBOL,
    )?;
    match emit {
        Emit::Ir => Ok(built.module.print_to_string().to_bytes().to_vec()),
        Emit::Asm => Ok(built.emit(FileType::Assembly)?.as_slice().to_vec()),
        Emit::Obj => Ok(built.emit(FileType::Object)?.as_slice().to_vec()),
        Emit::So => aot::link_shared(built.emit(FileType::Object)?.as_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_input_with_reasons() {
        let o = CompileOptions::default();
        assert!(matches!(
            compile_jit(&[], SpecId::CANCUN, &o, None),
            Err(CompileError::Empty)
        ));
        let big = vec![0x5b; o.max_code_size + 1];
        assert!(matches!(
            compile_jit(&big, SpecId::CANCUN, &o, None),
            Err(CompileError::TooLarge { .. })
        ));
        assert!(matches!(
            compile_jit(&[0x00], SpecId::AMSTERDAM, &o, None),
            Err(CompileError::UnsupportedSpec(_))
        ));
        let muls = [0x5f, 0x35]
            .iter()
            .copied()
            .chain([0x80, 0x02].repeat(o.max_wide_arith + 1))
            .collect::<Vec<u8>>();
        assert!(matches!(
            compile_jit(&muls, SpecId::CANCUN, &o, None),
            Err(CompileError::OverBudget { .. })
        ));
        let sloads = [0x5f, 0x54, 0x50].repeat(o.max_sections + 1);
        assert!(matches!(
            compile_jit(&sloads, SpecId::CANCUN, &o, None),
            Err(CompileError::OverBudget { .. })
        ));
        // A dynamic jump over more JUMPDESTs than the budget.
        let mut dense = vec![0x5f, 0x35, 0x56];
        dense.extend(vec![0x5b; o.max_dynamic_targets + 1]);
        assert!(matches!(
            compile_jit(&dense, SpecId::CANCUN, &o, None),
            Err(CompileError::TooManyJumpTargets { targets, .. }) if targets == o.max_dynamic_targets + 1
        ));
    }

    #[test]
    fn unprofitable_straight_line_code_is_refused_only_when_asked() {
        let skip = CompileOptions {
            skip_unprofitable: true,
            ..Default::default()
        };
        // A forwarding proxy: CALLDATACOPY, DELEGATECALL, RETURNDATACOPY, RETURN.
        let proxy = revm::primitives::hex::decode("365f5f375f5f365f73bebebebebebebebebebebebebebebebebebebebe5af43d5f5f3e5f3d91602a57fd5bf3")
            .unwrap();
        let line = analysis::analyze(&proxy, SpecId::CANCUN)
            .straight_line()
            .expect("loop-free");
        assert_eq!((line.host_calls, line.suspends), (7, 1));
        assert!(
            matches!(compile_jit(&proxy, SpecId::CANCUN, &skip, None), Err(CompileError::Unprofitable(l)) if l == line)
        );
        assert!(compile_jit(&proxy, SpecId::CANCUN, &CompileOptions::default(), None).is_ok());
        // The same host calls inside a loop (a backward jump) always compile.
        let mut looped = vec![0x5b];
        looped.extend_from_slice(&proxy[..proxy.len() - 1]);
        looped.extend_from_slice(&[0x5f, 0x56]);
        assert_eq!(
            analysis::analyze(&looped, SpecId::CANCUN).straight_line(),
            None
        );
        assert!(compile_jit(&looped, SpecId::CANCUN, &skip, None).is_ok());
        // Long straight-line arithmetic pays off.
        let arith = [0x60, 7, 0x80, 0x01]
            .repeat(40)
            .into_iter()
            .chain([0x00])
            .collect::<Vec<u8>>();
        assert!(analysis::analyze(&arith, SpecId::CANCUN)
            .straight_line()
            .unwrap()
            .pays_off());
        assert!(compile_jit(&arith, SpecId::CANCUN, &skip, None).is_ok());
    }

    #[test]
    fn pipeline_follows_the_size_budgets() {
        let o = CompileOptions::default();
        let o3 = CompileOptions {
            opt_level: OptLevel::O3,
            ..o
        };
        let small = analysis::analyze(&[0x60, 1, 0x60, 2, 0x01, 0x00], SpecId::CANCUN);
        assert_eq!(Pipeline::choose(&o, &small), Pipeline::Loops);
        // Loop-free small code selects instructions with FastISel, a small loop does not.
        assert!(CodegenKey::of(&o, Pipeline::Loops, &small).fast_isel);
        let small_loop = analysis::analyze(&[0x5b, 0x5a, 0x60, 0, 0x57, 0x00], SpecId::CANCUN);
        assert_eq!(Pipeline::choose(&o, &small_loop), Pipeline::Loops);
        assert!(!CodegenKey::of(&o, Pipeline::Loops, &small_loop).fast_isel);
        assert_eq!(Pipeline::choose(&o3, &small), Pipeline::Full(OptLevel::O3));
        assert_eq!(
            Pipeline::choose(
                &CompileOptions {
                    opt_level: OptLevel::O0,
                    ..o
                },
                &small
            ),
            Pipeline::None
        );
        // `GAS GAS TSTORE` repeated: every opcode ends a gas section, in one basic block.
        let sections = analysis::analyze(
            &[0x5a, 0x5a, 0x5d].repeat(o.full_opt_max_sections),
            SpecId::CANCUN,
        );
        assert_eq!(sections.blocks.len(), 1);
        assert_eq!(Pipeline::choose(&o, &sections), Pipeline::Lean);
        assert_eq!(Pipeline::choose(&o3, &sections), Pipeline::Lean);
        assert!(CodegenKey::of(&o, Pipeline::Lean, &sections).fast_isel);
        // A dynamic jump makes every JUMPDEST a block.
        let mut jumps = vec![0x5f, 0x35, 0x56];
        jumps.extend([0x5b, 0x50].repeat(o.optimize_max_blocks + 1));
        assert_eq!(
            Pipeline::choose(&o, &analysis::analyze(&jumps, SpecId::CANCUN)),
            Pipeline::None
        );
    }

    #[test]
    fn emits_ir_with_the_entry_symbol() {
        let ir = compile_to_bytes(
            &[0x60, 1, 0x60, 2, 0x01, 0x00],
            SpecId::CANCUN,
            &CompileOptions::default(),
            None,
            Emit::Ir,
        )
        .unwrap();
        let ir = String::from_utf8(ir).unwrap();
        assert!(ir.contains(AOT_ENTRY_SYMBOL), "{ir}");
    }

    /// Code over the baseline tier's budget is refused before any LLVM work, with the reason.
    #[test]
    fn baseline_budget_counts_stack_shuffles() {
        use revm::bytecode::opcode::*;
        let o = CompileOptions {
            opt_level: OptLevel::Baseline,
            ..Default::default()
        };
        let mut code = vec![PUSH0, PUSH0];
        code.extend(std::iter::repeat_n(SWAP1, o.baseline_max_cost / 4 + 1));
        assert!(matches!(
            compile_to_bytes(&code, SpecId::CANCUN, &o, None, Emit::Ir),
            Err(CompileError::OverBudget {
                what: "baseline instruction units",
                ..
            })
        ));
        // As many PUSH0s, one unit each, are under it.
        let cheap = vec![PUSH0; o.baseline_max_cost / 4 + 1];
        assert!(compile_to_bytes(&cheap, SpecId::CANCUN, &o, None, Emit::Ir).is_ok());
    }

    /// The baseline tier's IR holds no 256-bit value (only 256-bit strides into the stack), so
    /// that FastISel selects all of it; and it uses no middle-end passes.
    #[test]
    fn baseline_ir_has_no_wide_values() {
        use revm::bytecode::opcode::*;
        let o = CompileOptions {
            opt_level: OptLevel::Baseline,
            ..Default::default()
        };
        // Every inline opcode, a memory access, a value builtin, a division, a dynamic jump.
        let mut code = vec![PUSH1, 7, PUSH1, 9, DUP2, DUP2];
        for op in [
            ADD, MUL, SUB, LT, GT, SLT, SGT, EQ, AND, OR, XOR, BYTE, SHL, SHR, SAR, SIGNEXTEND, DIV,
        ] {
            code.extend([op, DUP2, DUP2]);
        }
        code.extend([
            ISZERO, NOT, CLZ, SWAP1, POP, GAS, PC, CALLVALUE, PUSH0, MSTORE,
        ]);
        code.extend([
            PUSH0,
            MLOAD,
            JUMPDEST,
            PUSH1,
            2,
            JUMPI,
            CALLDATASIZE,
            JUMP,
            JUMPDEST,
        ]);
        let ir = compile_to_bytes(&code, SpecId::OSAKA, &o, None, Emit::Ir).unwrap();
        let ir = String::from_utf8(ir).unwrap();
        fn wide(ir: &str) -> Vec<&str> {
            ir.lines()
                .filter(|l| l.contains("i256"))
                .filter(|l| !l.contains("getelementptr i256") && !l.contains("alloca i256"))
                .collect()
        }
        assert!(wide(&ir).is_empty(), "{:#?}", wide(&ir));
        assert!(
            ir.contains("kiln_w_signextend") && ir.contains("indirectbr"),
            "{ir}"
        );
        let analysis = analysis::analyze(&code, SpecId::OSAKA);
        assert_eq!(Pipeline::choose(&o, &analysis), Pipeline::None);
        // The default level keeps its 256-bit values in registers.
        let ir = compile_to_bytes(&code, SpecId::OSAKA, &Default::default(), None, Emit::Ir);
        assert!(!wide(&String::from_utf8(ir.unwrap()).unwrap()).is_empty());
    }
}
