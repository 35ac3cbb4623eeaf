//! Compiled JIT objects on disk, so that a restarted node runs its hot code natively from its
//! first block.
//!
//! One file per (code hash, spec, tier): a fixed magic, a text header (format version, kiln's
//! compiler version, target triple and CPU, spec, tier, code hash, entry symbol, payload
//! length), the keccak256 of the payload, then the object. Writes go to a temp file that is
//! fsynced and renamed, so a process killed mid-write leaves either the old file or none. On
//! load, any mismatch (another version or target, a wrong length or checksum, a short file) is a
//! miss that is logged and the file removed; it is never linked. Linking native code is running
//! it, so a directory that group or others can write to is refused. Beyond a size cap, the
//! least recently used files go.

use crate::{artifacts::ArtifactError, CodeKey};
use kiln_compiler::{host_target_id, COMPILER_VERSION};
use revm::primitives::{hardfork::SpecId, keccak256, B256};
use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

const MAGIC: &[u8; 8] = b"KILNOBJ\0";
const FORMAT: u32 = 1;
const EXTENSION: &str = "kobj";

/// What identifies a cached object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// The code and spec.
    pub code: CodeKey,
    /// `true` for the optimising tier, `false` for the quick one.
    pub optimised: bool,
}

/// A cached object, checked and ready to link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedObject {
    /// Its key.
    pub key: ObjectKey,
    /// The entry symbol it was compiled with.
    pub entry: String,
    /// The object file.
    pub object: Vec<u8>,
}

/// A directory of compiled objects.
#[derive(Clone, Debug)]
pub struct ObjectCache {
    dir: PathBuf,
    max_bytes: u64,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    move |source| ArtifactError::Io { what, path, source }
}

impl ObjectCache {
    /// Opens `dir` (created with mode 0700 if missing), keeping at most `max_bytes` of objects.
    /// A directory that group or others can write to is refused.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        if !dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&dir).map_err(io_err("create", &dir))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dir)
                .map_err(io_err("stat", &dir))?
                .permissions()
                .mode();
            if mode & 0o022 != 0 {
                return Err(ArtifactError::Insecure(dir));
            }
        }
        // Temp files of a writer that died before its rename are never objects.
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Self { dir, max_bytes })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, key: ObjectKey) -> PathBuf {
        let tier = if key.optimised { "opt" } else { "quick" };
        self.dir.join(format!(
            "{}-{}-{tier}.{EXTENSION}",
            key.code.0, key.code.1 as u8
        ))
    }

    fn header(key: ObjectKey, entry: &str, len: usize) -> String {
        format!(
            "format {FORMAT}\ncompiler {COMPILER_VERSION}\ntarget {}\nspec {}\ntier {}\ncode_hash {}\nentry {entry}\nlen {len}\n",
            host_target_id(),
            key.code.1 as u8,
            if key.optimised { "optimised" } else { "quick" },
            key.code.0,
        )
    }

    /// Writes an object atomically, then trims the directory to its size cap.
    pub fn store(&self, key: ObjectKey, entry: &str, object: &[u8]) -> Result<(), ArtifactError> {
        let header = Self::header(key, entry, object.len());
        let mut bytes = Vec::with_capacity(object.len() + header.len() + 48);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(keccak256(object).as_slice());
        bytes.extend_from_slice(object);
        let path = self.file(key);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io_err("create a temp file in", &self.dir))?;
        tmp.write_all(&bytes).map_err(io_err("write", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("fsync", tmp.path()))?;
        tmp.persist(&path)
            .map_err(|e| io_err("rename into", &path)(e.error))?;
        self.trim();
        Ok(())
    }

    /// The object for `key`, if a valid one is cached. An invalid file is logged and removed.
    pub fn load(&self, key: ObjectKey) -> Option<CachedObject> {
        let path = self.file(key);
        let bytes = fs::read(&path).ok()?;
        match Self::parse(key, &bytes) {
            Ok((entry, object)) => {
                // Recently used: the size cap evicts by modification time.
                let _ = fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Some(CachedObject {
                    key,
                    entry,
                    object: object.to_vec(),
                })
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "cached object rejected; it will be compiled again");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    fn parse(key: ObjectKey, bytes: &[u8]) -> Result<(String, &[u8]), &'static str> {
        let rest = bytes.strip_prefix(MAGIC).ok_or("not a kiln object file")?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or("truncated header")?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len + 32 {
            return Err("truncated header");
        }
        let (header, rest) = rest.split_at(len);
        let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
        let (sum, object) = rest.split_at(32);
        let entry = header
            .lines()
            .find_map(|l| l.strip_prefix("entry "))
            .ok_or("no entry symbol")?;
        if header != Self::header(key, entry, object.len()) {
            return Err("written by another kiln version, for another target or key, or truncated");
        }
        if keccak256(object).as_slice() != sum {
            return Err("checksum mismatch");
        }
        Ok((entry.to_string(), object))
    }

    /// Deletes the object for `key`, if there is one (code found to be wrong must not come back
    /// at the next start).
    pub fn remove(&self, key: ObjectKey) {
        let path = self.file(key);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a cached object");
            }
        }
    }

    /// The keys of every object file in the directory (not yet checked).
    pub fn keys(&self) -> Vec<ObjectKey> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(&format!(".{EXTENSION}"))?;
            let mut parts = stem.split('-');
            let hash: B256 = parts.next()?.parse().ok()?;
            let spec = SpecId::try_from_u8(parts.next()?.parse().ok()?)?;
            let optimised = match parts.next()? {
                "opt" => true,
                "quick" => false,
                _ => return None,
            };
            Some(ObjectKey {
                code: (hash, spec),
                optimised,
            })
        })
        .collect()
    }

    /// Removes the least recently used objects until the directory fits its cap.
    fn trim(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = dir
            .filter_map(|e| {
                let e = e.ok()?;
                let meta = e.metadata().ok()?;
                if e.path().extension()? != EXTENSION {
                    return None;
                }
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::debug!(path = %path.display(), "cached object evicted (size cap)");
            }
        }
    }
}
