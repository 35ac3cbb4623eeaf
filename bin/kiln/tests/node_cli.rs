//! End-to-end tests of `kiln demo`, `kiln node` and `kiln reexec` on a small demo chain, run
//! against the built binary: both demo imports end on the same state root, a node restarted on
//! its data directory loads its compiled code and runs it from the first blocks, Ctrl-C stops a
//! node cleanly with its heat kept, and re-execution checks every block in every mode.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("failed to start the kiln binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    format!("{stdout}\n{stderr}")
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        + prefix.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {text}"))
}

#[test]
fn demo_then_node_twice_then_reexec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 path");
    let demo = ok(&kiln(&[
        "demo",
        "--out",
        out,
        "--blocks",
        "60",
        "--fork-every",
        "15",
        "--jit.isolation",
        "false",
    ]));
    assert!(demo.contains("same state root in both runs: 0x"), "{demo}");
    assert!(demo.contains("reorgs"), "{demo}");
    assert!(
        number_after(&demo, "quick + ") > 0,
        "nothing compiled: {demo}"
    );
    let svg = std::fs::read_to_string(dir.path().join("demo.svg")).expect("the picture");
    assert!(
        svg.contains("<svg") && svg.contains("interpreter"),
        "not a picture"
    );

    let chain = dir.path().join("chain");
    let chain = chain.to_str().expect("utf-8 path");
    let datadir = dir.path().join("datadir");
    let datadir = datadir.to_str().expect("utf-8 path");
    let node = |extra: &[&str]| {
        let mut args = vec![
            "node",
            chain,
            "--datadir",
            datadir,
            "--jit.isolation",
            "false",
        ];
        args.extend(extra);
        ok(&kiln(&args))
    };
    // Paced as at the chain's tip, so that the service compiles while blocks come.
    let cold = node(&["--block-time-ms", "40"]);
    let root = demo_root(&demo);
    assert!(cold.contains(&format!("state root {root}")), "{cold}");
    assert!(cold.contains("0 compiled objects loaded"), "{cold}");
    let warm = node(&[]);
    assert!(warm.contains(&format!("state root {root}")), "{warm}");
    assert!(number_after(&warm, "blocks to import; ") > 0, "{warm}");
    let first = number_after(&warm, "first block run natively: ");
    let cold_first = cold
        .split("first block run natively: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    assert!(first < cold_first, "warm start {first}, cold {cold_first}");

    // (jit mode compiles every code at first sight: correct, and slow for a test)
    let reexec = ok(&kiln(&[
        "reexec",
        chain,
        "--from",
        "10",
        "--to",
        "50",
        "--modes",
        "interpreter,tiered",
        "--jit.isolation",
        "false",
    ]));
    for mode in ["interpreter", "tiered"] {
        assert!(
            reexec.contains(&format!("{mode:<11} 41 blocks")),
            "{reexec}"
        );
    }
    assert!(
        !text(&kiln(&["reexec", chain, "--from", "50", "--to", "9999"]).stderr).is_empty(),
        "a range past the head is an error"
    );

    import_genesis_and_rlp(Path::new(chain), &root, dir.path());
    interrupted_node_exits_cleanly(Path::new(chain), dir.path());
}

/// `kiln import --genesis`: the files `reth import` reads (plus forkchoice updates) end on the
/// demo's root; a truncated blocks file stops at its last whole block with an error naming the
/// next one.
fn import_genesis_and_rlp(chain: &Path, root: &str, dir: &Path) {
    let (genesis, blocks, forkchoice) = (
        chain.join("genesis.json"),
        chain.join("chain.rlp"),
        chain.join("forkchoice.json"),
    );
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let out = ok(&kiln(&[
        "import",
        "--genesis",
        &path(&genesis),
        "--forkchoice",
        &path(&forkchoice),
        &path(&blocks),
        "--mode",
        "tiered",
        "--jit.isolation",
        "false",
    ]));
    assert!(out.contains(&format!("state root {root}")), "{out}");

    let bytes = std::fs::read(&blocks).expect("blocks");
    let cut = dir.join("truncated.rlp");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).expect("written");
    let out = kiln(&["import", "--genesis", &path(&genesis), &path(&cut)]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("truncated"), "{stderr}");
    let imported = number_after(&stdout, "imported ");
    assert!(
        stderr.contains(&format!("block {imported}:")),
        "{stdout}\n{stderr}"
    );
}

/// The demo's state root, from its last lines.
fn demo_root(demo: &str) -> String {
    let at = demo
        .find("same state root in both runs: ")
        .expect("root line")
        + 30;
    demo[at..at + 66].to_owned()
}

/// SIGINT in the middle of a paced import: exit code 0, the heat saved in the data directory.
fn interrupted_node_exits_cleanly(chain: &Path, dir: &Path) {
    let datadir = dir.join("interrupted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("node")
        .arg(chain)
        .arg("--datadir")
        .arg(&datadir)
        .args(["--block-time-ms", "100", "--jit.isolation", "false"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln node starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while stderr.read_line(&mut line).expect("reads") > 0 && !line.contains("blocks to import") {
        line.clear();
    }
    let total = number_after(&line, "kiln node: ");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: sends SIGINT to the child this test started and still owns.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let out = child.wait_with_output().expect("kiln node exits");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {stdout}", out.status);
    assert!(stdout.contains("stopped by Ctrl-C"), "{stdout}");
    let imported = number_after(&stdout, "imported ");
    assert!(imported > 0 && imported < total, "{stdout}");
    assert!(datadir.join("kiln-cache").join("heat.json").exists());
}
