//! Building a runtime from options: the one place that turns "which backend, which policy,
//! which compile options" into a [`Runtime`].

use crate::{artifacts::ArtifactError, ArtifactDir, Backend, CompilePolicy, Runtime};
use kiln_compiler::{CompileError, CompileOptions};
use std::{path::PathBuf, sync::Arc};

/// Why a runtime could not compile or be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The compiler refused or failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The artifact store failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// A compile helper process failed.
    #[error(transparent)]
    Helper(#[from] crate::helper::HelperError),
}

/// Where a runtime's compiled code comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Nothing compiled: revm's interpreter for every frame.
    Interpreter,
    /// In-process JIT.
    #[default]
    Jit,
    /// Shared libraries in an artifact directory.
    Aot,
}

/// Everything a [`Runtime`] is built from.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled code comes from.
    pub backend: BackendKind,
    /// When code is compiled.
    pub policy: CompilePolicy,
    /// Level, budgets and the rest.
    pub options: CompileOptions,
    /// The AOT artifact directory; a temporary one (removed with the runtime) when `None`.
    pub artifact_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    /// What `KilnEvmFactory::default()` runs: JIT, tiered, default options.
    fn default() -> Self {
        Self {
            backend: BackendKind::Jit,
            policy: CompilePolicy::Tiered {
                promote_after: crate::DEFAULT_PROMOTE_AFTER,
            },
            options: CompileOptions::default(),
            artifact_dir: None,
        }
    }
}

impl RuntimeConfig {
    /// A configuration for `backend` and `policy` with default compile options.
    pub fn new(backend: BackendKind, policy: CompilePolicy) -> Self {
        Self {
            backend,
            policy,
            ..Self::default()
        }
    }

    /// The same, with these compile options.
    pub fn with_options(mut self, options: CompileOptions) -> Self {
        self.options = options;
        self
    }

    /// Builds the runtime (opening or creating the artifact directory for AOT).
    pub fn build(&self) -> Result<Arc<Runtime>, RuntimeError> {
        let backend = match self.backend {
            BackendKind::Interpreter => Backend::Interpreter,
            BackendKind::Jit => Backend::Jit,
            BackendKind::Aot => Backend::Aot(match &self.artifact_dir {
                Some(dir) => ArtifactDir::open(dir)?,
                None => ArtifactDir::temporary()?,
            }),
        };
        Ok(Arc::new(Runtime::new(backend, self.policy, self.options)))
    }
}
