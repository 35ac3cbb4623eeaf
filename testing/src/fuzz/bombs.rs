//! Compile-time bombs: worst cases for the compiler itself, each compiled in a child process so
//! that its peak memory is its own.
//!
//! The parent runs `kiln fuzz --bomb-child NAME` once per bomb; the child compiles a trivial code
//! first (LLVM's one-time initialisation is not the bomb's cost), resets its peak-RSS counter,
//! compiles the bomb at the default options and prints one JSON line with the compile time and
//! `VmHWM`. Target: no bomb above 1 s or 512 MiB.

use std::{
    io::Read,
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use eyre::{bail, WrapErr};
use kiln_compiler::{compile_jit, CompileError, CompileOptions, OptLevel};
use revm::{bytecode::opcode as op, primitives::hardfork::SpecId};
use serde::{Deserialize, Serialize};

/// Mainnet's code size limit (EIP-170).
pub const KIB24: usize = 24 * 1024;
/// Compile-time target.
const TIME_LIMIT: Duration = Duration::from_secs(1);
/// Peak-memory target (growth of the child's RSS peak during the compile).
const MEM_LIMIT_KIB: u64 = 512 * 1024;
/// A child taking longer than this is killed and reported as such.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// The spec bombs are compiled for: the newest, with every opcode.
const SPEC: SpecId = SpecId::OSAKA;

/// One bomb.
struct Bomb {
    name: &'static str,
    what: &'static str,
    /// Builds the code; the argument is the size of the "24 KiB" bombs (`--bomb-size`).
    code: fn(usize) -> Vec<u8>,
}

fn repeat_to(unit: &[u8], prefix: &[u8], size: usize) -> Vec<u8> {
    let mut c = prefix.to_vec();
    while c.len() + unit.len() <= size {
        c.extend_from_slice(unit);
    }
    c
}

fn xorshift(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `PUSH0 CALLDATALOAD JUMP`: a dynamic jump, which makes every JUMPDEST a block entry.
const DYN: [u8; 3] = [op::PUSH0, op::CALLDATALOAD, op::JUMP];

fn bombs() -> Vec<Bomb> {
    vec![
        Bomb {
            name: "dynjump-24k",
            what: "24 KiB of `JUMPDEST PUSH0 CALLDATALOAD JUMP`: 6,144 blocks, each ending in a dynamic jump",
            code: |n| repeat_to(&[op::JUMPDEST, op::PUSH0, op::CALLDATALOAD, op::JUMP], &[], n),
        },
        Bomb {
            name: "jumpdest-every-other-byte",
            what: "a dynamic jump, then `JUMPDEST POP` to 24 KiB: 12,288 jump targets",
            code: |n| repeat_to(&[op::JUMPDEST, op::POP], &DYN, n),
        },
        Bomb {
            name: "jumpdest-every-byte",
            what: "a dynamic jump, then 24 KiB of JUMPDEST: 24,573 one-instruction blocks",
            code: |n| repeat_to(&[op::JUMPDEST], &DYN, n),
        },
        Bomb {
            name: "jumpdest-in-push-data",
            what: "a dynamic jump, then `PUSH1 0x5b` to 24 KiB: 12K fake JUMPDESTs, none valid",
            code: |n| repeat_to(&[op::PUSH1, op::JUMPDEST], &DYN, n),
        },
        Bomb {
            name: "static-jump-chain",
            what: "`PUSH2 next JUMP JUMPDEST` to 24 KiB: 4,915 blocks chained by constant jumps",
            code: |n| {
                let mut c = Vec::new();
                while c.len() + 5 <= n {
                    let next = (c.len() + 4) as u16;
                    c.push(op::PUSH2);
                    c.extend_from_slice(&next.to_be_bytes());
                    c.push(op::JUMP);
                    c.push(op::JUMPDEST);
                }
                c
            },
        },
        Bomb {
            name: "nested-branches",
            what: "3,072 nested forward JUMPIs on calldata, whose JUMPDESTs close in reverse order at the end",
            code: |size| {
                let n = size / 8;
                let head = 7 * n;
                let mut c = Vec::new();
                for i in 0..n {
                    // Branch i jumps to the JUMPDEST closing it, at head + (n - 1 - i).
                    let target = (head + (n - 1 - i)) as u16;
                    c.extend_from_slice(&[op::PUSH1, (i % 32) as u8, op::CALLDATALOAD]);
                    c.push(op::PUSH2);
                    c.extend_from_slice(&target.to_be_bytes());
                    c.push(op::JUMPI);
                }
                c.extend(std::iter::repeat_n(op::JUMPDEST, n));
                c.push(op::STOP);
                c
            },
        },
        Bomb {
            name: "backward-loops",
            what: "1,890 consecutive counted loops (`JUMPDEST ... PUSH2 head JUMPI`), each a back edge",
            code: |n| {
                let mut c = Vec::new();
                while c.len() + 13 <= n {
                    let head = c.len() as u16 + 2;
                    // PUSH1 3, JUMPDEST, PUSH1 1, SWAP1, SUB, DUP1, PUSH2 head, JUMPI, POP
                    c.extend_from_slice(&[op::PUSH1, 3, op::JUMPDEST, op::PUSH1, 1, op::SWAP1, op::SUB, op::DUP1, op::PUSH2]);
                    c.extend_from_slice(&head.to_be_bytes());
                    c.push(op::JUMPI);
                    c.push(op::POP);
                }
                c
            },
        },
        Bomb {
            name: "push32-block",
            what: "24 KiB of PUSH32 in one block (744 pushes of random words)",
            code: |n| {
                let words = xorshift(n, 7);
                let mut c = Vec::new();
                for w in words.chunks(32) {
                    if c.len() + 33 > n {
                        break;
                    }
                    c.push(op::PUSH32);
                    c.extend_from_slice(w);
                    c.resize(c.len() + 32 - w.len(), 0);
                }
                c
            },
        },
        Bomb {
            name: "push32-pop",
            what: "`PUSH32 word POP` to 24 KiB: 722 dead constants",
            code: |n| {
                let mut c = Vec::new();
                let words = xorshift(n, 9);
                for w in words.chunks(32) {
                    if c.len() + 34 > n || w.len() < 32 {
                        break;
                    }
                    c.push(op::PUSH32);
                    c.extend_from_slice(w);
                    c.push(op::POP);
                }
                c
            },
        },
        Bomb {
            name: "dup16-block",
            what: "16 PUSH32, then DUP16 to 24 KiB: one block 23K instructions long, deep stack traffic",
            code: |n| {
                let mut c = Vec::new();
                for i in 0..16u8 {
                    c.push(op::PUSH32);
                    c.extend(std::iter::repeat_n(i + 1, 32));
                }
                repeat_to(&[op::DUP16], &c, n)
            },
        },
        Bomb {
            name: "swap16-block",
            what: "17 PUSH32, then SWAP16 to 24 KiB",
            code: |n| {
                let mut c = Vec::new();
                for i in 0..17u8 {
                    c.push(op::PUSH32);
                    c.extend(std::iter::repeat_n(i + 1, 32));
                }
                repeat_to(&[op::SWAP16], &c, n)
            },
        },
        Bomb {
            name: "mul-chain",
            what: "`DUP1 MUL` to 24 KiB on a calldata word: 12K dependent 256-bit multiplications",
            code: |n| repeat_to(&[op::DUP1, op::MUL], &[op::PUSH0, op::CALLDATALOAD], n),
        },
        Bomb {
            name: "arith-mix",
            what: "24 KiB of ADD/MUL/SHL/SAR/BYTE/SIGNEXTEND/CLZ/LT/XOR on two calldata words",
            code: |n| {
                let prefix = [op::PUSH0, op::CALLDATALOAD, op::PUSH1, 32, op::CALLDATALOAD];
                let unit = [
                    op::DUP2, op::DUP2, op::ADD, op::DUP1, op::MUL, op::DUP2, op::SHL, op::DUP3, op::SAR, op::DUP1,
                    op::DUP3, op::BYTE, op::SIGNEXTEND, op::CLZ, op::DUP2, op::LT, op::XOR, op::SWAP2, op::POP,
                ];
                repeat_to(&unit, &prefix, n)
            },
        },
        Bomb {
            name: "divmod-chain",
            what: "`DUP2 DUP2 DIV ... ADDMOD MULMOD` to 24 KiB: thousands of pure builtin calls",
            code: |n| {
                let prefix = [op::PUSH0, op::CALLDATALOAD, op::PUSH1, 32, op::CALLDATALOAD];
                let unit = [op::DUP2, op::DUP2, op::DIV, op::DUP3, op::DUP2, op::SMOD, op::DUP3, op::ADDMOD, op::SWAP1, op::POP];
                repeat_to(&unit, &prefix, n)
            },
        },
        Bomb {
            name: "sload-sections",
            what: "`PUSH0 SLOAD POP` to 24 KiB: 8,192 host builtin calls, each ending a gas section",
            code: |n| repeat_to(&[op::PUSH0, op::SLOAD, op::POP], &[], n),
        },
        Bomb {
            name: "gas-sections",
            what: "`GAS POP` to 24 KiB: 12,288 one-instruction gas sections",
            code: |n| repeat_to(&[op::GAS, op::POP], &[], n),
        },
        Bomb {
            name: "call-resume-points",
            what: "`CALL` with seven PUSH0 operands, then POP, to 24 KiB: 2,730 suspend/resume points",
            code: |n| {
                let unit = [op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::CALL, op::POP];
                repeat_to(&unit, &[], n)
            },
        },
        Bomb {
            name: "calls-and-dynjumps",
            what: "resume points and dynamic jump targets together: `JUMPDEST` + CALL + `PUSH0 CALLDATALOAD JUMPI`",
            code: |n| {
                let unit = [
                    op::JUMPDEST, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::PUSH0, op::CALL,
                    op::PUSH0, op::CALLDATALOAD, op::JUMPI,
                ];
                repeat_to(&unit, &[], n)
            },
        },
        Bomb {
            name: "all-opcodes",
            what: "bytes 0x00..=0xff over and over to 24 KiB (every opcode, undefined ones included)",
            code: |n| (0..n).map(|i| i as u8).collect(),
        },
        Bomb {
            name: "random-24k",
            what: "24 KiB of random bytes",
            code: |n| xorshift(n, 0x9e37_79b9_7f4a_7c15),
        },
        Bomb {
            name: "initcode-48k-dynjump",
            what: "48 KiB (EIP-3860 init code limit) of `JUMPDEST PUSH0 CALLDATALOAD JUMP`",
            code: |n| repeat_to(&[op::JUMPDEST, op::PUSH0, op::CALLDATALOAD, op::JUMP], &[], 2 * n),
        },
        Bomb {
            name: "max-size-128k-straight",
            what: "128 KiB (the compile limit) of `PUSH1 x ADD` arithmetic in one block",
            code: |_| repeat_to(&[op::PUSH1, 7, op::ADD], &[op::PUSH0], kiln_compiler::DEFAULT_MAX_CODE_SIZE),
        },
        Bomb {
            name: "max-size-128k-jumpdests",
            what: "128 KiB of a dynamic jump then `JUMPDEST POP`: 65K blocks, over the block budget",
            code: |_| repeat_to(&[op::JUMPDEST, op::POP], &DYN, kiln_compiler::DEFAULT_MAX_CODE_SIZE),
        },
        Bomb {
            name: "over-size-limit",
            what: "one byte over the compile size limit",
            code: |_| vec![op::JUMPDEST; kiln_compiler::DEFAULT_MAX_CODE_SIZE + 1],
        },
    ]
}

/// What a child reports.
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    name: String,
    bytes: usize,
    /// `ok`, `refused: <reason>` or `error: <reason>`.
    result: String,
    compile_ms: f64,
    /// RSS before the compile (after LLVM's initialisation), KiB.
    rss_before_kib: u64,
    /// Peak RSS during the compile, KiB.
    peak_kib: u64,
}

fn status_kib(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child side: compile one bomb and print its report.
pub fn child(name: &str, size: usize, opt_level: OptLevel) -> eyre::Result<ExitCode> {
    let Some(bomb) = bombs().into_iter().find(|b| b.name == name) else {
        bail!("unknown bomb {name:?}")
    };
    let code = (bomb.code)(size);
    let opts = CompileOptions {
        opt_level,
        ..Default::default()
    };
    // LLVM's one-time target initialisation and the first context are not the bomb's cost.
    compile_jit(&[op::PUSH0, op::POP, op::STOP], SPEC, &opts, None).wrap_err("warm-up compile")?;
    let rss_before = status_kib("VmRSS");
    // Resets VmHWM to the current RSS (Linux >= 4.0), so the peak is this compile's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let result = compile_jit(&code, SPEC, &opts, None);
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM");
    let result = match result {
        Ok(f) => {
            drop(f);
            "ok".to_owned()
        }
        Err(
            e @ (CompileError::TooLarge { .. }
            | CompileError::TooComplex { .. }
            | CompileError::TooManyJumpTargets { .. }
            | CompileError::OverBudget { .. }),
        ) => {
            format!("refused: {e}")
        }
        Err(e) => format!("error: {e}"),
    };
    let report = ChildReport {
        name: name.to_owned(),
        bytes: code.len(),
        result,
        compile_ms: elapsed.as_secs_f64() * 1e3,
        rss_before_kib: rss_before,
        peak_kib: peak,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs one bomb in a child process, killing it after [`CHILD_TIMEOUT`].
fn run_child(name: &str, size: usize, opt_level: OptLevel) -> Result<ChildReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let level = match opt_level {
        OptLevel::O0 => "0",
        OptLevel::O1 => "1",
        OptLevel::O2 => "2",
        OptLevel::O3 => "3",
        OptLevel::Baseline => "baseline",
    };
    let mut child = Command::new(exe)
        .args([
            "fuzz",
            "--bomb-child",
            name,
            "--bomb-size",
            &size.to_string(),
            "--opt-level",
            level,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start child: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                // Only this child, by its own handle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {CHILD_TIMEOUT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for child: {e}")),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    if !status.success() {
        return Err(format!(
            "child failed ({status}): {}",
            stderr.lines().last().unwrap_or("")
        ));
    }
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("bad child report {line:?}: {e}"))
}

/// Runs every bomb whose name contains `filter` and prints the table; fails if any bomb exceeds
/// the targets or crashes. `size` replaces the 24 KiB of the mainnet-sized bombs.
pub fn run(size: usize, filter: Option<&str>, opt_level: OptLevel) -> eyre::Result<ExitCode> {
    let selected: Vec<Bomb> = bombs()
        .into_iter()
        .filter(|b| filter.is_none_or(|f| b.name.contains(f)))
        .collect();
    if selected.is_empty() {
        bail!("no bomb matches {filter:?}");
    }
    println!(
        "{:<26} {:>7} {:>7} {:>4}  {:>10} {:>10} {:>10}  verdict",
        "bomb", "bytes", "blocks", "opt", "compile", "peak RSS", "growth"
    );
    let mut bad = 0usize;
    let opts = CompileOptions {
        opt_level,
        ..Default::default()
    };
    for bomb in &selected {
        let code = (bomb.code)(size);
        let analysis = kiln_compiler::analysis::analyze(&code, SPEC);
        let blocks = analysis.blocks.len();
        // The pass pipeline the compiler will pick (lean above its section budget).
        let level = match kiln_compiler::Pipeline::choose(&opts, &analysis) {
            kiln_compiler::Pipeline::None if opt_level == OptLevel::Baseline => "base",
            kiln_compiler::Pipeline::None => "O0",
            kiln_compiler::Pipeline::Lean => "lean",
            kiln_compiler::Pipeline::Loops => "loops",
            kiln_compiler::Pipeline::Full(_) => "full",
        };
        match run_child(bomb.name, size, opt_level) {
            Ok(r) => {
                let growth = r.peak_kib.saturating_sub(r.rss_before_kib);
                let slow = r.compile_ms > TIME_LIMIT.as_secs_f64() * 1e3;
                let fat = growth > MEM_LIMIT_KIB;
                let verdict = if r.result.starts_with("error") || slow || fat {
                    bad += 1;
                    let mut why = Vec::new();
                    if slow {
                        why.push("over 1 s");
                    }
                    if fat {
                        why.push("over 512 MiB");
                    }
                    if r.result.starts_with("error") {
                        why.push("compile error");
                    }
                    format!("FAIL ({}) {}", why.join(", "), r.result)
                } else {
                    r.result.clone()
                };
                println!(
                    "{:<26} {:>7} {:>7} {:>4}  {:>8.0}ms {:>7.1}MiB {:>7.1}MiB  {}",
                    bomb.name,
                    r.bytes,
                    blocks,
                    level,
                    r.compile_ms,
                    r.peak_kib as f64 / 1024.0,
                    growth as f64 / 1024.0,
                    verdict
                );
            }
            Err(e) => {
                bad += 1;
                println!(
                    "{:<26} {:>7} {:>7} {:>4}  FAIL: {e}",
                    bomb.name,
                    code.len(),
                    blocks,
                    level
                );
            }
        }
        tracing::debug!(bomb = bomb.name, what = bomb.what, "done");
    }
    println!(
        "{} bombs, {} over the targets (1 s, 512 MiB) or failed",
        selected.len(),
        bad
    );
    for bomb in &selected {
        println!("  {:<26} {}", bomb.name, bomb.what);
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
