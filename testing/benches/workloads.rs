//! Criterion benches over the `kiln bench` workload set: the interpreter (kiln's EVM with
//! nothing compiled) against JIT-compiled code, one group per workload. Throughput is in gas
//! (criterion prints it as `elem/s`: `Gelem/s` is Ggas/s).
//!
//! Loading, EVM construction, compilation and the agreement check are `kiln bench`'s own code
//! (`kiln_testing::bench`), so both measure the same operation: a whole transaction through the
//! EVM with `transact` (nothing committed) on a prepared state.
//!
//! `KILN_BENCH_DIR` points at another workload set, `KILN_BENCH_FILTER` keeps workloads whose
//! name or file contains a substring; criterion's own filter works too
//! (`cargo bench -p kiln-testing --bench workloads -- contracts/`). Only workloads that
//! criterion actually runs are compiled. keccak256 results are not cached across calls unless
//! built with `--features keccak-cache` (the `kiln` binary's default).

use std::{cell::RefCell, hint::black_box, time::Duration};

use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use kiln_compiler::CompileOptions;
use kiln_testing::{
    bench::{
        exec::{Compiler, Contender},
        prepare_checked,
        workload::{bench_dir, load_workloads, Selection, Workload},
    },
    statetest::Fork,
    Mode,
};

/// The modes compared; the interpreter comes first as the reference.
const MODES: [Mode; 3] = [Mode::Interpreter, Mode::Jit, Mode::JitBaseline];

fn workloads(c: &mut Criterion) {
    let selection = Selection {
        filter: std::env::var("KILN_BENCH_FILTER")
            .ok()
            .filter(|f| !f.is_empty()),
        default_fork: Fork::parse("Cancun").expect("Cancun is a known fork"),
    };
    let dir = bench_dir();
    let workloads = load_workloads(std::slice::from_ref(&dir), &selection)
        .unwrap_or_else(|e| panic!("cannot load the workloads in {}: {e:#}", dir.display()));
    let mut compiler = Compiler::new(CompileOptions {
        skip_unprofitable: true,
        ..Default::default()
    });
    for workload in &workloads {
        bench_workload(c, workload, &mut compiler);
    }
    // No background compilation may outlive the benches.
    compiler.shutdown();
}

fn bench_workload(c: &mut Criterion, workload: &Workload, compiler: &mut Compiler) {
    // Gas for the throughput figure, from one cheap run of stock revm (nothing compiled).
    let gas = Contender::prepare(workload, Mode::Revm, compiler)
        .ok()
        .and_then(|c| c.observed.timed.gas_used())
        .unwrap_or_else(|| panic!("{}: the transaction does not execute", workload.name));
    let mut group = c.benchmark_group(&workload.name);
    // Small and flat: some transactions take tens of milliseconds on the interpreter, and the
    // whole set has to finish in minutes.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(gas));
    // Prepared (compiled and checked) on the first benchmark criterion runs for this workload,
    // so a filtered run compiles nothing else.
    let prepared: RefCell<Option<Vec<Contender>>> = RefCell::new(None);
    for mode in MODES {
        group.bench_function(mode.as_str(), |b| {
            let mut slot = prepared.borrow_mut();
            let contenders = slot.get_or_insert_with(|| checked(workload, compiler));
            let contender = contenders
                .iter_mut()
                .find(|c| c.mode == mode)
                .expect("every mode was prepared");
            let tx = &workload.tx;
            b.iter(|| black_box(contender.evm.transact(black_box(tx.clone()))));
        });
    }
    group.finish();
}

/// Prepares both modes; a disagreement is a compiler bug and must not be timed.
fn checked(workload: &Workload, compiler: &mut Compiler) -> Vec<Contender> {
    let (contenders, disagreements) = prepare_checked(workload, &MODES, compiler)
        .unwrap_or_else(|e| panic!("{}: {e:#}", workload.name));
    if !disagreements.is_empty() {
        let all: Vec<String> = disagreements.iter().map(ToString::to_string).collect();
        panic!("modes disagree:\n{}", all.join("\n"));
    }
    contenders
}

// `criterion_group!` defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::workloads);
}
criterion_main!(group::benches);
