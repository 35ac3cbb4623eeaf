//! Counters a runtime keeps for reporting.

use std::sync::atomic::AtomicU64;

/// Counters kept by the runtime (relaxed atomics: they are for reporting only). EVMs add their
/// frame counters in batches and when they are dropped, not per frame.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Frames that ran compiled code.
    pub compiled_frames: AtomicU64,
    /// Frames that ran on the interpreter.
    pub interpreted_frames: AtomicU64,
    /// Times compiled code handed its frame to the interpreter mid-way (a failed section check,
    /// which then halts with the exact reason, an entry at an unknown pc, or cold code).
    pub handoffs: AtomicU64,
    /// Of those, hand-overs at code a profile-guided compilation left out.
    pub cold_handoffs: AtomicU64,
    /// Functions profiled again after
    /// [`COLD_HANDOFFS_BEFORE_REPROFILE`](crate::COLD_HANDOFFS_BEFORE_REPROFILE) cold hand-overs.
    pub reprofiles: AtomicU64,
    /// Successful compilations.
    pub compilations: AtomicU64,
    /// Failed compilations.
    pub compile_failures: AtomicU64,
    /// Total compile time in microseconds (background compilations included).
    pub compile_micros: AtomicU64,
    /// Baseline functions replaced by optimised ones ([`crate::CompilePolicy::Tiered`]).
    pub promotions: AtomicU64,
}
