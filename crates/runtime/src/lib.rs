//! kiln's runtime: the registry of compiled code that every EVM reads, the compile workers that
//! fill it in the background, the artifact store, and the policies that decide what is compiled
//! and when.
//!
//! ```text
//! EVM frame ──lookup──> Runtime ──policy──> Store ((code hash, spec) -> Entry, epoch)
//!                          │                   ^
//!                          └── WorkerPool ─────┘  (background compilations, joined on shutdown)
//! ```
//!
//! The execution path only reads the [`Store`] (and, under a compiling policy, compiles on the
//! calling thread); background work goes through a [`WorkerPool`], whose threads are owned by the
//! runtime and joined by [`Runtime::shutdown`] or when the runtime is dropped.

pub mod artifacts;
mod code;
mod config;
pub mod helper;
pub mod objects;
pub mod policy;
mod runtime;
mod stats;
pub mod store;
mod usage;
pub mod verify;
pub mod workers;

pub use artifacts::{ArtifactDir, ArtifactKey};
pub use code::CompiledCode;
pub use config::{BackendKind, RuntimeConfig, RuntimeError};
pub use helper::{HelperConfig, HelperError, HelperProcess};
pub use objects::{CachedObject, ObjectCache, ObjectKey};
pub use policy::{
    profiled::{Profile, COLD_HANDOFFS_BEFORE_REPROFILE},
    tiered::Tier,
    CompilePolicy, DEFAULT_PROMOTE_AFTER,
};
pub use runtime::{Backend, Lookup, Runtime};
pub use stats::RuntimeStats;
pub use store::{CodeKey, Entry, Store};
pub use usage::{BlockId, BlockUsage, CodeUsage, Usage, UsageReports};
pub use verify::{Capture, Captures};
pub use workers::{CompileRequest, Compiler, InProcess, WorkerPool};
