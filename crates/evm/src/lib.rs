//! kiln's dispatch layer: an EVM whose frames run compiled code when the registry has it for the
//! frame's code hash, and revm's interpreter otherwise; exposed to reth as an
//! [`alloy_evm::EvmFactory`] ([`KilnEvmFactory`]).

#![warn(missing_docs)]

pub mod difftest;
pub mod dispatch;
pub mod evm;
pub mod factory;
pub mod profile;
pub mod registry;

pub use evm::KilnEvm;
pub use factory::{KilnAlloyEvm, KilnEvmFactory};
pub use profile::CoverageInspector;
pub use registry::{
    Backend, CompilePolicy, CompiledCode, Entry, Lookup, Profile, Runtime, Tier,
    DEFAULT_PROMOTE_AFTER,
};
