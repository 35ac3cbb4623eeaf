//! kiln's demo chain: contracts shipped with their sources, a transaction mix shaped like
//! mainnet DeFi, and the chain built from it.
//!
//! [`contracts`] embeds the committed solc artifacts of `crates/demo/contracts` and their ABI
//! bindings; [`mix`] derives funded accounts from a seed, writes the genesis, and signs the
//! setup and the per-block transactions; [`run`] builds the chain (with dropped side blocks and
//! reorgs), imports it with the interpreter and with kiln's hot-code service and compares the
//! two; [`plot`] draws the comparison.

pub mod contracts;
pub mod mix;
pub mod plot;
pub mod run;

pub use contracts::Contract;
pub use mix::{DemoChain, DemoTx, Deployment, PairInfo, PoolInfo, TxKindLabel, CHAIN_ID};
pub use run::{DemoError, DemoOptions, Report};
