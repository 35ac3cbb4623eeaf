//! In-process JIT: each function is compiled to an object file in memory with this thread's
//! cached target machine (the same code generation as AOT), then linked into the process by one
//! shared ORC `LLJIT` instance. Only the machine code stays resident: the LLVM context and module
//! are dropped as soon as the object is emitted.
//!
//! The previous design kept an MCJIT engine per function, and with it the function's whole LLVM
//! context, as long as the code lived, which multiplied the resident memory of every live
//! function (the `jit_memory` example measures it:
//! `cargo run --release -p kiln-compiler --example jit_memory -- CODE.hex 20`). Dropping
//! MCJIT's per-engine target machine also took a fixed cost off every compilation, which
//! counts most when compiling many small functions, as the GeneralStateTests suite does.

use crate::{build_module, lower::Linking, CompileError, CompileOptions, Coverage};
use inkwell::{context::Context, memory_buffer::MemoryBuffer, targets::FileType};
use kiln_builtins::CompiledFn;
use llvm_sys::{
    core::{
        LLVMCreateMemoryBufferWithMemoryRangeCopy, LLVMDisposeMemoryBuffer, LLVMGetBufferStart,
    },
    error::{LLVMDisposeErrorMessage, LLVMErrorRef, LLVMGetErrorMessage},
    orc2::{
        lljit::{
            LLVMOrcCreateLLJIT, LLVMOrcLLJITAddObjectFileWithRT, LLVMOrcLLJITGetGlobalPrefix,
            LLVMOrcLLJITGetMainJITDylib, LLVMOrcLLJITLookup, LLVMOrcLLJITMangleAndIntern,
            LLVMOrcLLJITRef,
        },
        LLVMJITEvaluatedSymbol, LLVMJITSymbolFlags, LLVMJITSymbolGenericFlags,
        LLVMOrcAbsoluteSymbols, LLVMOrcCSymbolMapPair,
        LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess, LLVMOrcDisposeMaterializationUnit,
        LLVMOrcJITDylibAddGenerator, LLVMOrcJITDylibCreateResourceTracker, LLVMOrcJITDylibDefine,
        LLVMOrcJITDylibRef, LLVMOrcReleaseResourceTracker, LLVMOrcResourceTrackerRef,
        LLVMOrcResourceTrackerRemove,
    },
    prelude::LLVMMemoryBufferRef,
};
use revm::primitives::hardfork::SpecId;
use std::{
    ffi::{CStr, CString},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
};

/// A function compiled into executable memory owned by this value. Dropping it frees the code, so
/// the registry entry that owns it must outlive every call.
pub struct JitFunction {
    func: CompiledFn,
    /// Owns the linked object: removing it unmaps the code.
    tracker: LLVMOrcResourceTrackerRef,
    object_bytes: usize,
}

// SAFETY: the resource tracker is only used again by `Drop`, and ORC's resource trackers may be
// removed from any thread; the compiled code itself is immutable machine code.
unsafe impl Send for JitFunction {}
// SAFETY: see `Send`; calling the function pointer does not touch LLVM state.
unsafe impl Sync for JitFunction {}

impl std::fmt::Debug for JitFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitFunction")
            .field("func", &(self.func as usize as *const ()))
            .field("object_bytes", &self.object_bytes)
            .finish()
    }
}

impl JitFunction {
    /// The compiled entry point.
    pub fn as_fn(&self) -> CompiledFn {
        self.func
    }

    /// Size of the object file that was linked: the machine code plus its relocations and
    /// symbols.
    pub fn object_bytes(&self) -> usize {
        self.object_bytes
    }
}

impl Drop for JitFunction {
    fn drop(&mut self) {
        // Once the process is exiting, ORC may already be torn down; the memory goes with the
        // process.
        let Ok(_active) = crate::exit_guard::enter() else {
            return;
        };
        // SAFETY: the tracker came from `LLVMOrcJITDylibCreateResourceTracker` and is removed and
        // released exactly once; no caller can still be running the code (the owner outlives
        // every call, see the type's docs).
        unsafe {
            if let Err(e) = take_error(LLVMOrcResourceTrackerRemove(self.tracker)) {
                tracing::warn!(error = %e, "freeing JIT code failed; its memory stays mapped");
            }
            LLVMOrcReleaseResourceTracker(self.tracker);
        }
    }
}

/// The process's ORC JIT: one main JIT dylib that defines every builtin and resolves other
/// symbols (libc's `memset`, compiler-rt helpers) from the process.
struct Jit {
    lljit: LLVMOrcLLJITRef,
    dylib: LLVMOrcJITDylibRef,
}

// SAFETY: LLJIT and its execution session are thread-safe: objects are added, linked, looked up
// and removed concurrently under the session's own locks.
unsafe impl Send for Jit {}
// SAFETY: see `Send`.
unsafe impl Sync for Jit {}

fn jit() -> Result<&'static Jit, CompileError> {
    static JIT: OnceLock<Result<Jit, String>> = OnceLock::new();
    JIT.get_or_init(|| {
        crate::init_llvm().map_err(|e| e.to_string())?;
        // SAFETY: plain C API calls on values created here; `LLVMOrcCreateLLJIT` takes the null
        // builder as "defaults"; the symbol names are interned before the call that takes them.
        // The instance is never disposed: it lives as long as the process, like its code.
        unsafe {
            let mut lljit: LLVMOrcLLJITRef = std::ptr::null_mut();
            take_error(LLVMOrcCreateLLJIT(&mut lljit, std::ptr::null_mut()))?;
            let dylib = LLVMOrcLLJITGetMainJITDylib(lljit);
            let mut symbols: Vec<LLVMOrcCSymbolMapPair> = kiln_builtins::all_symbols()
                .map(|(name, addr)| {
                    let name = CString::new(name).expect("builtin names hold no NUL");
                    LLVMOrcCSymbolMapPair {
                        Name: LLVMOrcLLJITMangleAndIntern(lljit, name.as_ptr()),
                        Sym: LLVMJITEvaluatedSymbol {
                            Address: addr as u64,
                            Flags: LLVMJITSymbolFlags {
                                GenericFlags: LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsExported
                                    as u8
                                    | LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsCallable
                                        as u8,
                                TargetFlags: 0,
                            },
                        },
                    }
                })
                .collect();
            let unit = LLVMOrcAbsoluteSymbols(symbols.as_mut_ptr(), symbols.len());
            if let Err(e) = take_error(LLVMOrcJITDylibDefine(dylib, unit)) {
                // A failed definition leaves the unit with the caller.
                LLVMOrcDisposeMaterializationUnit(unit);
                return Err(e);
            }
            let mut generator = std::ptr::null_mut();
            take_error(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                &mut generator,
                LLVMOrcLLJITGetGlobalPrefix(lljit),
                None,
                std::ptr::null_mut(),
            ))?;
            LLVMOrcJITDylibAddGenerator(dylib, generator);
            Ok(Jit { lljit, dylib })
        }
    })
    .as_ref()
    .map_err(|e| CompileError::Llvm(format!("JIT set-up: {e}")))
}

/// Turns an `LLVMErrorRef` into a message, consuming it.
///
/// # Safety
/// `err` is null or an unconsumed error.
unsafe fn take_error(err: LLVMErrorRef) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: per the contract, `err` is an unconsumed error; getting its message consumes it,
    // and the message is disposed of after copying.
    unsafe {
        let msg = LLVMGetErrorMessage(err);
        let text = CStr::from_ptr(msg).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(msg);
        Err(text)
    }
}

/// A fresh name for a JIT entry symbol: every function shares the process's main JIT dylib, so
/// each needs its own.
pub fn next_entry_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Objects outlive the process that named them (the artifact cache): a random per-process
    // salt keeps a later process's names from meeting theirs.
    static SALT: OnceLock<u64> = OnceLock::new();
    let salt = *SALT.get_or_init(|| {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    });
    format!(
        "kiln_jit_{salt:016x}_{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds and emits the object of a JIT function whose entry symbol is `entry`.
fn emit_object(
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
    params: &[u32],
    entry: &str,
) -> Result<(LLVMMemoryBufferRef, usize), CompileError> {
    let cx = Context::create();
    // Nobody reads the IR of a JIT compilation, and naming every value (unique names in a
    // string map per function) is a visible part of a baseline compilation.
    // SAFETY: `cx` is a live context; the flag only stops it from storing value names.
    unsafe { llvm_sys::core::LLVMContextSetDiscardValueNames(cx.raw(), 1) };
    let built = build_module(
        &cx,
        code,
        spec,
        opts,
        coverage,
        params,
        Linking::Direct,
        entry,
    )?;
    let object: MemoryBuffer<'_> = built.emit(FileType::Object)?;
    // The raw buffer outlives the context and module it was emitted from; its owner frees it
    // (hence the `forget`).
    let raw = (object.as_mut_ptr(), object.get_size());
    std::mem::forget(object);
    Ok(raw)
}

pub(crate) fn compile(
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
) -> Result<JitFunction, CompileError> {
    // Held until the code is linked: LLVM work from set-up to ORC's lookup.
    let _active = crate::exit_guard::enter()?;
    let jit = jit()?;
    let name = next_entry_name();
    let (buffer, size) = emit_object(code, spec, opts, coverage, &[], &name)?;
    // SAFETY: `buffer` is an object buffer this function owns, handed over once.
    unsafe { link(jit, buffer, size, &name) }
}

/// Compiles `code` to a relocatable object for [`link_jit_object`]: the entry symbol is
/// `entry` (from [`next_entry_name`] of the process that will link it) and builtins are called
/// by name. A compile helper process returns this to the node. With `params`, the function
/// reads those PUSH immediates from the running code, so that every member of `code`'s family
/// with the same [`crate::family::digest`] can run it.
pub fn compile_object(
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
    params: &[u32],
    entry: &str,
) -> Result<Vec<u8>, CompileError> {
    let _active = crate::exit_guard::enter()?;
    crate::init_llvm()?;
    let (buffer, size) = emit_object(code, spec, opts, coverage, params, entry)?;
    // SAFETY: `buffer` is a live memory buffer of `size` bytes that this function owns; it is
    // copied, then disposed of exactly once.
    unsafe {
        let bytes =
            std::slice::from_raw_parts(LLVMGetBufferStart(buffer).cast::<u8>(), size).to_vec();
        LLVMDisposeMemoryBuffer(buffer);
        Ok(bytes)
    }
}

/// Links an object made by [`compile_object`] into this process's JIT. A malformed object is
/// an error, not a crash; objects from untrusted places must be checked (checksum, key) first,
/// since linking native code is running it.
pub fn link_jit_object(object: &[u8], entry: &str) -> Result<JitFunction, CompileError> {
    let _active = crate::exit_guard::enter()?;
    let jit = jit()?;
    let name = CString::new("kiln-object").expect("no NUL");
    // SAFETY: the range is a live slice; LLVM copies it into a buffer this function owns and
    // hands to `link`.
    let buffer = unsafe {
        LLVMCreateMemoryBufferWithMemoryRangeCopy(
            object.as_ptr().cast(),
            object.len(),
            name.as_ptr(),
        )
    };
    // SAFETY: `buffer` was just created and is handed over once.
    unsafe { link(jit, buffer, object.len(), entry) }
}

/// Adds an object to the JIT and looks its entry up.
///
/// # Safety
/// `buffer` is an owned, live LLVM memory buffer holding an object file; ownership passes to
/// ORC.
unsafe fn link(
    jit: &Jit,
    buffer: LLVMMemoryBufferRef,
    object_bytes: usize,
    entry: &str,
) -> Result<JitFunction, CompileError> {
    let cname =
        CString::new(entry).map_err(|_| CompileError::Internal("entry name holds a NUL".into()))?;
    // SAFETY: `jit` lives for the process; ORC takes the object buffer whether adding succeeds
    // or fails; the tracker is removed on every error path after it is created, and otherwise
    // owned by the returned `JitFunction`.
    unsafe {
        let tracker = LLVMOrcJITDylibCreateResourceTracker(jit.dylib);
        let linked = take_error(LLVMOrcLLJITAddObjectFileWithRT(jit.lljit, tracker, buffer))
            .and_then(|()| {
                let mut addr = 0;
                take_error(LLVMOrcLLJITLookup(jit.lljit, &mut addr, cname.as_ptr()))?;
                if addr == 0 {
                    return Err("the entry symbol resolved to address 0".to_string());
                }
                Ok(addr)
            });
        match linked {
            Ok(addr) => Ok(JitFunction {
                // SAFETY: `addr` is the entry of the function just linked, lowered with the
                // `CompiledFn` signature (see `lower`).
                func: std::mem::transmute::<usize, CompiledFn>(addr as usize),
                tracker,
                object_bytes,
            }),
            Err(e) => {
                let _ = take_error(LLVMOrcResourceTrackerRemove(tracker));
                LLVMOrcReleaseResourceTracker(tracker);
                Err(CompileError::Llvm(format!("JIT link: {e}")))
            }
        }
    }
}
