//! Minimized `kiln fuzz` reproducers (`tests/regressions/`) must pass on JIT-compiled code.

use std::{path::Path, process::Command};

#[test]
fn regression_folder_passes_in_jit_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let count = std::fs::read_dir(&dir)
        .expect("tests/regressions exists")
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert!(
        count > 0,
        "the regression folder must hold at least one case"
    );
    for mode in ["interpreter", "jit"] {
        let run = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["statetest", "--mode", mode])
            .arg(&dir)
            .output()
            .expect("failed to start the kiln binary");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{mode}:\n{stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let summary = stdout.lines().last().unwrap_or_default();
        let passed: usize = summary
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(passed >= count, "{mode}: {summary}");
        assert!(
            summary.ends_with(" passed, 0 failed, 0 skipped"),
            "{mode}: {summary}"
        );
    }
}
