//! `kiln fuzz --inject-fault`: with a deliberate miscompilation the smoke campaign must find a
//! divergence, minimize it below 64 bytes of code and write a state test that the interpreter
//! passes (and, with the fault off, the JIT passes too).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("failed to start the kiln binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the smoke campaign with `fault` and returns the written reproducers.
fn campaign_with(fault: &str, out: &Path) -> Vec<PathBuf> {
    let run = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "fuzz",
            "--seed",
            "1",
            "--count",
            "1000",
            "--forks",
            "cancun,prague,osaka",
            "--modes",
            "jit",
        ])
        .args([
            "--inject-fault",
            fault,
            "--max-reports",
            "1",
            "--stop-after",
            "1",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("failed to start the kiln binary");
    let stdout = text(&run.stdout);
    eprintln!("{stdout}");
    assert!(
        !run.status.success(),
        "fault {fault} went unnoticed:\n{stdout}\n{}",
        text(&run.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" divergences") && !last.ends_with(" 0 divergences"),
        "{last}"
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        1,
        "--max-reports 1 writes exactly one reproducer: {files:?}"
    );
    // The one-line summary sits next to it.
    assert!(files[0].with_extension("txt").exists());
    files
}

/// Total code bytes of a state-test file: the pre-state's contracts and, when the transaction
/// creates a contract (no `to`), its longest init code. Which divergence a multi-threaded
/// campaign reports first varies, and some programs run as init code.
fn code_size(file: &Path) -> usize {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let (_, unit) = json.as_object().unwrap().iter().next().unwrap();
    let hex_len = |v: &serde_json::Value| v.as_str().unwrap().trim_start_matches("0x").len() / 2;
    let pre: usize = unit["pre"]
        .as_object()
        .unwrap()
        .values()
        .map(|acc| hex_len(&acc["code"]))
        .sum();
    let tx = &unit["transaction"];
    let init = if tx["to"].as_str().unwrap_or_default().is_empty() {
        tx["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex_len)
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    pre + init
}

fn check_fault_is_found_and_minimized(fault: &str) {
    let out = tempfile::tempdir().unwrap();
    let files = campaign_with(fault, out.path());
    let file = &files[0];
    let size = code_size(file);
    assert!(
        size < 64,
        "reproducer for {fault} has {size} bytes of code: {}",
        file.display()
    );
    assert!(size > 0);
    // Expectations are the interpreter's; without the fault the JIT agrees.
    for mode in ["interpreter", "jit"] {
        let run = kiln(&["statetest", "--mode", mode, file.to_str().unwrap()]);
        let stdout = text(&run.stdout);
        assert!(
            run.status.success(),
            "{mode}: {stdout}\n{}",
            text(&run.stderr)
        );
        assert_eq!(
            stdout.lines().last(),
            Some("1 passed, 0 failed, 0 skipped"),
            "{mode}: {stdout}"
        );
    }
}

#[test]
fn wrong_static_gas_of_add_is_found() {
    check_fault_is_found_and_minimized("gas:01:1");
}

#[test]
fn flipped_lt_is_found() {
    check_fault_is_found_and_minimized("flip-lt");
}

/// Compiling a pseudo-random half of each contract's blocks (`--modes jit-partial`, the shape
/// of a profile-guided compilation that missed paths) and compiling from the runtime's own
/// profile of a first run (`jit-profiled`) agree with the interpreter, and cold blocks are
/// really entered.
#[test]
fn partial_compilation_agrees_with_the_interpreter() {
    let run = kiln(&[
        "fuzz",
        "--seed",
        "20261201",
        "--count",
        "300",
        "--forks",
        "cancun,osaka",
        "--modes",
        "jit-partial,jit-profiled",
    ]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", text(&run.stderr));
    assert!(stdout.trim_end().ends_with(" 0 divergences"), "{stdout}");
    let handed_off: u64 = stdout
        .split(" handed to the interpreter mid-way")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hand-off count in {stdout}"));
    assert!(handed_off > 100, "{stdout}");
}
