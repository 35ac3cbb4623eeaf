//! A process that exits while a background compilation is inside LLVM must still exit cleanly:
//! `exit()` destroys LLVM's global state, so the runtime joins its workers on shutdown and the
//! compiler's exit handler waits for compilations still running.
//!
//! The scenario runs in child processes (this test binary, re-run with one ignored test
//! selected), since what is tested is the process's exit itself.

use kiln_compiler::CompileOptions;
use kiln_runtime::{Backend, CompilePolicy, Lookup, Runtime, Tier};
use revm::primitives::{hardfork::SpecId, keccak256};
use std::{process::Command, sync::Arc, time::Duration};

const CHILD_ENV: &str = "KILN_EXIT_TEST_CHILD";
const DELAY_ENV: &str = "KILN_EXIT_TEST_DELAY_MS";

/// Straight-line code with a host call and two 256-bit divisions per block: a few hundred
/// milliseconds of optimising compilation, so that exit meets it in flight.
fn heavy_code() -> Vec<u8> {
    let mut code = Vec::new();
    for i in 0..160u8 {
        code.push(0x5b); // JUMPDEST
        code.extend([0x60, i, 0x54]); // PUSH1 i SLOAD
        code.push(0x7f); // PUSH32
        code.extend([0xab; 32]);
        code.push(0x02); // MUL
        code.push(0x7f); // PUSH32
        code.extend([0x13; 32]);
        code.push(0x04); // DIV
        code.push(0x7f); // PUSH32
        code.extend([0x29; 32]);
        code.push(0x05); // SDIV
        code.extend([0x60, i, 0x55]); // PUSH1 i SSTORE
    }
    code.push(0x00);
    code
}

/// Starts a tiered runtime whose optimising compilation of [`heavy_code`] is in flight.
fn runtime_with_a_compilation_in_flight() -> Arc<Runtime> {
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::Tiered { promote_after: 1 },
        CompileOptions::default(),
    ));
    let code = heavy_code();
    let hash = keccak256(&code);
    let found = runtime.lookup(hash, SpecId::CANCUN, || code.clone());
    assert!(matches!(found, Lookup::Baseline(_)), "{found:?}");
    assert_eq!(runtime.tier(hash, SpecId::CANCUN), Some(Tier::Promoting));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while runtime.background_jobs().1 == 0 {
        assert!(
            runtime.tier(hash, SpecId::CANCUN) == Some(Tier::Promoting),
            "the optimising compilation ended before it was seen in flight"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no compilation started"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    runtime
}

/// Small distinct codes (a counting loop with its own constant), each promoted after one
/// lookup: the worker starts one compilation after another, through every phase of LLVM.
fn queue_many_promotions(runtime: &Runtime) {
    for i in 0..24u16 {
        let [hi, lo] = i.to_be_bytes();
        // PUSH2 i; loop: JUMPDEST PUSH1 1 SWAP1 SUB DUP1 PUSH1 3 JUMPI; STOP
        let code = vec![
            0x61, hi, lo, 0x5b, 0x60, 0x01, 0x90, 0x03, 0x80, 0x60, 0x03, 0x57, 0x00,
        ];
        let hash = keccak256(&code);
        runtime.lookup(hash, SpecId::CANCUN, || code.clone());
    }
}

/// The child: sets up a compilation in flight, then exits the way `CHILD_ENV` says.
#[test]
#[ignore = "run by exiting_with_a_compilation_in_flight_is_clean in a child process"]
fn child() {
    let Ok(how) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = runtime_with_a_compilation_in_flight();
    match how.as_str() {
        // What the CLI does: shut the runtime down, then exit.
        "shutdown" => {
            runtime.shutdown();
            assert_eq!(runtime.background_jobs(), (0, 0));
            drop(runtime);
            std::process::exit(0);
        }
        // An owner that forgot: exit with the runtime alive and its worker somewhere inside
        // LLVM (a different point of its queue each run).
        "forgotten" => {
            queue_many_promotions(&runtime);
            let delay: u64 = std::env::var(DELAY_ENV).map_or(0, |d| d.parse().unwrap_or(0));
            std::thread::sleep(Duration::from_millis(delay));
            std::mem::forget(runtime);
            std::process::exit(0);
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn exiting_with_a_compilation_in_flight_is_clean() {
    let exe = std::env::current_exe().expect("test binary path");
    let mut failures = Vec::new();
    for run in 0..60 {
        let how = if run % 2 == 0 {
            "shutdown"
        } else {
            "forgotten"
        };
        let out = Command::new(&exe)
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, how)
            .env(DELAY_ENV, (run * 7 % 250).to_string())
            .output()
            .expect("run the child");
        if !out.status.success() {
            failures.push(format!(
                "run {run} ({how}): {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 60 exits failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn shutdown_joins_the_worker_and_keeps_the_baseline_code_running() {
    let runtime = runtime_with_a_compilation_in_flight();
    runtime.shutdown();
    assert_eq!(runtime.background_jobs(), (0, 0));
    let code = heavy_code();
    let hash = keccak256(&code);
    // The compilation in flight finished before shutdown returned; it lands on the next lookup.
    let found = runtime.lookup(hash, SpecId::CANCUN, || code.clone());
    assert!(matches!(found, Lookup::Ready(_)), "{found:?}");
    assert_eq!(runtime.tier(hash, SpecId::CANCUN), Some(Tier::Optimised));
}
