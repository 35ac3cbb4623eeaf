//! `kiln witness` and `kiln stateless`: execution witnesses made from a chain folder, and blocks
//! validated from their witnesses alone, many in parallel on one runtime (the `kiln-stateless`
//! library does the work).

use clap::{Args, ValueEnum};
use eyre::{bail, WrapErr};
use kiln_compiler::CompileOptions;
use kiln_runtime::{Backend, CompilePolicy, Runtime};
use kiln_stateless::{
    batch::{precompile, validate_all},
    Blocks, StatelessInput,
};
use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

/// Write execution witnesses (the shape of `debug_executionWitness`, with the block and the chain
/// config) of a chain folder's canonical blocks.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The chain folder (`genesis.json`, `chain.rlp` and optionally `forkchoice.json`), or a
    /// `BlockchainTests` file (every valid block of its Cancun tests; `-o` is then a folder).
    #[arg(value_name = "CHAIN")]
    chain: PathBuf,

    /// The canonical block whose witness to write (`-o` is then the file).
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "to", "all"])]
    block: Option<u64>,

    /// First block of a range (`-o` is then a folder of `block-N.json` files).
    #[arg(long, value_name = "A", requires = "to")]
    from: Option<u64>,

    /// Last block of a range.
    #[arg(long, value_name = "B", requires = "from")]
    to: Option<u64>,

    /// Every canonical block after genesis (`-o` is then a folder).
    #[arg(long)]
    all: bool,

    /// Where to write: the input file for `--block`, else a folder.
    #[arg(short = 'o', long = "out", value_name = "PATH")]
    out: PathBuf,
}

/// Runs `kiln witness`.
pub fn witness(args: WitnessArgs) -> eyre::Result<ExitCode> {
    if args.chain.is_file() {
        return fixture_witnesses(&args);
    }
    let blocks = match (args.block, args.from.zip(args.to), args.all) {
        (Some(n), None, false) => Blocks::Range(n, n),
        (None, Some((a, b)), false) => Blocks::Range(a, b),
        (None, None, true) => Blocks::All,
        _ => bail!("give one of --block N, --from A --to B, or --all"),
    };
    let start = Instant::now();
    let inputs = kiln_stateless::chain_folder_inputs(&args.chain, blocks)
        .wrap_err_with(|| format!("witnesses of {}", args.chain.display()))?;
    let write = |input: &StatelessInput, path: &PathBuf| -> eyre::Result<()> {
        input.write(path)?;
        Ok(())
    };
    if args.block.is_some() {
        write(&inputs[0], &args.out)?;
        println!("wrote {}", args.out.display());
    } else {
        std::fs::create_dir_all(&args.out)
            .wrap_err_with(|| format!("creating {}", args.out.display()))?;
        for input in &inputs {
            let block = kiln_node::decode::decode_block(&input.block)?;
            write(
                input,
                &args
                    .out
                    .join(format!("block-{:06}.json", block.header.number)),
            )?;
        }
        println!(
            "wrote {} witnesses to {} in {:.2} s",
            inputs.len(),
            args.out.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln witness` of a `BlockchainTests` file: `<out>/<test>-<i>.json` per valid block.
fn fixture_witnesses(args: &WitnessArgs) -> eyre::Result<ExitCode> {
    let tests = kiln_stateless::fixture::file_inputs(&args.chain)?;
    std::fs::create_dir_all(&args.out)
        .wrap_err_with(|| format!("creating {}", args.out.display()))?;
    let mut written = 0;
    for (name, inputs) in &tests {
        let stem: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        for (i, input) in inputs.iter().enumerate() {
            input.write(&args.out.join(format!("{stem}-{i}.json")))?;
            written += 1;
        }
    }
    println!(
        "wrote {written} witnesses of {} tests to {}",
        tests.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// How `kiln stateless` executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatelessMode {
    /// revm's interpreter.
    Interpreter,
    /// kiln's JIT: code compiled on first sight, or ahead with `--precompile`.
    Jit,
}

/// Validate blocks from execution witnesses alone, many in parallel on one runtime, and report
/// blocks/s and Mgas/s.
#[derive(Debug, Args)]
pub struct StatelessArgs {
    /// Input files (`{ "block", "witness", "chain_config" }`) or folders of them.
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<PathBuf>,

    /// How to execute.
    #[arg(long, value_enum, default_value_t = StatelessMode::Interpreter)]
    mode: StatelessMode,

    /// Inputs validated at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    jobs: usize,

    /// Compile every code of the inputs before validating (JIT): no compilation runs on a
    /// validation path.
    #[arg(long)]
    precompile: bool,
}

/// The input files `paths` name (a folder's `*.json`, sorted).
fn input_files(paths: &[PathBuf]) -> eyre::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .wrap_err_with(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Runs `kiln stateless`.
pub fn stateless(args: StatelessArgs) -> eyre::Result<ExitCode> {
    let files = input_files(&args.inputs)?;
    let inputs = files
        .iter()
        .map(|f| StatelessInput::read(f))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime: Arc<Runtime> = match (args.mode, args.precompile) {
        (StatelessMode::Interpreter, _) => Runtime::interpreter(),
        (StatelessMode::Jit, false) => Runtime::jit(),
        (StatelessMode::Jit, true) => Arc::new(Runtime::new(
            Backend::Jit,
            CompilePolicy::LookupOnly,
            CompileOptions::default(),
        )),
    };
    if args.precompile {
        let p = precompile(&runtime, &inputs, args.jobs);
        eprintln!(
            "precompiled {} codes ({} failed, stay on the interpreter) in {:.2} s",
            p.compiled,
            p.failed,
            p.elapsed.as_secs_f64()
        );
    }
    let compilations_before = runtime
        .stats
        .compilations
        .load(std::sync::atomic::Ordering::Relaxed);
    let (results, wall) = validate_all(&inputs, &runtime, args.jobs);
    let compilations = runtime
        .stats
        .compilations
        .load(std::sync::atomic::Ordering::Relaxed)
        - compilations_before;
    runtime.shutdown();
    let (mut passed, mut failed, mut gas, mut evm) = (0usize, 0usize, 0u64, 0f64);
    for (file, result) in files.iter().zip(&results) {
        match result {
            Ok(v) => {
                passed += 1;
                gas += v.gas_used;
                evm += v.execution.as_secs_f64();
                println!(
                    "PASS {}: block {} {} ({} txs, {} gas, {:.2} ms)",
                    file.display(),
                    v.number,
                    v.hash,
                    v.transactions,
                    v.gas_used,
                    v.total.as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", file.display());
            }
        }
    }
    let secs = wall.as_secs_f64().max(1e-9);
    eprintln!(
        "{:?} mode, {} jobs: {passed} blocks validated in {secs:.3} s: {:.1} blocks/s, {:.1} Mgas/s ({:.1} Mgas/s per job in the EVM); {compilations} compilations on validation paths",
        args.mode,
        args.jobs,
        passed as f64 / secs,
        gas as f64 / 1e6 / secs,
        gas as f64 / 1e6 / evm.max(1e-9),
    );
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
