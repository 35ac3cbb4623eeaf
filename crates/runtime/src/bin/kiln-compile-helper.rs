//! kiln's compile helper: compiles EVM bytecode to JIT objects for the process that started it,
//! over stdin and stdout (see `kiln_runtime::helper`). Usage:
//! `kiln-compile-helper [--address-space-limit BYTES]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut limit = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--address-space-limit", Some(Ok(bytes))) => limit = Some(bytes),
            _ => {
                eprintln!("usage: kiln-compile-helper [--address-space-limit BYTES]");
                return ExitCode::from(2);
            }
        }
    }
    match kiln_runtime::helper::serve_stdio(limit) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-compile-helper: {e}");
            ExitCode::FAILURE
        }
    }
}
