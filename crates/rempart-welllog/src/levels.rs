//! The Merkle tree on disk: one file per level, each the concatenation of the
//! 32-byte hashes of the complete, aligned subtrees of that level (level 0
//! holds the leaves, level k the subtrees of 2^k leaves). A proof or a root
//! then costs O(log n) reads, whatever the size of the log.
//!
//! The files are derived data: the segments hold every leaf hash, so after a
//! crash [`Levels::repair`] trims or completes them from the segments.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rempart_merkle::{Hash, ProofError, SubtreeSource, empty_root, node_hash};

const HASH: u64 = 32;
const MAX_LEVELS: usize = 64;

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("level-{level:02}"))
}

/// The writer's side: appends leaves and the nodes they complete.
#[derive(Debug)]
pub struct Levels {
    dir: PathBuf,
    files: Vec<File>,
    counts: Vec<u64>,
    /// Per level, the left node waiting for its right sibling.
    frontier: Vec<Option<Hash>>,
    /// Per level, bytes appended since the last flush.
    pending: Vec<Vec<u8>>,
}

impl Levels {
    pub fn open(dir: &Path) -> io::Result<Levels> {
        std::fs::create_dir_all(dir)?;
        let mut levels = Levels {
            dir: dir.to_owned(),
            files: Vec::new(),
            counts: Vec::new(),
            frontier: Vec::new(),
            pending: Vec::new(),
        };
        while levels.files.len() < MAX_LEVELS && level_path(dir, levels.files.len()).exists() {
            levels.add_level()?;
        }
        if levels.files.is_empty() {
            levels.add_level()?;
        }
        levels.rebuild_frontier()?;
        Ok(levels)
    }

    fn add_level(&mut self) -> io::Result<()> {
        let path = level_path(&self.dir, self.files.len());
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        self.counts.push(file.metadata()?.len() / HASH);
        self.files.push(file);
        self.frontier.push(None);
        self.pending.push(Vec::new());
        Ok(())
    }

    fn rebuild_frontier(&mut self) -> io::Result<()> {
        for level in 0..self.files.len() {
            let count = self.counts[level];
            self.frontier[level] = if count % 2 == 1 {
                Some(read_hash(&self.files[level], count - 1)?)
            } else {
                None
            };
        }
        Ok(())
    }

    /// Appends a leaf and every node it completes (in memory until `flush`).
    pub fn push(&mut self, leaf: Hash) -> io::Result<()> {
        let mut level = 0;
        let mut current = leaf;
        loop {
            if level == self.files.len() {
                self.add_level()?;
            }
            self.pending[level].extend_from_slice(&current.0);
            self.counts[level] += 1;
            match self.frontier[level].take() {
                Some(left) => {
                    current = node_hash(&left, &current);
                    level += 1;
                }
                None => {
                    self.frontier[level] = Some(current);
                    return Ok(());
                }
            }
        }
    }

    /// Writes what `push` gathered. The files are not synced: they can be
    /// rebuilt from the segments, which are.
    pub fn flush(&mut self) -> io::Result<()> {
        for (file, pending) in self.files.iter_mut().zip(&mut self.pending) {
            if !pending.is_empty() {
                file.write_all(pending)?;
                pending.clear();
            }
        }
        Ok(())
    }

    /// Makes the files agree with the `leaves` leaf count of the segments:
    /// trims what goes beyond the last consistent point and returns the
    /// number of leaves kept; the caller pushes the missing ones again.
    pub fn repair(&mut self, leaves: u64) -> io::Result<u64> {
        let mut keep = self.counts[0].min(leaves);
        for level in 1..self.files.len() {
            if self.counts[level] < keep >> level {
                keep = self.counts[level] << level;
            }
        }
        for level in 0..self.files.len() {
            let wanted = keep >> level;
            if self.counts[level] != wanted {
                self.files[level].set_len(wanted * HASH)?;
                self.counts[level] = wanted;
            }
        }
        self.rebuild_frontier()?;
        Ok(keep)
    }

    pub fn sync(&self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

fn read_hash(file: &File, index: u64) -> io::Result<Hash> {
    let mut bytes = [0u8; 32];
    file.read_exact_at(&mut bytes, index * HASH)?;
    Ok(Hash(bytes))
}

/// A reader of the level files, for roots and proofs of any size up to
/// `size` (which the caller knows to be written).
#[derive(Debug)]
pub struct TreeReader {
    files: Vec<File>,
    size: u64,
}

impl TreeReader {
    pub fn open(dir: &Path, size: u64) -> io::Result<TreeReader> {
        let mut files = Vec::new();
        let mut level = 0;
        // Level k is needed only when the tree has at least 2^k leaves.
        while level < MAX_LEVELS && (size >> level) > 0 {
            files.push(File::open(level_path(dir, level))?);
            level += 1;
        }
        Ok(TreeReader { files, size })
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }
}

impl SubtreeSource for TreeReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn subtree(&self, begin: u64, end: u64) -> Result<Hash, ProofError> {
        if begin >= end || end > self.size {
            return Err(ProofError::Source(format!("no subtree {begin}..{end}")));
        }
        let width = end - begin;
        if width.is_power_of_two() && begin.is_multiple_of(width) {
            let level = width.trailing_zeros() as usize;
            let file = self
                .files
                .get(level)
                .ok_or_else(|| ProofError::Source(format!("no level {level}")))?;
            return read_hash(file, begin >> level)
                .map_err(|e| ProofError::Source(format!("level {level}: {e}")));
        }
        let split = 1u64 << (63 - (width - 1).leading_zeros());
        Ok(node_hash(
            &self.subtree(begin, begin + split)?,
            &self.subtree(begin + split, end)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use rempart_merkle::{MemoryTree, inclusion_proof, leaf_hash};

    use super::*;

    #[test]
    fn stored_levels_give_the_same_roots_and_proofs_as_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut levels = Levels::open(dir.path()).unwrap();
        let mut memory = MemoryTree::default();
        for i in 0..100u64 {
            let leaf = leaf_hash(&i.to_le_bytes());
            levels.push(leaf).unwrap();
            memory.push(leaf);
            if i % 7 == 0 {
                levels.flush().unwrap();
            }
        }
        levels.flush().unwrap();
        let reader = TreeReader::open(dir.path(), 100).unwrap();
        for size in 1..=100 {
            assert_eq!(
                reader.root(size).unwrap(),
                memory.root(size).unwrap(),
                "size {size}"
            );
        }
        assert_eq!(
            inclusion_proof(&reader, 37, 100).unwrap(),
            inclusion_proof(&memory, 37, 100).unwrap()
        );
    }

    #[test]
    fn repair_trims_to_a_consistent_point_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut levels = Levels::open(dir.path()).unwrap();
        for i in 0..10u64 {
            levels.push(leaf_hash(&i.to_le_bytes())).unwrap();
        }
        levels.flush().unwrap();
        // A crash lost level 1's last node: 10 leaves, level 1 has 4 of 5.
        let level1 = level_path(dir.path(), 1);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&level1)
            .unwrap()
            .set_len(4 * 32)
            .unwrap();
        let mut levels = Levels::open(dir.path()).unwrap();
        assert_eq!(levels.repair(10).unwrap(), 8);
        for i in 8..10u64 {
            levels.push(leaf_hash(&i.to_le_bytes())).unwrap();
        }
        levels.flush().unwrap();
        let memory =
            MemoryTree::from_leaves((0..10u64).map(|i| leaf_hash(&i.to_le_bytes())).collect());
        let reader = TreeReader::open(dir.path(), 10).unwrap();
        assert_eq!(reader.root(10).unwrap(), memory.root(10).unwrap());
    }
}
