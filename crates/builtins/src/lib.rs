//! The `extern "C"` runtime that kiln's compiled EVM code calls.
//!
//! Compiled code keeps the EVM stack in revm's own stack buffer and its remaining gas in a local
//! counter. Everything it cannot (or should not) do inline goes through one of the functions here:
//! host access (SLOAD, SSTORE, BALANCE, LOG, ...), KECCAK256, EXP, memory growth and the
//! call/create suspension. They are the only place where compiled code touches Rust state.
//!
//! # The calling convention
//! Every host builtin has the signature `extern "C" fn(*mut KilnCtx) -> u8`. Before the call the
//! compiled code stores its stack height in [`KilnCtx::sp`] and its remaining gas in
//! [`KilnCtx::gas`]; the builtin syncs both into the revm [`Interpreter`], runs revm's own
//! implementation of the opcode (so dynamic gas, warm/cold accounting, refunds and halt reasons
//! are revm's, not a second copy of them) and writes the new gas back. The return value is `0` to
//! continue, otherwise the [`InstructionResult`] that ends the frame (including
//! [`InstructionResult::Suspend`] for calls and creates, which revm turns into a child frame).
//!
//! The static part of every opcode's gas is charged by the compiled code itself, from
//! [`revm::interpreter::instructions::gas_table_spec`]; revm's instruction functions charge only
//! the dynamic part, so nothing is charged twice.
//!
//! Pure arithmetic helpers that cannot fail ([`kiln_div`], [`kiln_addmod`], ...) take a pointer to
//! stack slots instead and never touch the context.
//!
//! # The list of builtins
//! [`BUILTINS`] declares each builtin once: its symbol, its [`BuiltinKind`], the opcode it
//! implements, its operand count and its typed address, from which its [`Signature`] follows.
//! The JIT's symbol map and the AOT loader ([`all_symbols`]), the compiler's choice of builtin
//! for an opcode ([`builtin_for_opcode`]) and the LLVM declaration of each call ([`by_name`],
//! [`Builtin::signature`], [`Builtin::pointer_symbol`]) all read it.

#![warn(missing_docs)]

pub mod slots;
pub mod words;
pub use slots::{with_slot_cache, SlotCache};

use revm::{
    bytecode::opcode,
    context_interface::cfg::GasParams,
    interpreter::{
        instructions::{
            arithmetic, block_info, contract, control, host, memory, stack, system, tx_info,
        },
        interpreter::EthInterpreter,
        interpreter_types::InputsTr,
        Host, InstructionContext, InstructionResult, Interpreter,
    },
    primitives::U256,
};
use std::{collections::HashMap, sync::OnceLock};

/// Status returned by compiled code (never by a builtin) when the frame must continue in the
/// interpreter from [`KilnCtx::pc`], with the stack and gas in [`KilnCtx`] exactly as the
/// interpreter would have them at that pc. Used for the cold paths of block-level checks, so that
/// the interpreter, which is the specification, decides the exact halt reason.
pub const STATUS_CONTINUE_IN_INTERPRETER: u8 = 0xFF;

/// As [`STATUS_CONTINUE_IN_INTERPRETER`], because the code at [`KilnCtx::pc`] was not compiled:
/// the profile the function was compiled from never entered it. The dispatcher counts these to
/// decide when a profile-guided function needs a wider profile.
pub const STATUS_COLD_CODE: u8 = 0xFE;

/// The signature of a host builtin.
pub type HostBuiltin = unsafe extern "C" fn(*mut KilnCtx<'static>) -> u8;
/// The signature of a pure stack builtin: operands start at the pointer (deepest first is *not*
/// the order; see each function), the result is written in place.
pub type StackBuiltin = unsafe extern "C" fn(*mut U256);
/// The signature of a compiled EVM function.
pub type CompiledFn = unsafe extern "C" fn(*mut KilnCtx<'_>) -> u8;

/// The state shared between a compiled function, its builtins and the dispatcher.
///
/// The compiled code reads and writes only the fields named by the `OFFSET_*` constants, at
/// those offsets; the layout is therefore `repr(C)` and checked by a test.
#[repr(C)]
#[derive(Debug)]
pub struct KilnCtx<'h> {
    /// Base of revm's stack buffer (capacity [`revm::interpreter::interpreter::STACK_LIMIT`]).
    pub stack: *mut U256,
    /// Number of items on the stack.
    pub sp: u64,
    /// Remaining gas.
    pub gas: u64,
    /// On entry: the pc to start or resume at. On a suspend or a hand-off to the interpreter: the
    /// pc at which the interpreter state continues.
    pub pc: u64,
    /// Base of the frame's memory (revm's shared memory, from this frame's checkpoint).
    pub mem: *mut u8,
    /// Length of the frame's memory in bytes. Builtins refresh `mem` and `mem_len` after every
    /// call, since memory growth may move the buffer.
    pub mem_len: u64,
    /// The frame's interpreter.
    pub interpreter: *mut Interpreter<EthInterpreter>,
    /// The host (revm context) for this frame.
    pub host: *mut (dyn Host + 'h),
    /// The host's gas parameters, read once per stretch: memory growth needs them every time,
    /// and code that builds structs and arrays grows memory word by word, each growth a
    /// virtual call otherwise.
    /// They live in the host, which stays borrowed, unchanged, for the whole stretch.
    pub gas_params: *const GasParams,
    /// Storage slots this stretch of compiled code has loaded or stored, from
    /// [`with_slot_cache`] (see [`slots`]); null for none.
    pub slots: *mut SlotCache,
    /// The running code's bytes (revm's padded copy). A function shared by a code family reads
    /// the PUSH immediates that differ between its members from here.
    pub code: *const u8,
}

/// Byte offset of [`KilnCtx::stack`].
pub const OFFSET_STACK: u32 = 0;
/// Byte offset of [`KilnCtx::sp`].
pub const OFFSET_SP: u32 = 8;
/// Byte offset of [`KilnCtx::gas`].
pub const OFFSET_GAS: u32 = 16;
/// Byte offset of [`KilnCtx::pc`].
pub const OFFSET_PC: u32 = 24;
/// Byte offset of [`KilnCtx::mem`].
pub const OFFSET_MEM: u32 = 32;
/// Byte offset of [`KilnCtx::mem_len`].
pub const OFFSET_MEM_LEN: u32 = 40;
/// Byte offset of [`KilnCtx::code`].
pub const OFFSET_CODE: u32 = 88;

type Ictx<'a, 'h> = InstructionContext<'a, dyn Host + 'h, EthInterpreter>;

/// Runs one of revm's instruction functions on the frame behind `ctx`.
///
/// # Safety
/// `ctx` must point to a live [`KilnCtx`] whose `interpreter` and `host` point to the frame being
/// executed, with no other live references to them, and `sp` must not exceed the stack capacity.
#[inline(always)]
unsafe fn run_revm_op(
    ctx: *mut KilnCtx<'_>,
    inputs: usize,
    op: impl for<'a, 'h> FnOnce(Ictx<'a, 'h>) -> Result<(), InstructionResult>,
) -> u8 {
    // SAFETY: the caller (compiled code, called by the dispatcher) guarantees `ctx` and the
    // pointers inside it are valid and exclusively ours for the duration of the call.
    let ctx = unsafe { &mut *ctx };
    // SAFETY: as above.
    let interpreter = unsafe { &mut *ctx.interpreter };
    // SAFETY: as above.
    let host = unsafe { &mut *ctx.host };
    // SAFETY: the compiled code initialised every slot below `sp` (it only ever writes slots it
    // then counts), and `sp` is within the buffer's capacity (checked before each section).
    unsafe { interpreter.stack.data_mut().set_len(ctx.sp as usize) };
    // revm reads operands as 16-byte halves, which the CPU cannot forward from the 8-byte
    // stores compiled code just made (see `read_word`); rewriting them whole makes them
    // forwardable. Stack underflow was checked before the call, but stay in bounds anyway.
    let data = interpreter.stack.data_mut();
    for slot in data.iter_mut().rev().take(inputs) {
        // SAFETY: `slot` is an initialised word of the stack.
        *slot = unsafe { read_word(slot) };
    }
    interpreter.gas.set_remaining(ctx.gas);
    let result = op(InstructionContext {
        interpreter: &mut *interpreter,
        host,
    });
    ctx.sp = interpreter.stack.len() as u64;
    ctx.gas = interpreter.gas.remaining();
    refresh_memory(ctx, interpreter);
    match result {
        Ok(()) => 0,
        Err(r) => r as u8,
    }
}

/// SLOAD: a slot this stretch of compiled code already loaded or stored is answered from
/// [`KilnCtx::slots`]; otherwise revm's `op` runs and its result is recorded.
///
/// # Safety
/// As for [`run_revm_op`].
#[inline(always)]
unsafe fn cached_sload(
    ctx: *mut KilnCtx<'_>,
    op: impl for<'a, 'h> FnOnce(Ictx<'a, 'h>) -> Result<(), InstructionResult>,
) -> u8 {
    // SAFETY: the caller guarantees `ctx` is valid; the borrow ends before `run_revm_op` makes
    // its own.
    let (sp, stack) = unsafe { ((*ctx).sp as usize, (*ctx).stack) };
    if sp == 0 {
        // Underflow is checked before the call; let revm report it if that ever failed.
        // SAFETY: forwarded from the caller.
        return unsafe { run_revm_op(ctx, 1, op) };
    }
    // SAFETY: as above; the cache pointer, when not null, is the stretch's own cache and no
    // other reference to it is live here.
    let Some(cache) = (unsafe { (*ctx).slots.as_mut() }).and_then(|c| c.note_load().then_some(c))
    else {
        // SAFETY: forwarded from the caller.
        return unsafe { run_revm_op(ctx, 1, op) };
    };
    // SAFETY: `sp - 1` is the initialised top of the stack.
    let top = unsafe { stack.add(sp - 1) };
    // SAFETY: `top` is the initialised top of the stack.
    let claim = match cache.get_or_claim(&unsafe { read_word(top) }) {
        Ok(value) => {
            // SAFETY: `top` is a valid stack slot.
            unsafe { top.write(value) };
            return 0;
        }
        Err(claim) => claim,
    };
    // SAFETY: forwarded from the caller; `run_revm_op` does not touch the cache.
    let status = unsafe { run_revm_op(ctx, 1, op) };
    if status == 0 {
        // SAFETY: revm replaced the key with the value in the same slot.
        cache.fill(claim, unsafe { read_word(top) });
    }
    status
}

/// SSTORE through revm's `op`, then the stored value recorded in [`KilnCtx::slots`].
///
/// # Safety
/// As for [`run_revm_op`].
#[inline(always)]
unsafe fn cached_sstore(
    ctx: *mut KilnCtx<'_>,
    op: impl for<'a, 'h> FnOnce(Ictx<'a, 'h>) -> Result<(), InstructionResult>,
) -> u8 {
    // SAFETY: the caller guarantees `ctx` is valid; the cache pointer, when not null, is the
    // stretch's own cache and no other reference to it is live here.
    let (sp, stack, cache) = unsafe { ((*ctx).sp as usize, (*ctx).stack, (*ctx).slots.as_mut()) };
    // Before the cache is in use it records nothing, so there is nothing to keep coherent.
    let Some(cache) = cache.filter(|c| c.in_use() && sp >= 2) else {
        // SAFETY: forwarded from the caller.
        return unsafe { run_revm_op(ctx, 2, op) };
    };
    // SAFETY: the top two slots are initialised: the key on top, the value below it.
    let (key, value) = unsafe { (read_word(stack.add(sp - 1)), read_word(stack.add(sp - 2))) };
    // SAFETY: forwarded from the caller; `run_revm_op` does not touch the cache.
    let status = unsafe { run_revm_op(ctx, 2, op) };
    if status == 0 {
        cache.insert(key, value);
    } else {
        // The frame ends, but do not leave a value that was not stored.
        cache.remove(&key);
    }
    status
}

/// Points `ctx.mem`/`ctx.mem_len` at the frame's current memory.
#[inline(always)]
pub fn refresh_memory(ctx: &mut KilnCtx<'_>, interpreter: &mut Interpreter<EthInterpreter>) {
    let mut mem = interpreter.memory.context_memory_mut();
    ctx.mem = mem.as_mut_ptr();
    ctx.mem_len = mem.len() as u64;
}

/// What compiled code uses a builtin for. With the opcode it implements, it picks the builtin
/// (ADDRESS, for one, has both a host and a value builtin); its [`BuiltinFn`] gives the
/// signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinKind {
    /// Runs revm's instruction for its opcode on the frame, as described in the crate
    /// documentation; ends the gas section. A [`HostBuiltin`].
    Host,
    /// Pure arithmetic of the optimising tier ([`kiln_div`], ...) on operands copied to a
    /// scratch area laid out as the stack. A [`StackBuiltin`].
    Stack,
    /// Reads the frame's input into one word ([`kiln_v_calldataload`], ...): static gas only and
    /// cannot fail, so it does not end the gas section. A [`ValueBuiltin`].
    Value,
    /// The baseline tier's arithmetic on the stack slots themselves ([`words`]). A
    /// [`StackBuiltin`].
    Word,
    /// The baseline tier's MLOAD, MSTORE and MSTORE8 ([`words::kiln_mload`], ...). A
    /// [`HostBuiltin`].
    Memory,
    /// Memory growth for the optimising tier's inline memory accesses ([`kiln_grow_memory`]).
    /// A [`GrowMemoryBuiltin`].
    GrowMemory,
}

impl BuiltinKind {
    /// Every kind, in declaration order.
    pub const ALL: [BuiltinKind; 6] = [
        BuiltinKind::Host,
        BuiltinKind::Stack,
        BuiltinKind::Value,
        BuiltinKind::Word,
        BuiltinKind::Memory,
        BuiltinKind::GrowMemory,
    ];
}

/// A builtin's address, typed by its signature, so that the signature code generation declares
/// is the one the function has.
#[derive(Clone, Copy, Debug)]
pub enum BuiltinFn {
    /// `(ctx) -> status`.
    Context(HostBuiltin),
    /// `(slots)`.
    Slots(StackBuiltin),
    /// `(ctx, io)`.
    ContextWord(ValueBuiltin),
    /// `(ctx, offset_low, offset_high, len, ahead, gas_after) -> status`.
    GrowMemory(GrowMemoryBuiltin),
}

/// The shape of a builtin's function type: all code generation needs to declare and call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signature {
    /// [`HostBuiltin`]: `u8 (ptr ctx)`.
    Context,
    /// [`StackBuiltin`]: `void (ptr slots)`.
    Slots,
    /// [`ValueBuiltin`]: `void (ptr ctx, ptr io)`.
    ContextWord,
    /// [`GrowMemoryBuiltin`]: `u8 (ptr ctx, i64, i64, i64, i64, i64)`.
    GrowMemory,
}

impl Signature {
    /// Every signature; `ALL[s as usize] == s`.
    pub const ALL: [Signature; 4] = [
        Signature::Context,
        Signature::Slots,
        Signature::ContextWord,
        Signature::GrowMemory,
    ];
}

impl BuiltinFn {
    /// The function's signature.
    pub const fn signature(self) -> Signature {
        match self {
            BuiltinFn::Context(_) => Signature::Context,
            BuiltinFn::Slots(_) => Signature::Slots,
            BuiltinFn::ContextWord(_) => Signature::ContextWord,
            BuiltinFn::GrowMemory(_) => Signature::GrowMemory,
        }
    }

    /// The function's address.
    pub fn addr(self) -> usize {
        match self {
            BuiltinFn::Context(f) => f as usize,
            BuiltinFn::Slots(f) => f as usize,
            BuiltinFn::ContextWord(f) => f as usize,
            BuiltinFn::GrowMemory(f) => f as usize,
        }
    }
}

/// Prefix of the pointer global through which AOT code calls a builtin
/// ([`Builtin::pointer_symbol`]).
pub const POINTER_SYMBOL_PREFIX: &str = "kiln_rt_";

/// One builtin, as [`BUILTINS`] declares it.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// Its symbol: the `#[no_mangle]` function's name, by which the JIT maps it and the AOT
    /// loader binds it.
    pub name: &'static str,
    /// What compiled code uses it for.
    pub kind: BuiltinKind,
    /// The opcode it implements; `None` for [`kiln_grow_memory`], which serves several.
    pub opcode: Option<u8>,
    /// The stack words it takes: its opcode's inputs (0 for [`kiln_grow_memory`], which does
    /// not touch the stack).
    pub operands: usize,
    /// Its address and signature.
    pub func: BuiltinFn,
}

impl Builtin {
    /// Its signature.
    pub const fn signature(&self) -> Signature {
        self.func.signature()
    }

    /// Its address.
    pub fn addr(&self) -> usize {
        self.func.addr()
    }

    /// The pointer global, `kiln_rt_<symbol>`, through which AOT code calls it.
    pub fn pointer_symbol(&self) -> String {
        format!("{POINTER_SYMBOL_PREFIX}{}", self.name)
    }
}

/// Declares every builtin, once: [`BUILTINS`] and, for the host builtins, the functions. The
/// symbol is the function's name, so the two cannot differ; the kind picks the typed pointer.
macro_rules! builtins {
    (
        host {
            $( $(#[$doc:meta])* $host:ident: $host_op:ident, $inputs:literal
                => $run:expr $(, via $wrap:path)?; )*
        }
        stack { $( $stack:ident: $stack_op:ident, $stack_n:literal; )* }
        value { $( $value:ident: $value_op:ident, $value_n:literal; )* }
        word { $( $word:ident: $word_op:ident, $word_n:literal; )* }
        memory { $( $memory:ident: $memory_op:ident, $memory_n:literal; )* }
        grow_memory { $grow:ident }
    ) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// Called only by compiled code with the context the dispatcher set up.
            #[no_mangle]
            pub unsafe extern "C" fn $host(ctx: *mut KilnCtx<'_>) -> u8 {
                // SAFETY: forwarded from this function's contract.
                unsafe { host_builtin_body!(ctx, $inputs, $run $(, $wrap)?) }
            }
        )*

        /// Every builtin compiled code calls: its symbol, kind, opcode, operand count, address
        /// and signature. Everything else about builtins ([`all_symbols`], [`by_name`],
        /// [`builtin_for_opcode`], [`GROW_MEMORY_BUILTIN`]) is derived from this one list.
        pub static BUILTINS: &[Builtin] = &[
            $( Builtin {
                name: stringify!($host),
                kind: BuiltinKind::Host,
                opcode: Some(opcode::$host_op),
                operands: $inputs,
                func: BuiltinFn::Context($host as HostBuiltin),
            }, )*
            $( Builtin {
                name: stringify!($stack),
                kind: BuiltinKind::Stack,
                opcode: Some(opcode::$stack_op),
                operands: $stack_n,
                func: BuiltinFn::Slots($stack as StackBuiltin),
            }, )*
            $( Builtin {
                name: stringify!($value),
                kind: BuiltinKind::Value,
                opcode: Some(opcode::$value_op),
                operands: $value_n,
                func: BuiltinFn::ContextWord($value as ValueBuiltin),
            }, )*
            $( Builtin {
                name: stringify!($word),
                kind: BuiltinKind::Word,
                opcode: Some(opcode::$word_op),
                operands: $word_n,
                func: BuiltinFn::Slots(words::$word as StackBuiltin),
            }, )*
            $( Builtin {
                name: stringify!($memory),
                kind: BuiltinKind::Memory,
                opcode: Some(opcode::$memory_op),
                operands: $memory_n,
                func: BuiltinFn::Context(words::$memory as HostBuiltin),
            }, )*
            Builtin {
                name: stringify!($grow),
                kind: BuiltinKind::GrowMemory,
                opcode: None,
                operands: 0,
                func: BuiltinFn::GrowMemory($grow as GrowMemoryBuiltin),
            },
        ];
    };
}

/// The body of a host builtin: revm's instruction, or a wrapper around it that may answer
/// without running it.
macro_rules! host_builtin_body {
    ($ctx:ident, $inputs:literal, $op:expr) => {
        run_revm_op($ctx, $inputs, |c| ($op)(c))
    };
    ($ctx:ident, $inputs:literal, $op:expr, $wrap:path) => {
        $wrap($ctx, |c| ($op)(c))
    };
}

builtins! {
    host {
        /// EXP (dynamic gas per exponent byte).
        kiln_exp: EXP, 2 => arithmetic::exp;
        /// KECCAK256.
        kiln_keccak256: KECCAK256, 2 => system::keccak256;
        /// ADDRESS.
        kiln_address: ADDRESS, 0 => system::address;
        /// BALANCE.
        kiln_balance: BALANCE, 1 => host::balance;
        /// ORIGIN.
        kiln_origin: ORIGIN, 0 => tx_info::origin;
        /// CALLER.
        kiln_caller: CALLER, 0 => system::caller;
        /// CALLVALUE.
        kiln_callvalue: CALLVALUE, 0 => system::callvalue;
        /// CALLDATALOAD.
        kiln_calldataload: CALLDATALOAD, 1 => system::calldataload;
        /// CALLDATASIZE.
        kiln_calldatasize: CALLDATASIZE, 0 => system::calldatasize;
        /// CALLDATACOPY.
        kiln_calldatacopy: CALLDATACOPY, 3 => system::calldatacopy;
        /// CODESIZE.
        kiln_codesize: CODESIZE, 0 => system::codesize;
        /// CODECOPY.
        kiln_codecopy: CODECOPY, 3 => system::codecopy;
        /// GASPRICE.
        kiln_gasprice: GASPRICE, 0 => tx_info::gasprice;
        /// EXTCODESIZE.
        kiln_extcodesize: EXTCODESIZE, 1 => host::extcodesize;
        /// EXTCODECOPY.
        kiln_extcodecopy: EXTCODECOPY, 4 => host::extcodecopy;
        /// RETURNDATASIZE.
        kiln_returndatasize: RETURNDATASIZE, 0 => system::returndatasize;
        /// RETURNDATACOPY.
        kiln_returndatacopy: RETURNDATACOPY, 3 => system::returndatacopy;
        /// EXTCODEHASH.
        kiln_extcodehash: EXTCODEHASH, 1 => host::extcodehash;
        /// BLOCKHASH.
        kiln_blockhash: BLOCKHASH, 1 => host::blockhash;
        /// COINBASE.
        kiln_coinbase: COINBASE, 0 => block_info::coinbase;
        /// TIMESTAMP.
        kiln_timestamp: TIMESTAMP, 0 => block_info::timestamp;
        /// NUMBER.
        kiln_number: NUMBER, 0 => block_info::block_number;
        /// DIFFICULTY / PREVRANDAO.
        kiln_difficulty: DIFFICULTY, 0 => block_info::difficulty;
        /// GASLIMIT.
        kiln_gaslimit: GASLIMIT, 0 => block_info::gaslimit;
        /// CHAINID.
        kiln_chainid: CHAINID, 0 => block_info::chainid;
        /// SELFBALANCE.
        kiln_selfbalance: SELFBALANCE, 0 => host::selfbalance;
        /// BASEFEE.
        kiln_basefee: BASEFEE, 0 => block_info::basefee;
        /// BLOBHASH.
        kiln_blobhash: BLOBHASH, 1 => tx_info::blob_hash;
        /// BLOBBASEFEE.
        kiln_blobbasefee: BLOBBASEFEE, 0 => block_info::blob_basefee;
        /// SLOTNUM (not active through Osaka; revm's function reports that).
        kiln_slotnum: SLOTNUM, 0 => block_info::slot_num;
        /// MSIZE.
        kiln_msize: MSIZE, 0 => memory::msize;
        /// MCOPY.
        kiln_mcopy: MCOPY, 3 => memory::mcopy;
        /// SLOAD, answered from the stretch's slot cache when it can be.
        kiln_sload: SLOAD, 1 => host::sload, via cached_sload;
        /// SSTORE (including the EIP-2200 stipend check against the exact remaining gas).
        kiln_sstore: SSTORE, 2 => host::sstore, via cached_sstore;
        /// TLOAD.
        kiln_tload: TLOAD, 1 => host::tload;
        /// TSTORE.
        kiln_tstore: TSTORE, 2 => host::tstore;
        /// DUPN (not active through Osaka; revm's function reports that).
        kiln_dupn: DUPN, 0 => stack::dupn;
        /// SWAPN (not active through Osaka; revm's function reports that).
        kiln_swapn: SWAPN, 0 => stack::swapn;
        /// EXCHANGE (not active through Osaka; revm's function reports that).
        kiln_exchange: EXCHANGE, 0 => stack::exchange;
        /// LOG0.
        kiln_log0: LOG0, 2 => host::log::<0, _>;
        /// LOG1.
        kiln_log1: LOG1, 3 => host::log::<1, _>;
        /// LOG2.
        kiln_log2: LOG2, 4 => host::log::<2, _>;
        /// LOG3.
        kiln_log3: LOG3, 5 => host::log::<3, _>;
        /// LOG4.
        kiln_log4: LOG4, 6 => host::log::<4, _>;
        /// CREATE: suspends the frame with a create request.
        kiln_create: CREATE, 3 => contract::create::<false, _, _>;
        /// CREATE2: suspends the frame with a create request.
        kiln_create2: CREATE2, 4 => contract::create::<true, _, _>;
        /// CALL: suspends the frame with a call request.
        kiln_call: CALL, 7 => contract::call::<0xF1, _, _>;
        /// CALLCODE: suspends the frame with a call request.
        kiln_callcode: CALLCODE, 7 => contract::call::<0xF2, _, _>;
        /// DELEGATECALL: suspends the frame with a call request.
        kiln_delegatecall: DELEGATECALL, 6 => contract::call::<0xF4, _, _>;
        /// STATICCALL: suspends the frame with a call request.
        kiln_staticcall: STATICCALL, 6 => contract::call::<0xFA, _, _>;
        /// RETURN.
        kiln_return: RETURN, 2 => control::ret;
        /// REVERT.
        kiln_revert: REVERT, 2 => control::revert;
        /// SELFDESTRUCT.
        kiln_selfdestruct: SELFDESTRUCT, 1 => host::selfdestruct;
    }
    stack {
        kiln_div: DIV, 2;
        kiln_sdiv: SDIV, 2;
        kiln_mod: MOD, 2;
        kiln_smod: SMOD, 2;
        kiln_addmod: ADDMOD, 3;
        kiln_mulmod: MULMOD, 3;
    }
    value {
        kiln_v_address: ADDRESS, 0;
        kiln_v_caller: CALLER, 0;
        kiln_v_callvalue: CALLVALUE, 0;
        kiln_v_calldatasize: CALLDATASIZE, 0;
        kiln_v_calldataload: CALLDATALOAD, 1;
    }
    word {
        kiln_w_add: ADD, 2;
        kiln_w_mul: MUL, 2;
        kiln_w_sub: SUB, 2;
        kiln_w_lt: LT, 2;
        kiln_w_gt: GT, 2;
        kiln_w_slt: SLT, 2;
        kiln_w_sgt: SGT, 2;
        kiln_w_eq: EQ, 2;
        kiln_w_and: AND, 2;
        kiln_w_or: OR, 2;
        kiln_w_xor: XOR, 2;
        kiln_w_byte: BYTE, 2;
        kiln_w_shl: SHL, 2;
        kiln_w_shr: SHR, 2;
        kiln_w_sar: SAR, 2;
        kiln_w_signextend: SIGNEXTEND, 2;
        kiln_w_iszero: ISZERO, 1;
        kiln_w_not: NOT, 1;
        kiln_w_clz: CLZ, 1;
    }
    memory {
        kiln_mload: MLOAD, 1;
        kiln_mstore: MSTORE, 2;
        kiln_mstore8: MSTORE8, 2;
    }
    grow_memory { kiln_grow_memory }
}

/// For each opcode and kind, the builtin's index in [`BUILTINS`] plus one (0 for none): the
/// compiler looks builtins up by opcode for every instruction it analyses, and this makes that
/// an array access. Building it at compile time also rejects two builtins of one kind for one
/// opcode.
const BY_OPCODE: [[u8; BuiltinKind::ALL.len()]; 256] = {
    assert!(BUILTINS.len() < u8::MAX as usize);
    let mut table = [[0u8; BuiltinKind::ALL.len()]; 256];
    let mut i = 0;
    while i < BUILTINS.len() {
        if let Some(op) = BUILTINS[i].opcode {
            let slot = &mut table[op as usize][BUILTINS[i].kind as usize];
            assert!(*slot == 0, "two builtins of one kind for one opcode");
            *slot = i as u8 + 1;
        }
        i += 1;
    }
    table
};

/// The builtin of `kind` that implements `opcode`, if there is one.
pub fn builtin_for_opcode(opcode: u8, kind: BuiltinKind) -> Option<&'static Builtin> {
    match BY_OPCODE[opcode as usize][kind as usize] {
        0 => None,
        i => Some(&BUILTINS[usize::from(i) - 1]),
    }
}

/// The builtin whose symbol is `name`.
pub fn by_name(name: &str) -> Option<&'static Builtin> {
    // Code generation looks a builtin up at every call it emits.
    static INDEX: OnceLock<HashMap<&'static str, &'static Builtin>> = OnceLock::new();
    INDEX
        .get_or_init(|| BUILTINS.iter().map(|b| (b.name, b)).collect())
        .get(name)
        .copied()
}

/// [`kiln_grow_memory`]'s entry in [`BUILTINS`].
pub const GROW_MEMORY_BUILTIN: &Builtin = {
    // Runs off the end of the list, a compile-time error, if it is not declared.
    let mut i = 0;
    while !matches!(BUILTINS[i].kind, BuiltinKind::GrowMemory) {
        i += 1;
    }
    &BUILTINS[i]
};

/// Every builtin symbol and its address, for the JIT's symbol mapping and the AOT loader.
pub fn all_symbols() -> impl Iterator<Item = (&'static str, usize)> {
    BUILTINS.iter().map(|b| (b.name, b.addr()))
}

/// The host builtin that implements `opcode`, if compiled code delegates that opcode.
pub fn host_builtin_name(opcode: u8) -> Option<&'static str> {
    builtin_for_opcode(opcode, BuiltinKind::Host).map(|b| b.name)
}

/// The pure stack builtin that implements `opcode`, with its operand count.
pub fn stack_builtin_name(opcode: u8) -> Option<(&'static str, usize)> {
    builtin_for_opcode(opcode, BuiltinKind::Stack).map(|b| (b.name, b.operands))
}

/// The value builtin that implements `opcode`, with its operand count (0 or 1). These opcodes
/// have only static gas and cannot fail, so compiled code calls them inside a gas section and
/// keeps its virtual stack in registers around them.
pub fn value_builtin_name(opcode: u8) -> Option<(&'static str, usize)> {
    builtin_for_opcode(opcode, BuiltinKind::Value).map(|b| (b.name, b.operands))
}

/// Reads two stack operands: `p` points at the deeper slot, `p + 1` at the top.
///
/// # Safety
/// `p` and `p + 1` must be valid, initialised stack slots.
#[inline(always)]
unsafe fn operands2(p: *mut U256) -> (U256, U256) {
    // SAFETY: forwarded from the caller.
    unsafe { (read_word(p.add(1)), read_word(p)) }
}

/// Reads a stack word limb by limb.
///
/// Compiled code writes a word held in registers as four 8-byte stores right before the call;
/// a plain copy compiles to 16-byte loads, each spanning two of those stores, which the CPU
/// cannot forward from its store buffer: the load waits until both stores reach the cache,
/// which made that one load the hot spot of `kiln_sdiv` in division-heavy code. Volatile
/// 8-byte reads match the stores one to one and are forwarded.
///
/// # Safety
/// `p` must be a valid, initialised stack slot.
#[inline(always)]
unsafe fn read_word(p: *const U256) -> U256 {
    let limbs = p.cast::<u64>();
    // SAFETY: a U256 is four u64 limbs, and the caller guarantees `p` is valid.
    unsafe {
        U256::from_limbs([
            limbs.read_volatile(),
            limbs.add(1).read_volatile(),
            limbs.add(2).read_volatile(),
            limbs.add(3).read_volatile(),
        ])
    }
}

/// `x` as a `u128`, if its upper 128 bits are zero.
#[inline(always)]
fn as_u128(x: &U256) -> Option<u128> {
    let l = x.as_limbs();
    (l[2] == 0 && l[3] == 0).then(|| u128::from(l[0]) | (u128::from(l[1]) << 64))
}

/// `x` as an `i128`, if it is the two's-complement sign extension of one.
#[inline(always)]
fn as_i128(x: &U256) -> Option<i128> {
    let l = x.as_limbs();
    let v = (u128::from(l[0]) | (u128::from(l[1]) << 64)) as i128;
    let ext = if v < 0 { u64::MAX } else { 0 };
    (l[2] == ext && l[3] == ext).then_some(v)
}

// Division of operands that fit in 128 bits (fixed-point arithmetic, token amounts) uses
// native division, several times faster than the general 256-bit long division; the compiled
// code already divides operands that fit in 64 bits inline.

/// `(a / b, a % b)` for `b != 0`. When the divisor fits in 64 bits and so does the quotient
/// (the common case for fixed-point values), one 128-by-64-bit `div` instruction does it;
/// Rust's `u128` division would call into compiler-builtins, which costs several times more.
#[inline(always)]
fn div_rem_u128(a: u128, b: u128) -> (u128, u128) {
    #[cfg(target_arch = "x86_64")]
    if let Ok(d) = u64::try_from(b) {
        let hi = (a >> 64) as u64;
        if hi < d {
            let (q, r): (u64, u64);
            // SAFETY: `div` faults only on a zero divisor or a quotient over 64 bits; `hi < d`
            // rules out both (d > hi >= 0, and a < d * 2^64). No memory or stack is touched.
            unsafe {
                core::arch::asm!(
                    "div {d}",
                    d = in(reg) d,
                    inout("rax") a as u64 => q,
                    inout("rdx") hi => r,
                    options(pure, nomem, nostack),
                );
            }
            return (u128::from(q), u128::from(r));
        }
    }
    (a / b, a % b)
}

/// `x` as a sign and a 128-bit magnitude, if `x` is the sign extension of an `i128`.
#[inline(always)]
fn as_signed_u128(x: &U256) -> Option<(bool, u128)> {
    as_i128(x).map(|v| (v < 0, v.unsigned_abs()))
}

/// The 256-bit two's-complement value of a sign and a magnitude.
#[inline(always)]
fn from_signed_u128(negative: bool, magnitude: u128) -> U256 {
    let v = U256::from(magnitude);
    if negative {
        v.wrapping_neg()
    } else {
        v
    }
}

/// DIV: `p + 1` is the top (dividend), `p` the divisor; the quotient replaces `*p`.
///
/// # Safety
/// `p` and `p + 1` must be valid, initialised stack slots.
#[no_mangle]
pub unsafe extern "C" fn kiln_div(p: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    let (a, b) = unsafe { operands2(p) };
    let r = match (as_u128(&a), as_u128(&b)) {
        (_, Some(0)) => U256::ZERO,
        (Some(a), Some(b)) => U256::from(div_rem_u128(a, b).0),
        // Code from before SHR (Solidity < 0.5) divides by powers of two to shift: the selector
        // is `calldataload(0) / 2^224`, packed storage reads divide by `256^k`.
        _ if b.is_power_of_two() => a >> b.trailing_zeros(),
        _ => a.wrapping_div(b),
    };
    // SAFETY: `p` is a valid stack slot, by this function's contract.
    unsafe { *p = r };
}

/// SDIV, laid out as [`kiln_div`].
///
/// # Safety
/// `p` and `p + 1` must be valid, initialised stack slots.
#[no_mangle]
pub unsafe extern "C" fn kiln_sdiv(p: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    let (a, b) = unsafe { operands2(p) };
    let r = match (as_signed_u128(&a), as_signed_u128(&b)) {
        (_, Some((_, 0))) => U256::ZERO,
        // Magnitudes keep i128::MIN / -1 exact: its quotient, 2^127, is a valid 256-bit result.
        (Some((na, x)), Some((nb, y))) => from_signed_u128(na != nb, div_rem_u128(x, y).0),
        _ => revm::interpreter::instructions::i256::i256_div(a, b),
    };
    // SAFETY: `p` is a valid stack slot, by this function's contract.
    unsafe { *p = r };
}

/// MOD, laid out as [`kiln_div`].
///
/// # Safety
/// `p` and `p + 1` must be valid, initialised stack slots.
#[no_mangle]
pub unsafe extern "C" fn kiln_mod(p: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    let (a, b) = unsafe { operands2(p) };
    let r = match (as_u128(&a), as_u128(&b)) {
        (_, Some(0)) => U256::ZERO,
        (Some(a), Some(b)) => U256::from(div_rem_u128(a, b).1),
        _ if b.is_power_of_two() => a & (b - U256::ONE),
        _ => a.wrapping_rem(b),
    };
    // SAFETY: `p` is a valid stack slot, by this function's contract.
    unsafe { *p = r };
}

/// SMOD, laid out as [`kiln_div`].
///
/// # Safety
/// `p` and `p + 1` must be valid, initialised stack slots.
#[no_mangle]
pub unsafe extern "C" fn kiln_smod(p: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    let (a, b) = unsafe { operands2(p) };
    let r = match (as_signed_u128(&a), as_signed_u128(&b)) {
        (_, Some((_, 0))) => U256::ZERO,
        // The remainder takes the dividend's sign.
        (Some((na, x)), Some((_, y))) => from_signed_u128(na, div_rem_u128(x, y).1),
        _ => revm::interpreter::instructions::i256::i256_mod(a, b),
    };
    // SAFETY: `p` is a valid stack slot, by this function's contract.
    unsafe { *p = r };
}

/// ADDMOD: `p + 2` is the top (a), `p + 1` is b, `p` is the modulus; the result replaces `*p`.
///
/// # Safety
/// `p`, `p + 1` and `p + 2` must be valid, initialised stack slots.
#[no_mangle]
pub unsafe extern "C" fn kiln_addmod(p: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    unsafe { *p = read_word(p.add(2)).add_mod(read_word(p.add(1)), read_word(p)) };
}

/// MULMOD, laid out as [`kiln_addmod`].
///
/// # Safety
/// `p`, `p + 1` and `p + 2` must be valid, initialised stack slots.
#[no_mangle]
pub unsafe extern "C" fn kiln_mulmod(p: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    unsafe { *p = read_word(p.add(2)).mul_mod(read_word(p.add(1)), read_word(p)) };
}

/// The signature of a value builtin: reads the frame's input (never its stack, gas or memory
/// size) and writes one word to `io`, which holds the operand if the opcode takes one.
pub type ValueBuiltin = unsafe extern "C" fn(*mut KilnCtx<'static>, *mut U256);

/// The frame's interpreter, read-only.
///
/// # Safety
/// `ctx` must be the live context the dispatcher passed to compiled code.
#[inline(always)]
unsafe fn frame_of<'a>(ctx: *mut KilnCtx<'_>) -> &'a Interpreter<EthInterpreter> {
    // SAFETY: forwarded from the caller; value builtins only read the interpreter.
    unsafe { &*(*ctx).interpreter }
}

/// ADDRESS as a value builtin.
///
/// # Safety
/// `ctx` is the dispatcher's live context and `io` a writable word.
#[no_mangle]
pub unsafe extern "C" fn kiln_v_address(ctx: *mut KilnCtx<'_>, io: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    unsafe { *io = frame_of(ctx).input.target_address().into_word().into() };
}

/// CALLER as a value builtin.
///
/// # Safety
/// As [`kiln_v_address`].
#[no_mangle]
pub unsafe extern "C" fn kiln_v_caller(ctx: *mut KilnCtx<'_>, io: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    unsafe { *io = frame_of(ctx).input.caller_address().into_word().into() };
}

/// CALLVALUE as a value builtin.
///
/// # Safety
/// As [`kiln_v_address`].
#[no_mangle]
pub unsafe extern "C" fn kiln_v_callvalue(ctx: *mut KilnCtx<'_>, io: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    unsafe { *io = frame_of(ctx).input.call_value() };
}

/// CALLDATASIZE as a value builtin.
///
/// # Safety
/// As [`kiln_v_address`].
#[no_mangle]
pub unsafe extern "C" fn kiln_v_calldatasize(ctx: *mut KilnCtx<'_>, io: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    unsafe { *io = U256::from(frame_of(ctx).input.input().len()) };
}

/// CALLDATALOAD as a value builtin: `*io` is the offset on entry and the word on return (zero
/// padded past the end of the calldata, as revm's `calldataload`).
///
/// # Safety
/// As [`kiln_v_address`].
#[no_mangle]
pub unsafe extern "C" fn kiln_v_calldataload(ctx: *mut KilnCtx<'_>, io: *mut U256) {
    // SAFETY: forwarded from this function's contract.
    let (interpreter, offset) = unsafe { (frame_of(ctx), read_word(io)) };
    let offset: usize = offset.saturating_to();
    let data = interpreter
        .input
        .input()
        .as_bytes_memory(&interpreter.memory);
    let word = data.get(offset..).map_or(U256::ZERO, padded_word);
    // SAFETY: forwarded from this function's contract.
    unsafe { *io = word };
}

/// The big-endian word at the start of `bytes`, zero padded past their end.
///
/// Built in registers from the bytes: copying a short tail (a 4-byte selector) into a zeroed
/// buffer and reading that back as words stalls on store forwarding, since each 8-byte load
/// spans the copy's narrower stores, and a call with only a selector (`getReserves`, 4 bytes of
/// calldata) spent most of CALLDATALOAD on that one load.
fn padded_word(bytes: &[u8]) -> U256 {
    if let Some(full) = bytes.first_chunk::<32>() {
        return U256::from_be_bytes(*full);
    }
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().rev().zip(bytes.chunks(8)) {
        *limb = match chunk.try_into() {
            Ok(eight) => u64::from_be_bytes(eight),
            Err(_) => chunk
                .iter()
                .enumerate()
                .fold(0, |acc, (i, &b)| acc | u64::from(b) << (56 - 8 * i)),
        };
    }
    U256::from_limbs(limbs)
}

/// The signature of [`kiln_grow_memory`].
pub type GrowMemoryBuiltin =
    unsafe extern "C" fn(*mut KilnCtx<'static>, u64, u64, u64, u64, u64) -> u8;

/// Memory growth for MLOAD, MSTORE and MSTORE8 outside the current memory: compiled code does
/// the access itself, inline, once this has made room. `offset_low` is the low 64 bits of the
/// offset word and `offset_high` is non-zero when any higher bit is set; `len` is the access
/// size (32 or 1). Charges the expansion exactly as the interpreter's instruction does (same
/// checks, same halt reasons: `InvalidOperandOOG` for an offset beyond `usize`, `MemoryOOG`,
/// `MemoryLimitOOG`), and refreshes `mem`, `mem_len` and `gas` in the context.
///
/// The compiled code's stack is not touched, so it stays in registers across the call.
///
/// `ahead > len` asks for a growth that reaches ahead for a run of accesses
/// (`kiln_compiler::analysis::GrowAhead`): memory grows to `offset_low + ahead` instead if the
/// gas left after that expansion is at least `gas_after`; otherwise (and if that expansion
/// fails for any reason, which then changes nothing) it grows for the access alone.
///
/// # Safety
/// Called only by compiled code with the context the dispatcher set up.
#[no_mangle]
pub unsafe extern "C" fn kiln_grow_memory(
    ctx: *mut KilnCtx<'_>,
    offset_low: u64,
    offset_high: u64,
    len: u64,
    ahead: u64,
    gas_after: u64,
) -> u8 {
    // SAFETY: the caller (compiled code, called by the dispatcher) guarantees `ctx` and the
    // pointers inside it are valid and exclusively ours for the duration of the call.
    let ctx = unsafe { &mut *ctx };
    // SAFETY: as above.
    let interpreter = unsafe { &mut *ctx.interpreter };
    // revm's `as_usize_or_fail`.
    if offset_high != 0 || usize::try_from(offset_low).is_err() {
        return InstructionResult::InvalidOperandOOG as u8;
    }
    interpreter.gas.set_remaining(ctx.gas);
    // SAFETY: the dispatcher set `gas_params` from this frame's host, which outlives the call.
    let gas_params = unsafe { &*ctx.gas_params };
    let offset = offset_low as usize;
    let far = usize::try_from(ahead).ok().filter(|&ahead| {
        ahead as u64 > len && affordable(interpreter, gas_params, offset, ahead, gas_after)
    });
    let result = match far {
        // A failed expansion returns before changing anything (the gas was checked above, so
        // only a memory limit can refuse it); the access alone is then grown as usual.
        Some(ahead) if interpreter.resize_memory(gas_params, offset, ahead).is_ok() => Ok(()),
        _ => interpreter.resize_memory(gas_params, offset, len as usize),
    };
    ctx.gas = interpreter.gas.remaining();
    refresh_memory(ctx, interpreter);
    match result {
        Ok(()) => 0,
        Err(r) => r as u8,
    }
}

/// Whether growing memory to `offset + len` leaves at least `reserve` gas.
fn affordable(
    interpreter: &Interpreter<EthInterpreter>,
    gas_params: &GasParams,
    offset: usize,
    len: usize,
    reserve: u64,
) -> bool {
    let words = offset.saturating_add(len).div_ceil(32);
    let memory = interpreter.gas.memory();
    let cost = gas_params
        .memory_cost(words)
        .saturating_sub(memory.expansion_cost);
    words > memory.words_num && cost.saturating_add(reserve) <= interpreter.gas.remaining()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn ctx_layout_matches_offsets() {
        assert_eq!(offset_of!(KilnCtx, stack) as u32, OFFSET_STACK);
        assert_eq!(offset_of!(KilnCtx, sp) as u32, OFFSET_SP);
        assert_eq!(offset_of!(KilnCtx, gas) as u32, OFFSET_GAS);
        assert_eq!(offset_of!(KilnCtx, pc) as u32, OFFSET_PC);
        assert_eq!(offset_of!(KilnCtx, mem) as u32, OFFSET_MEM);
        assert_eq!(offset_of!(KilnCtx, mem_len) as u32, OFFSET_MEM_LEN);
        assert_eq!(offset_of!(KilnCtx, code) as u32, OFFSET_CODE);
    }

    #[test]
    fn padded_word_matches_a_zero_padded_copy() {
        let bytes: Vec<u8> = (1..=40).collect();
        for start in 0..bytes.len() {
            for end in start..=bytes.len() {
                let slice = &bytes[start..end];
                let mut padded = [0u8; 32];
                let n = slice.len().min(32);
                padded[..n].copy_from_slice(&slice[..n]);
                assert_eq!(
                    padded_word(slice),
                    U256::from_be_bytes(padded),
                    "{start}..{end}"
                );
            }
        }
    }

    #[test]
    fn lookups_find_each_declared_builtin() {
        for b in BUILTINS {
            assert!(core::ptr::eq(by_name(b.name).unwrap(), b), "{}", b.name);
            if let Some(op) = b.opcode {
                let found = builtin_for_opcode(op, b.kind).unwrap();
                assert!(core::ptr::eq(found, b), "{}", b.name);
            }
        }
        assert_eq!(all_symbols().count(), BUILTINS.len());
        assert_eq!(GROW_MEMORY_BUILTIN.kind, BuiltinKind::GrowMemory);
        assert!(by_name("kiln_nothing").is_none());
    }

    #[test]
    fn operand_counts_match_the_opcode_table() {
        for b in BUILTINS {
            let Some(op) = b.opcode else { continue };
            let info = revm::bytecode::opcode::OPCODE_INFO[op as usize].expect("a real opcode");
            assert_eq!(
                b.operands,
                usize::from(info.inputs()),
                "{} (opcode {op:#x})",
                b.name
            );
        }
    }

    #[test]
    fn each_kind_has_one_signature() {
        for b in BUILTINS {
            let expected = match b.kind {
                BuiltinKind::Host | BuiltinKind::Memory => Signature::Context,
                BuiltinKind::Stack | BuiltinKind::Word => Signature::Slots,
                BuiltinKind::Value => Signature::ContextWord,
                BuiltinKind::GrowMemory => Signature::GrowMemory,
            };
            assert_eq!(b.signature(), expected, "{}", b.name);
        }
        for (i, s) in Signature::ALL.into_iter().enumerate() {
            assert_eq!(s as usize, i);
        }
        for (i, k) in BuiltinKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
        }
    }

    /// The 256-bit two's-complement sign extension of `v`.
    fn from_i128(v: i128) -> U256 {
        let ext = if v < 0 { u64::MAX } else { 0 };
        U256::from_limbs([v as u64, ((v as u128) >> 64) as u64, ext, ext])
    }

    #[test]
    fn division_fast_paths_match_the_reference_at_every_edge() {
        use revm::interpreter::instructions::i256::{i256_div, i256_mod};
        let mut values = vec![
            U256::ZERO,
            U256::ONE,
            U256::MAX,
            U256::from(7),
            U256::MAX - U256::from(6),
        ];
        for bits in [63u32, 64, 126, 127, 128, 129, 224, 255] {
            let p = U256::ONE << bits as usize;
            values.extend([
                p - U256::ONE,
                p,
                p + U256::ONE,
                U256::ZERO.wrapping_sub(p),
                U256::ZERO.wrapping_sub(p) - U256::ONE,
            ]);
        }
        // Fixed-point magnitudes, where one `div` instruction suffices or does not.
        for v in [
            10u128.pow(18),
            10u128.pow(30),
            u128::from(u64::MAX) * u128::from(u64::MAX - 1),
        ] {
            values.extend([U256::from(v), U256::ZERO.wrapping_sub(U256::from(v))]);
        }
        values.push(from_i128(i128::MIN));
        values.push(from_i128(i128::MAX));
        values.push(U256::from(0x1234_5678_9abc_def0_1122_3344_5566_7788u128) * U256::from(3));
        let run = |f: unsafe extern "C" fn(*mut U256), a: U256, b: U256| {
            let mut slots = [b, a];
            // SAFETY: two initialised slots.
            unsafe { f(slots.as_mut_ptr()) };
            slots[0]
        };
        for &a in &values {
            for &b in &values {
                let div = if b.is_zero() {
                    U256::ZERO
                } else {
                    a.wrapping_div(b)
                };
                let rem = if b.is_zero() {
                    U256::ZERO
                } else {
                    a.wrapping_rem(b)
                };
                assert_eq!(run(kiln_div, a, b), div, "DIV {a:#x} {b:#x}");
                assert_eq!(run(kiln_mod, a, b), rem, "MOD {a:#x} {b:#x}");
                assert_eq!(run(kiln_sdiv, a, b), i256_div(a, b), "SDIV {a:#x} {b:#x}");
                assert_eq!(run(kiln_smod, a, b), i256_mod(a, b), "SMOD {a:#x} {b:#x}");
            }
        }
    }

    #[test]
    fn division_by_zero_is_zero() {
        let mut slots = [U256::ZERO, U256::from(7)];
        // SAFETY: two initialised slots.
        unsafe { kiln_div(slots.as_mut_ptr()) };
        assert_eq!(slots[0], U256::ZERO);
        let mut slots = [U256::from(2), U256::from(7)];
        // SAFETY: two initialised slots.
        unsafe { kiln_div(slots.as_mut_ptr()) };
        assert_eq!(slots[0], U256::from(3));
        let mut slots = [U256::from(5), U256::from(7), U256::from(9)];
        // (9 + 7) % 5 = 1
        // SAFETY: three initialised slots.
        unsafe { kiln_addmod(slots.as_mut_ptr()) };
        assert_eq!(slots[0], U256::from(1));
    }
}
