//! In-process JIT: LLVM's MCJIT, one LLVM context per compiled function.

use crate::{
    build_module, host_target_machine, lower::Linking, CompileError, CompileOptions, Coverage,
    AOT_ENTRY_SYMBOL,
};
use inkwell::{context::Context, execution_engine::ExecutionEngine, module::Module};
use kiln_builtins::CompiledFn;
use revm::primitives::hardfork::SpecId;
use std::mem::ManuallyDrop;

/// A function compiled into executable memory owned by this value. Dropping it frees the code, so
/// the registry entry that owns it must outlive every call.
pub struct JitFunction {
    func: CompiledFn,
    // Field order matters only through `Drop` below: module, engine, then the context.
    module: ManuallyDrop<Module<'static>>,
    engine: ManuallyDrop<ExecutionEngine<'static>>,
    context: *mut Context,
}

// SAFETY: after compilation the LLVM context, module and engine are never used again except to
// be dropped, which happens once, from whichever thread drops the last owner; the compiled code
// itself is immutable machine code.
unsafe impl Send for JitFunction {}
// SAFETY: see `Send`; calling the function pointer does not touch LLVM state.
unsafe impl Sync for JitFunction {}

impl std::fmt::Debug for JitFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitFunction")
            .field("func", &(self.func as usize as *const ()))
            .finish()
    }
}

impl JitFunction {
    /// The compiled entry point.
    pub fn as_fn(&self) -> CompiledFn {
        self.func
    }
}

impl Drop for JitFunction {
    fn drop(&mut self) {
        // SAFETY: each field is dropped exactly once, in dependency order (the module is owned by
        // the engine, the engine borrows the context), and the context came from Box::into_raw.
        unsafe {
            ManuallyDrop::drop(&mut self.module);
            ManuallyDrop::drop(&mut self.engine);
            drop(Box::from_raw(self.context));
        }
    }
}

pub(crate) fn compile(
    code: &[u8],
    spec: SpecId,
    opts: &CompileOptions,
    coverage: Option<&Coverage>,
) -> Result<JitFunction, CompileError> {
    let tm = host_target_machine(opts.opt_level)?;
    let context: *mut Context = Box::into_raw(Box::new(Context::create()));
    // SAFETY: the context lives until `JitFunction::drop` (or the error path below) frees it;
    // nothing borrowed from it escapes that lifetime.
    let cx: &'static Context = unsafe { &*context };
    let built = (|| {
        let (module, level) = build_module(cx, code, spec, opts, coverage, Linking::Direct, &tm)?;
        let engine = module
            .create_jit_execution_engine(level.llvm())
            .map_err(|e| CompileError::Llvm(e.to_string()))?;
        for (name, addr) in kiln_builtins::all_symbols() {
            if let Some(f) = module.get_function(name) {
                engine.add_global_mapping(&f, addr);
            }
        }
        let addr = engine
            .get_function_address(AOT_ENTRY_SYMBOL)
            .map_err(|e| CompileError::Llvm(format!("JIT lookup: {e}")))?;
        Ok((module, engine, addr))
    })();
    match built {
        Ok((module, engine, addr)) => {
            // SAFETY: `addr` is the address of the function just compiled with the
            // `CompiledFn` signature (see `lower`).
            let func: CompiledFn = unsafe { std::mem::transmute::<usize, CompiledFn>(addr) };
            Ok(JitFunction {
                func,
                module: ManuallyDrop::new(module),
                engine: ManuallyDrop::new(engine),
                context,
            })
        }
        Err(e) => {
            // SAFETY: everything borrowing the context was dropped inside the closure.
            unsafe { drop(Box::from_raw(context)) };
            Err(e)
        }
    }
}
