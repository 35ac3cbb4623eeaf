//! Does a busy compiler slow block execution? Runs a workload's transaction in batches, turn
//! about: with no compilation running, and with the service's compile worker kept busy
//! (compiling the workload's own contracts at the default level, over and over). Execution runs
//! the code already compiled, as a node does once its hot code is installed.
//!
//! `cargo run --release -p kiln-exex --example busy_compiler -- [WORKLOAD.json] [ROUNDS]`
//! (default `../shared/bench/contracts/erc20_transfer.json`, 20 rounds).

use kiln_compiler::CompileOptions;
use kiln_runtime::{Backend, CompilePolicy, CompileRequest, Entry, InProcess, Runtime, WorkerPool};
use kiln_testing::{
    bench::{
        exec::Evm,
        workload::{load_workloads, Selection},
    },
    statetest::Fork,
};
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// Wall time of one timed batch.
const BATCH_TIME: Duration = Duration::from_millis(100);

fn main() -> eyre::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/bench/contracts/erc20_transfer.json".into()),
    );
    let rounds: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let selection = Selection {
        filter: None,
        default_fork: Fork::parse("Cancun")?,
    };
    let workload = load_workloads(&[path], &selection)?
        .into_iter()
        .next()
        .ok_or_else(|| eyre::eyre!("no workload in the file"))?;

    // The registry a node would have once its hot code is installed.
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions::default(),
    ));
    let mut evm = Evm::new(&workload, Some(runtime.clone()));
    evm.run_setup(&workload);
    let codes = evm.contract_codes();
    for (hash, code) in &codes {
        let spec = workload.cfg.spec;
        if let Ok(f) = runtime.compile(*hash, spec, code, None) {
            runtime.insert(*hash, spec, Entry::Ready(Arc::new(f)));
        }
    }

    let pool = WorkerPool::new(Arc::new(InProcess), 1, "kiln-busy");
    let keep_busy = |pool: &WorkerPool| {
        while pool.queued() < 2 {
            for (hash, code) in &codes {
                let request = CompileRequest::new(
                    *hash,
                    workload.cfg.spec,
                    Arc::from(&code[..]),
                    CompileOptions::default(),
                );
                let _ = pool.submit(request, Box::new(|_, _| {}));
            }
        }
    };
    let run = |evm: &mut Evm, n: u32| {
        let start = Instant::now();
        for _ in 0..n {
            let out = evm
                .transact(workload.tx.clone())
                .expect("the transaction runs");
            std::hint::black_box(out);
        }
        start.elapsed() / n
    };
    // Warm up, and size the batches to about BATCH_TIME.
    let once = run(&mut evm, 10);
    let n = (BATCH_TIME.as_nanos() / once.as_nanos().max(1)).clamp(1, 1_000_000) as u32;
    let batch = |evm: &mut Evm| run(evm, n);
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        while pool.in_flight() > 0 || pool.queued() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        quiet.push(batch(&mut evm));
        keep_busy(&pool);
        while pool.in_flight() == 0 {
            std::thread::yield_now();
        }
        let mut t = Duration::ZERO;
        for _ in 0..4 {
            keep_busy(&pool);
            t += batch(&mut evm);
        }
        busy.push(t / 4);
        // Let the queue drain before the next quiet turn.
        while pool.queued() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    pool.shutdown();
    evm.flush_stats();
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (q, b) = (median(&mut quiet), median(&mut busy));
    let frames = runtime
        .stats
        .compiled_frames
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{}: {} compiled frames; per transaction, median of {rounds} turns: quiet {q:?}, compiler busy {b:?}, busy/quiet {:.3} ({} cores)",
        workload.name,
        frames,
        b.as_secs_f64() / q.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    Ok(())
}
