//! [`Runtime`]: the store, the policy that fills it, and the workers it owns.

use crate::{
    policy::{
        first_sight,
        profiled::{self, Profile, Profiled},
        tiered::{self, Tier, Tiered},
        CompilePolicy, DEFAULT_PROMOTE_AFTER,
    },
    ArtifactDir, ArtifactKey, Captures, CodeKey, CompiledCode, Entry, RuntimeError, RuntimeStats,
    Store, Usage, UsageReports,
};
use kiln_compiler::{CompileError, CompileOptions, Coverage, OptLevel};
use revm::primitives::{hardfork::SpecId, B256};
use std::{
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

/// Where compiled code comes from.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Nothing is compiled: every frame runs on revm's interpreter.
    Interpreter,
    /// Compile in-process.
    Jit,
    /// Compile to shared libraries in (and load them from) this artifact directory.
    Aot(ArtifactDir),
}

/// What [`Runtime::lookup`] found for a frame's code.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Compiled code to run.
    Ready(Arc<CompiledCode>),
    /// Baseline code to run that may still be promoted ([`CompilePolicy::Tiered`]): callers
    /// that remember it should look it up again now and then, since each lookup counts towards
    /// the promotion.
    Baseline(Arc<CompiledCode>),
    /// This code never runs compiled here (compilation failed or was refused, or the runtime
    /// compiles nothing): callers may remember that.
    Never,
    /// Not compiled yet; a background compilation may still fill it in.
    NotYet,
    /// Not compiled yet: interpret the frame and record what runs into this profile.
    Profile(Arc<Profile>),
    /// New code waits for verification: run this (the code it replaces), or the interpreter,
    /// and record the transaction ([`crate::Capture`]).
    Verifying(Option<Arc<CompiledCode>>),
}

impl From<Entry> for Lookup {
    fn from(entry: Entry) -> Self {
        match entry {
            Entry::Ready(f) => Self::Ready(f),
            Entry::Failed(_) => Self::Never,
            Entry::Profiling(p) => Self::Profile(p),
            Entry::Verifying(f) => Self::Verifying(f),
        }
    }
}

/// The registry plus the policy for filling it: what every EVM built by kiln shares across
/// frames, transactions and threads. It owns its background threads:
/// [`Runtime::shutdown`] (or dropping the runtime) joins them.
#[derive(Debug)]
pub struct Runtime {
    backend: Backend,
    policy: CompilePolicy,
    options: CompileOptions,
    store: Store,
    usage: Usage,
    reports: UsageReports,
    captures: Captures,
    pub(crate) profiled: Profiled,
    /// The tiered policy's state, when it is in force (JIT above the baseline level).
    tiered: Option<Tiered>,
    /// Counters.
    pub stats: RuntimeStats,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Runtime {
    /// A runtime with the given backend and policy.
    pub fn new(backend: Backend, policy: CompilePolicy, options: CompileOptions) -> Self {
        let tiered = match policy {
            CompilePolicy::Tiered { promote_after }
                if matches!(backend, Backend::Jit) && options.opt_level != OptLevel::Baseline =>
            {
                Some(Tiered::new(promote_after))
            }
            _ => None,
        };
        Self {
            backend,
            policy,
            options,
            store: Store::default(),
            usage: Usage::default(),
            reports: UsageReports::default(),
            captures: Captures::default(),
            profiled: Profiled::default(),
            tiered,
            stats: RuntimeStats::default(),
        }
    }

    /// A runtime that never compiles: kiln's EVM then behaves exactly as stock revm.
    pub fn interpreter() -> Arc<Self> {
        Arc::new(Self::new(
            Backend::Interpreter,
            CompilePolicy::LookupOnly,
            CompileOptions::default(),
        ))
    }

    /// A JIT runtime that compiles each code the first time it runs, at the default level.
    pub fn jit() -> Arc<Self> {
        Arc::new(Self::new(
            Backend::Jit,
            CompilePolicy::OnFirstSight,
            CompileOptions::default(),
        ))
    }

    /// A JIT runtime that compiles each code at the baseline tier the first time it runs and
    /// optimises the code that keeps running in the background ([`CompilePolicy::Tiered`]):
    /// what a node wants, since a first compilation at the default level stalls the
    /// transaction that meets the code for as long as LLVM takes.
    pub fn tiered() -> Arc<Self> {
        Arc::new(Self::new(
            Backend::Jit,
            CompilePolicy::Tiered {
                promote_after: DEFAULT_PROMOTE_AFTER,
            },
            CompileOptions::default(),
        ))
    }

    /// Stops the runtime's background work: no compilation is queued from now on, queued ones
    /// are dropped, and this returns once the compilation in flight has finished and every
    /// worker thread has been joined. Code already registered keeps running; baseline code is
    /// not promoted any more. Call it before the process exits (it also runs on drop).
    pub fn shutdown(&self) {
        if let Some(tiered) = &self.tiered {
            tiered.workers().shutdown();
        }
    }

    /// Background compilations queued and running now.
    pub fn background_jobs(&self) -> (usize, usize) {
        self.tiered
            .as_ref()
            .map_or((0, 0), |t| (t.workers().queued(), t.workers().in_flight()))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Lookups per code.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Per-block usage handed over by EVMs (collected only once turned on).
    pub fn usage_reports(&self) -> &UsageReports {
        &self.reports
    }

    /// Transactions recorded for verification, on their way from EVMs to the verifier.
    pub fn captures(&self) -> &Captures {
        &self.captures
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The policy.
    pub fn policy(&self) -> CompilePolicy {
        self.policy
    }

    /// The compile options.
    pub fn options(&self) -> &CompileOptions {
        &self.options
    }

    /// Whether this runtime ever runs compiled code.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.backend, Backend::Interpreter)
    }

    /// Whether this runtime compiles a baseline tier first and promotes it
    /// ([`CompilePolicy::Tiered`] on the JIT backend above the baseline level).
    pub fn is_tiered(&self) -> bool {
        self.tiered.is_some()
    }

    /// The tier of the compiled code registered for `(hash, spec)`, if any.
    pub fn tier(&self, hash: B256, spec: SpecId) -> Option<Tier> {
        self.apply_promotions();
        match self.get(hash, spec)? {
            Entry::Ready(_) => {}
            Entry::Failed(_) | Entry::Profiling(_) | Entry::Verifying(_) => return None,
        }
        Some(
            self.tiered
                .as_ref()
                .map_or(Tier::Optimised, |t| t.tier((hash, spec))),
        )
    }

    /// Installs the optimised functions the background worker has finished (tiered policy).
    pub fn apply_promotions(&self) {
        if let Some(tiered) = &self.tiered {
            tiered.apply_promotions(self);
        }
    }

    /// The entry for `(hash, spec)`, if any.
    pub fn get(&self, hash: B256, spec: SpecId) -> Option<Entry> {
        self.store.get((hash, spec))
    }

    /// Inserts an entry (background compilers and AOT preloading use this).
    pub fn insert(&self, hash: B256, spec: SpecId, entry: Entry) {
        self.store.insert((hash, spec), entry);
    }

    /// Removes an entry; running frames keep their `Arc` alive.
    pub fn remove(&self, hash: B256, spec: SpecId) -> Option<Entry> {
        self.store.remove((hash, spec))
    }

    /// The store's change counter ([`Store::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.store.epoch()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Starts recording what the frames of `(hash, spec)` execute (they run on the
    /// interpreter until the entry is replaced) and returns the profile; the existing one if it
    /// is being profiled already, `None` if it is compiled or failed.
    pub fn start_profile(&self, hash: B256, spec: SpecId) -> Option<Arc<Profile>> {
        let mut map = self.store.write();
        match map
            .entry((hash, spec))
            .or_insert_with(|| Entry::Profiling(Arc::default()))
        {
            Entry::Profiling(p) => Some(p.clone()),
            Entry::Ready(_) | Entry::Failed(_) | Entry::Verifying(_) => None,
        }
    }

    /// The compiled function for a frame, compiling it first if the policy says so.
    pub fn lookup(&self, hash: B256, spec: SpecId, code: impl FnOnce() -> Vec<u8>) -> Lookup {
        if !self.is_enabled() {
            return Lookup::Never;
        }
        let key = (hash, spec);
        if let Some(tiered) = &self.tiered {
            let lookups = self.usage.record_lookup(key);
            return tiered::lookup(self, tiered, key, lookups, code);
        }
        match self.policy {
            CompilePolicy::LookupOnly => self.store.get(key).map_or(Lookup::NotYet, Into::into),
            CompilePolicy::AfterProfile { runs } => profiled::lookup(self, key, runs, code),
            // Tiered without a tier to promote to (baseline level, AOT) compiles on first sight.
            CompilePolicy::OnFirstSight | CompilePolicy::Tiered { .. } => {
                first_sight::lookup(self, key, code)
            }
        }
    }

    /// Adds `n` hand-overs at cold code of the function for `(hash, spec)`; once a function
    /// this runtime compiled from its own profile reaches
    /// [`COLD_HANDOFFS_BEFORE_REPROFILE`](crate::COLD_HANDOFFS_BEFORE_REPROFILE), its code is
    /// profiled again from the old profile (EVMs that hold the function profile from their next
    /// transaction on).
    pub fn note_cold_handoffs(&self, hash: B256, spec: SpecId, n: u64) {
        self.stats.cold_handoffs.fetch_add(n, Ordering::Relaxed);
        let Some(coverage) = self.profiled.note_cold_handoffs((hash, spec), n) else {
            return;
        };
        let mut map = self.store.write();
        if let Some(slot @ Entry::Ready(_)) = map.get_mut(&(hash, spec)) {
            *slot = Entry::Profiling(Arc::new(Profile::seeded(coverage)));
            self.stats.reprofiles.fetch_add(1, Ordering::Relaxed);
            drop(map);
            self.store.bump_epoch();
            tracing::debug!(%hash, ?spec, "cold code ran often: profiling again");
        }
    }

    /// Compiles `code` and wraps the result as a registry entry (a failure becomes
    /// [`Entry::Failed`], logged).
    pub(crate) fn compile_entry(
        &self,
        key: CodeKey,
        code: &[u8],
        coverage: Option<&Coverage>,
    ) -> Entry {
        match self.compile(key.0, key.1, code, coverage) {
            Ok(f) => Entry::Ready(Arc::new(f)),
            Err(e) => {
                tracing::debug!(hash = %key.0, spec = ?key.1, error = %e, "compilation failed; code stays on the interpreter");
                Entry::Failed(e.to_string().into())
            }
        }
    }

    /// Compiles `code` with this runtime's backend, without touching the registry: all of it,
    /// or with `coverage` (JIT only) the blocks a profiled run entered
    /// ([`kiln_compiler::Coverage`]).
    pub fn compile(
        &self,
        hash: B256,
        spec: SpecId,
        code: &[u8],
        coverage: Option<&Coverage>,
    ) -> Result<CompiledCode, RuntimeError> {
        self.timed_compile((hash, spec), code, || match &self.backend {
            Backend::Interpreter => {
                Err(CompileError::Unsupported("the interpreter backend compiles nothing").into())
            }
            Backend::Jit => Ok(CompiledCode::Jit(kiln_compiler::compile_jit(
                code,
                spec,
                &self.options,
                coverage,
            )?)),
            // An artifact is keyed by code, spec and compiler: one compiled from a profile would
            // be loaded for runs it was not made for.
            Backend::Aot(_) if coverage.is_some() => Err(CompileError::Unsupported(
                "profile-guided compilation is JIT-only (artifact keys hold no profile)",
            )
            .into()),
            Backend::Aot(dir) => Ok(CompiledCode::Aot(dir.load_or_compile(
                &ArtifactKey::new(hash, spec),
                code,
                &self.options,
            )?)),
        })
    }

    /// Runs `compile`, counting it in the statistics.
    pub(crate) fn timed_compile<E>(
        &self,
        key: CodeKey,
        code: &[u8],
        compile: impl FnOnce() -> Result<CompiledCode, E>,
    ) -> Result<CompiledCode, E> {
        let start = Instant::now();
        let result = compile();
        let elapsed = start.elapsed();
        self.stats
            .compile_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if elapsed.as_secs() >= 1 {
            tracing::warn!(hash = %key.0, spec = ?key.1, bytes = code.len(), ms = elapsed.as_millis() as u64, "slow compilation");
        }
        match &result {
            Ok(_) => self.stats.compilations.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.compile_failures.fetch_add(1, Ordering::Relaxed),
        };
        result
    }
}
