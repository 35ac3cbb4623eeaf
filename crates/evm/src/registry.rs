//! The registry of compiled functions, keyed by (code hash, spec), and the policy that fills it.

use kiln_builtins::CompiledFn;
use kiln_compiler::{
    aot::{AotFunction, ArtifactDir, ArtifactKey},
    CompileError, CompileOptions, Coverage, JitFunction, OptLevel,
};
use revm::primitives::{hardfork::SpecId, B256};
use rustc_hash::FxHashMap;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
    time::Instant,
};

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
            CompiledCode::Jit(f) => f.as_fn(),
            CompiledCode::Aot(f) => f.as_fn(),
        }
    }
}

/// What the registry knows about one (code hash, spec).
#[derive(Clone, Debug)]
pub enum Entry {
    /// Compiled and ready.
    Ready(Arc<CompiledCode>),
    /// Compilation failed or was refused; the code stays on the interpreter.
    Failed(Arc<str>),
    /// Not compiled yet: its frames run on the interpreter and record which instructions run,
    /// for a profile-guided compilation ([`Runtime::start_profile`],
    /// [`CompilePolicy::AfterProfile`]).
    Profiling(Arc<Profile>),
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
}

impl From<Entry> for Lookup {
    fn from(entry: Entry) -> Self {
        match entry {
            Entry::Ready(f) => Lookup::Ready(f),
            Entry::Failed(_) => Lookup::Never,
            Entry::Profiling(p) => Lookup::Profile(p),
        }
    }
}

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

/// When the execution path compiles code it has not seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompilePolicy {
    /// Compile synchronously the first time a code runs (tests, `kiln statetest`).
    OnFirstSight,
    /// Never compile on the execution path; only run what is already in the registry (filled in
    /// the background or ahead of time).
    LookupOnly,
    /// Interpret a code's first `runs` frame runs while recording what they execute, then
    /// compile only that (synchronously, on the execution path, as [`Self::OnFirstSight`]
    /// does): the blocks no profiled run entered hand the frame to the interpreter. Threads
    /// that find the same profile complete compile it each; the first result is kept. With
    /// `runs == 0`, or on the AOT backend (artifacts hold no profile), it compiles the whole code
    /// on first sight.
    AfterProfile {
        /// Frame runs to profile before compiling.
        runs: u64,
    },
    /// Compile the baseline tier ([`kiln_compiler::OptLevel::Baseline`], several times faster
    /// to compile, slower to run) synchronously the first time a code runs; once EVMs have
    /// looked the baseline code up `promote_after` times, compile it again at the options'
    /// level on a background thread, and replace the baseline code when that is done. An EVM
    /// looks a code up when it first runs it and again every
    /// [`crate::dispatch::TIERED_RELOOKUP_TRANSACTIONS`] transactions while it holds baseline
    /// code, so a long-lived EVM counts too; frames running when the optimised code lands
    /// finish on the baseline code, and the EVM's next transaction runs the optimised code.
    /// With the options' level at baseline (or on AOT, whose artifacts are compiled once), it
    /// behaves as [`Self::OnFirstSight`].
    Tiered {
        /// Lookups of the baseline code before it is optimised.
        promote_after: u64,
    },
}

/// [`CompilePolicy::Tiered`]'s default `promote_after`: a code looked up eight times (by eight
/// EVMs, e.g. one per block, or by EVMs that kept running it for about eight times
/// [`crate::dispatch::TIERED_RELOOKUP_TRANSACTIONS`] transactions) is worth its optimising
/// compilation.
pub const DEFAULT_PROMOTE_AFTER: u64 = 8;

/// Which tier a registry entry's code was compiled at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// [`kiln_compiler::OptLevel::Baseline`], waiting for promotion.
    Baseline,
    /// Baseline code whose optimising compilation is running in the background.
    Promoting,
    /// Baseline code for good: its optimising compilation failed (and is not retried).
    BaselineKept,
    /// The runtime's own options.
    Optimised,
}

/// A baseline function under [`CompilePolicy::Tiered`].
#[derive(Debug)]
struct Tiering {
    lookups: u64,
    promoting: bool,
    /// The optimising compilation failed: the baseline code stays for good.
    failed: bool,
    code: Arc<[u8]>,
}

/// An optimising compilation for the background thread.
struct PromotionJob {
    hash: B256,
    spec: SpecId,
    code: Arc<[u8]>,
    /// The code it replaces: the result is installed only where this is still registered.
    baseline: Arc<CompiledCode>,
}

/// A finished optimising compilation, for the execution path to install.
struct Promoted {
    hash: B256,
    spec: SpecId,
    baseline: Arc<CompiledCode>,
    result: Result<CompiledCode, CompileError>,
    micros: u64,
}

/// The background compiler of [`CompilePolicy::Tiered`]: one thread, started with the first
/// promotion, that ends when the runtime (and with it the sender) is dropped.
struct Promoter {
    jobs: Mutex<std::sync::mpsc::Sender<PromotionJob>>,
    done: Arc<Mutex<Vec<Promoted>>>,
    /// Set when `done` holds something: the execution path checks it on every lookup.
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Promoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promoter")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Hand-overs at cold code ([`kiln_builtins::STATUS_COLD_CODE`]) after which a function
/// compiled from a profile under [`CompilePolicy::AfterProfile`] is profiled again, starting
/// from its old profile: traffic took paths the first profile never saw. If the new profile
/// adds nothing, the whole code is compiled, so this happens at most once per new path.
pub const COLD_HANDOFFS_BEFORE_REPROFILE: u64 = 64;

/// A function compiled from a profile, for widening that profile.
#[derive(Debug)]
struct Profiled {
    coverage: Coverage,
    cold_handoffs: u64,
}

/// Counters kept by the runtime (relaxed atomics: they are for reporting only). The frame
/// counters reach them from each EVM in batches of [`crate::dispatch::STATS_BATCH`] frames and
/// when the EVM is dropped; `KilnEvm::flush_stats` adds an EVM's at once.
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
    /// Functions profiled again after [`COLD_HANDOFFS_BEFORE_REPROFILE`] cold hand-overs.
    pub reprofiles: AtomicU64,
    /// Successful compilations.
    pub compilations: AtomicU64,
    /// Failed compilations.
    pub compile_failures: AtomicU64,
    /// Total compile time in microseconds (background compilations included).
    pub compile_micros: AtomicU64,
    /// Baseline functions replaced by optimised ones ([`CompilePolicy::Tiered`]).
    pub promotions: AtomicU64,
}

/// The registry plus the policy for filling it: what an EVM built by kiln shares across frames,
/// transactions and threads.
#[derive(Debug)]
pub struct Runtime {
    backend: Backend,
    policy: CompilePolicy,
    options: CompileOptions,
    // Code hashes are already uniformly random, so Fx's cheap mixing is enough; SipHash was a
    // measurable part of each frame's lookup on small contracts.
    map: RwLock<FxHashMap<(B256, SpecId), Entry>>,
    /// Functions this runtime compiled from its own profiles ([`CompilePolicy::AfterProfile`]).
    profiled: Mutex<FxHashMap<(B256, SpecId), Profiled>>,
    /// Baseline functions not yet replaced ([`CompilePolicy::Tiered`]).
    tiering: Mutex<FxHashMap<(B256, SpecId), Tiering>>,
    promoter: OnceLock<Promoter>,
    /// Bumped whenever an entry changes in a way an EVM's [`crate::dispatch::FrameCache`] must
    /// see (an insert, a removal, a promotion, a reprofile): EVMs forget what they looked up
    /// when it moves, between transactions.
    epoch: AtomicU64,
    /// Counters.
    pub stats: RuntimeStats,
}

impl Runtime {
    /// A runtime with the given backend and policy.
    pub fn new(backend: Backend, policy: CompilePolicy, options: CompileOptions) -> Self {
        Self {
            backend,
            policy,
            options,
            map: RwLock::new(FxHashMap::default()),
            profiled: Mutex::default(),
            tiering: Mutex::default(),
            promoter: OnceLock::new(),
            epoch: AtomicU64::new(0),
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
    /// transaction that meets the code for as long as LLVM takes (a second and a half for
    /// uniswap_v2_pair).
    pub fn tiered() -> Arc<Self> {
        Arc::new(Self::new(
            Backend::Jit,
            CompilePolicy::Tiered {
                promote_after: DEFAULT_PROMOTE_AFTER,
            },
            CompileOptions::default(),
        ))
    }

    /// The tier of the compiled code registered for `(hash, spec)`, if any.
    pub fn tier(&self, hash: B256, spec: SpecId) -> Option<Tier> {
        self.apply_promotions();
        match self.get(hash, spec)? {
            Entry::Ready(_) => {}
            Entry::Failed(_) | Entry::Profiling(_) => return None,
        }
        Some(
            match self
                .tiering
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(hash, spec))
            {
                Some(t) if t.promoting => Tier::Promoting,
                Some(t) if t.failed => Tier::BaselineKept,
                Some(_) => Tier::Baseline,
                None => Tier::Optimised,
            },
        )
    }

    /// `promote_after` if this runtime compiles a baseline tier first.
    fn promote_after(&self) -> Option<u64> {
        match self.policy {
            CompilePolicy::Tiered { promote_after }
                if matches!(self.backend, Backend::Jit)
                    && self.options.opt_level != OptLevel::Baseline =>
            {
                Some(promote_after)
            }
            _ => None,
        }
    }

    /// Installs the optimised functions the background compiler has finished.
    pub fn apply_promotions(&self) {
        let Some(promoter) = self.promoter.get() else {
            return;
        };
        // A plain load first: every lookup comes here, and a swap would write the shared line.
        if !promoter.ready.load(Ordering::Relaxed) || !promoter.ready.swap(false, Ordering::Acquire)
        {
            return;
        }
        let done = std::mem::take(&mut *promoter.done.lock().unwrap_or_else(|e| e.into_inner()));
        for p in done {
            self.stats
                .compile_micros
                .fetch_add(p.micros, Ordering::Relaxed);
            let key = (p.hash, p.spec);
            match p.result {
                Ok(code) => {
                    self.stats.compilations.fetch_add(1, Ordering::Relaxed);
                    // Only over the code it was compiled to replace: an entry removed or
                    // replaced (an AOT preload) in the meantime stays as it is.
                    let installed = {
                        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
                        match map.get_mut(&key) {
                            Some(slot) if matches!(&*slot, Entry::Ready(f) if Arc::ptr_eq(f, &p.baseline)) =>
                            {
                                *slot = Entry::Ready(Arc::new(code));
                                true
                            }
                            _ => false,
                        }
                    };
                    if installed {
                        self.stats.promotions.fetch_add(1, Ordering::Relaxed);
                        self.bump_epoch();
                    }
                    self.tiering
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                }
                Err(e) => {
                    // The baseline code is correct, only slower: it stays, and is not retried.
                    self.stats.compile_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(hash = %p.hash, spec = ?p.spec, error = %e, "optimising compilation failed; the baseline code stays");
                    self.keep_baseline(key);
                }
            }
        }
    }

    /// Counts a lookup of baseline code and hands it to the background compiler once it has
    /// been looked up often enough. Returns whether the code may still be promoted (it is
    /// baseline code, not kept after a failed promotion).
    fn note_baseline_lookup(
        &self,
        hash: B256,
        spec: SpecId,
        promote_after: u64,
        baseline: &Arc<CompiledCode>,
    ) -> bool {
        let job = {
            let mut tiering = self.tiering.lock().unwrap_or_else(|e| e.into_inner());
            let Some(t) = tiering.get_mut(&(hash, spec)) else {
                return false;
            };
            if t.failed {
                return false;
            }
            t.lookups += 1;
            if t.promoting || t.lookups < promote_after {
                return true;
            }
            t.promoting = true;
            PromotionJob {
                hash,
                spec,
                code: t.code.clone(),
                baseline: baseline.clone(),
            }
        };
        let promoter = self.promoter.get_or_init(|| self.start_promoter());
        let sent = promoter
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job);
        if sent.is_err() {
            tracing::warn!("the background compiler has stopped; baseline code stays");
            self.keep_baseline((hash, spec));
            return false;
        }
        true
    }

    /// Gives up promoting `key`: its baseline code stays for good and is not sent again.
    fn keep_baseline(&self, key: (B256, SpecId)) {
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

    /// Starts the background compiler thread.
    fn start_promoter(&self) -> Promoter {
        let (jobs, rx) = std::sync::mpsc::channel::<PromotionJob>();
        let done: Arc<Mutex<Vec<Promoted>>> = Arc::default();
        let ready = Arc::new(AtomicBool::new(false));
        let (out, flag, options) = (done.clone(), ready.clone(), self.options);
        let spawned = std::thread::Builder::new()
            .name("kiln-optimise".into())
            .spawn(move || {
                for job in rx {
                    let start = Instant::now();
                    // A panic inside the compiler must not end the thread with the job's
                    // code left `Promoting` for good: it becomes a failed promotion.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        kiln_compiler::compile_jit(&job.code, job.spec, &options, None)
                    }))
                    .unwrap_or_else(|_| {
                        Err(CompileError::Llvm(
                            "the optimising compilation panicked".into(),
                        ))
                    })
                    .map(CompiledCode::Jit);
                    let micros = start.elapsed().as_micros() as u64;
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Promoted {
                            hash: job.hash,
                            spec: job.spec,
                            baseline: job.baseline,
                            result,
                            micros,
                        });
                    flag.store(true, Ordering::Release);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the background compiler; baseline code stays");
        }
        Promoter {
            jobs: Mutex::new(jobs),
            done,
            ready,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The compile options.
    pub fn options(&self) -> &CompileOptions {
        &self.options
    }

    /// Whether this runtime ever runs compiled code.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.backend, Backend::Interpreter)
    }

    /// The entry for `(hash, spec)`, if any.
    pub fn get(&self, hash: B256, spec: SpecId) -> Option<Entry> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(hash, spec))
            .cloned()
    }

    /// Inserts an entry (the background compiler and AOT preloading use this).
    pub fn insert(&self, hash: B256, spec: SpecId, entry: Entry) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((hash, spec), entry);
        self.bump_epoch();
    }

    /// Removes an entry; running frames keep their `Arc` alive.
    pub fn remove(&self, hash: B256, spec: SpecId) -> Option<Entry> {
        let removed = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(hash, spec));
        if removed.is_some() {
            self.bump_epoch();
        }
        removed
    }

    /// The registry's change counter: an EVM that looked functions up at one epoch looks them up
    /// again once it has moved.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Whether this runtime compiles a baseline tier first and promotes it
    /// ([`CompilePolicy::Tiered`] on the JIT backend above the baseline level).
    pub fn is_tiered(&self) -> bool {
        self.promote_after().is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the registry is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts recording what the frames of `(hash, spec)` execute (they run on the
    /// interpreter until the entry is replaced) and returns the profile; the existing one if it
    /// is being profiled already, `None` if it is compiled or failed.
    pub fn start_profile(&self, hash: B256, spec: SpecId) -> Option<Arc<Profile>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match map
            .entry((hash, spec))
            .or_insert_with(|| Entry::Profiling(Arc::default()))
        {
            Entry::Profiling(p) => Some(p.clone()),
            Entry::Ready(_) | Entry::Failed(_) => None,
        }
    }

    /// The compiled function for a frame, compiling it first if the policy says so.
    pub fn lookup(&self, hash: B256, spec: SpecId, code: impl FnOnce() -> Vec<u8>) -> Lookup {
        if !self.is_enabled() {
            return Lookup::Never;
        }
        let tiered = self.promote_after();
        if tiered.is_some() {
            self.apply_promotions();
        }
        let profile = match (self.get(hash, spec), self.policy) {
            (Some(Entry::Ready(f)), _) => {
                return match tiered {
                    Some(promote_after)
                        if self.note_baseline_lookup(hash, spec, promote_after, &f) =>
                    {
                        Lookup::Baseline(f)
                    }
                    _ => Lookup::Ready(f),
                };
            }
            (Some(Entry::Profiling(p)), CompilePolicy::AfterProfile { runs })
                if p.runs() >= runs =>
            {
                Some(p)
            }
            (Some(entry), _) => return entry.into(),
            (None, CompilePolicy::LookupOnly) => return Lookup::NotYet,
            (None, CompilePolicy::AfterProfile { runs })
                if runs > 0 && matches!(self.backend, Backend::Jit) =>
            {
                return self
                    .start_profile(hash, spec)
                    .map_or_else(|| self.lookup(hash, spec, code), Lookup::Profile)
            }
            (None, _) => None,
        };
        // Compile outside any lock: the execution path never waits on another compilation.
        // Without new pcs in the profile (or on AOT), the whole code.
        let coverage = profile
            .as_ref()
            .filter(|_| matches!(self.backend, Backend::Jit))
            .and_then(|p| p.grown_coverage());
        let code = code();
        let (compiled, baseline) = match tiered {
            Some(_) => match self.compile_baseline(hash, spec, &code) {
                Ok(f) => (Ok(f), true),
                // A limit only the baseline tier has (its jump table): the default level may
                // still take the code.
                Err(e) => {
                    tracing::debug!(%hash, ?spec, error = %e, "baseline compilation failed; compiling at the default level");
                    (self.compile(hash, spec, &code, None), false)
                }
            },
            None => (self.compile(hash, spec, &code, coverage.as_ref()), false),
        };
        let entry = match compiled {
            Ok(f) => Entry::Ready(Arc::new(f)),
            Err(e) => {
                tracing::debug!(%hash, ?spec, error = %e, "compilation failed; code stays on the interpreter");
                Entry::Failed(e.to_string().into())
            }
        };
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry((hash, spec)).or_insert_with(|| entry.clone());
        // The profile this compilation came from gives way to it; anything else another thread
        // put there first stays.
        let mut replaced = false;
        if let (Entry::Profiling(current), Some(used)) = (&*slot, &profile) {
            if Arc::ptr_eq(current, used) {
                *slot = entry.clone();
                replaced = true;
            }
        }
        let found = slot.clone();
        drop(map);
        // Tracked for promotion only if the registry took this thread's baseline code (another
        // thread's, or its promotion, may have got there first).
        if let (Some(promote_after), true, Entry::Ready(mine), Entry::Ready(kept)) =
            (tiered, baseline, &entry, &found)
        {
            if Arc::ptr_eq(mine, kept) {
                self.tiering
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((hash, spec))
                    .or_insert_with(|| Tiering {
                        lookups: 0,
                        promoting: false,
                        failed: false,
                        code: code.into(),
                    });
                if self.note_baseline_lookup(hash, spec, promote_after, kept) {
                    return Lookup::Baseline(kept.clone());
                }
            }
        }
        if let (true, Entry::Ready(_), Some(coverage)) = (replaced, &entry, coverage) {
            self.profiled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    (hash, spec),
                    Profiled {
                        coverage,
                        cold_handoffs: 0,
                    },
                );
        }
        found.into()
    }

    /// Adds `n` hand-overs at cold code of the function for `(hash, spec)`; once a function
    /// this runtime compiled from its own profile reaches [`COLD_HANDOFFS_BEFORE_REPROFILE`],
    /// its code is profiled again from the old profile (EVMs that hold the function profile
    /// from their next transaction on).
    pub fn note_cold_handoffs(&self, hash: B256, spec: SpecId, n: u64) {
        self.stats.cold_handoffs.fetch_add(n, Ordering::Relaxed);
        let widened = {
            let mut profiled = self.profiled.lock().unwrap_or_else(|e| e.into_inner());
            let Some(p) = profiled.get_mut(&(hash, spec)) else {
                return;
            };
            p.cold_handoffs += n;
            if p.cold_handoffs < COLD_HANDOFFS_BEFORE_REPROFILE {
                return;
            }
            profiled.remove(&(hash, spec)).map(|p| p.coverage)
        };
        let Some(coverage) = widened else { return };
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot @ Entry::Ready(_)) = map.get_mut(&(hash, spec)) {
            *slot = Entry::Profiling(Arc::new(Profile::seeded(coverage)));
            self.stats.reprofiles.fetch_add(1, Ordering::Relaxed);
            drop(map);
            self.bump_epoch();
            tracing::debug!(%hash, ?spec, "cold code ran often: profiling again");
        }
    }

    /// Compiles `code` at the baseline tier (JIT), without touching the registry.
    fn compile_baseline(
        &self,
        hash: B256,
        spec: SpecId,
        code: &[u8],
    ) -> Result<CompiledCode, CompileError> {
        let options = CompileOptions {
            opt_level: OptLevel::Baseline,
            ..self.options
        };
        self.timed_compile(hash, spec, code, || {
            kiln_compiler::compile_jit(code, spec, &options, None).map(CompiledCode::Jit)
        })
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
    ) -> Result<CompiledCode, CompileError> {
        self.timed_compile(hash, spec, code, || {
            self.compile_with_backend(hash, spec, code, coverage)
        })
    }

    /// Runs `compile`, counting it in the statistics.
    fn timed_compile(
        &self,
        hash: B256,
        spec: SpecId,
        code: &[u8],
        compile: impl FnOnce() -> Result<CompiledCode, CompileError>,
    ) -> Result<CompiledCode, CompileError> {
        let start = Instant::now();
        let result = compile();
        let elapsed = start.elapsed();
        self.stats
            .compile_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if elapsed.as_secs() >= 1 {
            tracing::warn!(%hash, ?spec, bytes = code.len(), ms = elapsed.as_millis() as u64, "slow compilation");
        }
        match &result {
            Ok(_) => self.stats.compilations.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.compile_failures.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    fn compile_with_backend(
        &self,
        hash: B256,
        spec: SpecId,
        code: &[u8],
        coverage: Option<&Coverage>,
    ) -> Result<CompiledCode, CompileError> {
        match &self.backend {
            Backend::Interpreter => Err(CompileError::Internal(
                "interpreter backend compiles nothing".into(),
            )),
            Backend::Jit => kiln_compiler::compile_jit(code, spec, &self.options, coverage)
                .map(CompiledCode::Jit),
            // An artifact is keyed by code, spec and compiler: one compiled from a profile would
            // be loaded for runs it was not made for.
            Backend::Aot(_) if coverage.is_some() => Err(CompileError::Aot(
                "profile-guided compilation is JIT-only (artifact keys hold no profile)".into(),
            )),
            Backend::Aot(dir) => {
                let key = ArtifactKey::new(hash, spec);
                match dir.load(&key)? {
                    Some(f) => Ok(CompiledCode::Aot(f)),
                    None => {
                        dir.compile_and_store(&key, code, &self.options)?;
                        dir.load(&key)?.map(CompiledCode::Aot).ok_or_else(|| {
                            CompileError::Aot("artifact vanished after being written".into())
                        })
                    }
                }
            }
        }
    }
}
