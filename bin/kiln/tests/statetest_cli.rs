//! End-to-end tests of `kiln statetest`, run against the built binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use kiln_testing::fixtures;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn kiln(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("statetest")
        .args(args)
        .args(paths)
        .output()
        .expect("failed to start the kiln binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The summary line, which must be the last line of stdout.
fn summary(out: &Output) -> String {
    text(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn hand_written_test_passes() {
    let file = data("valid/simple_storage_log.json");
    let out = kiln(&["--json"], &[&file]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(summary(&out), "3 passed, 0 failed, 0 skipped");

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("every JSON line parses"))
        .collect();
    assert_eq!(lines.len(), 3);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["name"], "simpleStorageLog");
        assert_eq!(line["fork"], "Cancun");
        assert_eq!(line["index"], index);
        assert_eq!(line["mode"], "interpreter");
        assert_eq!(line["pass"], true);
        assert!(line["error"].is_null(), "{line}");
    }
    // Executed cases return the stored word; the rejected one (#2) executed nothing.
    assert_eq!(lines[0]["output"], format!("0x{:064x}", 42));
    assert!(lines[0]["gas_used"]
        .as_u64()
        .is_some_and(|gas| gas > 21_000));
    assert!(lines[2]["output"].is_null());
    assert!(lines[2]["gas_used"].is_null());
}

#[test]
fn truncated_file_is_a_clear_failure() {
    let file = data("invalid/truncated.json");
    let out = kiln(&[], &[&file]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "a broken file must fail the run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit by status, not by a crash; stderr:\n{stderr}"
    );
    assert!(
        stdout.contains("truncated.json"),
        "names the file:\n{stdout}"
    );
    assert!(
        stdout.contains("invalid JSON"),
        "says what is wrong:\n{stdout}"
    );
    assert!(!stderr.contains("panicked"), "must not panic:\n{stderr}");
    assert_eq!(summary(&out), "0 passed, 1 failed, 0 skipped");
}

#[test]
fn vm_tests_pass() {
    let Some(vm_tests) = fixtures::fixture_or_skip("GeneralStateTests/VMTests") else {
        return;
    };
    // vmPerformance is a handful of hot loops: seconds when optimized, minutes when not.
    let dirs: Vec<PathBuf> = if cfg!(debug_assertions) {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&vm_tests)
            .expect("read VMTests")
            .map(|entry| entry.expect("read VMTests entry").path())
            .filter(|path| path.is_dir() && !path.ends_with("vmPerformance"))
            .collect();
        dirs.sort();
        dirs
    } else {
        vec![vm_tests]
    };
    let paths: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let out = kiln(&[], &paths);
    let summary = summary(&out);
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        summary.ends_with(" passed, 0 failed, 0 skipped"),
        "{summary}"
    );
    assert!(!summary.starts_with("0 passed"), "{summary}");
}
