//! Offline verification, from the files alone: every record's framing,
//! sequence and leaf hash, the tree, and every stored checkpoint's signature
//! and root; with a checkpoint kept elsewhere, that the log only grew since.

use std::path::Path;

use rempart_merkle::checkpoint::{Checkpoint, NoteVerifier};
use rempart_merkle::{Hash, empty_root, node_hash};

use crate::checkpoints;
use crate::files::{self, list_segments, read_file, scan_segment, segment_path};

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub erased: u64,
    pub checkpoints: usize,
    pub root: Hash,
    /// The first problem: the first bad sequence number and what is wrong.
    pub problem: Option<(u64, String)>,
}

/// The right edge of a tree being built leaf by leaf: the roots of its
/// complete subtrees, so that a root costs O(log n) and memory stays small.
#[derive(Debug, Default)]
struct Frontier {
    nodes: Vec<(u64, Hash)>,
    size: u64,
}

impl Frontier {
    fn push(&mut self, leaf: Hash) {
        let mut node = (1u64, leaf);
        while let Some(&(width, left)) = self.nodes.last() {
            if width != node.0 {
                break;
            }
            self.nodes.pop();
            node = (width * 2, node_hash(&left, &node.1));
        }
        self.nodes.push(node);
        self.size += 1;
    }

    fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        match nodes.next() {
            None => empty_root(),
            Some(&(_, last)) => nodes.fold(last, |right, &(_, left)| node_hash(&left, &right)),
        }
    }
}

/// Verifies the well-log in `root`. `verifier` is the log's public key
/// (taken from `verifier.key` when the caller has no other copy);
/// `external` is a signed checkpoint kept outside the directory. `progress`
/// is called with the number of entries checked so far.
pub fn verify(
    root: &Path,
    verifier: &NoteVerifier,
    external: Option<&str>,
    mut progress: impl FnMut(u64),
) -> Result<Report, crate::LogError> {
    let stored = checkpoints::load(root, verifier);
    let mut report = Report {
        entries: 0,
        erased: 0,
        checkpoints: 0,
        root: empty_root(),
        problem: None,
    };
    let stored = match stored {
        Ok(stored) => stored,
        Err(err) => {
            report.problem = Some((0, err.to_string()));
            return Ok(report);
        }
    };
    report.checkpoints = stored.len();
    let external = match external {
        Some(note) => match verifier.verify_checkpoint(note) {
            Ok(checkpoint) => Some(checkpoint),
            Err(err) => {
                report.problem = Some((0, format!("the given checkpoint: {err}")));
                return Ok(report);
            }
        },
        None => None,
    };
    // Sizes at which the computed root must equal a signed one.
    let mut expected: Vec<(u64, Hash, String)> = stored
        .iter()
        .map(|c| (c.size, c.root, "a stored checkpoint".to_owned()))
        .collect();
    if let Some(Checkpoint { size, root, .. }) = &external {
        expected.push((*size, *root, "the given checkpoint".to_owned()));
    }
    expected.sort_by_key(|(size, _, _)| *size);
    let mut expected = expected.into_iter().peekable();

    let mut frontier = Frontier::default();
    let firsts =
        list_segments(root).map_err(|e| crate::LogError::Io(format!("listing segments: {e}")))?;
    let mut next = 0u64;
    let check = |frontier: &Frontier,
                 expected: &mut std::iter::Peekable<std::vec::IntoIter<(u64, Hash, String)>>|
     -> Option<(u64, String)> {
        while let Some((size, root, what)) = expected.peek() {
            if *size != frontier.size {
                break;
            }
            if frontier.root() != *root {
                return Some((
                    size.saturating_sub(1),
                    format!("the entries up to {size} do not match {what}"),
                ));
            }
            expected.next();
        }
        None
    };
    if let Some(problem) = check(&frontier, &mut expected) {
        report.problem = Some(problem);
        return Ok(report);
    }
    'segments: for first in &firsts {
        if *first != next {
            report.problem = Some((
                next,
                format!("segment {first} starts where {next} was expected"),
            ));
            break;
        }
        let path = segment_path(root, *first);
        let bytes = read_file(&path)
            .map_err(|e| crate::LogError::Io(format!("{}: {e}", path.display())))?;
        if crate::segment::decode_header(&bytes) != Some(*first) {
            report.problem = Some((next, format!("{} has a bad header", path.display())));
            break;
        }
        let mut problem = None;
        let (_, error) = scan_segment(&bytes, *first, |_, record| {
            if problem.is_some() {
                return;
            }
            frontier.push(record.leaf);
            if record.payload.is_none() {
                report.erased += 1;
            }
            next = record.seq + 1;
            if next.is_multiple_of(65_536) {
                progress(next);
            }
            problem = check(&frontier, &mut expected);
        });
        if let Some(problem) = problem.or(error) {
            report.problem = Some(problem);
            break 'segments;
        }
    }
    report.entries = frontier.size;
    report.root = frontier.root();
    progress(report.entries);
    if report.problem.is_none() {
        // The tree files must agree with the entries too.
        if let Some((size, _, what)) = expected.next() {
            report.problem = Some((
                report.entries,
                format!(
                    "{what} covers {size} entries, the log has {}: entries were removed",
                    report.entries
                ),
            ));
        } else if let Err(problem) = check_tree_files(root, &frontier) {
            report.problem = Some(problem);
        }
    }
    Ok(report)
}

fn check_tree_files(root: &Path, frontier: &Frontier) -> Result<(), (u64, String)> {
    if frontier.size == 0 {
        return Ok(());
    }
    let reader = crate::levels::TreeReader::open(&files::tree_dir(root), frontier.size)
        .map_err(|e| (0, format!("the tree files: {e}")))?;
    match reader.root(frontier.size) {
        Ok(stored) if stored == frontier.root() => Ok(()),
        Ok(_) => Err((
            frontier.size.saturating_sub(1),
            "the tree files do not match the entries (rebuilt at the next start)".to_owned(),
        )),
        Err(e) => Err((
            frontier.size.saturating_sub(1),
            format!("the tree files: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use rempart_merkle::{MemoryTree, leaf_hash};

    use super::*;

    #[test]
    fn frontier_roots_equal_the_full_tree_roots() {
        let mut frontier = Frontier::default();
        let mut tree = MemoryTree::default();
        assert_eq!(frontier.root(), empty_root());
        for i in 0..70u64 {
            let leaf = leaf_hash(&i.to_le_bytes());
            frontier.push(leaf);
            tree.push(leaf);
            assert_eq!(frontier.root(), tree.root(i + 1).unwrap());
        }
    }
}
