//! `kiln node`: a long-running import of a chain source with the hot-code service attached, its
//! compiled code and heat kept in a data directory, a status every few seconds, the Prometheus
//! endpoint and the `kiln_` JSON-RPC control methods. Stopping it (the caller's stop flag, set on
//! Ctrl-C) ends the import between blocks and shuts the service down, which keeps its heat; its
//! compiled objects were written as they were verified. Started again on the same data
//! directory, it loads them before the first block.

use crate::{
    chain_import::{BlockImported, ChainError},
    import::{ImportMode, ImportOptions, Importer, Timings, TARGET},
    source::{ChainSource, SourceError},
};
use alloy_primitives::B256;
use kiln_exex::{ServiceConfig, ServiceStats, SharedStatus};
use std::{
    fmt,
    net::SocketAddr,
    ops::ControlFlow,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// The folder of the data directory that holds the service's cache.
pub const CACHE_DIR: &str = "kiln-cache";

/// What `kiln node` runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The chain folder (see [`crate::source`]).
    pub chain: PathBuf,
    /// Where compiled code and heat are kept across runs.
    pub datadir: PathBuf,
    /// The service's settings (`cache_dir` is set from `datadir`).
    pub service: ServiceConfig,
    /// The Prometheus scrape endpoint, if any.
    pub metrics: Option<SocketAddr>,
    /// The JSON-RPC endpoint of the `kiln_` methods, if any.
    pub rpc: Option<SocketAddr>,
    /// How often a status is reported.
    pub status_interval: Duration,
    /// Hand over one block per this interval, as blocks arrive at a node following the chain's
    /// tip (zero: as fast as they import, as when syncing history).
    pub block_time: Duration,
}

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The chain source cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The data directory cannot be made.
    #[error("data directory {path}: {source}")]
    Datadir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The import cannot start (settings, genesis).
    #[error(transparent)]
    Import(#[from] crate::ImportError),
    /// The genesis cannot start a chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// An endpoint could not start.
    #[error("{what}: {why}")]
    Endpoint {
        /// Which endpoint.
        what: &'static str,
        /// The cause.
        why: String,
    },
}

/// The node's state, reported every few seconds.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The head's number.
    pub height: u64,
    /// Blocks imported so far.
    pub blocks: usize,
    /// EVM throughput since the last status, Mgas/s.
    pub mgas_per_sec: f64,
    /// Share of canonical contract gas compiled code ran since the last status.
    pub native_share: f64,
    /// Codes with compiled code installed.
    pub compiled: usize,
    /// Compile jobs queued.
    pub queue_depth: usize,
    /// Compile jobs running.
    pub in_flight: usize,
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "height {} | {:.1} Mgas/s | native {:.1}% | compiled {} | queue {} (+{} running)",
            self.height,
            self.mgas_per_sec,
            100.0 * self.native_share,
            self.compiled,
            self.queue_depth,
            self.in_flight
        )
    }
}

/// What the node tells its caller as it goes.
#[derive(Debug)]
pub enum NodeEvent<'a> {
    /// The import starts: blocks in the source, objects loaded from the cache.
    Started {
        /// Blocks in the source.
        blocks: usize,
        /// Compiled objects loaded from the data directory.
        cached: u64,
    },
    /// A block was imported; `native_share` is the share of its contract gas compiled code ran.
    Block(&'a BlockImported, f64),
    /// The periodic status.
    Status(&'a NodeStatus),
}

/// How a node run ended.
#[derive(Debug)]
pub struct NodeReport {
    /// Blocks imported.
    pub imported: usize,
    /// The head's number and hash.
    pub head: (u64, B256),
    /// The head's state root.
    pub state_root: B256,
    /// Whether the stop flag ended it.
    pub interrupted: bool,
    /// The block that ended it early, if one did.
    pub error: Option<ChainError>,
    /// The first block some of whose contract gas compiled code ran (a warm start's is one of
    /// the first blocks that call contracts).
    pub first_native_block: Option<u64>,
    /// Where the time went.
    pub timings: Timings,
    /// The service's counters.
    pub service: ServiceStats,
}

/// Runs the node until the source is imported or `stop` is set.
pub fn run(
    opts: &NodeOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(NodeEvent<'_>),
) -> Result<NodeReport, NodeError> {
    let source = ChainSource::open(&opts.chain)?;
    let cache_dir = opts.datadir.join(CACHE_DIR);
    std::fs::create_dir_all(&cache_dir).map_err(|source| NodeError::Datadir {
        path: cache_dir.clone(),
        source,
    })?;
    let mut service = opts.service.clone();
    service.cache_dir = Some(cache_dir);
    let mut importer = Importer::for_options(&ImportOptions {
        mode: ImportMode::Tiered,
        service,
        ..ImportOptions::default()
    })?;
    let status = SharedStatus::default();
    let control = {
        let service = importer.service_mut().expect("tiered mode has a service");
        service.set_status_sink(status.clone());
        service.control()
    };
    // The endpoints' runtime: owned here, shut down before returning.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kiln-endpoints")
        .enable_all()
        .build()
        .map_err(|e| NodeError::Endpoint {
            what: "endpoint runtime",
            why: e.to_string(),
        })?;
    let result = (|| {
        if let Some(addr) = opts.metrics {
            let _entered = runtime.enter();
            kiln_exex::metrics::install_prometheus(addr).map_err(|e| NodeError::Endpoint {
                what: "Prometheus endpoint",
                why: e.to_string(),
            })?;
            tracing::info!(target: TARGET, %addr, "Prometheus endpoint");
        }
        let server = match opts.rpc {
            Some(addr) => {
                let (bound, handle) = runtime
                    .block_on(kiln_exex::rpc::serve(addr, control.clone(), status.clone()))
                    .map_err(|e| NodeError::Endpoint {
                        what: "JSON-RPC endpoint",
                        why: e.to_string(),
                    })?;
                tracing::info!(target: TARGET, addr = %bound, "JSON-RPC endpoint (kiln_ methods)");
                Some(handle)
            }
            None => None,
        };
        let imported = import(&mut importer, &source, opts, stop, &status, on_event);
        if let Some(handle) = server {
            let _ = handle.stop();
            runtime.block_on(handle.stopped());
        }
        imported
    })();
    runtime.shutdown_timeout(Duration::from_secs(5));
    let (head, state_root, imported, error, first) = match result {
        Ok(done) => done,
        Err(e) => {
            importer.shutdown();
            return Err(e);
        }
    };
    let service = importer
        .service()
        .map(|s| s.stats().clone())
        .unwrap_or_default();
    // Joins the compile workers and keeps the heat in the data directory.
    let (timings, _) = importer.shutdown();
    let interrupted = matches!(error, Some(ChainError::Interrupted(_)));
    Ok(NodeReport {
        imported,
        head,
        state_root,
        interrupted,
        error: error.filter(|e| !matches!(e, ChainError::Interrupted(_))),
        first_native_block: first,
        timings,
        service,
    })
}

type Imported = ((u64, B256), B256, usize, Option<ChainError>, Option<u64>);

fn import(
    importer: &mut Importer,
    source: &ChainSource,
    opts: &NodeOptions,
    stop: &AtomicBool,
    status: &SharedStatus,
    on_event: &mut dyn FnMut(NodeEvent<'_>),
) -> Result<Imported, NodeError> {
    on_event(NodeEvent::Started {
        blocks: source.blocks.len(),
        cached: importer.service().map_or(0, |s| s.stats().cache_loads),
    });
    let mut last_status = Instant::now();
    let (mut window_gas, mut window_time) = (0u64, Duration::ZERO);
    let mut counted = (0u64, 0u64);
    let mut window_start = counted;
    let mut first = None;
    let mut blocks = 0;
    let started = Instant::now();
    let done = importer.import_chain(source, &mut |block| {
        blocks += 1;
        if !opts.block_time.is_zero() {
            let due = opts.block_time * blocks as u32;
            // Sleeping in slices, so that a stop request is seen within one.
            while started.elapsed() < due && !stop.load(Ordering::Relaxed) {
                let left = due.saturating_sub(started.elapsed());
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
        }
        window_gas += block.gas_used;
        window_time += block.execution;
        let snapshot = status.get();
        let now = (
            snapshot.stats.canonical_gas,
            snapshot.stats.canonical_native_gas,
        );
        let share = share(counted, now);
        counted = now;
        if share > 0.0 && first.is_none() {
            first = Some(block.number);
        }
        on_event(NodeEvent::Block(block, share));
        if last_status.elapsed() >= opts.status_interval {
            let line = NodeStatus {
                height: snapshot.head.max(block.number),
                blocks,
                mgas_per_sec: window_gas as f64 / 1e6 / window_time.as_secs_f64().max(1e-9),
                native_share: self::share(window_start, now),
                compiled: snapshot.installed_baseline + snapshot.installed_optimised,
                queue_depth: snapshot.queue_depth,
                in_flight: snapshot.in_flight,
            };
            on_event(NodeEvent::Status(&line));
            (window_gas, window_time, window_start) = (0, Duration::ZERO, now);
            last_status = Instant::now();
        }
        if stop.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let head = done.tree.head();
    Ok((
        (head.header.number, head.hash),
        head.header.state_root,
        done.imported,
        done.error,
        first,
    ))
}

/// Native share of the gas counted between two (gas, native gas) readings.
fn share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let gas = after.0.saturating_sub(before.0);
    if gas == 0 {
        0.0
    } else {
        after.1.saturating_sub(before.1) as f64 / gas as f64
    }
}
