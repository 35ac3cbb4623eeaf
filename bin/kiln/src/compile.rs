//! `kiln compile`: show or write what the compiler makes of some bytecode.

use std::{io::Write, path::PathBuf};

use eyre::{bail, WrapErr};
use kiln_compiler::{compile_to_bytes, CompileOptions, Emit, OptLevel};

/// Arguments of `kiln compile`.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// Bytecode as hex (with or without 0x), or a file holding hex or raw bytes.
    #[arg(value_name = "HEX|FILE")]
    input: String,

    /// Spec (hardfork) to compile for, e.g. cancun, prague, osaka.
    #[arg(long, default_value = "cancun")]
    spec: String,

    /// What to produce.
    #[arg(long, value_enum, default_value_t = EmitArg::Ir)]
    emit: EmitArg,

    /// Output file (default: stdout for text, required for obj/so).
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,

    /// Optimisation level (0-3, or `baseline`).
    #[arg(long, value_name = "N", default_value = "2")]
    opt_level: OptLevel,

    /// Compile without gas metering (for trusted re-execution only).
    #[arg(long)]
    no_gas_metering: bool,

    /// Emit run-time checks of the compiler's invariants.
    #[arg(long)]
    debug_assertions: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum EmitArg {
    Ir,
    Asm,
    Obj,
    So,
}

/// Parses a spec name the way the state tests and CLIs spell them.
pub fn parse_spec(name: &str) -> eyre::Result<revm::primitives::hardfork::SpecId> {
    use revm::primitives::hardfork::SpecId;
    let lower = name.to_ascii_lowercase();
    let spec = match lower.as_str() {
        "frontier" => SpecId::FRONTIER,
        "homestead" => SpecId::HOMESTEAD,
        "tangerine" | "eip150" => SpecId::TANGERINE,
        "spurious" | "spuriousdragon" | "eip158" => SpecId::SPURIOUS_DRAGON,
        "byzantium" => SpecId::BYZANTIUM,
        "constantinople" | "petersburg" | "constantinoplefix" => SpecId::PETERSBURG,
        "istanbul" => SpecId::ISTANBUL,
        "berlin" => SpecId::BERLIN,
        "london" => SpecId::LONDON,
        "merge" | "paris" => SpecId::MERGE,
        "shanghai" => SpecId::SHANGHAI,
        "cancun" => SpecId::CANCUN,
        "prague" => SpecId::PRAGUE,
        "osaka" => SpecId::OSAKA,
        _ => bail!("unknown spec {name:?} (frontier .. osaka)"),
    };
    Ok(spec)
}

fn read_input(input: &str) -> eyre::Result<Vec<u8>> {
    let path = std::path::Path::new(input);
    let text = if path.exists() {
        let bytes = std::fs::read(path).wrap_err_with(|| format!("reading {}", path.display()))?;
        match std::str::from_utf8(&bytes) {
            Ok(t)
                if t.trim()
                    .trim_start_matches("0x")
                    .chars()
                    .all(|c| c.is_ascii_hexdigit()) =>
            {
                t.to_string()
            }
            _ => return Ok(bytes),
        }
    } else {
        input.to_string()
    };
    let hex_text: String = text
        .trim()
        .trim_start_matches("0x")
        .split_whitespace()
        .collect();
    hex::decode(&hex_text).wrap_err("input is neither an existing file nor valid hex bytecode")
}

/// Runs the command.
pub fn run(args: CompileArgs) -> eyre::Result<()> {
    let code = read_input(&args.input)?;
    let spec = parse_spec(&args.spec)?;
    let opts = CompileOptions {
        opt_level: args.opt_level,
        gas_metering: !args.no_gas_metering,
        debug_assertions: args.debug_assertions,
        ..Default::default()
    };
    let emit = match args.emit {
        EmitArg::Ir => Emit::Ir,
        EmitArg::Asm => Emit::Asm,
        EmitArg::Obj => Emit::Obj,
        EmitArg::So => Emit::So,
    };
    let started = std::time::Instant::now();
    let out = compile_to_bytes(&code, spec, &opts, None, emit).wrap_err("compilation failed")?;
    tracing::info!(
        bytes = code.len(),
        ?spec,
        "compiled in {:.2?}",
        started.elapsed()
    );
    match (&args.output, emit) {
        (Some(path), _) => {
            std::fs::write(path, &out).wrap_err_with(|| format!("writing {}", path.display()))?
        }
        (None, Emit::Obj | Emit::So) => bail!("binary output needs -o OUT"),
        (None, _) => std::io::stdout().write_all(&out)?,
    }
    Ok(())
}
