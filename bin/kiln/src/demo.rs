//! `kiln demo`: the demo chain built, imported with the interpreter and with kiln's hot-code
//! service, and compared (the `kiln-demo` library does the work).

use crate::import::ServiceArgs;
use clap::Args;
use kiln_demo::DemoOptions;
use std::{path::PathBuf, process::ExitCode, time::Instant};

/// Arguments of `kiln demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the chain folder (`chain/`) and the picture (`demo.svg`) are written.
    #[arg(long, value_name = "DIR", default_value = "kiln-demo")]
    out: PathBuf,

    /// Blocks after the setup.
    #[arg(long, default_value_t = 300)]
    blocks: usize,

    /// Transactions per block (fewer when their gas limits would overflow the block).
    #[arg(long, default_value_t = 60)]
    txs_per_block: usize,

    /// Funded accounts.
    #[arg(long, default_value_t = 24)]
    accounts: usize,

    /// Seed of every key and choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Every this many blocks a side block is dropped or a reorg happens (0: none).
    #[arg(long, default_value_t = 40)]
    fork_every: usize,

    /// Do not let the service finish its compile jobs after each block: import as fast as
    /// possible while it compiles beside it (as when syncing history).
    #[arg(long)]
    no_settle: bool,

    #[command(flatten)]
    service: ServiceArgs,
}

/// Runs `kiln demo`.
pub fn run(args: DemoArgs) -> eyre::Result<ExitCode> {
    let start = Instant::now();
    let opts = DemoOptions {
        seed: args.seed,
        accounts: args.accounts,
        blocks: args.blocks,
        txs_per_block: args.txs_per_block,
        fork_every: args.fork_every,
        out: args.out,
        service: args.service.config()?,
        settle: !args.no_settle,
    };
    let report = kiln_demo::run::run(&opts, &mut |step| eprintln!("demo: {step}"))?;
    let g = &report.generated;
    println!(
        "demo chain: {} blocks sent ({} setup), {} transactions, {} side blocks dropped, {} reorgs; built in {:.1} s -> {}",
        g.source.blocks.len(),
        g.setup_blocks,
        g.transactions,
        g.dropped,
        g.reorgs,
        report.generation.as_secs_f64(),
        report.chain_dir.display()
    );
    for run in [&report.interpreter, &report.kiln] {
        println!(
            "{:<11} import {:>7.0} ms | EVM {:>7.0} ms, {:>6.1} Mgas/s | decode {:.0} ms, roots {:.0} ms",
            run.mode.to_string(),
            run.wall.as_secs_f64() * 1e3,
            run.timings.execution.as_secs_f64() * 1e3,
            run.mgas_per_sec(),
            run.timings.decode.as_secs_f64() * 1e3,
            run.timings.roots.as_secs_f64() * 1e3,
        );
    }
    if let Some(s) = &report.kiln.service {
        println!(
            "kiln's service: {} quick + {} optimised installs, compile time {}, {:.1}% of contract gas ran natively, {} verified replays, {} mismatches{}",
            s.compiled_quick,
            s.compiled_optimised,
            crate::import::compile_cpu(s),
            100.0 * s.native_share(),
            s.verify_matches,
            s.verify_mismatches,
            if opts.settle {
                format!(
                    "; the import waited {:.1} s for it (left out of kiln's import time)",
                    report.kiln.timings.settle.as_secs_f64()
                )
            } else {
                String::new()
            }
        );
    }
    if let Some((name, time)) = report.hottest_to_optimised() {
        println!(
            "hottest contract {name}: optimised code {:.2} s after the first block that ran it",
            time.as_secs_f64()
        );
    }
    println!("compilations (contract, tier, canonical height when installed, compile time, time since the contract first ran):");
    for line in report.compile_lines() {
        println!("  {line}");
    }
    println!(
        "speedup: EVM execution {:.2}x, whole import {:.2}x",
        report.evm_speedup(),
        report.import_speedup()
    );
    println!(
        "same state root in both runs: {}",
        report.interpreter.state_root
    );
    println!("picture: {}", report.picture.display());
    eprintln!("demo finished in {:.1} s", start.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
