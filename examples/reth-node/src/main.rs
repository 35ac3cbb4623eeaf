//! `kiln-reth`: reth v2.5.1's Ethereum node with kiln inside.
//!
//! - The EVM configuration is reth's `EthEvmConfig` over kiln's `KilnEvmFactory`: every EVM the
//!   node creates (block import, payload building, RPC calls) runs compiled code where kiln's
//!   registry has it and revm's interpreter everywhere else. The runtime compiles nothing on the
//!   execution path (lookup only).
//! - The `kiln` ExEx feeds the hot-code service the canonical chain; the service compiles the
//!   code that burns gas in the background, verifies it against the interpreter on real
//!   transactions, and installs it.
//! - reth's `reth_jit` RPC method (`enable | disable | pause | unpause | clear`) and reth's pause
//!   while it validates or builds a payload drive the service (see [`evm::KilnJit`]); kiln's own
//!   `kiln_*` methods are served on reth's RPC too.
//! - kiln's settings are `--kiln.*` options of `node` (see [`args::KilnArgs`]); compiled objects
//!   and the heat ranking are kept in `<datadir>/kiln`; kiln's metrics (`kiln_*`) appear on
//!   reth's Prometheus endpoint (`--metrics`).
//!
//! The node type is [`node::KilnNode`] (reth's Ethereum node types with kiln's executor
//! builder), so reth's other commands run kiln's EVM too: `import`, `re-execute` and
//! `stage run` execute blocks with kiln's default tiered runtime (each contract compiled at the
//! baseline tier the first time it runs, hot ones recompiled optimised in the background), with
//! no hot-code service.

mod args;
mod evm;
mod exex;
mod node;
mod service;

use args::KilnArgs;
use clap::Parser;
use evm::{KilnEvmConfig, KilnExecutorBuilder, KilnJit};
use kiln_compiler::CompileOptions;
use kiln_runtime::{Backend, CompilePolicy, Runtime};
use node::KilnNode;
use reth_ethereum::{
    chainspec::ChainSpec,
    cli::{chainspec::EthereumChainSpecParser, interface::Cli},
    consensus::EthBeaconConsensus,
};
use service::{Driver, ServiceHandle};
use std::{
    process::ExitCode,
    sync::{atomic::Ordering, Arc, Mutex, OnceLock},
    time::Duration,
};

fn main() -> ExitCode {
    // kiln's service compiles in helper processes: this same executable, started as
    // `kiln-reth compile-helper [--address-space-limit BYTES]`.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "compile-helper")
    {
        return compile_helper();
    }

    reth_ethereum::cli::sigsegv_handler::install();

    // The service outlives the launcher future: reth drops that future on Ctrl-C, and only
    // after `run` returns is it safe to stop the compile workers and save the cache.
    let service_slot: Arc<Mutex<Option<Arc<ServiceHandle>>>> = Arc::default();
    let slot = service_slot.clone();

    // What reth's other commands (`import`, `re-execute`, `stage run`, ...) execute blocks with:
    // kiln's default tiered runtime, kept here to report on once the command is done.
    let offline: Arc<OnceLock<Arc<Runtime>>> = Arc::default();
    let components = {
        let offline = offline.clone();
        move |spec: Arc<ChainSpec>| {
            let runtime = offline.get_or_init(Runtime::tiered).clone();
            (
                KilnEvmConfig::new(spec.clone(), runtime, None),
                Arc::new(EthBeaconConsensus::new(spec)),
            )
        }
    };

    let result = Cli::<EthereumChainSpecParser, KilnArgs>::parse().run_with_components::<KilnNode>(
        components,
        async move |builder, kiln: KilnArgs| {
            let config = builder.config();
            let (runtime, service) = if kiln.disable {
                tracing::info!(target: "kiln", "kiln disabled: every contract runs on revm's interpreter");
                (Runtime::interpreter(), None)
            } else {
                let cache = config.datadir().data_dir().join("kiln");
                let service_config = kiln.service_config(&config.jit, cache)?;
                tracing::info!(
                    target: "kiln",
                    policy = %service_config.policy,
                    hot_threshold = service_config.hot_threshold_gas,
                    optimise_threshold = service_config.optimise_threshold_gas,
                    workers = service_config.worker_count,
                    isolation = service_config.isolation,
                    verify_runs = service_config.verify_runs,
                    cache = ?service_config.cache_dir,
                    "starting kiln's hot-code service"
                );
                // Lookup only: nothing compiles on the execution path; the service fills the
                // registry.
                let runtime = Arc::new(Runtime::new(
                    Backend::Jit,
                    CompilePolicy::LookupOnly,
                    CompileOptions::default(),
                ));
                let driver = Driver {
                    poll_interval: kiln.poll_interval(),
                    log_interval: Duration::from_secs(kiln.log_interval_secs),
                };
                let service = ServiceHandle::start(runtime.clone(), service_config, driver)?;
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(service.clone());
                (runtime, Some(service))
            };

            let jit = service
                .as_ref()
                .map(|s| Arc::new(KilnJit::new(s.control.clone())));
            let node = builder.node(KilnNode::new(KilnExecutorBuilder::new(runtime, jit)));

            let handle = match service {
                Some(service) => {
                    let rpc_service = service.clone();
                    node.extend_rpc_modules(move |ctx| {
                        // kiln_setEnabled / kiln_pause / kiln_resume / kiln_clear / kiln_status
                        ctx.modules.merge_configured(kiln_exex::rpc::module(
                            rpc_service.control.clone(),
                            rpc_service.status.clone(),
                        ))?;
                        Ok(())
                    })
                    .install_exex("kiln", async move |ctx| Ok(exex::run(ctx, service)))
                    .launch_with_debug_capabilities()
                    .await?
                }
                None => node.launch_with_debug_capabilities().await?,
            };
            handle.wait_for_node_exit().await
        },
    );

    if let Some(service) = service_slot
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        service.stop();
    }

    if let Some(runtime) = offline.get() {
        // Background promotions are joined before the process exits.
        runtime.shutdown();
        let stats = &runtime.stats;
        tracing::info!(
            target: "kiln",
            frames_compiled = stats.compiled_frames.load(Ordering::Relaxed),
            frames_interpreted = stats.interpreted_frames.load(Ordering::Relaxed),
            compilations = stats.compilations.load(Ordering::Relaxed),
            promotions = stats.promotions.load(Ordering::Relaxed),
            compile_secs = stats.compile_micros.load(Ordering::Relaxed) as f64 / 1e6,
            "kiln's tiered runtime"
        );
    }

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:?}");
            ExitCode::FAILURE
        }
    }
}

/// The compile-helper mode: compile requests on stdin, objects on stdout.
fn compile_helper() -> ExitCode {
    let mut args = std::env::args().skip(2);
    let mut limit = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--address-space-limit", Some(Ok(bytes))) => limit = Some(bytes),
            _ => {
                eprintln!("usage: kiln-reth compile-helper [--address-space-limit BYTES]");
                return ExitCode::from(2);
            }
        }
    }
    match kiln_runtime::helper::serve_stdio(limit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-reth compile-helper: {e}");
            ExitCode::FAILURE
        }
    }
}
