//! [`CompilePolicy::AfterProfile`](super::CompilePolicy::AfterProfile): interpret a code's first
//! frames while recording which instructions run, then compile only those; profile again when
//! traffic keeps leaving the compiled part.

use crate::{
    runtime::{Backend, Lookup},
    CodeKey, Entry, Runtime,
};
use kiln_compiler::Coverage;
use rustc_hash::FxHashMap;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

/// What the execution path has recorded of one code while it runs on the interpreter: the
/// union of the instructions its frames ran, and how many frame runs (a frame resumed after a
/// call runs again) contributed.
#[derive(Debug, Default)]
pub struct Profile {
    coverage: Mutex<Coverage>,
    runs: AtomicU64,
    /// pcs it started with (a profile widened after cold hand-overs starts from the old one).
    seed: usize,
}

impl Profile {
    /// A profile that starts from what an earlier one recorded.
    pub fn seeded(coverage: Coverage) -> Self {
        Self {
            seed: coverage.len(),
            coverage: Mutex::new(coverage),
            runs: AtomicU64::new(0),
        }
    }

    /// Adds what one frame run executed.
    pub fn record(&self, run: &Coverage) {
        self.coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(run);
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Frame runs recorded so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The instructions recorded so far, if they are more than the profile started with: a
    /// widened profile that found nothing new means the paths it was widened for are too rare
    /// to profile.
    pub fn grown_coverage(&self) -> Option<Coverage> {
        Some(self.coverage()).filter(|c| c.len() > self.seed)
    }

    /// The instructions recorded so far.
    pub fn coverage(&self) -> Coverage {
        self.coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Hand-overs at cold code ([`kiln_builtins::STATUS_COLD_CODE`]) after which a function
/// compiled from a profile is profiled again, starting from its old profile: traffic took paths
/// the first profile never saw. If the new profile adds nothing, the whole code is compiled, so
/// this happens at most once per new path.
pub const COLD_HANDOFFS_BEFORE_REPROFILE: u64 = 64;

/// A function compiled from a profile, for widening that profile.
#[derive(Debug)]
struct Compiled {
    coverage: Coverage,
    cold_handoffs: u64,
}

/// The functions a runtime compiled from its own profiles.
#[derive(Debug, Default)]
pub(crate) struct Profiled {
    compiled: Mutex<FxHashMap<CodeKey, Compiled>>,
}

/// The entry for `key` under `AfterProfile { runs }`: a profile to record into until it has
/// `runs` frame runs, then code compiled from it.
pub(crate) fn lookup(
    rt: &Runtime,
    key: CodeKey,
    runs: u64,
    code: impl FnOnce() -> Vec<u8>,
) -> Lookup {
    let jit = matches!(rt.backend(), Backend::Jit);
    let profile = match rt.store().get(key) {
        Some(Entry::Profiling(p)) if p.runs() >= runs => p,
        Some(entry) => return entry.into(),
        None if runs > 0 && jit => {
            return match rt.start_profile(key.0, key.1) {
                Some(p) => Lookup::Profile(p),
                // Another thread compiled it in the meantime.
                None => rt.store().get(key).map_or(Lookup::NotYet, Into::into),
            };
        }
        None => return super::first_sight::lookup(rt, key, code),
    };
    // Without new pcs in the profile (or on AOT, whose artifacts hold no profile), the whole
    // code.
    let coverage = profile.grown_coverage().filter(|_| jit);
    let entry = rt.compile_entry(key, &code(), coverage.as_ref());
    let (found, replaced) = {
        let mut map = rt.store().write();
        let slot = map.entry(key).or_insert_with(|| entry.clone());
        // The profile this compilation came from gives way to it; anything else another thread
        // put there first stays.
        let replaced = matches!(&*slot, Entry::Profiling(p) if Arc::ptr_eq(p, &profile));
        if replaced {
            *slot = entry.clone();
        }
        (slot.clone(), replaced)
    };
    if let (true, Entry::Ready(_), Some(coverage)) = (replaced, &entry, coverage) {
        rt.profiled
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                Compiled {
                    coverage,
                    cold_handoffs: 0,
                },
            );
    }
    found.into()
}

impl Profiled {
    /// Adds `n` cold hand-overs of `key`'s function and returns its coverage once a function
    /// compiled from a profile reached [`COLD_HANDOFFS_BEFORE_REPROFILE`] (forgetting it).
    pub(crate) fn note_cold_handoffs(&self, key: CodeKey, n: u64) -> Option<Coverage> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let c = compiled.get_mut(&key)?;
        c.cold_handoffs += n;
        if c.cold_handoffs < COLD_HANDOFFS_BEFORE_REPROFILE {
            return None;
        }
        compiled.remove(&key).map(|c| c.coverage)
    }
}
