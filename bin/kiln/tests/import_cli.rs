//! End-to-end tests of `kiln import`, run against the built binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use kiln_testing::fixtures;

fn kiln(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("import")
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

/// `BlockchainTests/<rel>`, or `None` when the fixtures are absent and not required.
fn fixture(rel: &str) -> Option<PathBuf> {
    fixtures::fixture_or_skip(&format!("BlockchainTests/{rel}"))
}

#[test]
fn a_folder_passes_in_every_mode() {
    let Some(dir) = fixture("ValidBlocks/bcExample") else {
        return;
    };
    for mode in ["interpreter", "jit", "tiered"] {
        let out = kiln(&["--mode", mode], &[&dir]);
        assert!(out.status.success(), "{mode}: {}", text(&out.stderr));
        assert_eq!(summary(&out), "4 passed, 0 failed, 0 skipped", "{mode}");
    }
    let out = kiln(&["--filter", "shanghaiExample"], &[&dir]);
    assert_eq!(summary(&out), "1 passed, 0 failed, 0 skipped");
}

#[test]
fn a_broken_block_fails_the_test_and_the_exit_code() {
    let Some(file) = fixture("ValidBlocks/bcExample/shanghaiExample.json") else {
        return;
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("parse");
    for test in json.as_object_mut().expect("tests").values_mut() {
        test["blocks"][0]["rlp"] = "0xf90000".into();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, json.to_string()).expect("write");
    let out = kiln(&[], &[&broken]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL shanghaiExample") && stdout.contains("block 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected valid block") && stdout.contains("RLP_STRUCTURES_ENCODING"),
        "{stdout}"
    );
    assert!(!text(&out.stderr).contains("panicked"));
    assert_eq!(summary(&out), "0 passed, 1 failed, 0 skipped");
}

#[test]
fn unreadable_input_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("truncated.json");
    std::fs::write(&bad, "{\"t\": {").expect("write");
    let out = kiln(&[], &[&bad]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("truncated.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
