//! A small sparse Merkle Patricia trie: nodes come from a [`NodeSource`] by hash as they are
//! needed, and a node the source does not have is an error naming its hash and path, never a
//! guess. Reads walk the nodes without keeping them ([`get`]); [`SparseTrie`] reveals what its
//! updates and deletions touch (a deletion that collapses a branch reveals the sibling that is
//! left), then re-hashes.
//!
//! Keys are fixed-length (the hashed keys of Ethereum's secure tries), so branches never hold
//! values.

use alloy_primitives::{keccak256, map::HashMap, Bytes, B256};
use alloy_rlp::EMPTY_STRING_CODE;
use alloy_trie::{
    nodes::{BranchNode, ExtensionNode, LeafNode, RlpNode, TrieNode},
    Nibbles, TrieMask, EMPTY_ROOT_HASH,
};
use std::{cell::RefCell, collections::BTreeSet};

/// Trie nodes by hash.
pub trait NodeSource {
    /// The RLP of the node hashing to `hash`, if known.
    fn node(&self, hash: &B256) -> Option<Bytes>;
}

/// Nodes keyed by the keccak of their RLP: a key is checked by construction.
#[derive(Clone, Debug, Default)]
pub struct NodeMap(HashMap<B256, Bytes>);

impl NodeMap {
    /// Every node of `nodes`, keyed by its hash.
    pub fn new<'a>(nodes: impl IntoIterator<Item = &'a Bytes>) -> Self {
        Self(
            nodes
                .into_iter()
                .map(|rlp| (keccak256(rlp), rlp.clone()))
                .collect(),
        )
    }

    /// Adds a node under its hash.
    pub fn insert(&mut self, rlp: Bytes) {
        self.0.insert(keccak256(&rlp), rlp);
    }

    /// The nodes' RLP.
    pub fn into_nodes(self) -> impl Iterator<Item = Bytes> {
        self.0.into_values()
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl NodeSource for NodeMap {
    fn node(&self, hash: &B256) -> Option<Bytes> {
        self.0.get(hash).cloned()
    }
}

/// A [`NodeSource`] that notes every hash asked for: what a witness of the same walk must hold.
#[derive(Debug)]
pub struct Recorder<'a, S> {
    source: &'a S,
    asked: RefCell<BTreeSet<B256>>,
}

impl<'a, S: NodeSource> Recorder<'a, S> {
    /// Records what is asked of `source`.
    pub fn new(source: &'a S) -> Self {
        Self {
            source,
            asked: RefCell::default(),
        }
    }

    /// The nodes asked for (that the source had).
    pub fn nodes(&self) -> Vec<Bytes> {
        self.asked
            .borrow()
            .iter()
            .filter_map(|h| self.source.node(h))
            .collect()
    }
}

impl<S: NodeSource> NodeSource for Recorder<'_, S> {
    fn node(&self, hash: &B256) -> Option<Bytes> {
        self.asked.borrow_mut().insert(*hash);
        self.source.node(hash)
    }
}

/// Why a trie walk could not finish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    /// The walk needs a node the witness does not hold.
    #[error("trie node {hash} (at path 0x{path}) is not in the witness")]
    MissingNode {
        /// The node's hash.
        hash: B256,
        /// Its path from the root, in nibbles.
        path: String,
    },
    /// A node is not a valid trie node.
    #[error("trie node {hash} (at path 0x{path}) is malformed: {reason}")]
    Malformed {
        /// The node's hash (of the enclosing node, for an embedded one).
        hash: B256,
        /// Its path from the root, in nibbles.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn path_str(path: &Nibbles) -> String {
    path.iter()
        .map(|n| char::from_digit(n as u32, 16).unwrap_or('?'))
        .collect()
}

/// Decodes the node a child reference points to: embedded, or by hash from `source`.
fn resolve(source: &impl NodeSource, hash: &B256, path: &Nibbles) -> Result<TrieNode, TrieError> {
    let rlp = source.node(hash).ok_or_else(|| TrieError::MissingNode {
        hash: *hash,
        path: path_str(path),
    })?;
    decode(&rlp, hash, path)
}

fn decode(rlp: &[u8], hash: &B256, path: &Nibbles) -> Result<TrieNode, TrieError> {
    let mut buf = rlp;
    let node = alloy_rlp::Decodable::decode(&mut buf).map_err(|e: alloy_rlp::Error| {
        TrieError::Malformed {
            hash: *hash,
            path: path_str(path),
            reason: e.to_string(),
        }
    })?;
    if !buf.is_empty() {
        return Err(TrieError::Malformed {
            hash: *hash,
            path: path_str(path),
            reason: format!("{} trailing bytes", buf.len()),
        });
    }
    Ok(node)
}

/// A child reference: a hash, or an embedded node (decoded here).
enum Child {
    Hash(B256),
    Node(TrieNode),
}

fn child(rlp: &RlpNode, parent: &B256, path: &Nibbles) -> Result<Child, TrieError> {
    match rlp.as_hash() {
        Some(hash) => Ok(Child::Hash(hash)),
        None => decode(rlp.as_slice(), parent, path).map(Child::Node),
    }
}

/// The value under `key` (unhashed path bytes, usually a keccak) in the trie rooted at `root`.
pub fn get(source: &impl NodeSource, root: B256, key: &[u8]) -> Result<Option<Vec<u8>>, TrieError> {
    if root == EMPTY_ROOT_HASH {
        return Ok(None);
    }
    let key = Nibbles::unpack(key);
    let mut path = Nibbles::new();
    let mut hash = root;
    let mut node = resolve(source, &root, &path)?;
    loop {
        let rest = key.slice(path.len()..);
        let next = match &node {
            TrieNode::EmptyRoot => return Ok(None),
            TrieNode::Leaf(leaf) => {
                return Ok((leaf.key == rest).then(|| leaf.value.clone()));
            }
            TrieNode::Extension(ext) => {
                if !rest.starts_with(&ext.key) {
                    return Ok(None);
                }
                path.extend(&ext.key);
                child(&ext.child, &hash, &path)?
            }
            TrieNode::Branch(branch) => {
                let Some(nibble) = rest.first() else {
                    return Ok(None);
                };
                if !branch.state_mask.is_bit_set(nibble) {
                    return Ok(None);
                }
                let index = branch.state_mask.iter().take_while(|&i| i < nibble).count();
                path.push(nibble);
                child(&branch.stack[index], &hash, &path)?
            }
        };
        node = match next {
            Child::Hash(h) => {
                hash = h;
                resolve(source, &h, &path)?
            }
            Child::Node(n) => n,
        };
    }
}

/// A trie node as [`SparseTrie`] holds it.
#[derive(Clone, Debug)]
enum Node {
    Empty,
    /// Not revealed yet.
    Hash(B256),
    Leaf(Nibbles, Vec<u8>),
    Extension(Nibbles, Box<Node>),
    Branch(Box<[Node; 16]>),
}

impl Node {
    /// The node a decoded trie node is, its children by hash left unrevealed.
    fn from_trie(node: TrieNode, hash: &B256, path: &Nibbles) -> Result<Self, TrieError> {
        let child_node = |rlp: &RlpNode, path: &Nibbles| -> Result<Self, TrieError> {
            match child(rlp, hash, path)? {
                Child::Hash(h) => Ok(Self::Hash(h)),
                Child::Node(n) => Self::from_trie(n, hash, path),
            }
        };
        Ok(match node {
            TrieNode::EmptyRoot => Self::Empty,
            TrieNode::Leaf(leaf) => Self::Leaf(leaf.key, leaf.value),
            TrieNode::Extension(ext) => {
                let child = child_node(&ext.child, &path.join(&ext.key))?;
                Self::Extension(ext.key, Box::new(child))
            }
            TrieNode::Branch(branch) => {
                let mut children: [Self; 16] = std::array::from_fn(|_| Self::Empty);
                for (slot, nibble) in branch.state_mask.iter().enumerate() {
                    let mut child_path = *path;
                    child_path.push(nibble);
                    children[nibble as usize] = child_node(&branch.stack[slot], &child_path)?;
                }
                Self::Branch(Box::new(children))
            }
        })
    }

    /// Replaces an unrevealed node by what its hash resolves to.
    fn reveal(&mut self, source: &impl NodeSource, path: &Nibbles) -> Result<(), TrieError> {
        if let Self::Hash(hash) = *self {
            let node = resolve(source, &hash, path)?;
            *self = Self::from_trie(node, &hash, path)?;
        }
        Ok(())
    }

    /// Encodes the node into `buf` (cleared first) and returns its reference.
    fn rlp(&self, buf: &mut Vec<u8>) -> RlpNode {
        buf.clear();
        match self {
            Self::Empty => RlpNode::from_raw(&[EMPTY_STRING_CODE]).unwrap_or_default(),
            Self::Hash(hash) => RlpNode::word_rlp(hash),
            Self::Leaf(key, value) => LeafNode::new(*key, value.clone()).as_ref().rlp(buf),
            Self::Extension(key, child) => {
                let child = child.rlp(buf);
                buf.clear();
                ExtensionNode::new(*key, child).as_ref().rlp(buf)
            }
            Self::Branch(children) => {
                let mut stack = Vec::new();
                let mut mask = TrieMask::default();
                for (nibble, child) in children.iter().enumerate() {
                    if !matches!(child, Self::Empty) {
                        stack.push(child.rlp(buf));
                        mask.set_bit(nibble as u8);
                    }
                }
                buf.clear();
                BranchNode::new(stack, mask).as_ref().rlp(buf)
            }
        }
    }

    /// Adds every node of this (fully revealed) subtree that is referenced by hash to `out`.
    fn collect(&self, out: &mut NodeMap, is_root: bool) -> RlpNode {
        let mut buf = Vec::new();
        let rlp = match self {
            Self::Empty | Self::Hash(_) | Self::Leaf(..) => self.rlp(&mut buf),
            Self::Extension(key, child) => {
                let child = child.collect(out, false);
                ExtensionNode::new(*key, child).as_ref().rlp(&mut buf)
            }
            Self::Branch(children) => {
                let mut stack = Vec::new();
                let mut mask = TrieMask::default();
                for (nibble, child) in children.iter().enumerate() {
                    if !matches!(child, Self::Empty) {
                        stack.push(child.collect(out, false));
                        mask.set_bit(nibble as u8);
                    }
                }
                BranchNode::new(stack, mask).as_ref().rlp(&mut buf)
            }
        };
        if (rlp.is_hash() || is_root) && !buf.is_empty() {
            out.insert(Bytes::from(buf));
        }
        rlp
    }
}

/// A trie revealed from its root hash as far as its updates need.
#[derive(Clone, Debug)]
pub struct SparseTrie {
    root: Node,
}

impl SparseTrie {
    /// The trie with root `root`, nothing revealed.
    pub fn new(root: B256) -> Self {
        Self {
            root: if root == EMPTY_ROOT_HASH {
                Node::Empty
            } else {
                Node::Hash(root)
            },
        }
    }

    /// An empty trie.
    pub fn empty() -> Self {
        Self { root: Node::Empty }
    }

    /// Sets `key` to `value` (an empty value is a deletion).
    pub fn update(
        &mut self,
        source: &impl NodeSource,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), TrieError> {
        let key = Nibbles::unpack(key);
        if value.is_empty() {
            remove(&mut self.root, source, &key, Nibbles::new())
        } else {
            insert(&mut self.root, source, &key, Nibbles::new(), value)
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, source: &impl NodeSource, key: &[u8]) -> Result<(), TrieError> {
        remove(
            &mut self.root,
            source,
            &Nibbles::unpack(key),
            Nibbles::new(),
        )
    }

    /// The root hash.
    pub fn root(&self) -> B256 {
        match &self.root {
            Node::Empty => EMPTY_ROOT_HASH,
            Node::Hash(hash) => *hash,
            node => {
                let mut buf = Vec::new();
                let rlp = node.rlp(&mut buf);
                rlp.as_hash().unwrap_or_else(|| keccak256(&buf))
            }
        }
    }

    /// Every node of a fully revealed trie by hash (the root's whatever its size), and the root.
    pub fn nodes(&self) -> (NodeMap, B256) {
        let mut map = NodeMap::default();
        self.root.collect(&mut map, true);
        (map, self.root())
    }
}

fn insert(
    node: &mut Node,
    source: &impl NodeSource,
    key: &Nibbles,
    path: Nibbles,
    value: Vec<u8>,
) -> Result<(), TrieError> {
    node.reveal(source, &path)?;
    let rest = key.slice(path.len()..);
    match node {
        Node::Hash(_) => unreachable!("revealed above"),
        Node::Empty => *node = Node::Leaf(rest, value),
        Node::Leaf(leaf_key, leaf_value) => {
            if *leaf_key == rest {
                *leaf_value = value;
                return Ok(());
            }
            let common = leaf_key.common_prefix_length(&rest);
            let mut children: [Node; 16] = std::array::from_fn(|_| Node::Empty);
            children[leaf_key.get_unchecked(common) as usize] =
                Node::Leaf(leaf_key.slice(common + 1..), std::mem::take(leaf_value));
            children[rest.get_unchecked(common) as usize] =
                Node::Leaf(rest.slice(common + 1..), value);
            *node = wrap(rest.slice(..common), Node::Branch(Box::new(children)));
        }
        Node::Extension(ext_key, child) => {
            let common = ext_key.common_prefix_length(&rest);
            if common == ext_key.len() {
                return insert(child, source, key, path.join(ext_key), value);
            }
            let mut children: [Node; 16] = std::array::from_fn(|_| Node::Empty);
            let old_child = std::mem::replace(child.as_mut(), Node::Empty);
            children[ext_key.get_unchecked(common) as usize] =
                wrap(ext_key.slice(common + 1..), old_child);
            children[rest.get_unchecked(common) as usize] =
                Node::Leaf(rest.slice(common + 1..), value);
            *node = wrap(rest.slice(..common), Node::Branch(Box::new(children)));
        }
        Node::Branch(children) => {
            let nibble = rest.get_unchecked(0);
            let mut child_path = path;
            child_path.push(nibble);
            return insert(
                &mut children[nibble as usize],
                source,
                key,
                child_path,
                value,
            );
        }
    }
    Ok(())
}

/// `child` under an extension of `key`, or `child` itself for an empty key.
fn wrap(key: Nibbles, child: Node) -> Node {
    if key.is_empty() {
        child
    } else {
        Node::Extension(key, Box::new(child))
    }
}

fn remove(
    node: &mut Node,
    source: &impl NodeSource,
    key: &Nibbles,
    path: Nibbles,
) -> Result<(), TrieError> {
    node.reveal(source, &path)?;
    let rest = key.slice(path.len()..);
    match node {
        Node::Hash(_) => unreachable!("revealed above"),
        Node::Empty => {}
        Node::Leaf(leaf_key, _) => {
            if *leaf_key == rest {
                *node = Node::Empty;
            }
        }
        Node::Extension(ext_key, child) => {
            if !rest.starts_with(ext_key) {
                return Ok(());
            }
            let ext_key = *ext_key;
            remove(child, source, key, path.join(&ext_key))?;
            let child = std::mem::replace(child.as_mut(), Node::Empty);
            *node = match child {
                Node::Empty => Node::Empty,
                Node::Leaf(k, v) => Node::Leaf(ext_key.join(&k), v),
                Node::Extension(k, c) => Node::Extension(ext_key.join(&k), c),
                other => Node::Extension(ext_key, Box::new(other)),
            };
        }
        Node::Branch(children) => {
            let nibble = rest.get_unchecked(0);
            let mut child_path = path;
            child_path.push(nibble);
            remove(&mut children[nibble as usize], source, key, child_path)?;
            let mut left = children
                .iter()
                .enumerate()
                .filter(|(_, c)| !matches!(c, Node::Empty))
                .map(|(i, _)| i);
            let (Some(only), None) = (left.next(), left.next()) else {
                // Two children or more: the branch stays (none left cannot happen in a trie
                // whose branches have two children or more).
                if children.iter().all(|c| matches!(c, Node::Empty)) {
                    *node = Node::Empty;
                }
                return Ok(());
            };
            // One child left: the branch collapses into it, which must be revealed to know
            // whether its path can be merged.
            let mut sibling_path = path;
            sibling_path.push(only as u8);
            let mut sibling = std::mem::replace(&mut children[only], Node::Empty);
            sibling.reveal(source, &sibling_path)?;
            let prefix = Nibbles::from_nibbles_unchecked([only as u8]);
            *node = match sibling {
                Node::Leaf(k, v) => Node::Leaf(prefix.join(&k), v),
                Node::Extension(k, c) => Node::Extension(prefix.join(&k), c),
                other => Node::Extension(prefix, Box::new(other)),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;
    use alloy_trie::root::storage_root_unhashed;

    fn key(i: u64) -> B256 {
        keccak256(U256::from(i).to_be_bytes::<32>())
    }

    fn value(i: u64) -> Vec<u8> {
        alloy_rlp::encode(U256::from(i + 1))
    }

    #[test]
    fn matches_alloy_roots_through_inserts_and_deletions() {
        let source = NodeMap::default();
        let mut trie = SparseTrie::empty();
        for i in 0..300 {
            trie.update(&source, key(i).as_slice(), value(i)).unwrap();
        }
        let expected = |range: std::ops::Range<u64>| {
            storage_root_unhashed(range.map(|i| (B256::from(U256::from(i)), U256::from(i + 1))))
        };
        assert_eq!(trie.root(), expected(0..300));
        let (nodes, root) = trie.nodes();
        // A fresh sparse trie over the collected nodes reads, deletes and re-hashes the same.
        let mut sparse = SparseTrie::new(root);
        for i in 100..300 {
            assert_eq!(
                get(&nodes, root, key(i).as_slice()).unwrap(),
                Some(value(i))
            );
            sparse.remove(&nodes, key(i).as_slice()).unwrap();
        }
        assert_eq!(get(&nodes, root, key(1000).as_slice()).unwrap(), None);
        assert_eq!(sparse.root(), expected(0..100));
        for i in 0..100 {
            sparse.remove(&nodes, key(i).as_slice()).unwrap();
        }
        assert_eq!(sparse.root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn a_missing_node_is_named() {
        let source = NodeMap::default();
        let mut trie = SparseTrie::empty();
        for i in 0..20 {
            trie.update(&source, key(i).as_slice(), value(i)).unwrap();
        }
        let root = trie.root();
        match get(&source, root, key(3).as_slice()) {
            Err(TrieError::MissingNode { hash, path }) => {
                assert_eq!(hash, root);
                assert_eq!(path, "");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_collapse_needs_the_sibling_and_names_it() {
        let none = NodeMap::default();
        // Two keys apart from the first nibble: a root branch over two hashed leaves.
        let (a, b) = (0..)
            .map(|i| (key(0), key(i)))
            .find(|(a, b)| a[0] >> 4 != b[0] >> 4)
            .unwrap();
        let mut full = SparseTrie::empty();
        full.update(&none, a.as_slice(), value(0)).unwrap();
        full.update(&none, b.as_slice(), value(1)).unwrap();
        let (nodes, root) = full.nodes();
        assert_eq!(nodes.len(), 3);
        let leaf_b = LeafNode::new(Nibbles::unpack(b).slice(1..), value(1));
        let mut rlp = Vec::new();
        let hash_b = RlpNode::from_rlp({
            alloy_rlp::Encodable::encode(&leaf_b, &mut rlp);
            &rlp
        })
        .as_hash()
        .unwrap();
        let without_b = NodeMap::new(
            nodes
                .clone()
                .into_nodes()
                .filter(|n| keccak256(n) != hash_b)
                .collect::<Vec<_>>()
                .iter(),
        );
        // Reading `a` does not need `b`'s leaf; deleting `a` collapses the root into it.
        assert_eq!(get(&without_b, root, a.as_slice()).unwrap(), Some(value(0)));
        let mut sparse = SparseTrie::new(root);
        match sparse.remove(&without_b, a.as_slice()) {
            Err(TrieError::MissingNode { hash, path }) => {
                assert_eq!(hash, hash_b);
                assert_eq!(path, format!("{:x}", b[0] >> 4));
            }
            other => panic!("{other:?}"),
        }
        let mut sparse = SparseTrie::new(root);
        sparse.remove(&nodes, a.as_slice()).unwrap();
        let mut only_b = SparseTrie::empty();
        only_b.update(&none, b.as_slice(), value(1)).unwrap();
        assert_eq!(sparse.root(), only_b.root());
    }
}
