//! Profiling for profile-guided compilation: an inspector that records which instructions of
//! each code ran, as the [`Coverage`] that [`Runtime::compile`](crate::Runtime::compile) takes.

use kiln_compiler::Coverage;
use revm::{
    interpreter::{interpreter::EthInterpreter, interpreter_types::Jumps, Interpreter},
    primitives::B256,
    Inspector,
};
use rustc_hash::FxHashMap;

/// Records the pcs each code (by code hash) executes. Attach it to a run on revm's inspector
/// path (which is the interpreter: compiled code has no per-step hook) and compile with what it
/// saw; it adds one hash-map update per instruction, so it is for sampled runs, not every block.
#[derive(Clone, Debug, Default)]
pub struct CoverageInspector {
    by_code: FxHashMap<B256, Coverage>,
}

impl CoverageInspector {
    /// An inspector that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What ran of the code with this hash, if any of it did.
    pub fn coverage(&self, code_hash: &B256) -> Option<&Coverage> {
        self.by_code.get(code_hash)
    }

    /// Every code seen and what ran of it.
    pub fn into_coverage(self) -> FxHashMap<B256, Coverage> {
        self.by_code
    }
}

impl<CTX> Inspector<CTX, EthInterpreter> for CoverageInspector {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        let hash = interp.bytecode.get_or_calculate_hash();
        let pc = interp.bytecode.pc();
        self.by_code.entry(hash).or_default().record(pc);
    }
}
