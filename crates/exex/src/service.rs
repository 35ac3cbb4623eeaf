//! The service: notifications in, heat updated, hot code compiled in the background and
//! installed in the runtime's registry.

pub use crate::config::ServiceConfig;
use crate::{
    config::Policy,
    control::ServiceControl,
    heat::Heat,
    metrics,
    notification::{Chain, FinishedHeight, Notification},
    queue::{CompileQueue, Job},
    status::{installed_per_tier, SharedStatus, StatusSnapshot},
    verify::{self, Verdict},
};
use kiln_compiler::{CompileOptions, OptLevel};
use kiln_runtime::{
    Backend, BlockId, BlockUsage, Capture, CodeKey, CodeUsage, CompilePolicy, CompileRequest,
    CompiledCode, Compiler, Entry, HelperConfig, HelperProcess, InProcess, ObjectCache, ObjectKey,
    Runtime, RuntimeError, Tier, WorkerPool,
};
use revm::primitives::{hardfork::SpecId, Bytes, B256};
use rustc_hash::{FxHashMap, FxHashSet};
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Where the service finds the bytecode of a code hash it has not seen deployed (a node's state
/// provider, say).
pub trait CodeSource: Send + Sync {
    /// The bytecode with this hash, if known.
    fn code(&self, hash: B256) -> Option<Bytes>;
}

/// Counters of the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Notifications processed.
    pub notifications: u64,
    /// Compilations installed, quick tier.
    pub compiled_quick: u64,
    /// Compilations installed, optimising tier.
    pub compiled_optimised: u64,
    /// Compilations that failed or were refused.
    pub compile_failures: u64,
    /// Total compile time, microseconds.
    pub compile_micros: u64,
    /// Jobs dropped from a full queue.
    pub dropped_jobs: u64,
    /// EVM usage reports no canonical block claimed before they aged out.
    pub expired_reports: u64,
    /// Compiled objects loaded from the cache at start.
    pub cache_loads: u64,
    /// Installed code evicted (idle, or over the memory budget).
    pub evictions: u64,
    /// Verification replays that matched the interpreter.
    pub verify_matches: u64,
    /// Verification replays that did not: each bans its code.
    pub verify_mismatches: u64,
    /// Verification replays that could not reproduce the recorded execution (they count
    /// neither way).
    pub verify_inconclusive: u64,
    /// Gas canonical blocks spent in contract frames (from the EVMs' usage reports).
    pub canonical_gas: u64,
    /// Of that, gas spent in compiled code.
    pub canonical_native_gas: u64,
    /// Compilations installed whose code no canonical block has run natively since.
    pub unused_compilations: u64,
    /// Compile time of the quick tier's jobs, microseconds (part of `compile_micros`).
    pub compile_micros_quick: u64,
    /// Compilations of a family function: one that reads the PUSH immediates in which the
    /// code's known siblings differ from the running code.
    pub family_compilations: u64,
    /// Jobs served by a family function compiled for a sibling: no compilation, only
    /// verification.
    pub family_shares: u64,
}

impl ServiceStats {
    /// The share of canonical contract gas executed by compiled code, in 0..=1.
    pub fn native_share(&self) -> f64 {
        if self.canonical_gas == 0 {
            0.0
        } else {
            self.canonical_native_gas as f64 / self.canonical_gas as f64
        }
    }

    /// Compile time of every finished job, in seconds.
    pub fn compile_secs(&self) -> f64 {
        self.compile_micros as f64 / 1e6
    }

    /// Compile time per tier, in seconds: (quick, optimising).
    pub fn compile_secs_per_tier(&self) -> (f64, f64) {
        let quick = self.compile_micros_quick.min(self.compile_micros);
        (
            quick as f64 / 1e6,
            (self.compile_micros - quick) as f64 / 1e6,
        )
    }
}

/// A compilation the service installed: which code, which tier, at which canonical height, and
/// how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileEvent {
    /// The code.
    pub key: CodeKey,
    /// The tier.
    pub tier: Tier,
    /// The canonical head when it was installed.
    pub head: u64,
    /// Compile time (zero for a family function compiled for a sibling).
    pub elapsed: Duration,
    /// Whether the code runs a family function compiled for a sibling.
    pub shared: bool,
    /// Time from the first canonical block that ran the code (as this service saw it) to the
    /// installation.
    pub since_first_sight: Option<Duration>,
}

/// Siblings a code is compared with to find its family parameters: enough to tell immutables
/// (which differ between almost any two members) from constants.
const MAX_SIBLINGS: usize = 16;

/// The heat ranking's file in the cache directory.
const HEAT_FILE: &str = "heat.json";

/// The heat ranking as kept on disk: scores as of `head`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedHeat {
    head: u64,
    codes: Vec<(B256, u8, f64)>,
    /// Codes whose compiled form disagreed with the interpreter, and how.
    #[serde(default)]
    banned: Vec<(B256, u8, String)>,
}

fn read_heat(path: &std::path::Path) -> Option<SavedHeat> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes)
        .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "heat ranking unreadable; starting cold"))
        .ok()
}

/// An installed code's share of the memory budget.
#[derive(Clone, Copy, Debug)]
struct Resident {
    bytes: u64,
    last_used: Instant,
}

/// A compilation a worker finished.
struct Finished {
    key: CodeKey,
    tier: Tier,
    result: Result<Compiled, RuntimeError>,
    elapsed: Duration,
    /// For a family function: its family and parameters, to serve siblings with.
    family: Option<FamilyTag>,
    /// Served by a sibling's family function, not compiled.
    shared: bool,
}

/// Which family a function was compiled for ([`kiln_compiler::family`]).
#[derive(Clone, Debug)]
struct FamilyTag {
    skeleton: B256,
    /// The code it was compiled from.
    template: B256,
    params: Arc<[u32]>,
    digest: B256,
}

/// A family function siblings may run: weakly held, so that evicting every member frees it.
struct FamilyFn {
    tag: FamilyTag,
    code: std::sync::Weak<CompiledCode>,
    object: Arc<[u8]>,
    entry: String,
}

/// A compilation's result: the linked code, and the object and entry symbol it was linked from
/// (kept in the object cache once the code has been verified).
#[derive(Clone)]
struct Compiled {
    code: Arc<CompiledCode>,
    object: Arc<[u8]>,
    entry: String,
}

/// New code waiting for verification.
struct Candidate {
    tier: Tier,
    code: Arc<CompiledCode>,
    object: Arc<[u8]>,
    entry: String,
    /// A runtime that holds only this code, for replays.
    replay: Arc<Runtime>,
    /// Replays that matched.
    passed: u32,
    /// Replays handed to the verifier and not back yet.
    running: u32,
}

/// A verification replay the verifier finished.
struct Verified {
    key: CodeKey,
    code: Arc<CompiledCode>,
    capture: Arc<Capture>,
    verdict: Verdict,
}

/// The hot-code service. One per node; it owns its compile workers and joins them on
/// [`Service::shutdown`] or drop.
pub struct Service {
    runtime: Arc<Runtime>,
    config: ServiceConfig,
    heat: Heat,
    queue: CompileQueue,
    /// Code seen deployed in canonical blocks, by hash.
    codes: FxHashMap<B256, Bytes>,
    source: Option<Arc<dyn CodeSource>>,
    /// EVM usage reports not yet matched to a canonical block.
    pending: Vec<BlockUsage>,
    workers: WorkerPool,
    finished: Arc<Mutex<Vec<Finished>>>,
    in_flight: FxHashMap<CodeKey, Tier>,
    installed: FxHashMap<CodeKey, Tier>,
    /// Size and last canonical use of each installed code, for the memory budget.
    resident: FxHashMap<CodeKey, Resident>,
    /// Codes that will not be compiled, and why.
    failed: FxHashMap<CodeKey, String>,
    /// Codes the quick tier refused: they go straight to the optimising tier.
    quick_failed: FxHashSet<CodeKey>,
    control: ServiceControl,
    /// Compiled objects and heat kept across restarts.
    cache: Option<ObjectCache>,
    /// Whether the installed code is in the registry (false after a disable).
    serving: bool,
    stats: ServiceStats,
    /// Where each poll publishes the status, if anywhere.
    status_sink: Option<SharedStatus>,
    /// The compiler the workers use (for its helper counters).
    compiler: Arc<dyn Compiler>,
    /// The verifier's thread: replays recorded transactions.
    verifier: WorkerPool,
    /// The interpreter-only runtime replays are checked against.
    interpreter: Arc<Runtime>,
    /// New code waiting for verification.
    verifying: FxHashMap<CodeKey, Candidate>,
    verified: Arc<Mutex<Vec<Verified>>>,
    /// Codes whose compiled form disagreed with the interpreter, and how; kept across restarts.
    banned: FxHashMap<CodeKey, String>,
    /// Under the `lookups` policy, each code's lookups (usage reports naming it).
    lookups: FxHashMap<CodeKey, u64>,
    /// Each compilation installed, and whether a canonical block has run it natively since.
    compilations: FxHashMap<(CodeKey, Tier), bool>,
    /// Compile time of compilations waiting for verification.
    compile_times: FxHashMap<(CodeKey, Tier), Duration>,
    /// Every compilation installed, in order.
    compile_log: Vec<CompileEvent>,
    /// When a canonical block first ran each code.
    first_seen: FxHashMap<CodeKey, Instant>,
    /// Known codes by skeleton ([`kiln_compiler::family::skeleton`]): the candidates for a
    /// code's family.
    skeletons: FxHashMap<B256, Vec<B256>>,
    /// The skeleton of each code in `skeletons`.
    skeleton_of: FxHashMap<B256, B256>,
    /// Family functions by (skeleton, spec, tier).
    families: FxHashMap<(B256, SpecId, Tier), Vec<FamilyFn>>,
    /// Jobs served by a family function and not installed yet.
    shared: FxHashSet<(CodeKey, Tier)>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .field("queue", &self.queue.len())
            .field("in_flight", &self.in_flight.len())
            .field("installed", &self.installed.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service filling `runtime`'s registry. Turns on the runtime's usage collection, so that
    /// EVMs created from now on report what they execute.
    pub fn new(
        runtime: Arc<Runtime>,
        config: ServiceConfig,
        source: Option<Arc<dyn CodeSource>>,
    ) -> Self {
        let compiler: Arc<dyn Compiler> = if config.isolation {
            match HelperConfig::this_executable() {
                Ok(mut helper) => {
                    helper.timeout = Duration::from_secs(config.helper_timeout_secs);
                    helper.address_space_limit =
                        Some(config.helper_address_space_limit).filter(|&l| l > 0);
                    Arc::new(HelperProcess::new(helper))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find this executable for compile helpers; compiling in-process");
                    Arc::new(InProcess)
                }
            }
        } else {
            Arc::new(InProcess)
        };
        Self::with_compiler(runtime, config, source, compiler)
    }

    /// A service that compiles with `compiler` (whatever `config.isolation` says). With a cache
    /// directory, the objects and heat a previous run left there are loaded: code that was hot
    /// runs natively before the first notification.
    pub fn with_compiler(
        runtime: Arc<Runtime>,
        config: ServiceConfig,
        source: Option<Arc<dyn CodeSource>>,
        compiler: Arc<dyn Compiler>,
    ) -> Self {
        runtime.usage_reports().set_collecting(true);
        let workers = WorkerPool::new(compiler.clone(), config.worker_count, "kiln-compile");
        let verifier = WorkerPool::new(Arc::new(InProcess), 1, "kiln-verify");
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            ObjectCache::open(dir, config.cache_max_bytes)
                .inspect_err(|e| tracing::error!(error = %e, "object cache unusable; nothing is kept across restarts"))
                .ok()
        });
        let mut service = Self {
            heat: Heat::new(config.half_life_blocks, config.reorg_window),
            queue: CompileQueue::new(config.queue_capacity),
            runtime,
            config,
            codes: FxHashMap::default(),
            source,
            pending: Vec::new(),
            workers,
            finished: Arc::default(),
            in_flight: FxHashMap::default(),
            installed: FxHashMap::default(),
            resident: FxHashMap::default(),
            failed: FxHashMap::default(),
            quick_failed: FxHashSet::default(),
            control: ServiceControl::default(),
            serving: true,
            stats: ServiceStats::default(),
            status_sink: None,
            cache,
            compiler,
            verifier,
            interpreter: Runtime::interpreter(),
            verifying: FxHashMap::default(),
            verified: Arc::default(),
            banned: FxHashMap::default(),
            lookups: FxHashMap::default(),
            compilations: FxHashMap::default(),
            compile_times: FxHashMap::default(),
            compile_log: Vec::new(),
            first_seen: FxHashMap::default(),
            skeletons: FxHashMap::default(),
            skeleton_of: FxHashMap::default(),
            families: FxHashMap::default(),
            shared: FxHashSet::default(),
        };
        service.warm_start();
        service
    }

    /// Loads the heat and the compiled objects a previous run kept.
    fn warm_start(&mut self) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        if let Some(heat) = read_heat(&cache.path().join(HEAT_FILE)) {
            for (hash, spec, why) in heat.banned {
                if let Some(spec) = SpecId::try_from_u8(spec) {
                    self.failed.insert((hash, spec), why.clone());
                    self.runtime
                        .insert(hash, spec, Entry::Failed(Arc::from(why.as_str())));
                    self.banned.insert((hash, spec), why);
                }
            }
            self.heat.restore(
                heat.head,
                heat.codes.into_iter().filter_map(|(hash, spec, score)| {
                    Some(((hash, SpecId::try_from_u8(spec)?), score))
                }),
            );
        }
        let mut keys = cache.keys();
        // The optimising tier's object wins over the quick one's.
        keys.sort_by_key(|k| k.optimised);
        // Members of a code family keep the same object under their own keys: link it once.
        let mut linked: FxHashMap<String, Arc<CompiledCode>> = FxHashMap::default();
        for key in keys {
            if self.banned.contains_key(&key.code) {
                cache.remove(key);
                continue;
            }
            let Some(cached) = cache.load(key) else {
                continue;
            };
            let code = match linked.get(&cached.entry) {
                Some(code) => Ok(code.clone()),
                None => kiln_compiler::link_jit_object(&cached.object, &cached.entry)
                    .map(|f| Arc::new(CompiledCode::Jit(f))),
            };
            match code {
                Ok(code) => {
                    let tier = if key.optimised {
                        Tier::Optimised
                    } else {
                        Tier::Baseline
                    };
                    linked.insert(cached.entry, code.clone());
                    self.install(key.code, tier, code);
                    self.stats.cache_loads += 1;
                    metrics::cache_load();
                }
                Err(e) => {
                    tracing::warn!(hash = %key.code.0, error = %e, "cached object does not link; it will be compiled again")
                }
            }
        }
        if self.stats.cache_loads > 0 {
            tracing::info!(objects = self.stats.cache_loads, dir = %cache.path().display(), "compiled code loaded from the cache");
        }
    }

    /// Writes the heat ranking to the cache directory (atomically), so that a restart keeps it.
    pub fn flush(&self) {
        let Some(cache) = &self.cache else { return };
        let heat = SavedHeat {
            head: self.heat.head(),
            codes: self
                .heat
                .ranked()
                .into_iter()
                .map(|((hash, spec), score)| (hash, spec as u8, score))
                .collect(),
            banned: self
                .banned
                .iter()
                .map(|((hash, spec), why)| (*hash, *spec as u8, why.clone()))
                .collect(),
        };
        let path = cache.path().join(HEAT_FILE);
        let written = serde_json::to_vec(&heat)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let mut tmp = tempfile::NamedTempFile::new_in(cache.path())?;
                std::io::Write::write_all(&mut tmp, &bytes)?;
                tmp.as_file().sync_all()?;
                tmp.persist(&path).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the heat ranking");
        }
    }

    /// Processes one notification, then [polls](Service::poll) (which publishes the status to the
    /// [status sink](Service::set_status_sink)), and answers with the height it is done with.
    pub fn on_notification(&mut self, notification: &Notification) -> Option<FinishedHeight> {
        self.stats.notifications += 1;
        metrics::notification();
        self.apply_control();
        self.take_reports();
        let finished = match notification {
            Notification::Committed { new } => {
                self.commit(new);
                new.tip().map(|b| FinishedHeight {
                    number: b.number,
                    hash: b.hash,
                })
            }
            Notification::Reorged { old, new } => {
                self.revert(old);
                self.commit(new);
                new.tip().map(|b| FinishedHeight {
                    number: b.number,
                    hash: b.hash,
                })
            }
            Notification::Reverted { old } => {
                self.revert(old);
                old.first().map(|b| FinishedHeight {
                    number: b.number.saturating_sub(1),
                    hash: b.parent_hash,
                })
            }
        };
        self.expire_reports();
        self.poll();
        finished
    }

    fn commit(&mut self, chain: &Chain) {
        let mut touched = FxHashSet::default();
        for block in &chain.blocks {
            for (hash, code) in &block.deployed {
                self.codes.insert(*hash, code.clone());
                if self.config.families {
                    self.index_skeleton(*hash, code);
                }
            }
            let usage = match &block.usage {
                Some(usage) => usage.clone(),
                None => self.claim_reports(block.id),
            };
            self.count_canonical(block.spec, &usage);
            let gas: Vec<(CodeKey, u64)> = usage
                .iter()
                .filter(|(_, u)| u.gas > 0)
                .map(|(hash, u)| ((*hash, block.spec), u.gas))
                .collect();
            touched.extend(gas.iter().map(|(key, _)| *key));
            self.heat.add_block(block.number, block.hash, gas);
        }
        let now = Instant::now();
        for key in touched {
            self.first_seen.entry(key).or_insert(now);
            // Every code that runs is filed under its skeleton once, so that the first member
            // of a family to be compiled already knows its siblings (codes a factory creates
            // inside a transaction are not among a block's deployments).
            if self.config.families && !self.skeleton_of.contains_key(&key.0) {
                if let Some(code) = self.code(key.0) {
                    self.index_skeleton(key.0, &code);
                }
            }
            if let Some(r) = self.resident.get_mut(&key) {
                r.last_used = now;
            }
            self.consider(key);
        }
    }

    fn revert(&mut self, chain: &Chain) {
        for block in chain.blocks.iter().rev() {
            if !self.heat.revert_block(block.hash) {
                tracing::warn!(number = block.number, hash = %block.hash, "reverted block is not among the recent canonical blocks; its heat stays");
            }
        }
        // Queued work follows the heat down.
        for job in self.queue.ordered() {
            self.queue.remove(job.key);
            self.consider(job.key);
        }
    }

    /// Takes the EVMs' new usage reports: they wait for the canonical block that claims them,
    /// and under the `lookups` policy each counts one lookup of every code it names.
    fn take_reports(&mut self) {
        let reports = self.runtime.usage_reports().take();
        if self.config.policy == Policy::Lookups {
            let mut looked_up = Vec::new();
            for report in &reports {
                for (hash, _) in report.codes.iter().filter(|(_, u)| u.frames > 0) {
                    let key = (*hash, report.spec);
                    *self.lookups.entry(key).or_default() += 1;
                    looked_up.push(key);
                }
            }
            looked_up.into_iter().for_each(|key| self.consider(key));
        }
        self.pending.extend(reports);
    }

    /// Counts a canonical block's gas, the share compiled code ran, and which compilations
    /// that code came from.
    fn count_canonical(&mut self, spec: SpecId, usage: &[(B256, CodeUsage)]) {
        for (hash, u) in usage {
            self.stats.canonical_gas += u.gas;
            self.stats.canonical_native_gas += u.native_gas;
            if u.native_gas == 0 {
                continue;
            }
            let key = (*hash, spec);
            if let Some(tier) = self.installed.get(&key) {
                if let Some(used) = self.compilations.get_mut(&(key, *tier)) {
                    if !*used {
                        *used = true;
                        self.stats.unused_compilations -= 1;
                    }
                }
            }
        }
    }

    /// The usage EVMs reported for the block `id` names: the one with the most gas (the latest
    /// of equals).
    fn claim_reports(&mut self, id: BlockId) -> Vec<(B256, CodeUsage)> {
        // The fullest report wins: a block executed twice (a payload built, then imported)
        // reports the same work twice, and a node's prewarming EVMs run parts of a block under
        // its identity and report only those parts.
        let mut claimed: Option<(u64, Vec<(B256, CodeUsage)>)> = None;
        self.pending.retain(|r| {
            if r.block != id {
                return true;
            }
            let gas = r.codes.iter().map(|(_, u)| u.gas).sum::<u64>();
            if claimed.as_ref().is_none_or(|(best, _)| gas >= *best) {
                claimed = Some((gas, r.codes.clone()));
            }
            false
        });
        claimed.map(|(_, codes)| codes).unwrap_or_default()
    }

    /// Drops reports of blocks no canonical block claimed within the reorg window.
    fn expire_reports(&mut self) {
        let horizon = self
            .heat
            .head()
            .saturating_sub(self.config.reorg_window as u64);
        let before = self.pending.len();
        self.pending.retain(|r| r.block.number > horizon);
        self.stats.expired_reports += (before - self.pending.len()) as u64;
        metrics::expired_reports(before - self.pending.len());
    }

    /// Queues the compilation `key`'s heat calls for, if it does not have it yet.
    fn consider(&mut self, key: CodeKey) {
        if !self.serving || self.failed.contains_key(&key) {
            return;
        }
        if self.config.policy == Policy::Lookups {
            // One tier, once: nothing is compiled twice.
            let lookups = self.lookups.get(&key).copied().unwrap_or(0);
            if lookups < self.config.lookup_threshold
                || self.installed.contains_key(&key)
                || self.in_flight.contains_key(&key)
                || self.verifying.contains_key(&key)
            {
                return;
            }
            let job = Job {
                key,
                tier: Tier::Optimised,
                heat: lookups as f64,
            };
            if let Some(dropped) = self.queue.push(job) {
                self.stats.dropped_jobs += 1;
                metrics::dropped_job();
                tracing::debug!(hash = %dropped.key.0, "compile queue full; coldest job dropped");
            }
            return;
        }
        let heat = self.heat.score(key);
        let want = if heat >= self.config.optimise_threshold_gas as f64
            || (heat >= self.config.hot_threshold_gas as f64 && self.quick_failed.contains(&key))
        {
            Tier::Optimised
        } else if heat >= self.config.hot_threshold_gas as f64 {
            Tier::Baseline
        } else {
            return;
        };
        let has = |tier: Option<&Tier>| tier == Some(&Tier::Optimised) || tier == Some(&want);
        if has(self.installed.get(&key))
            || has(self.in_flight.get(&key))
            || has(self.verifying.get(&key).map(|c| &c.tier))
        {
            return;
        }
        if let Some(dropped) = self.queue.push(Job {
            key,
            tier: want,
            heat,
        }) {
            self.stats.dropped_jobs += 1;
            metrics::dropped_job();
            tracing::debug!(hash = %dropped.key.0, "compile queue full; coldest job dropped");
        }
    }

    /// Carries out what the control handle asked for since the last poll.
    fn apply_control(&mut self) {
        let enabled = self.control.is_enabled();
        if self.control.take_clear() || (!enabled && self.serving) {
            let keys: Vec<CodeKey> = self
                .installed
                .keys()
                .chain(self.verifying.keys())
                .copied()
                .collect();
            for key in keys {
                self.uninstall(key);
            }
            self.queue.clear();
        }
        self.serving = enabled;
    }

    /// Installs finished compilations, hands queued jobs to idle workers, sets the gauges and
    /// publishes the status to the [status sink](Service::set_status_sink), if there is one.
    pub fn poll(&mut self) {
        self.apply_control();
        self.take_reports();
        let finished =
            std::mem::take(&mut *self.finished.lock().unwrap_or_else(|e| e.into_inner()));
        for f in finished {
            self.finish(f);
        }
        self.verify();
        self.evict();
        if self.serving && !self.control.is_paused() {
            while self.in_flight.len() < self.config.worker_count.max(1) {
                let Some(job) = self.queue.pop() else { break };
                self.start(job);
            }
        }
        metrics::state(self.queue.len(), self.in_flight.len(), &self.installed);
        metrics::resident_bytes(self.resident_bytes());
        metrics::verifying(self.verifying.len());
        if let Some((restarts, timeouts)) = self.compiler.helper_counts() {
            metrics::helper(restarts, timeouts);
        }
        self.publish_status();
    }

    /// Acts on a finished job: installs or verifies its code, or notes why there is none.
    fn finish(&mut self, f: Finished) {
        if !f.shared {
            self.in_flight.remove(&f.key);
        }
        if f.shared {
            self.stats.family_shares += 1;
            metrics::family_share(f.tier);
        } else {
            self.stats.compile_micros += f.elapsed.as_micros() as u64;
            if f.tier != Tier::Optimised {
                self.stats.compile_micros_quick += f.elapsed.as_micros() as u64;
            }
            metrics::compile_time(f.tier, f.elapsed);
        }
        match f.result {
            Ok(compiled) => {
                tracing::debug!(hash = %f.key.0, tier = ?f.tier, elapsed = ?f.elapsed, shared = f.shared, "compiled");
                if let Some(tag) = f.family {
                    self.stats.family_compilations += 1;
                    self.families
                        .entry((tag.skeleton, f.key.1, f.tier))
                        .or_default()
                        .push(FamilyFn {
                            tag,
                            code: Arc::downgrade(&compiled.code),
                            object: compiled.object.clone(),
                            entry: compiled.entry.clone(),
                        });
                }
                self.compile_times.insert((f.key, f.tier), f.elapsed);
                if f.shared {
                    self.shared.insert((f.key, f.tier));
                }
                if !self.serving
                    || self.installed.get(&f.key) == Some(&Tier::Optimised)
                    || self.banned.contains_key(&f.key)
                {
                    return;
                }
                if self.config.verify_runs == 0 {
                    self.promote(f.key, f.tier, compiled);
                } else {
                    self.start_verifying(f.key, f.tier, compiled);
                }
            }
            Err(e) => {
                self.stats.compile_failures += 1;
                metrics::compile_failed(f.tier);
                tracing::debug!(hash = %f.key.0, tier = ?f.tier, error = %e, "compilation failed; the code stays on the interpreter");
                match f.tier {
                    // A limit only the quick tier has may not bind the optimising one.
                    Tier::Baseline => {
                        self.quick_failed.insert(f.key);
                        self.consider(f.key);
                    }
                    _ => {
                        self.failed.insert(f.key, e.to_string());
                    }
                }
            }
        }
    }

    /// Installs verified (or, with `verify_runs` 0, fresh) code and keeps its object.
    fn promote(&mut self, key: CodeKey, tier: Tier, compiled: Compiled) {
        if let Some(cache) = &self.cache {
            let object_key = ObjectKey {
                code: key,
                optimised: tier == Tier::Optimised,
            };
            if let Err(e) = cache.store(object_key, &compiled.entry, &compiled.object) {
                tracing::warn!(error = %e, "cannot keep the compiled object");
            }
        }
        self.install(key, tier, compiled.code);
        if self.compilations.insert((key, tier), false) != Some(false) {
            self.stats.unused_compilations += 1;
        }
        self.compile_log.push(CompileEvent {
            key,
            tier,
            head: self.heat.head(),
            elapsed: self.compile_times.remove(&(key, tier)).unwrap_or_default(),
            shared: self.shared.remove(&(key, tier)),
            since_first_sight: self.first_seen.get(&key).map(|t| t.elapsed()),
        });
        match tier {
            Tier::Optimised => self.stats.compiled_optimised += 1,
            _ => self.stats.compiled_quick += 1,
        }
        metrics::compiled(tier);
        // It may have grown hot enough for the next tier meanwhile.
        self.consider(key);
    }

    /// Registers new code as waiting for verification: its frames keep running what they ran
    /// (the previous tier, or the interpreter), and EVMs record the transactions that run them.
    fn start_verifying(&mut self, key: CodeKey, tier: Tier, compiled: Compiled) {
        let code = compiled.code;
        let replay = Arc::new(Runtime::new(
            Backend::Jit,
            CompilePolicy::LookupOnly,
            self.config.compile,
        ));
        replay.insert(key.0, key.1, Entry::Ready(code.clone()));
        let previous = match self.runtime.get(key.0, key.1) {
            Some(Entry::Ready(f)) | Some(Entry::Verifying(Some(f))) => Some(f),
            _ => None,
        };
        self.runtime
            .insert(key.0, key.1, Entry::Verifying(previous));
        self.verifying.insert(
            key,
            Candidate {
                tier,
                code,
                object: compiled.object,
                entry: compiled.entry,
                replay,
                passed: 0,
                running: 0,
            },
        );
        self.runtime.captures().set_waiting(self.verifying.len());
    }

    /// Hands recorded transactions to the verifier and acts on its verdicts: promotes code that
    /// matched `verify_runs` times, bans code that did not.
    fn verify(&mut self) {
        let captures = self.runtime.captures().take();
        let runs = self.config.verify_runs;
        for capture in captures {
            let capture = Arc::new(capture);
            for key in &capture.candidates {
                let Some(c) = self.verifying.get_mut(key) else {
                    continue;
                };
                if c.passed + c.running >= runs {
                    continue;
                }
                let (key, code, replay) = (*key, c.code.clone(), c.replay.clone());
                let (interpreter, capture, verified) = (
                    self.interpreter.clone(),
                    capture.clone(),
                    self.verified.clone(),
                );
                let sent = self.verifier.submit_with(Box::new(move |_: &dyn Compiler| {
                    let verdict = catch_unwind(AssertUnwindSafe(|| {
                        verify::verify(&capture, &replay, &interpreter)
                    }))
                    .unwrap_or_else(|_| Verdict::Inconclusive("the replay panicked".into()));
                    verified
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Verified {
                            key,
                            code,
                            capture,
                            verdict,
                        });
                }));
                if sent.is_ok() {
                    c.running += 1;
                }
            }
        }
        let verified =
            std::mem::take(&mut *self.verified.lock().unwrap_or_else(|e| e.into_inner()));
        for v in verified {
            let Some(c) = self.verifying.get_mut(&v.key) else {
                continue;
            };
            if !Arc::ptr_eq(&c.code, &v.code) {
                continue;
            }
            c.running -= 1;
            match v.verdict {
                Verdict::Match => {
                    self.stats.verify_matches += 1;
                    metrics::verification("match");
                    c.passed += 1;
                    if c.passed >= runs {
                        let Some(c) = self.verifying.remove(&v.key) else {
                            continue;
                        };
                        tracing::debug!(hash = %v.key.0, tier = ?c.tier, runs, "compiled code verified");
                        let compiled = Compiled {
                            code: c.code,
                            object: c.object,
                            entry: c.entry,
                        };
                        self.promote(v.key, c.tier, compiled);
                    }
                }
                Verdict::Inconclusive(why) => {
                    self.stats.verify_inconclusive += 1;
                    metrics::verification("inconclusive");
                    tracing::debug!(hash = %v.key.0, reason = %why, "verification replay inconclusive");
                }
                Verdict::Mismatch {
                    difference,
                    expected,
                } => {
                    self.stats.verify_mismatches += 1;
                    metrics::verification("mismatch");
                    self.ban(v.key, &v.capture, &difference, &expected);
                }
            }
        }
        self.runtime.captures().set_waiting(self.verifying.len());
    }

    /// Bans `key` after its compiled code disagreed with the interpreter: it leaves the
    /// registry and the object cache for good, and a reproducer is written.
    fn ban(
        &mut self,
        key: CodeKey,
        capture: &Capture,
        difference: &str,
        expected: &revm::context_interface::result::ResultAndState,
    ) {
        let tier = self.verifying.get(&key).map(|c| c.tier);
        if let Some(bad) = self.verifying.get(&key).map(|c| c.code.clone()) {
            // Siblings must not be served the function that disagreed.
            for fns in self.families.values_mut() {
                fns.retain(|f| !std::ptr::eq(f.code.as_ptr(), Arc::as_ptr(&bad)));
            }
        }
        self.uninstall(key);
        let dir = self.reproducer_dir();
        let reproducer = verify::write_reproducer(&dir, key, capture, expected, difference);
        let why = format!("compiled code disagreed with the interpreter: {difference}");
        match &reproducer {
            Ok(path) => tracing::error!(
                hash = %key.0, spec = ?key.1, ?tier, %difference, reproducer = %path.display(),
                "compiled code disagreed with the interpreter; the code is banned and stays on the interpreter"
            ),
            Err(e) => tracing::error!(
                hash = %key.0, spec = ?key.1, ?tier, %difference, error = %e, dir = %dir.display(),
                "compiled code disagreed with the interpreter; the code is banned and stays on the interpreter (writing the reproducer failed)"
            ),
        }
        self.runtime
            .insert(key.0, key.1, Entry::Failed(Arc::from(why.as_str())));
        self.failed.insert(key, why.clone());
        self.banned.insert(key, why);
        self.shared.retain(|(k, _)| *k != key);
        self.queue.remove(key);
        if let Some(cache) = &self.cache {
            for optimised in [false, true] {
                cache.remove(ObjectKey {
                    code: key,
                    optimised,
                });
            }
        }
        self.flush();
    }

    /// Where mismatches write their reproducers.
    fn reproducer_dir(&self) -> std::path::PathBuf {
        self.config.reproducer_dir.clone().unwrap_or_else(|| {
            self.cache
                .as_ref()
                .map_or_else(std::env::temp_dir, |c| c.path().to_path_buf())
                .join("mismatches")
        })
    }

    /// Puts compiled code in the registry (moving its epoch) and counts it against the budget.
    fn install(&mut self, key: CodeKey, tier: Tier, code: Arc<CompiledCode>) {
        let bytes = match &*code {
            CompiledCode::Jit(f) => f.object_bytes() as u64,
            CompiledCode::Aot(_) => 0,
        };
        self.runtime.insert(key.0, key.1, Entry::Ready(code));
        self.installed.insert(key, tier);
        self.resident.insert(
            key,
            Resident {
                bytes,
                last_used: Instant::now(),
            },
        );
    }

    /// Takes installed code out of the registry. Its memory is freed once the EVMs that hold it
    /// have moved on (they drop what they looked up when the registry's epoch moves).
    fn uninstall(&mut self, key: CodeKey) {
        self.runtime.remove(key.0, key.1);
        self.installed.remove(&key);
        self.resident.remove(&key);
        if self.verifying.remove(&key).is_some() {
            self.runtime.captures().set_waiting(self.verifying.len());
        }
    }

    /// Evicts code idle for longer than the idle limit, then the least recently used until the
    /// resident code fits its budget.
    fn evict(&mut self) {
        let mut evicted = Vec::new();
        if self.config.idle_evict_secs > 0 {
            let idle = Duration::from_secs(self.config.idle_evict_secs);
            evicted.extend(
                self.resident
                    .iter()
                    .filter(|(_, r)| r.last_used.elapsed() > idle)
                    .map(|(k, _)| *k),
            );
        }
        evicted.iter().for_each(|k| self.uninstall(*k));
        let mut total: u64 = self.resident.values().map(|r| r.bytes).sum();
        if total > self.config.code_cache_bytes {
            let mut by_age: Vec<_> = self
                .resident
                .iter()
                .map(|(k, r)| (r.last_used, r.bytes, *k))
                .collect();
            by_age.sort_by_key(|(used, _, _)| *used);
            for (_, bytes, key) in by_age {
                if total <= self.config.code_cache_bytes {
                    break;
                }
                total -= bytes;
                self.uninstall(key);
                evicted.push(key);
            }
        }
        for key in evicted {
            self.stats.evictions += 1;
            metrics::evicted();
            tracing::debug!(hash = %key.0, "compiled code evicted");
        }
    }

    /// Compiled code resident now, in bytes of linked objects.
    pub fn resident_bytes(&self) -> u64 {
        self.resident.values().map(|r| r.bytes).sum()
    }

    /// Publishes [`Service::status`] to the status sink, if there is one.
    fn publish_status(&self) {
        if let Some(sink) = &self.status_sink {
            sink.publish(self);
        }
    }

    /// Hands a job to the workers.
    fn start(&mut self, job: Job) {
        let Some(code) = self.code(job.key.0) else {
            tracing::debug!(hash = %job.key.0, "bytecode unknown to the service; it stays on the interpreter");
            self.failed
                .insert(job.key, "bytecode unknown to the service".into());
            return;
        };
        if code.len() > self.config.max_bytecode_len {
            self.failed.insert(
                job.key,
                format!("{} bytes exceed max_bytecode_len", code.len()),
            );
            return;
        }
        let options = match job.tier {
            Tier::Optimised => self.config.compile,
            _ => CompileOptions {
                opt_level: OptLevel::Baseline,
                ..self.config.compile
            },
        };
        let mut request = CompileRequest::new(job.key.0, job.key.1, Arc::from(&code[..]), options);
        let mut family = None;
        if self.config.families {
            let skeleton = self.index_skeleton(job.key.0, &code);
            if let Some(compiled) = self.family_fn_for(skeleton, job.key, job.tier, &code) {
                tracing::debug!(hash = %job.key.0, tier = ?job.tier, "a sibling's family function serves this code");
                self.finish(Finished {
                    key: job.key,
                    tier: job.tier,
                    result: Ok(compiled),
                    elapsed: Duration::ZERO,
                    family: None,
                    shared: true,
                });
                return;
            }
            let params = self.family_params(skeleton, job.key.0, &code);
            if !params.is_empty() {
                match kiln_compiler::family::digest(&code, job.key.1, &params) {
                    Ok(digest) => {
                        request.params = params.clone();
                        family = Some(FamilyTag {
                            skeleton,
                            template: job.key.0,
                            params: params.into(),
                            digest,
                        });
                    }
                    Err(e) => {
                        tracing::debug!(hash = %job.key.0, error = %e, "no family function for this code")
                    }
                }
            }
        }
        let (finished, key, tier) = (self.finished.clone(), job.key, job.tier);
        let sent = self
            .workers
            .submit_with(Box::new(move |compiler: &dyn Compiler| {
                let start = Instant::now();
                let entry = kiln_compiler::next_entry_name();
                let object = catch_unwind(AssertUnwindSafe(|| {
                    compiler.compile_object(&request, &entry)
                }))
                .unwrap_or_else(|_| {
                    Err(
                        kiln_compiler::CompileError::Internal("the compilation panicked".into())
                            .into(),
                    )
                });
                let result = object.and_then(|object| {
                    let code = Arc::new(CompiledCode::Jit(kiln_compiler::link_jit_object(
                        &object, &entry,
                    )?));
                    Ok(Compiled {
                        code,
                        object: object.into(),
                        entry,
                    })
                });
                finished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Finished {
                        key,
                        tier,
                        result,
                        elapsed: start.elapsed(),
                        family,
                        shared: false,
                    });
            }));
        if sent.is_ok() {
            self.in_flight.insert(job.key, job.tier);
        }
    }

    /// Files `hash` under its code's skeleton (once) and returns the skeleton.
    fn index_skeleton(&mut self, hash: B256, code: &[u8]) -> B256 {
        if let Some(skeleton) = self.skeleton_of.get(&hash) {
            return *skeleton;
        }
        let skeleton = kiln_compiler::family::skeleton(code);
        self.skeleton_of.insert(hash, skeleton);
        self.skeletons.entry(skeleton).or_default().push(hash);
        skeleton
    }

    /// A family function compiled for a sibling that `code` can run: same skeleton, spec and
    /// tier, and the same analysis apart from the function's parameters.
    fn family_fn_for(
        &mut self,
        skeleton: B256,
        key: CodeKey,
        tier: Tier,
        code: &[u8],
    ) -> Option<Compiled> {
        let fns = self.families.get_mut(&(skeleton, key.1, tier))?;
        fns.retain(|f| f.code.strong_count() > 0);
        let found = fns.iter().find_map(|f| {
            let digest = kiln_compiler::family::digest(code, key.1, &f.tag.params).ok()?;
            (digest == f.tag.digest).then_some(())?;
            Some(Compiled {
                code: f.code.upgrade()?,
                object: f.object.clone(),
                entry: f.entry.clone(),
            })
        });
        if found.is_none() && tracing::enabled!(tracing::Level::DEBUG) {
            for f in self
                .families
                .get(&(skeleton, key.1, tier))
                .into_iter()
                .flatten()
            {
                let why = match self
                    .code(f.tag.template)
                    .and_then(|t| kiln_compiler::family::params(code, &[&t]))
                {
                    None => "it differs from the template in a jump target".to_owned(),
                    Some(p) if p.iter().any(|pc| !f.tag.params.contains(pc)) => format!(
                        "immediates at pcs {:?} differ outside the function's parameters",
                        p.iter()
                            .filter(|pc| !f.tag.params.contains(pc))
                            .collect::<Vec<_>>()
                    ),
                    Some(_) => "the analysis relies on an immediate that differs".to_owned(),
                };
                tracing::debug!(hash = %key.0, template = %f.tag.template, %why, "a sibling's family function does not fit");
            }
        }
        found
    }

    /// The PUSHes in which `code` differs from the siblings the service knows (at most
    /// [`MAX_SIBLINGS`] of them): the parameters of a function they can share. Empty when it
    /// knows none.
    fn family_params(&self, skeleton: B256, hash: B256, code: &[u8]) -> Vec<u32> {
        let siblings: Vec<Bytes> = self
            .skeletons
            .get(&skeleton)
            .into_iter()
            .flatten()
            .filter(|h| **h != hash)
            .take(MAX_SIBLINGS)
            .filter_map(|h| self.code(*h))
            .collect();
        let mut params: Vec<u32> = siblings
            .iter()
            .filter_map(|s| kiln_compiler::family::params(code, &[s]))
            .flatten()
            .collect();
        params.sort_unstable();
        params.dedup();
        params
    }

    fn code(&self, hash: B256) -> Option<Bytes> {
        self.codes
            .get(&hash)
            .cloned()
            .or_else(|| self.source.as_ref()?.code(hash))
    }

    /// Makes the service publish its [`status`](Service::status) to `sink` at the end of every
    /// [`poll`](Service::poll), and so after every notification: readers such as the `kiln_status`
    /// RPC method (give [`rpc::serve`](crate::rpc::serve) a clone of `sink`) see a fresh snapshot
    /// without anyone publishing by hand. Publishes once now; replaces an earlier sink.
    pub fn set_status_sink(&mut self, sink: SharedStatus) {
        self.status_sink = Some(sink);
        self.publish_status();
    }

    /// The handle that enables, disables, pauses, resumes and clears this service.
    pub fn control(&self) -> ServiceControl {
        self.control.clone()
    }

    /// Polls until no compile job is queued or running and no verification replay is running,
    /// or `timeout` has passed; returns whether the service went idle.
    pub fn wait_idle(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            let stalled = !self.serving || self.control.is_paused();
            let replaying = self.verifying.values().any(|c| c.running > 0);
            if self.in_flight.is_empty() && !replaying && (self.queue.is_empty() || stalled) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the compile workers (queued jobs are dropped, the one in flight is waited for) and
    /// saves the heat ranking to the cache.
    pub fn shutdown(&self) {
        self.workers.shutdown();
        self.verifier.shutdown();
        self.flush();
    }

    /// The heat ranking.
    pub fn heat(&self) -> &Heat {
        &self.heat
    }

    /// The compile queue.
    pub fn queue(&self) -> &CompileQueue {
        &self.queue
    }

    /// The tier installed for `key` by this service, if any.
    pub fn installed(&self, key: CodeKey) -> Option<Tier> {
        self.installed.get(&key).copied()
    }

    /// Whether new code for `key` waits for verification, and how many replays it has passed.
    pub fn verifying(&self, key: CodeKey) -> Option<u32> {
        self.verifying.get(&key).map(|c| c.passed)
    }

    /// Why `key` is banned (its compiled code disagreed with the interpreter), if it is.
    pub fn banned(&self, key: CodeKey) -> Option<&str> {
        self.banned.get(&key).map(String::as_str)
    }

    /// Why `key` will not be compiled, if it will not.
    pub fn failure(&self, key: CodeKey) -> Option<&str> {
        self.failed.get(&key).map(String::as_str)
    }

    /// Every compilation installed so far, in order.
    pub fn compile_log(&self) -> &[CompileEvent] {
        &self.compile_log
    }

    /// Counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// A snapshot of the queue, the workers, the installed code and the counters.
    pub fn status(&self) -> StatusSnapshot {
        let (installed_baseline, installed_optimised) = installed_per_tier(&self.installed);
        StatusSnapshot {
            serving: self.serving,
            head: self.heat.head(),
            queue_depth: self.queue.len(),
            in_flight: self.in_flight.len(),
            installed_baseline,
            installed_optimised,
            failed: self.failed.len(),
            pending_reports: self.pending.len(),
            stats: self.stats.clone(),
        }
    }

    /// The runtime the service fills.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}
