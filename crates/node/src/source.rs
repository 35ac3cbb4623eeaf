//! Chain sources: what `reth import` reads (a geth-format genesis file and a file of
//! concatenated RLP blocks), plus, for chains with forks, the forkchoice updates a consensus
//! client would send between the blocks.
//!
//! A chain folder holds `genesis.json`, `chain.rlp` and, optionally, `forkchoice.json`: a list of
//! `{"after": N, "head": "0x.."}`, each sent once the first `N` blocks of `chain.rlp` have been
//! sent as new payloads. Without it, each block becomes the head once imported, as with
//! `reth import`.

use alloy_genesis::Genesis;
use alloy_primitives::{Bytes, B256};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The genesis file of a chain folder.
pub const GENESIS_FILE: &str = "genesis.json";
/// The blocks of a chain folder.
pub const BLOCKS_FILE: &str = "chain.rlp";
/// The forkchoice updates of a chain folder.
pub const FORKCHOICE_FILE: &str = "forkchoice.json";

/// A forkchoice update, in the order a consensus client sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkchoiceUpdate {
    /// Sent once this many blocks of the source have been sent.
    pub after: usize,
    /// The new head.
    pub head: B256,
}

/// Why a chain source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The genesis or forkchoice file is not valid JSON of its kind.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// A chain to import: genesis, blocks in the order they are sent, and forkchoice updates.
#[derive(Clone, Debug)]
pub struct ChainSource {
    /// The genesis (geth format).
    pub genesis: Genesis,
    /// Each block's RLP, in order. The file's tail that is not a whole RLP item is kept in
    /// `malformed`.
    pub blocks: Vec<Bytes>,
    /// Where the blocks file stops being a sequence of RLP items: the byte offset and why.
    pub malformed: Option<(usize, String)>,
    /// Forkchoice updates; `None`: each block becomes the head once imported.
    pub forkchoice: Option<Vec<ForkchoiceUpdate>>,
}

impl ChainSource {
    /// Reads a chain folder.
    pub fn open(dir: &Path) -> Result<Self, SourceError> {
        let forkchoice = dir.join(FORKCHOICE_FILE);
        Self::from_files(
            &dir.join(GENESIS_FILE),
            &[dir.join(BLOCKS_FILE)],
            forkchoice.exists().then_some(forkchoice.as_path()),
        )
    }

    /// Reads a genesis file, block files (concatenated RLP, read one after the other) and,
    /// optionally, a forkchoice file.
    pub fn from_files(
        genesis: &Path,
        blocks: &[PathBuf],
        forkchoice: Option<&Path>,
    ) -> Result<Self, SourceError> {
        let genesis: Genesis = read_json(genesis)?;
        let mut all = Vec::new();
        let mut malformed = None;
        for path in blocks {
            let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?;
            let (items, bad) = split_rlp(&bytes);
            all.extend(items);
            if let Some((offset, why)) = bad {
                malformed = Some((offset, format!("{}: {why}", path.display())));
                break;
            }
        }
        let forkchoice = forkchoice.map(read_json).transpose()?;
        Ok(Self {
            genesis,
            blocks: all,
            malformed,
            forkchoice,
        })
    }

    /// Writes this source as a chain folder.
    pub fn write(&self, dir: &Path) -> Result<(), SourceError> {
        let io = |path: PathBuf| move |source| SourceError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_owned()))?;
        let json = |path: PathBuf, value: &dyn erased::Json| {
            let text = value.to_json().map_err(|source| SourceError::Json {
                path: path.clone(),
                source,
            })?;
            std::fs::write(&path, text).map_err(io(path))
        };
        json(dir.join(GENESIS_FILE), &self.genesis)?;
        let blocks: Vec<u8> = self.blocks.iter().flat_map(|b| b.iter().copied()).collect();
        std::fs::write(dir.join(BLOCKS_FILE), blocks).map_err(io(dir.join(BLOCKS_FILE)))?;
        if let Some(updates) = &self.forkchoice {
            json(dir.join(FORKCHOICE_FILE), updates)?;
        }
        Ok(())
    }
}

/// Serialising either file's value through one closure.
mod erased {
    pub(super) trait Json {
        fn to_json(&self) -> Result<String, serde_json::Error>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<String, serde_json::Error> {
            serde_json::to_string_pretty(self)
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SourceError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Splits concatenated RLP items; stops at the first byte that does not start a whole item,
/// returning its offset and why.
pub fn split_rlp(mut bytes: &[u8]) -> (Vec<Bytes>, Option<(usize, String)>) {
    let total = bytes.len();
    let mut items = Vec::new();
    while !bytes.is_empty() {
        let offset = total - bytes.len();
        let mut rest = bytes;
        let header = match alloy_rlp::Header::decode(&mut rest) {
            Ok(h) => h,
            Err(alloy_rlp::Error::InputTooShort) => {
                let why = format!(
                    "truncated: the file ends inside the block ({} bytes left)",
                    bytes.len()
                );
                return (items, Some((offset, why)));
            }
            Err(e) => return (items, Some((offset, e.to_string()))),
        };
        if !header.list {
            return (items, Some((offset, "a block must be an RLP list".into())));
        }
        let len = bytes.len() - rest.len() + header.payload_length;
        if header.payload_length > rest.len() {
            return (
                items,
                Some((
                    offset,
                    format!(
                        "truncated: the block needs {len} bytes, {} are left",
                        bytes.len()
                    ),
                )),
            );
        }
        items.push(Bytes::copy_from_slice(&bytes[..len]));
        bytes = &bytes[len..];
    }
    (items, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_stops_at_a_truncated_or_foreign_item() {
        let (items, bad) = split_rlp(&[0xc2, 0x01, 0x02, 0xc1, 0x05]);
        assert_eq!(items.len(), 2);
        assert!(bad.is_none());
        let (items, bad) = split_rlp(&[0xc2, 0x01, 0x02, 0xc3, 0x05]);
        assert_eq!(items.len(), 1);
        assert_eq!(bad.unwrap().0, 3);
        let (items, bad) = split_rlp(&[0x82, 0x01, 0x02]);
        assert!(items.is_empty());
        assert!(bad.unwrap().1.contains("list"));
    }
}
