//! kiln's hot-code service, shaped as a reth execution extension: it is told which blocks became
//! canonical (and which stopped being so), turns the gas each code burnt in those blocks into
//! heat, and compiles the hottest code in the background into the runtime's registry, where
//! dispatch finds it. Nothing here runs on the execution path.
//!
//! ```text
//! EVMs ──usage per block──> Runtime ──take──┐
//! notifications (committed / reorged / reverted) ──> Service ──> Heat ──> CompileQueue
//!                                                        └── WorkerPool ──> Store (verifying)
//! EVMs ──transactions that ran verifying code──> Runtime ──take──> verifier (replays)
//!                                       match K times: Store (ready); mismatch: banned
//! ```
//!
//! New code is not trusted at once: [`verify`] replays real transactions that ran it on the
//! interpreter and on the new code, and only code that agreed `verify_runs` times serves
//! canonical execution.
//!
//! Around it: [`ServiceConfig`] is read from a TOML file (`etc/kiln.toml`), [`metrics`] records
//! what the service does (a Prometheus endpoint behind the `prometheus` feature), and [`rpc`]
//! serves the `kiln_` JSON-RPC methods that drive a [`ServiceControl`] and report a
//! [`StatusSnapshot`].

pub mod config;
pub mod control;
pub mod heat;
pub mod metrics;
pub mod notification;
pub mod queue;
pub mod rpc;
pub mod service;
pub mod status;
pub mod verify;

pub use config::{ConfigError, Policy, ServiceConfig};
pub use control::ServiceControl;
pub use heat::Heat;
pub use notification::{BlockRecord, Chain, FinishedHeight, Notification};
pub use queue::{CompileQueue, Job};
pub use service::{CodeSource, CompileEvent, Service, ServiceStats};
pub use status::{SharedStatus, StatusSnapshot};
