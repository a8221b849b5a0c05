//! The one writer: a thread that takes appends from a bounded queue, gives
//! them sequence numbers, and commits them in groups (one write and one
//! fsync for everything waiting), then acknowledges.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot, watch};

use rempart_merkle::{Hash, leaf_hash};

use crate::files::{self, SEGMENT_BYTES};
use crate::levels::Levels;
use crate::segment;
use crate::{LogError, Record};

/// Entries committed in one group at most.
const MAX_GROUP_ENTRIES: usize = 65_536;

/// A batch of canonical entries to append; answered with the sequence
/// number of its first entry once all of it is on disk.
#[derive(Debug)]
pub struct Append {
    pub payloads: Vec<Vec<u8>>,
    pub reply: oneshot::Sender<Result<u64, LogError>>,
}

/// What the writer is asked to do. Erasures go through the writer too, so
/// that exactly one thread ever writes to the log's files.
#[derive(Debug)]
pub enum Command {
    Append(Append),
    /// Erase these entries' payloads in place (their leaves stay); answered
    /// with how many were erased now (already erased ones count zero).
    Erase {
        seqs: Vec<u64>,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
    /// Append records copied from the shared log (a node's copy of it);
    /// answered with the new size.
    Replicate {
        records: Vec<Record>,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
}

/// Records encoded and not yet written.
#[derive(Default)]
struct Staged {
    buffer: Vec<u8>,
    offsets: Vec<u8>,
}

pub struct Writer {
    pub root: PathBuf,
    pub segment: File,
    pub segment_first: u64,
    pub segment_len: u64,
    pub offsets: File,
    pub levels: Levels,
    pub next: u64,
    pub firsts: Arc<RwLock<Vec<u64>>>,
}

impl Writer {
    pub fn open_tail(
        root: PathBuf,
        recovered: files::Recovered,
        firsts: Arc<RwLock<Vec<u64>>>,
    ) -> Result<Writer, LogError> {
        let first = *recovered.firsts.last().unwrap_or(&0);
        let path = files::segment_path(&root, first);
        let io = |e: std::io::Error| LogError::Io(format!("opening the log for writing: {e}"));
        let segment = OpenOptions::new().append(true).open(&path).map_err(io)?;
        let offsets = OpenOptions::new()
            .append(true)
            .open(files::offsets_path(&root))
            .map_err(io)?;
        Ok(Writer {
            root,
            segment,
            segment_first: first,
            segment_len: recovered.last_segment_len,
            offsets,
            levels: recovered.levels,
            next: recovered.size,
            firsts,
        })
    }

    /// Writes a group; returns the first sequence number of each append.
    fn commit(&mut self, group: &[Append]) -> Result<Vec<u64>, LogError> {
        let mut staged = Staged::default();
        let mut starts = Vec::with_capacity(group.len());
        for append in group {
            starts.push(self.next);
            for payload in &append.payloads {
                self.stage(&mut staged, leaf_hash(payload), Some(payload))?;
            }
        }
        self.finish(staged)?;
        Ok(starts)
    }

    /// Checks records copied from the shared log before anything is written:
    /// the next entries, one after the other, each payload matching its leaf.
    fn check_copy(&self, records: &[Record]) -> Result<(), LogError> {
        for (i, record) in records.iter().enumerate() {
            let expected = self.next + i as u64;
            if record.seq != expected {
                return Err(LogError::Corrupt {
                    seq: expected,
                    detail: format!(
                        "the copy expected entry {expected} and was given {}",
                        record.seq
                    ),
                });
            }
            if let Some(payload) = &record.payload
                && leaf_hash(payload) != record.leaf
            {
                return Err(LogError::Corrupt {
                    seq: record.seq,
                    detail: "the payload does not match its leaf hash".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Writes records that passed [`Writer::check_copy`], whose leaves and
    /// sequence numbers are given; returns the new size.
    fn replicate(&mut self, records: &[Record]) -> Result<u64, LogError> {
        let mut staged = Staged::default();
        for record in records {
            self.stage(&mut staged, record.leaf, record.payload.as_deref())?;
        }
        self.finish(staged)?;
        Ok(self.next)
    }

    /// Encodes one record after those staged, starting a new segment first
    /// when it would not fit.
    fn stage(
        &mut self,
        staged: &mut Staged,
        leaf: Hash,
        payload: Option<&[u8]>,
    ) -> Result<(), LogError> {
        let io = |what: &'static str| move |e: std::io::Error| LogError::Io(format!("{what}: {e}"));
        let record_len = (segment::RECORD_OVERHEAD + payload.map_or(0, <[u8]>::len)) as u64;
        let position = self.segment_len + staged.buffer.len() as u64;
        if position + record_len > SEGMENT_BYTES && position > segment::HEADER_LEN as u64 {
            self.segment
                .write_all(&staged.buffer)
                .map_err(io("writing a segment"))?;
            self.segment.sync_data().map_err(io("syncing a segment"))?;
            self.segment_len += staged.buffer.len() as u64;
            staged.buffer.clear();
            self.start_segment()?;
        }
        let offset = self.segment_len + staged.buffer.len() as u64;
        staged.offsets.extend_from_slice(&offset.to_le_bytes());
        segment::encode_parts(&mut staged.buffer, self.next, &leaf, payload);
        self.levels.push(leaf).map_err(io("extending the tree"))?;
        self.next += 1;
        Ok(())
    }

    /// Writes what is staged and makes it durable.
    fn finish(&mut self, staged: Staged) -> Result<(), LogError> {
        let io = |what: &'static str| move |e: std::io::Error| LogError::Io(format!("{what}: {e}"));
        self.segment
            .write_all(&staged.buffer)
            .map_err(io("writing a segment"))?;
        // The acknowledgement's promise: the entries are on disk.
        self.segment.sync_data().map_err(io("syncing a segment"))?;
        self.segment_len += staged.buffer.len() as u64;
        self.offsets
            .write_all(&staged.offsets)
            .map_err(io("writing offsets"))?;
        self.levels.flush().map_err(io("writing the tree"))?;
        Ok(())
    }

    fn start_segment(&mut self) -> Result<(), LogError> {
        self.segment = files::create_segment(&self.root, self.next)?;
        self.segment_first = self.next;
        self.segment_len = segment::HEADER_LEN as u64;
        self.firsts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.next);
        Ok(())
    }

    /// Erases payloads in place: flag and zeros over the payload, same
    /// length, then fsync. Only durable entries can be erased.
    fn erase(&mut self, seqs: &[u64]) -> Result<u64, LogError> {
        use std::os::unix::fs::FileExt;
        let firsts = self
            .firsts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut touched: Vec<File> = Vec::new();
        let mut erased = 0;
        for &seq in seqs {
            if seq >= self.next {
                return Err(LogError::NotFound(seq));
            }
            let record = files::read_record(&self.root, &firsts, seq)?;
            let Some(payload) = record.payload else {
                continue;
            };
            let offset = files::record_offset(&self.root, seq)?;
            let index = firsts
                .partition_point(|first| *first <= seq)
                .saturating_sub(1);
            let path = files::segment_path(&self.root, firsts[index]);
            let io = |e: std::io::Error| LogError::Io(format!("erasing entry {seq}: {e}"));
            let file = OpenOptions::new().write(true).open(&path).map_err(io)?;
            file.write_all_at(
                &segment::erasure(payload.len()),
                offset + segment::FLAGS_OFFSET as u64,
            )
            .map_err(io)?;
            touched.push(file);
            erased += 1;
        }
        for file in touched {
            file.sync_data()
                .map_err(|e| LogError::Io(format!("syncing an erasure: {e}")))?;
        }
        Ok(erased)
    }

    /// Runs until every sender is gone. A failed write stops all later ones:
    /// after an I/O error the files' state is unknown until recovery runs at
    /// the next start, so the log refuses rather than guesses.
    pub fn run(mut self, mut queue: mpsc::Receiver<Command>, durable: watch::Sender<u64>) {
        let mut failed: Option<LogError> = None;
        let mut waiting: Option<Command> = None;
        loop {
            let first = match waiting.take() {
                Some(command) => command,
                None => match queue.blocking_recv() {
                    Some(command) => command,
                    None => break,
                },
            };
            let first = match first {
                Command::Erase { seqs, reply } => {
                    let outcome = match &failed {
                        Some(err) => Err(err.clone()),
                        None => self.erase(&seqs),
                    };
                    let _ = reply.send(outcome);
                    continue;
                }
                Command::Replicate { records, reply } => {
                    let outcome = match &failed {
                        Some(err) => Err(err.clone()),
                        // A refused copy leaves the log as it was; a failed
                        // write leaves it unknown, like a failed append.
                        None => self.check_copy(&records).and_then(|()| {
                            self.replicate(&records).inspect_err(|err| {
                                tracing::error!(error = %err, "well-log: a write failed; refusing appends until restart");
                                failed = Some(err.clone());
                            })
                        }),
                    };
                    if let Ok(size) = outcome {
                        let _ = durable.send(size);
                    }
                    let _ = reply.send(outcome);
                    continue;
                }
                Command::Append(append) => append,
            };
            let mut group = vec![first];
            let mut entries = group[0].payloads.len();
            while entries < MAX_GROUP_ENTRIES {
                match queue.try_recv() {
                    Ok(Command::Append(more)) => {
                        entries += more.payloads.len();
                        group.push(more);
                    }
                    Ok(erase) => {
                        // Appends queued before it are committed first.
                        waiting = Some(erase);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let outcome = match &failed {
                Some(err) => Err(err.clone()),
                None => self.commit(&group),
            };
            match outcome {
                Ok(starts) => {
                    let _ = durable.send(self.next);
                    for (append, start) in group.into_iter().zip(starts) {
                        let _ = append.reply.send(Ok(start));
                    }
                }
                Err(err) => {
                    if failed.is_none() {
                        tracing::error!(error = %err, "well-log: a write failed; refusing appends until restart");
                    }
                    failed = Some(err.clone());
                    for append in group {
                        let _ = append.reply.send(Err(err.clone()));
                    }
                }
            }
        }
        if let Err(e) = self.levels.sync() {
            tracing::warn!(error = %e, "well-log: syncing the tree at shutdown");
        }
    }
}
