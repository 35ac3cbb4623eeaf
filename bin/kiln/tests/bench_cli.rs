//! End-to-end test of `kiln bench`, run against the built binary on small hand-written
//! workloads (`tests/data/bench`), so it needs nothing from `../shared`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bench")
        .join(rel)
}

fn kiln_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("bench")
        .args(args)
        .output()
        .expect("failed to start the kiln binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn small_loop_free_code_stays_on_the_interpreter_by_default() {
    let sequence = data("counter_sequence.json");
    let out = kiln_bench(&[
        sequence.to_str().unwrap(),
        "--reps",
        "3",
        "--min-time",
        "0.02",
        "--json",
        "--modes",
        "jit",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let jit: Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["mode"] == "jit")
        .expect("a jit line");
    let reasons = jit["compile_failures"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{jit}");
    assert!(
        reasons[0]
            .as_str()
            .unwrap()
            .contains("would run slower compiled than interpreted"),
        "{jit}"
    );
    assert_eq!(
        (
            jit["frames_compiled"].as_u64(),
            jit["frames_interpreted"].as_u64()
        ),
        (Some(0), Some(1)),
        "{jit}"
    );
    // Nothing compiled, so there is no compile time per KiB to report.
    assert!(jit["compile_ms_per_kib"].is_null(), "{jit}");
}

#[test]
fn json_lines_for_two_workloads() {
    let (standard, sequence) = (data("countdown.json"), data("counter_sequence.json"));
    let out = kiln_bench(&[
        standard.to_str().unwrap(),
        sequence.to_str().unwrap(),
        "--reps",
        "3",
        "--min-time",
        "0.02",
        "--json",
        // The sequence's contract is loop-free and too small to pay; compile it anyway.
        "--compile-all",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // With --json, stdout holds JSON lines only; the machine and summary go to stderr.
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(stderr.contains("machine: "), "{stderr}");
    assert!(stderr.contains("geometric mean speedup"), "{stderr}");

    // Default modes: stock revm, the interpreter and the JIT, for each workload.
    let pairs: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["workload"].as_str().unwrap().to_owned(),
                l["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ["bench/countdown/n100", "bench/counterSequence"]
        .iter()
        .flat_map(|w| {
            ["revm", "interpreter", "jit"]
                .iter()
                .map(move |m| (w.to_string(), m.to_string()))
        })
        .collect();
    assert_eq!(pairs, expected);

    for line in &lines {
        let mode = line["mode"].as_str().unwrap();
        let median = line["median_ns"].as_f64().expect("median_ns");
        assert!(median > 0.0, "{line}");
        assert!(line["p10_ns"].as_f64().unwrap() <= median, "{line}");
        assert!(line["p90_ns"].as_f64().unwrap() >= median, "{line}");
        assert!(line["reps"].as_u64().unwrap() >= 3, "{line}");
        assert!(line["gas_used"].as_u64().unwrap() > 21_000, "{line}");
        assert!(line["mgas_per_s"].as_f64().unwrap() > 0.0, "{line}");
        assert_eq!(line["status"], "success", "{line}");
        assert!(line["speedup"].as_f64().unwrap() > 0.0, "{line}");
        assert!(line["time_vs_revm"].as_f64().unwrap() > 0.0, "{line}");
        if mode == "jit" {
            assert!(line["compile_ms"].as_f64().unwrap() > 0.0, "{line}");
            assert!(line["compile_ms_per_kib"].as_f64().unwrap() > 0.0, "{line}");
            assert!(line["object_bytes"].as_u64().unwrap() > 0, "{line}");
            assert_eq!(line["compile_failures"], serde_json::json!([]), "{line}");
            // The timed call ran compiled code, not the interpreter.
            assert_eq!(line["frames_compiled"], 1, "{line}");
            assert_eq!(line["frames_interpreted"], 0, "{line}");
        } else {
            // The field is there (it is part of the format) but nothing was compiled.
            assert!(
                line.as_object().unwrap().contains_key("compile_ms"),
                "{line}"
            );
            assert!(line["compile_ms"].is_null(), "{line}");
        }
        if mode == "interpreter" {
            assert_eq!(line["speedup"].as_f64(), Some(1.0), "{line}");
        }
    }

    // Every mode used the same gas on a workload (the agreement check passed).
    for w in lines.chunks(3) {
        assert!(w.iter().all(|l| l["gas_used"] == w[0]["gas_used"]), "{w:?}");
    }
    // The sequence's timed call ran after its setup call was committed: it only rewrites a
    // set slot (1 -> 2, about 5k gas of SSTORE) instead of filling a fresh one (over 20k).
    let sequence_gas = lines[3]["gas_used"].as_u64().unwrap();
    assert!(
        sequence_gas < 30_000,
        "setup not committed? gas {sequence_gas}"
    );
}

#[test]
fn a_mode_that_disagrees_fails_the_run() {
    // JUMP (0x56) charged one gas more by the compiled code: the countdown loop jumps 100 times.
    let file = data("countdown.json");
    let out = kiln_bench(&[
        file.to_str().unwrap(),
        "--modes",
        "interpreter,jit",
        "--reps",
        "3",
        "--min-time",
        "0",
        "--inject-fault",
        "gas:56:1",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr
            .contains("bench/countdown/n100: jit differs from the interpreter: timed tx: gas used"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 disagreement(s) with the interpreter"),
        "{stderr}"
    );
    // The interpreter was still timed; the disagreeing mode was not.
    assert!(stdout.contains("interpreter"), "{stdout}");
    assert!(!stdout.contains(" jit "), "{stdout}");
}

#[test]
fn missing_path_is_a_clear_failure() {
    let out = kiln_bench(&["/nonexistent/kiln-bench-workloads"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot access /nonexistent/kiln-bench-workloads"),
        "{stderr}"
    );
}

/// `kiln bench FILE --json --modes MODES` with a short budget: its JSON rows and stderr; fails
/// the test if the run fails.
fn json_run(file: &str, modes: &str) -> (Vec<Value>, String) {
    let file = data(file);
    let out = kiln_bench(&[
        file.to_str().unwrap(),
        "--reps",
        "3",
        "--min-time",
        "0.02",
        "--json",
        "--modes",
        modes,
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let rows = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, stderr)
}

/// The row of `mode` among `rows`.
fn row<'a>(rows: &'a [Value], mode: &str) -> &'a Value {
    rows.iter()
        .find(|l| l["mode"] == mode)
        .unwrap_or_else(|| panic!("no {mode} row in {rows:?}"))
}

#[test]
fn profile_guided_mode_compiles_what_the_workload_runs() {
    let (rows, _) = json_run("countdown.json", "jit,jit-profiled");
    let (jit, profiled) = (row(&rows, "jit"), row(&rows, "jit-profiled"));
    assert_eq!(profiled["gas_used"], jit["gas_used"], "{profiled}");
    assert_eq!(
        profiled["compile_failures"],
        serde_json::json!([]),
        "{profiled}"
    );
    assert!(profiled["compile_ms"].as_f64().unwrap() > 0.0, "{profiled}");
    // The profile is of this very transaction: it runs compiled from start to end.
    assert_eq!(profiled["frames_compiled"], 1, "{profiled}");
    assert_eq!(profiled["frames_handed_off"], 0, "{profiled}");
    assert_eq!(jit["frames_handed_off"], 0, "{jit}");
}

#[test]
fn tiered_mode_times_the_promoted_code_and_reports_both_compile_times() {
    let (rows, stderr) = json_run("countdown.json", "interpreter,tiered");
    let (tiered, interpreter) = (row(&rows, "tiered"), row(&rows, "interpreter"));
    assert_eq!(tiered["gas_used"], interpreter["gas_used"], "{tiered}");
    // The baseline tier compiled on the check run, the default level in the background.
    assert!(tiered["compile_ms"].as_f64().unwrap() > 0.0, "{tiered}");
    assert!(tiered["optimise_ms"].as_f64().unwrap() > 0.0, "{tiered}");
    assert!(tiered["object_bytes"].as_u64().unwrap() > 0, "{tiered}");
    assert_eq!(tiered["frames_compiled"], 1, "{tiered}");
    assert_eq!(
        tiered["compile_failures"],
        serde_json::json!([]),
        "{tiered}"
    );
    assert!(
        stderr.contains("background optimising compile time per KiB of bytecode (tiered)"),
        "{stderr}"
    );
}

/// Code that only setup runs is compiled at the baseline tier and never looked up again by the
/// timed transaction: `tiered` stops waiting for its promotion and says so, instead of waiting
/// out its deadline.
#[test]
fn tiered_mode_does_not_wait_for_code_only_setup_ran() {
    let (rows, _) = json_run("setup_only_code.json", "interpreter,tiered");
    let tiered = row(&rows, "tiered");
    let notes = tiered["compile_notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{tiered}");
    assert!(
        notes[0].as_str().unwrap().contains("not promoted"),
        "{tiered}"
    );
    // The timed contract was promoted: its optimising compilation was timed.
    assert!(tiered["optimise_ms"].as_f64().unwrap() > 0.0, "{tiered}");
    assert_eq!(tiered["status"], "success", "{tiered}");
}
