//! `kiln`: command-line front end of the kiln compiled-EVM execution layer. It only parses the
//! command line: the tools are the `kiln-testing` library's (`kiln compile` is the compiler's own
//! glue, in [`compile`]; `kiln import` is the `kiln-node` library's, in [`import`]).

mod compile;
mod demo;
mod import;
mod node;
mod stateless;

use std::{io::IsTerminal, process::ExitCode};

use clap::{Parser, Subcommand};
use kiln_testing::{bench, fuzz, statetest};
use tracing_subscriber::EnvFilter;

/// kiln: compiled-EVM execution layer for revm.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Ethereum state tests (GeneralStateTests format) and compare post-state roots.
    Statetest(statetest::StatetestArgs),
    /// Compile bytecode and show or write the result (LLVM IR, assembly, object, shared library).
    Compile(compile::CompileArgs),
    /// Time transactions in each execution mode (revm, interpreter, JIT, AOT) after checking they agree.
    Bench(bench::BenchArgs),
    /// Differential fuzzing: generated programs on the interpreter vs compiled modes, or (--bombs) compile-time worst cases.
    Fuzz(fuzz::FuzzArgs),
    /// Import Ethereum blockchain tests (BlockchainTests format) as a node imports blocks, and
    /// check every block's validity and the final state.
    Import(import::ImportArgs),
    /// Build kiln's demo chain (DeFi-shaped, with forks), import it with the interpreter and with
    /// kiln's hot-code service, compare both and draw the picture.
    Demo(demo::DemoArgs),
    /// Import a chain folder with the hot-code service attached, as a node runs: progress, a
    /// status line, metrics, a control endpoint, and compiled code kept in a data directory.
    Node(node::NodeArgs),
    /// Execute a block range of a chain folder again in each mode and report Mgas/s per mode.
    Reexec(node::ReexecArgs),
    Witness(stateless::WitnessArgs),
    Stateless(stateless::StatelessArgs),
    /// Serve compilations to the process that started this one, over stdin and stdout (the
    /// hot-code service's isolated compiler).
    #[command(hide = true)]
    CompileHelper {
        /// Limit this process's address space (RLIMIT_AS) to this many bytes.
        #[arg(long)]
        address_space_limit: Option<u64>,
    },
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Statetest(args) => statetest::run(args),
        Command::Compile(args) => compile::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Import(args) => import::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Node(args) => node::run(args),
        Command::Reexec(args) => node::reexec(args),
        Command::Witness(args) => stateless::witness(args),
        Command::Stateless(args) => stateless::stateless(args),
        Command::CompileHelper {
            address_space_limit,
        } => kiln_runtime::helper::serve_stdio(address_space_limit)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the cause chain on one line; `{:?}` would add an eyre backtrace
            // whenever RUST_BACKTRACE is set, which is noise for input errors.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr so stdout stays machine-readable (`--json`, the summary line).
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
