//! Ahead-of-time artifacts on disk: compiled code as shared libraries, keyed by code, spec,
//! compiler and target.
//!
//! An artifact is two files named after the hash of its key: `<key>.so` and `<key>.meta`. The
//! `.meta` file holds the key and the keccak256 of the `.so`; a missing, mismatched or corrupt
//! pair is a cache miss, never a crash. Files are written atomically (temp file, fsync, rename).
//! Loading native code is code execution, so a directory other users can write to is refused.

use kiln_compiler::{
    aot::AotFunction, compile_to_bytes, host_target_id, CompileError, CompileOptions, Emit,
    COMPILER_VERSION,
};
use revm::primitives::{hardfork::SpecId, keccak256, B256};
use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Why the artifact store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The directory is writable by other users and could not be tightened.
    #[error("{} is writable by other users; refusing to load native code from it", .0.display())]
    Insecure(PathBuf),
    /// Compiling, linking or loading the library failed.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

impl ArtifactError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { what, path, source }
    }
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
    /// [`host_target_id`].
    pub target: String,
}

impl ArtifactKey {
    /// The key for `code_hash` and `spec` with this compiler on this machine.
    pub fn new(code_hash: B256, spec: SpecId) -> Self {
        Self {
            code_hash,
            spec,
            compiler_version: COMPILER_VERSION.to_string(),
            target: host_target_id(),
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
        let short: String = h.0[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{short}", self.code_hash)
    }
}

/// A directory of AOT artifacts.
#[derive(Clone, Debug)]
pub struct ArtifactDir {
    dir: PathBuf,
    /// A temporary directory this one lives in, removed with the last clone.
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl ArtifactDir {
    /// Opens (creating it with mode 0700 if needed) the directory. Refuses a directory that other
    /// users can write to.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(ArtifactError::io("create", &dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir)
                .map_err(ArtifactError::io("stat", &dir))?
                .permissions()
                .mode();
            if mode & 0o022 != 0 {
                // Tighten a directory just created under a permissive umask; refuse one that
                // cannot be tightened.
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode & !0o077 | 0o700))
                    .map_err(|_| ArtifactError::Insecure(dir.clone()))?;
            }
        }
        Ok(Self { dir, _temp: None })
    }

    /// A fresh directory under the system's temp dir, removed when the last clone is dropped.
    pub fn temporary() -> Result<Self, ArtifactError> {
        let temp = tempfile::Builder::new()
            .prefix("kiln-aot-")
            .tempdir()
            .map_err(ArtifactError::io(
                "create a temp dir in",
                &std::env::temp_dir(),
            ))?;
        let mut dir = Self::open(temp.path().join("artifacts"))?;
        dir._temp = Some(Arc::new(temp));
        Ok(dir)
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
    pub fn store(&self, key: &ArtifactKey, library: &[u8]) -> Result<PathBuf, ArtifactError> {
        let (so, meta) = self.paths(key);
        let checksum = keccak256(library);
        write_atomic(&so, library)?;
        write_atomic(
            &meta,
            format!("{}checksum {checksum}\n", key.header()).as_bytes(),
        )?;
        Ok(so)
    }

    /// Compiles `code` into a shared library and stores it under `key`.
    pub fn compile_and_store(
        &self,
        key: &ArtifactKey,
        code: &[u8],
        opts: &CompileOptions,
    ) -> Result<PathBuf, ArtifactError> {
        let lib = compile_to_bytes(code, key.spec, opts, None, Emit::So)?;
        self.store(key, &lib)
    }

    /// Loads the artifact for `key`. `Ok(None)` when there is none or it does not match (wrong
    /// key, bad checksum, truncated): the caller treats that as a cache miss.
    pub fn load(&self, key: &ArtifactKey) -> Result<Option<AotFunction>, ArtifactError> {
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
        if keccak256(&bytes).to_string() != stored_sum.trim() {
            tracing::warn!(path = %so.display(), "artifact checksum mismatch; ignoring");
            return Ok(None);
        }
        Ok(Some(AotFunction::load(&so)?))
    }

    /// The artifact for `key`, compiled and stored first if the directory has none.
    pub fn load_or_compile(
        &self,
        key: &ArtifactKey,
        code: &[u8],
        opts: &CompileOptions,
    ) -> Result<AotFunction, ArtifactError> {
        if let Some(f) = self.load(key)? {
            return Ok(f);
        }
        let so = self.compile_and_store(key, code, opts)?;
        self.load(key)?.ok_or_else(|| ArtifactError::Io {
            what: "reload the artifact just written to",
            path: so,
            source: io::ErrorKind::NotFound.into(),
        })
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(ArtifactError::io("create a temp file in", dir))?;
    tmp.write_all(bytes)
        .map_err(ArtifactError::io("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(ArtifactError::io("fsync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| ArtifactError::io("rename into", path)(e.error))?;
    Ok(())
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

    #[cfg(unix)]
    #[test]
    fn an_unwritable_path_is_an_io_error_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = ArtifactDir::open(file.join("cache")).unwrap_err();
        assert!(
            matches!(err, ArtifactError::Io { what: "create", .. }),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
