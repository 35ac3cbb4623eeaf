//! Ahead-of-time artifacts: compiled code as a shared library, cached on disk.
//!
//! An artifact is two files named after the hash of its key: `<key>.so` and `<key>.meta`. The
//! `.meta` file holds the key (code hash, spec, compiler version, target) and the keccak256 of
//! the `.so`; a missing, mismatched or corrupt pair is a cache miss, never a crash. Files are
//! written atomically (temp file, fsync, rename). Loading native code is code execution, so a
//! cache directory writable by other users is refused.
//!
//! The library calls builtins through pointer globals `kiln_rt_<symbol>` that [`AotFunction::load`]
//! fills in by symbol name, so the host executable does not need to export anything.

use crate::{
    compile_to_bytes, lower::POINTER_PREFIX, CompileError, CompileOptions, Emit, AOT_ENTRY_SYMBOL,
    COMPILER_VERSION,
};
use kiln_builtins::CompiledFn;
use revm::primitives::{hardfork::SpecId, keccak256, B256};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

/// Links an object file into a shared library and returns the library's bytes.
pub fn link_shared(object: &[u8]) -> Result<Vec<u8>, CompileError> {
    let dir = tempfile::tempdir().map_err(|e| CompileError::Aot(format!("temp dir: {e}")))?;
    let obj = dir.path().join("code.o");
    let so = dir.path().join("code.so");
    fs::write(&obj, object).map_err(|e| CompileError::Aot(format!("write object: {e}")))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .arg("-shared")
        .arg("-o")
        .arg(&so)
        .arg(&obj)
        .output()
        .map_err(|e| CompileError::Aot(format!("running {cc}: {e}")))?;
    if !out.status.success() {
        return Err(CompileError::Aot(format!(
            "{cc} -shared failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    fs::read(&so).map_err(|e| CompileError::Aot(format!("read library: {e}")))
}

/// What identifies an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactKey {
    /// keccak256 of the bytecode.
    pub code_hash: B256,
    /// The spec it was compiled for.
    pub spec: SpecId,
    /// [`COMPILER_VERSION`].
    pub compiler_version: String,
    /// [`crate::host_target_id`].
    pub target: String,
}

impl ArtifactKey {
    /// The key for `code_hash` and `spec` with this compiler on this machine.
    pub fn new(code_hash: B256, spec: SpecId) -> Self {
        Self {
            code_hash,
            spec,
            compiler_version: COMPILER_VERSION.to_string(),
            target: crate::host_target_id(),
        }
    }

    fn header(&self) -> String {
        format!(
            "kiln-artifact 1\ncode_hash {}\nspec {}\ncompiler {}\ntarget {}\n",
            self.code_hash, self.spec as u8, self.compiler_version, self.target
        )
    }

    /// The file stem of this key's artifact.
    pub fn stem(&self) -> String {
        let h = keccak256(self.header().as_bytes());
        format!("{}-{}", self.code_hash, &hex_short(&h))
    }
}

fn hex_short(h: &B256) -> String {
    h.0[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory of AOT artifacts.
#[derive(Clone, Debug)]
pub struct ArtifactDir {
    dir: PathBuf,
}

impl ArtifactDir {
    /// Opens (creating it with mode 0700 if needed) the directory. Refuses a directory that other
    /// users can write to.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CompileError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| CompileError::Aot(format!("create {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(&dir)
                .map_err(|e| CompileError::Aot(format!("stat {}: {e}", dir.display())))?;
            let mode = meta.permissions().mode();
            if mode & 0o022 != 0 {
                // Tighten a directory we may have just created with a permissive umask; refuse one
                // that we cannot tighten.
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode & !0o077 | 0o700))
                    .map_err(|_| {
                        CompileError::Aot(format!(
                            "{} is writable by other users; refusing to load native code from it",
                            dir.display()
                        ))
                    })?;
            }
        }
        Ok(Self { dir })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, key: &ArtifactKey) -> (PathBuf, PathBuf) {
        let stem = key.stem();
        (
            self.dir.join(format!("{stem}.so")),
            self.dir.join(format!("{stem}.meta")),
        )
    }

    /// Writes a library for `key` atomically.
    pub fn store(&self, key: &ArtifactKey, library: &[u8]) -> Result<PathBuf, CompileError> {
        let (so, meta) = self.paths(key);
        let checksum = keccak256(library);
        write_atomic(&so, library)?;
        write_atomic(
            &meta,
            format!("{}checksum {}\n", key.header(), checksum).as_bytes(),
        )?;
        Ok(so)
    }

    /// Compiles `code` and stores it under `key`.
    pub fn compile_and_store(
        &self,
        key: &ArtifactKey,
        code: &[u8],
        opts: &CompileOptions,
    ) -> Result<PathBuf, CompileError> {
        let lib = compile_to_bytes(code, key.spec, opts, None, Emit::So)?;
        self.store(key, &lib)
    }

    /// Loads the artifact for `key`. `Ok(None)` when there is none or it does not match (wrong
    /// key, bad checksum, truncated): the caller treats that as a cache miss.
    pub fn load(&self, key: &ArtifactKey) -> Result<Option<AotFunction>, CompileError> {
        let (so, meta) = self.paths(key);
        let Ok(meta_text) = fs::read_to_string(&meta) else {
            return Ok(None);
        };
        let Some(stored_sum) = meta_text
            .strip_prefix(&key.header())
            .and_then(|r| r.strip_prefix("checksum "))
        else {
            tracing::warn!(path = %meta.display(), "artifact header does not match its key; ignoring");
            return Ok(None);
        };
        let Ok(bytes) = fs::read(&so) else {
            return Ok(None);
        };
        if format!("{}", keccak256(&bytes)) != stored_sum.trim() {
            tracing::warn!(path = %so.display(), "artifact checksum mismatch; ignoring");
            return Ok(None);
        }
        AotFunction::load(&so).map(Some)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CompileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| CompileError::Aot(format!("temp file: {e}")))?;
    tmp.write_all(bytes)
        .map_err(|e| CompileError::Aot(format!("write: {e}")))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CompileError::Aot(format!("fsync: {e}")))?;
    tmp.persist(path)
        .map_err(|e| CompileError::Aot(format!("rename: {e}")))?;
    Ok(())
}

/// A compiled function loaded from a shared library. Dropping it unloads the library.
#[derive(Debug)]
pub struct AotFunction {
    func: CompiledFn,
    _lib: libloading::Library,
}

impl AotFunction {
    /// Loads a library produced by [`compile_to_bytes`] with [`Emit::So`] and binds its builtins.
    pub fn load(path: &Path) -> Result<Self, CompileError> {
        // SAFETY: loading a library runs its initialisers; kiln's libraries have none of their
        // own, and only libraries from a cache directory that other users cannot write to (or a
        // path the operator named) are loaded.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| CompileError::Aot(format!("load {}: {e}", path.display())))?;
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
                .map_err(|e| {
                    CompileError::Aot(format!("{}: no entry symbol: {e}", path.display()))
                })?
        };
        Ok(Self { func, _lib: lib })
    }

    /// The compiled entry point.
    pub fn as_fn(&self) -> CompiledFn {
        self.func
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_artifacts_are_cache_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactDir::open(dir.path().join("cache")).unwrap();
        let code = [0x60, 1, 0x60, 2, 0x01, 0x00];
        let key = ArtifactKey::new(keccak256(code), SpecId::CANCUN);
        assert!(cache.load(&key).unwrap().is_none());
        let so = cache
            .compile_and_store(&key, &code, &CompileOptions::default())
            .unwrap();
        assert!(cache.load(&key).unwrap().is_some());
        // Flip a byte: checksum mismatch.
        let mut bytes = fs::read(&so).unwrap();
        let n = bytes.len() / 2;
        bytes[n] ^= 0xff;
        fs::write(&so, &bytes).unwrap();
        assert!(cache.load(&key).unwrap().is_none());
        // Truncate: still a miss.
        fs::write(&so, &bytes[..10]).unwrap();
        assert!(cache.load(&key).unwrap().is_none());
        // Another spec's key never loads this artifact.
        let other = ArtifactKey::new(keccak256(code), SpecId::PRAGUE);
        assert!(cache.load(&other).unwrap().is_none());
    }
}
