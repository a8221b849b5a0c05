//! The well-log's directory: segments, the per-entry offsets index, the tree
//! levels; opening it recovers from a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::LogError;
use crate::levels::Levels;
use crate::segment::{self, Record};

/// A new segment is started past this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;

pub fn segments_dir(root: &Path) -> PathBuf {
    root.join("segments")
}

pub fn tree_dir(root: &Path) -> PathBuf {
    root.join("tree")
}

pub fn offsets_path(root: &Path) -> PathBuf {
    root.join("offsets")
}

pub fn segment_path(root: &Path, first_seq: u64) -> PathBuf {
    segments_dir(root).join(format!("{first_seq:020}.seg"))
}

/// The first sequence numbers of the segments, sorted.
pub fn list_segments(root: &Path) -> io::Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(segments_dir(root))? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(first) = stem.parse::<u64>() {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Reads every record of one segment file, calling `each` with its byte
/// offset. Stops at the first invalid record and returns where the valid
/// part ends, with the error if there was one.
pub fn scan_segment(
    bytes: &[u8],
    first_seq: u64,
    mut each: impl FnMut(u64, &Record),
) -> (usize, Option<(u64, String)>) {
    let mut offset = segment::HEADER_LEN;
    let mut expected = first_seq;
    while offset < bytes.len() {
        match segment::decode_record(&bytes[offset..]) {
            Ok((record, used)) if record.seq == expected => {
                each(offset as u64, &record);
                offset += used;
                expected += 1;
            }
            Ok((record, _)) => {
                return (
                    offset,
                    Some((
                        expected,
                        format!(
                            "sequence number {} where {expected} was expected",
                            record.seq
                        ),
                    )),
                );
            }
            Err(err) => return (offset, Some((expected, err.to_string()))),
        }
    }
    (offset, None)
}

pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// What recovery found and set right.
#[derive(Debug)]
pub struct Recovered {
    pub firsts: Vec<u64>,
    pub size: u64,
    /// Bytes of an incomplete record removed from the end of the last segment.
    pub discarded_bytes: u64,
    pub last_segment_len: u64,
    pub levels: Levels,
}

/// Opens the directory after any stop, clean or not: trims a torn record at
/// the end of the last segment, and brings the offsets and tree files (which
/// are derived from the segments) in line with them.
pub fn recover(root: &Path) -> Result<Recovered, LogError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: io::Error| LogError::Io(format!("{what}: {e}"))
    };
    fs::create_dir_all(segments_dir(root)).map_err(io("creating the segments directory"))?;
    let mut firsts = list_segments(root).map_err(io("listing segments"))?;
    if firsts.is_empty() {
        create_segment(root, 0)?;
        firsts.push(0);
    }
    let last_first = *firsts.last().unwrap_or(&0);
    let last_path = segment_path(root, last_first);
    let mut bytes = read_file(&last_path).map_err(io("reading the last segment"))?;
    if bytes.len() < segment::HEADER_LEN {
        // Created but its header never reached the disk: write it again.
        bytes = segment::encode_header(last_first).to_vec();
        fs::write(&last_path, &bytes).map_err(io("rewriting a segment header"))?;
    }
    if segment::decode_header(&bytes) != Some(last_first) {
        return Err(LogError::Corrupt {
            seq: last_first,
            detail: format!("{} has a bad header", last_path.display()),
        });
    }
    let mut count = 0u64;
    let (valid, error) = scan_segment(&bytes, last_first, |_, _| count += 1);
    let discarded_bytes = (bytes.len() - valid) as u64;
    if let Some((seq, detail)) = error {
        // A crash can leave the end of the last batch half written: it was
        // never acknowledged (acknowledgement waits for fsync). The bytes are
        // kept aside rather than destroyed, in case they are damage instead;
        // entries a signed checkpoint covers are checked by the caller.
        let aside = last_path.with_extension(format!("torn-{seq}"));
        fs::write(&aside, &bytes[valid..]).map_err(io("keeping the torn end aside"))?;
        tracing::warn!(seq, discarded_bytes, %detail, aside = %aside.display(),
            "well-log: the end of the last segment is incomplete; it was moved aside");
        let file = OpenOptions::new()
            .write(true)
            .open(&last_path)
            .map_err(io("opening the last segment"))?;
        file.set_len(valid as u64)
            .map_err(io("trimming the last segment"))?;
        file.sync_all().map_err(io("syncing the last segment"))?;
    }
    let size = last_first + count;

    repair_offsets(root, &firsts, size)?;
    let mut levels = Levels::open(&tree_dir(root)).map_err(io("opening the tree"))?;
    let keep = levels.repair(size).map_err(io("repairing the tree"))?;
    if keep < size {
        for_each_record_from(root, &firsts, keep, |_, record| {
            levels.push(record.leaf).map_err(io("rebuilding the tree"))
        })?;
        levels.flush().map_err(io("writing the tree"))?;
    }
    Ok(Recovered {
        firsts,
        size,
        discarded_bytes,
        last_segment_len: valid as u64,
        levels,
    })
}

pub fn create_segment(root: &Path, first_seq: u64) -> Result<File, LogError> {
    let path = segment_path(root, first_seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| LogError::Io(format!("creating {}: {e}", path.display())))?;
    file.write_all(&segment::encode_header(first_seq))
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_dir(&segments_dir(root)))
        .map_err(|e| LogError::Io(format!("creating {}: {e}", path.display())))?;
    Ok(file)
}

fn repair_offsets(root: &Path, firsts: &[u64], size: u64) -> Result<(), LogError> {
    let path = offsets_path(root);
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(|e| LogError::Io(format!("opening {}: {e}", path.display())))?;
    let count = file.metadata().map(|m| m.len() / 8).unwrap_or(0);
    if count > size {
        file.set_len(size * 8)
            .map_err(|e| LogError::Io(format!("trimming offsets: {e}")))?;
    } else if count < size {
        let mut missing = Vec::new();
        for_each_record_from(root, firsts, count, |offset, _| {
            missing.extend_from_slice(&offset.to_le_bytes());
            Ok(())
        })?;
        (&file)
            .write_all(&missing)
            .map_err(|e| LogError::Io(format!("rebuilding offsets: {e}")))?;
    }
    Ok(())
}

/// Calls `each` with every record from `from` to the end, in order.
pub fn for_each_record_from(
    root: &Path,
    firsts: &[u64],
    from: u64,
    mut each: impl FnMut(u64, &Record) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let start = firsts
        .partition_point(|first| *first <= from)
        .saturating_sub(1);
    for first in &firsts[start..] {
        let path = segment_path(root, *first);
        let bytes =
            read_file(&path).map_err(|e| LogError::Io(format!("{}: {e}", path.display())))?;
        let mut result = Ok(());
        let (_, error) = scan_segment(&bytes, *first, |offset, record| {
            if result.is_ok() && record.seq >= from {
                result = each(offset, record);
            }
        });
        result?;
        if let Some((seq, detail)) = error {
            return Err(LogError::Corrupt { seq, detail });
        }
    }
    Ok(())
}

/// Where record `seq` starts in its segment.
pub fn record_offset(root: &Path, seq: u64) -> Result<u64, LogError> {
    let io = |e: io::Error| LogError::Io(format!("reading the offset of entry {seq}: {e}"));
    let offsets = File::open(offsets_path(root)).map_err(io)?;
    let mut offset = [0u8; 8];
    offsets.read_exact_at(&mut offset, seq * 8).map_err(io)?;
    Ok(u64::from_le_bytes(offset))
}

/// Reads one record by sequence number.
pub fn read_record(root: &Path, firsts: &[u64], seq: u64) -> Result<Record, LogError> {
    read_records(root, firsts, seq, seq + 1)?
        .pop()
        .ok_or(LogError::NotFound(seq))
}

/// Reads records `from..to`, each checked against its leaf hash: one read of
/// the offsets for the whole range, and each segment opened once.
pub fn read_records(
    root: &Path,
    firsts: &[u64],
    from: u64,
    to: u64,
) -> Result<Vec<Record>, LogError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let io = |e: io::Error| LogError::Io(format!("reading entries {from} to {to}: {e}"));
    let offsets_file = File::open(offsets_path(root)).map_err(io)?;
    let mut offsets =
        vec![0u8; usize::try_from((to - from) * 8).map_err(|_| LogError::NotFound(to))?];
    offsets_file
        .read_exact_at(&mut offsets, from * 8)
        .map_err(io)?;
    let mut open: Option<(u64, File)> = None;
    let mut records = Vec::with_capacity(offsets.len() / 8);
    for (seq, offset) in (from..to).zip(offsets.chunks_exact(8)) {
        let offset = u64::from_le_bytes(offset.try_into().map_err(|_| LogError::NotFound(seq))?);
        let index = firsts
            .partition_point(|first| *first <= seq)
            .saturating_sub(1);
        let first = *firsts.get(index).ok_or(LogError::NotFound(seq))?;
        if open.as_ref().is_none_or(|(current, _)| *current != first) {
            open = Some((first, File::open(segment_path(root, first)).map_err(io)?));
        }
        let Some((_, file)) = &open else {
            return Err(LogError::NotFound(seq));
        };
        let mut length = [0u8; 4];
        file.read_exact_at(&mut length, offset).map_err(io)?;
        let total = 4 + u32::from_le_bytes(length) as usize;
        if total > segment::RECORD_OVERHEAD + segment::MAX_PAYLOAD {
            return Err(LogError::Corrupt {
                seq,
                detail: "impossible record length".to_owned(),
            });
        }
        let mut bytes = vec![0u8; total];
        file.read_exact_at(&mut bytes, offset).map_err(io)?;
        let (record, _) = segment::decode_record(&bytes).map_err(|e| LogError::Corrupt {
            seq,
            detail: e.to_string(),
        })?;
        if record.seq != seq {
            return Err(LogError::Corrupt {
                seq,
                detail: format!("the offsets index points at entry {}", record.seq),
            });
        }
        records.push(record);
    }
    Ok(records)
}
