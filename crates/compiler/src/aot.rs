//! Ahead-of-time code: an object file linked into a shared library, and that library loaded.
//! Where libraries are kept (the artifact store) is the runtime's business (`kiln-runtime`).
//!
//! The library calls builtins through pointer globals `kiln_rt_<symbol>` that [`AotFunction::load`]
//! fills in by symbol name, so the host executable does not need to export anything.

use crate::{lower::POINTER_PREFIX, CompileError, AOT_ENTRY_SYMBOL};
use kiln_builtins::CompiledFn;
use std::{fs, path::Path, process::Command};

/// Links an object file into a shared library and returns the library's bytes.
pub fn link_shared(object: &[u8]) -> Result<Vec<u8>, CompileError> {
    let io = |what: &'static str| move |source| CompileError::Io { what, source };
    let dir = tempfile::tempdir().map_err(io("create a temp dir for linking"))?;
    let obj = dir.path().join("code.o");
    let so = dir.path().join("code.so");
    fs::write(&obj, object).map_err(io("write the object file"))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .arg("-shared")
        .arg("-o")
        .arg(&so)
        .arg(&obj)
        .output()
        .map_err(io("run the linker (cc)"))?;
    if !out.status.success() {
        return Err(CompileError::Link {
            linker: cc,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    fs::read(&so).map_err(io("read the linked library"))
}

/// A compiled function loaded from a shared library. Dropping it unloads the library.
#[derive(Debug)]
pub struct AotFunction {
    func: CompiledFn,
    _lib: libloading::Library,
}

impl AotFunction {
    /// Loads a library produced by [`compile_to_bytes`](crate::compile_to_bytes) with
    /// [`Emit::So`](crate::Emit::So) and binds its builtins.
    pub fn load(path: &Path) -> Result<Self, CompileError> {
        // SAFETY: loading a library runs its initialisers; kiln's libraries have none of their
        // own, and only libraries from a cache directory that other users cannot write to (or a
        // path the operator named) are loaded.
        let lib =
            unsafe { libloading::Library::new(path) }.map_err(|source| CompileError::Load {
                path: path.to_path_buf(),
                source,
            })?;
        for (name, addr) in kiln_builtins::all_symbols() {
            let sym = format!("{POINTER_PREFIX}{name}");
            // SAFETY: `kiln_rt_*` symbols are pointer-sized globals that the library reads only
            // through calls; we write them before returning the entry point.
            unsafe {
                if let Ok(slot) = lib.get::<*mut usize>(sym.as_bytes()) {
                    **slot = addr;
                }
            }
        }
        // SAFETY: the entry symbol has the `CompiledFn` signature (see `lower`).
        let func = unsafe {
            *lib.get::<CompiledFn>(AOT_ENTRY_SYMBOL.as_bytes())
                .map_err(|source| CompileError::Load {
                    path: path.to_path_buf(),
                    source,
                })?
        };
        Ok(Self { func, _lib: lib })
    }

    /// The compiled entry point.
    pub fn as_fn(&self) -> CompiledFn {
        self.func
    }
}
