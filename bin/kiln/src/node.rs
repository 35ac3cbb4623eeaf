//! `kiln node` and `kiln reexec`: a chain folder imported with the hot-code service as a node runs
//! it, and a block range of it re-executed in each mode (the `kiln-node` library does the work).

use crate::import::ServiceArgs;
use clap::Args;
use eyre::{bail, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_node::{
    node::{NodeEvent, NodeOptions},
    ImportMode,
};
use std::{
    io::IsTerminal,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// Arguments of `kiln node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The chain folder: `genesis.json`, `chain.rlp` and optionally `forkchoice.json`.
    #[arg(value_name = "CHAIN")]
    chain: PathBuf,

    /// Where compiled code and heat are kept across runs (in its `kiln-cache` folder).
    #[arg(long, value_name = "DIR")]
    datadir: PathBuf,

    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9101).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,

    /// Serve the `kiln_` JSON-RPC methods (enable, disable, pause, resume, clear, status) on this
    /// address (e.g. 127.0.0.1:8547).
    #[arg(long, value_name = "ADDR")]
    rpc: Option<SocketAddr>,

    /// Hand over one block per this many milliseconds, as blocks arrive at a node following
    /// the chain's tip (0: as fast as they import, as when syncing history).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    block_time_ms: u64,

    /// Seconds between status lines.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    status_every: f64,

    #[command(flatten)]
    service: ServiceArgs,
}

/// Runs `kiln node` until the chain is imported or Ctrl-C.
pub fn run(args: NodeArgs) -> eyre::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .wrap_err("installing the Ctrl-C handler")?;
    }
    let opts = NodeOptions {
        chain: args.chain,
        datadir: args.datadir,
        service: args.service.config()?,
        metrics: args.metrics,
        rpc: args.rpc,
        status_interval: Duration::from_secs_f64(args.status_every.max(0.1)),
        block_time: Duration::from_millis(args.block_time_ms),
    };
    let bar = ProgressBar::hidden();
    let report = kiln_node::node::run(&opts, &stop, &mut |event| match event {
        NodeEvent::Started { blocks, cached } => {
            if std::io::stderr().is_terminal() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(blocks as u64);
                if let Ok(style) = ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} blocks ({eta} left) {msg}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
            }
            eprintln!("kiln node: {blocks} blocks to import; {cached} compiled objects loaded from the data directory");
        }
        NodeEvent::Block(_, _) => bar.inc(1),
        NodeEvent::Status(status) => bar.suspend(|| eprintln!("{status}")),
    })?;
    bar.finish_and_clear();
    let (number, hash) = report.head;
    eprintln!("{}", report.timings);
    let s = &report.service;
    eprintln!(
        "service: {} quick + {} optimised installs (compile time {}), {} loaded from the cache, {:.1}% of contract gas native; first block run natively: {}",
        s.compiled_quick,
        s.compiled_optimised,
        crate::import::compile_cpu(s),
        s.cache_loads,
        100.0 * s.native_share(),
        report
            .first_native_block
            .map_or("none".to_owned(), |n| n.to_string())
    );
    println!(
        "imported {} blocks, head {number} {hash}, state root {}{}",
        report.imported,
        report.state_root,
        if report.interrupted {
            " (stopped by Ctrl-C; cache flushed)"
        } else {
            ""
        }
    );
    if let Some(error) = report.error {
        bail!("import stopped: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kiln reexec`.
#[derive(Debug, Args)]
pub struct ReexecArgs {
    /// The chain folder: `genesis.json`, `chain.rlp` and optionally `forkchoice.json`.
    #[arg(value_name = "CHAIN")]
    chain: PathBuf,

    /// First block of the range.
    #[arg(long)]
    from: u64,

    /// Last block of the range.
    #[arg(long)]
    to: u64,

    /// Passes over the range per mode; the last is timed. In jit mode the first pass compiles;
    /// in tiered mode the first gives the service its heat, the second verifies the code it
    /// compiled against the interpreter, and the third runs it.
    #[arg(long, default_value_t = 3)]
    passes: usize,

    /// Modes to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "interpreter,jit,tiered")]
    modes: Vec<crate::import::Mode>,

    #[command(flatten)]
    service: ServiceArgs,
}

/// Runs `kiln reexec`: one line per mode.
pub fn reexec(args: ReexecArgs) -> eyre::Result<ExitCode> {
    let modes: Vec<ImportMode> = args.modes.iter().map(|m| m.into()).collect();
    let runs = kiln_node::reexec::run(
        &args.chain,
        args.from,
        args.to,
        &modes,
        args.passes,
        &args.service.config()?,
    )?;
    let base = runs
        .iter()
        .find(|r| r.mode == ImportMode::Interpreter)
        .map(|r| r.mgas_per_sec());
    for run in &runs {
        let ratio = base.map_or(String::new(), |b| {
            format!(" ({:.2}x the interpreter)", run.mgas_per_sec() / b)
        });
        println!(
            "{:<11} {} blocks, {:.1} Mgas: EVM {:.1} ms, {:.1} Mgas/s{ratio}; whole {:.1} ms; first pass EVM {:.1} ms",
            run.mode.to_string(),
            run.blocks,
            run.gas as f64 / 1e6,
            run.execution.as_secs_f64() * 1e3,
            run.mgas_per_sec(),
            run.total.as_secs_f64() * 1e3,
            run.first_pass.as_secs_f64() * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
