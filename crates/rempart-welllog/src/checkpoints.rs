//! Signed checkpoints, kept in `checkpoints.jsonl` (one JSON line each, with
//! the signed note), and the log's signing key.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rempart_merkle::Hash;
use rempart_merkle::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use serde::{Deserialize, Serialize};

use crate::LogError;

/// A checkpoint and the note that signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    pub note: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    size: u64,
    note: String,
}

pub fn checkpoints_path(root: &Path) -> PathBuf {
    root.join("checkpoints.jsonl")
}

pub fn signing_key_path(root: &Path) -> PathBuf {
    root.join("signing.key")
}

pub fn verifier_key_path(root: &Path) -> PathBuf {
    root.join("verifier.key")
}

/// The log's signing key: created on first use (mode 0600), and checked to
/// be for `origin` afterwards.
pub fn load_or_create_signer(root: &Path, origin: &str) -> Result<NoteSigner, LogError> {
    let path = signing_key_path(root);
    if path.exists() {
        let text = fs::read_to_string(&path)
            .map_err(|e| LogError::Io(format!("{}: {e}", path.display())))?;
        let signer = NoteSigner::from_text(&text)
            .map_err(|e| LogError::Io(format!("{}: {e}", path.display())))?;
        if signer.name() != origin {
            return Err(LogError::Io(format!(
                "the well-log was created with origin {:?}, not {origin:?}",
                signer.name()
            )));
        }
        return Ok(signer);
    }
    let signer = NoteSigner::generate(origin)
        .map_err(|e| LogError::Io(format!("origin {origin:?}: {e}")))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| LogError::Io(format!("{}: {e}", path.display())))?;
    file.write_all(format!("{}\n", signer.to_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| LogError::Io(format!("{}: {e}", path.display())))?;
    fs::write(
        verifier_key_path(root),
        format!("{}\n", signer.verifier().to_text()),
    )
    .map_err(|e| LogError::Io(format!("writing the verifier key: {e}")))?;
    Ok(signer)
}

/// Every stored checkpoint, oldest first. A last line cut short by a crash is
/// ignored; any other bad line is an error.
pub fn load(root: &Path, verifier: &NoteVerifier) -> Result<Vec<SignedCheckpoint>, LogError> {
    let path = checkpoints_path(root);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::Io(format!("{}: {e}", path.display()))),
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    let mut out = Vec::new();
    for (number, line) in complete.lines().enumerate() {
        let bad = |detail: String| LogError::Checkpoint {
            line: number + 1,
            detail,
        };
        let line: Line = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let checkpoint: Checkpoint = verifier
            .verify_checkpoint(&line.note)
            .map_err(|e| bad(e.to_string()))?;
        if checkpoint.size != line.size {
            return Err(bad("the size beside the note is not the note's".to_owned()));
        }
        out.push(SignedCheckpoint {
            size: checkpoint.size,
            root: checkpoint.root,
            note: line.note,
        });
    }
    Ok(out)
}

pub fn append(root: &Path, checkpoint: &SignedCheckpoint) -> Result<(), LogError> {
    let path = checkpoints_path(root);
    let mut line = serde_json::to_string(&Line {
        size: checkpoint.size,
        note: checkpoint.note.clone(),
    })
    .map_err(|e| LogError::Io(e.to_string()))?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| LogError::Io(format!("{}: {e}", path.display())))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| LogError::Io(format!("{}: {e}", path.display())))
}

pub fn sign(signer: &NoteSigner, size: u64, root: Hash) -> Result<SignedCheckpoint, LogError> {
    let body = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root,
    };
    let note = signer
        .sign(&body.to_text())
        .map_err(|e| LogError::Io(format!("signing a checkpoint: {e}")))?;
    Ok(SignedCheckpoint { size, root, note })
}
