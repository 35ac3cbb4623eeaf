//! `kiln fuzz` smoke run: a fixed-seed campaign must find no divergence between revm's
//! interpreter and JIT-compiled code.

use std::{process::Command, time::Instant};

#[test]
fn fixed_seed_campaign_finds_no_divergence() {
    campaign("1", "jit", &[]);
}

/// The same on the baseline tier, which lowers every opcode differently.
#[test]
fn fixed_seed_campaign_finds_no_divergence_at_the_baseline_tier() {
    campaign("2", "jit", &["--opt-level", "baseline"]);
}

/// The same on code family functions: each contract runs a function compiled from a sibling
/// with other PUSH immediates, which it reads from the running code.
#[test]
fn fixed_seed_campaign_finds_no_divergence_on_family_functions() {
    campaign("3", "jit-family", &[]);
}

/// Runs 1,000 programs from `seed` in `mode` with `extra` arguments and checks that none
/// diverged.
fn campaign(seed: &str, mode: &str, extra: &[&str]) {
    let out = tempfile::tempdir().expect("temporary directory");
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "fuzz",
            "--seed",
            seed,
            "--count",
            "1000",
            "--forks",
            "cancun,prague,osaka",
            "--modes",
            mode,
        ])
        .args(extra)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("failed to start the kiln binary");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}\nfuzz smoke run took {elapsed:.1?}");
    assert!(
        run.status.success(),
        "divergences found (reproducers in {}):\n{stdout}\n{stderr}",
        out.path().display()
    );
    assert_eq!(
        stdout.lines().last(),
        Some("1000 programs, 3000 cases, 0 divergences"),
        "{stdout}"
    );
    // The programs must actually have run as compiled code, or the comparison proves nothing.
    let compiled = stdout
        .lines()
        .find(|l| l.starts_with("compiled "))
        .expect("compile statistics line");
    assert!(!compiled.contains(" 0 frames ran compiled"), "{compiled}");
    // Nothing written when nothing diverged.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
