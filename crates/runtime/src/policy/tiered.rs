//! [`CompilePolicy::Tiered`](super::CompilePolicy::Tiered): baseline code on first sight, the
//! optimising compilation on a background worker once the code keeps being looked up.

use crate::RuntimeError;
use crate::{
    runtime::Lookup,
    workers::{CompileRequest, InProcess, WorkerPool},
    CodeKey, CompiledCode, Entry, Runtime,
};
use kiln_compiler::{CompileOptions, OptLevel};
use rustc_hash::FxHashMap;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

/// Which tier a registry entry's code was compiled at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// [`OptLevel::Baseline`], waiting for promotion.
    Baseline,
    /// Baseline code whose optimising compilation is running in the background.
    Promoting,
    /// Baseline code for good: its optimising compilation failed (and is not retried).
    BaselineKept,
    /// The runtime's own options.
    Optimised,
}

/// A baseline function waiting for promotion.
#[derive(Debug)]
struct Tiering {
    promoting: bool,
    /// The optimising compilation failed: the baseline code stays for good.
    failed: bool,
    code: Arc<[u8]>,
}

/// A finished optimising compilation, for the execution path to install.
struct Promoted {
    key: CodeKey,
    /// The code it replaces: the result is installed only where this is still registered.
    baseline: Arc<CompiledCode>,
    result: Result<CompiledCode, RuntimeError>,
    micros: u64,
}

/// The tiered policy's state: baseline functions not yet replaced, the worker that optimises
/// them, and its finished work.
pub(crate) struct Tiered {
    promote_after: u64,
    tiering: Mutex<FxHashMap<CodeKey, Tiering>>,
    workers: WorkerPool,
    done: Arc<Mutex<Vec<Promoted>>>,
    /// Set when `done` holds something: the execution path checks it on every lookup.
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Tiered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiered")
            .field("promote_after", &self.promote_after)
            .field("workers", &self.workers)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tiered {
    /// The policy's state, with one background worker.
    pub(crate) fn new(promote_after: u64) -> Self {
        Self {
            promote_after,
            tiering: Mutex::default(),
            workers: WorkerPool::new(Arc::new(InProcess), 1, "kiln-optimise"),
            done: Arc::default(),
            ready: Arc::default(),
        }
    }

    /// The background worker pool.
    pub(crate) fn workers(&self) -> &WorkerPool {
        &self.workers
    }

    /// The tier of compiled code registered for `key` (which is compiled).
    pub(crate) fn tier(&self, key: CodeKey) -> Tier {
        match self
            .tiering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            Some(t) if t.promoting => Tier::Promoting,
            Some(t) if t.failed => Tier::BaselineKept,
            Some(_) => Tier::Baseline,
            None => Tier::Optimised,
        }
    }

    /// Hands baseline code to the background worker once it has been looked up often enough
    /// (`lookups`, from the runtime's [`Usage`](crate::Usage)). Returns whether the code may
    /// still be promoted (it is baseline code, not kept after a failed promotion).
    fn note_lookup(
        &self,
        rt: &Runtime,
        key: CodeKey,
        lookups: u64,
        baseline: &Arc<CompiledCode>,
    ) -> bool {
        let request = {
            let mut tiering = self.tiering.lock().unwrap_or_else(|e| e.into_inner());
            let Some(t) = tiering.get_mut(&key) else {
                return false;
            };
            if t.failed {
                return false;
            }
            if t.promoting || lookups < self.promote_after {
                return true;
            }
            t.promoting = true;
            CompileRequest::new(key.0, key.1, t.code.clone(), *rt.options())
        };
        let (done, ready, baseline) = (self.done.clone(), self.ready.clone(), baseline.clone());
        let sent = self.workers.submit(
            request,
            Box::new(move |result, elapsed| {
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Promoted {
                        key,
                        baseline,
                        result,
                        micros: elapsed.as_micros() as u64,
                    });
                ready.store(true, Ordering::Release);
            }),
        );
        if sent.is_err() {
            tracing::debug!("the background compiler has stopped; baseline code stays");
            self.keep_baseline(key);
            return false;
        }
        true
    }

    /// Gives up promoting `key`: its baseline code stays for good and is not sent again.
    fn keep_baseline(&self, key: CodeKey) {
        if let Some(t) = self
            .tiering
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key)
        {
            t.promoting = false;
            t.failed = true;
        }
    }

    /// Installs the optimised functions the background worker has finished.
    pub(crate) fn apply_promotions(&self, rt: &Runtime) {
        // A plain load first: every lookup comes here, and a swap would write the shared line.
        if !self.ready.load(Ordering::Relaxed) || !self.ready.swap(false, Ordering::Acquire) {
            return;
        }
        let done = std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()));
        let stats = &rt.stats;
        for p in done {
            stats.compile_micros.fetch_add(p.micros, Ordering::Relaxed);
            match p.result {
                Ok(code) => {
                    stats.compilations.fetch_add(1, Ordering::Relaxed);
                    // Only over the code it was compiled to replace: an entry removed or
                    // replaced (an AOT preload) in the meantime stays as it is.
                    let installed = {
                        let mut map = rt.store().write();
                        match map.get_mut(&p.key) {
                            Some(slot) if matches!(&*slot, Entry::Ready(f) if Arc::ptr_eq(f, &p.baseline)) =>
                            {
                                *slot = Entry::Ready(Arc::new(code));
                                true
                            }
                            _ => false,
                        }
                    };
                    if installed {
                        stats.promotions.fetch_add(1, Ordering::Relaxed);
                        rt.store().bump_epoch();
                    }
                    self.tiering
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&p.key);
                }
                Err(e) => {
                    // The baseline code is correct, only slower: it stays, and is not retried.
                    stats.compile_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(hash = %p.key.0, spec = ?p.key.1, error = %e, "optimising compilation failed; the baseline code stays");
                    self.keep_baseline(p.key);
                }
            }
        }
    }
}

/// The entry for `key` under the tiered policy: baseline code compiled now if there is none.
pub(crate) fn lookup(
    rt: &Runtime,
    tiered: &Tiered,
    key: CodeKey,
    lookups: u64,
    code: impl FnOnce() -> Vec<u8>,
) -> Lookup {
    tiered.apply_promotions(rt);
    match rt.store().get(key) {
        Some(Entry::Ready(f)) => {
            return if tiered.note_lookup(rt, key, lookups, &f) {
                Lookup::Baseline(f)
            } else {
                Lookup::Ready(f)
            };
        }
        Some(entry) => return entry.into(),
        None => {}
    }
    let code = code();
    let options = CompileOptions {
        opt_level: OptLevel::Baseline,
        ..*rt.options()
    };
    let baseline = rt.timed_compile(key, &code, || {
        kiln_compiler::compile_jit(&code, key.1, &options, None).map(CompiledCode::Jit)
    });
    let mine = match baseline {
        Ok(f) => Arc::new(f),
        // A limit only the baseline tier has (its jump table): the default level may still
        // take the code.
        Err(e) => {
            tracing::debug!(hash = %key.0, spec = ?key.1, error = %e, "baseline compilation failed; compiling at the default level");
            let entry = rt.compile_entry(key, &code, None);
            return rt.store().insert_if_absent(key, entry).into();
        }
    };
    let found = rt.store().insert_if_absent(key, Entry::Ready(mine.clone()));
    // Tracked for promotion only if the registry took this thread's baseline code (another
    // thread's, or its promotion, may have got there first).
    if let Entry::Ready(kept) = &found {
        if Arc::ptr_eq(&mine, kept) {
            tiered
                .tiering
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key)
                .or_insert_with(|| Tiering {
                    promoting: false,
                    failed: false,
                    code: code.into(),
                });
            if tiered.note_lookup(rt, key, lookups, kept) {
                return Lookup::Baseline(kept.clone());
            }
        }
    }
    found.into()
}
