//! kiln's dispatch layer: an EVM whose frames run compiled code when the runtime's registry has
//! it for the frame's code hash, and revm's interpreter otherwise; exposed to reth as an
//! [`alloy_evm::EvmFactory`] ([`KilnEvmFactory`]).
//!
//! The registry, the compile policies and the background workers live in [`kiln_runtime`],
//! re-exported here as [`runtime`] so that a node needs one dependency to build a factory.

pub mod dispatch;
pub mod evm;
pub mod factory;
pub mod profile;
pub mod roots;

pub use evm::KilnEvm;
pub use factory::{KilnAlloyEvm, KilnEvmFactory};
pub use kiln_runtime::{self as runtime, Runtime};
pub use profile::CoverageInspector;
