//! kiln's test tools, as a library: the Ethereum state-test runner (`kiln statetest`), the
//! differential harness the tests and the fuzzer compare kiln with revm through, the
//! differential fuzzer (`kiln fuzz`) and the whole-transaction benchmarks (`kiln bench` and the
//! criterion benches). The `kiln` binary only parses the command line and calls each tool's
//! `run`; every tool names its execution modes with one [`Mode`], whose
//! [`Mode::runtime_config`] is the one place a mode becomes a runtime.
//!
//! Nothing in kiln's own crates depends on this one (a dev-dependency is fine).

pub mod bench;
pub mod difftest;
pub mod fixtures;
pub mod fuzz;
mod mode;
pub mod statetest;

pub use mode::Mode;
