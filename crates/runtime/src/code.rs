//! Compiled code as the registry owns it.

use kiln_builtins::CompiledFn;
use kiln_compiler::{aot::AotFunction, JitFunction};

/// Compiled code owned by a registry entry. Dropping the last `Arc` frees it.
#[derive(Debug)]
pub enum CompiledCode {
    /// In-process JIT code.
    Jit(JitFunction),
    /// A loaded AOT library.
    Aot(AotFunction),
}

impl CompiledCode {
    /// The entry point.
    pub fn as_fn(&self) -> CompiledFn {
        match self {
            Self::Jit(f) => f.as_fn(),
            Self::Aot(f) => f.as_fn(),
        }
    }
}
