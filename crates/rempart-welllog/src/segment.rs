//! Segment files: the well-log's entries, append-only, each record carrying
//! its own leaf hash so that a reader checks every record it reads.
//!
//! ```text
//! file   = magic "RMPTSEG1" ‖ first_seq (u64 LE) ‖ record*
//! record = length (u32 LE, of what follows) ‖ seq (u64 LE) ‖ leaf hash (32)
//!          ‖ flags (u8: 0 payload, 1 erased) ‖ payload
//! ```
//!
//! The leaf hash is SHA-256(0x00 ‖ payload) (RFC 9162): the record's checksum
//! and its leaf in the Merkle tree at once. An erased record keeps its leaf
//! hash and its length, its payload overwritten with zeros: every proof stays
//! valid, and every other record stays where it was.

use rempart_merkle::{Hash, leaf_hash};

pub const MAGIC: &[u8; 8] = b"RMPTSEG1";
pub const HEADER_LEN: usize = 16;
/// length + seq + leaf hash + flags.
pub const RECORD_OVERHEAD: usize = 4 + 8 + 32 + 1;
/// No entry is larger than this (the API refuses larger ones first).
pub const MAX_PAYLOAD: usize = 1 << 20;

const FLAG_ERASED: u8 = 1;

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub leaf: Hash,
    /// `None` once erased (retention or an erase order).
    pub payload: Option<Vec<u8>>,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record is cut short: {needed} bytes needed, {available} left")]
    Truncated { needed: usize, available: usize },
    #[error("record length {0} is impossible")]
    BadLength(usize),
    #[error("unknown record flags {0:#x}")]
    BadFlags(u8),
    #[error("the payload does not match the record's leaf hash")]
    HashMismatch,
}

pub fn encode_header(first_seq: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&first_seq.to_le_bytes());
    header
}

pub fn decode_header(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[8..16]);
    Some(u64::from_le_bytes(seq))
}

/// Appends the encoding of a record with `payload` to `out`; returns its leaf.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) -> Hash {
    let leaf = leaf_hash(payload);
    encode_parts(out, seq, &leaf, Some(payload));
    leaf
}

/// Where, inside an encoded record, the flags byte is (the payload follows).
pub const FLAGS_OFFSET: usize = 4 + 8 + 32;

/// The bytes that erase a record's payload of `len` bytes in place: the
/// erased flag, then zeros.
pub fn erasure(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; 1 + len];
    bytes[0] = FLAG_ERASED;
    bytes
}

pub fn encode_parts(out: &mut Vec<u8>, seq: u64, leaf: &Hash, payload: Option<&[u8]>) {
    let body = payload.map_or(0, <[u8]>::len);
    let length = (RECORD_OVERHEAD - 4 + body) as u32;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&leaf.0);
    match payload {
        Some(payload) => {
            out.push(0);
            out.extend_from_slice(payload);
        }
        None => out.push(FLAG_ERASED),
    }
}

/// Decodes the record at the start of `bytes`, checking its payload against
/// its leaf hash. Returns the record and how many bytes it used.
pub fn decode_record(bytes: &[u8]) -> Result<(Record, usize), RecordError> {
    if bytes.len() < 4 {
        return Err(RecordError::Truncated {
            needed: 4,
            available: bytes.len(),
        });
    }
    let length = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if !(RECORD_OVERHEAD - 4..=RECORD_OVERHEAD - 4 + MAX_PAYLOAD).contains(&length) {
        return Err(RecordError::BadLength(length));
    }
    let total = 4 + length;
    if bytes.len() < total {
        return Err(RecordError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[4..12]);
    let leaf = Hash::from_slice(&bytes[12..44]).map_err(|_| RecordError::BadLength(length))?;
    let payload = &bytes[45..total];
    let payload = match bytes[44] {
        0 => {
            if leaf_hash(payload) != leaf {
                return Err(RecordError::HashMismatch);
            }
            Some(payload.to_vec())
        }
        FLAG_ERASED if payload.iter().all(|b| *b == 0) => None,
        flags => return Err(RecordError::BadFlags(flags)),
    };
    Ok((
        Record {
            seq: u64::from_le_bytes(seq),
            leaf,
            payload,
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let mut bytes = Vec::new();
        let leaf = encode_record(&mut bytes, 7, b"{\"kind\":\"x\"}");
        let (record, used) = decode_record(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(record.seq, 7);
        assert_eq!(record.leaf, leaf);
        assert_eq!(record.payload.as_deref(), Some(&b"{\"kind\":\"x\"}"[..]));

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            decode_record(&flipped).unwrap_err(),
            RecordError::HashMismatch
        );
        assert!(matches!(
            decode_record(&bytes[..bytes.len() - 1]),
            Err(RecordError::Truncated { .. })
        ));
        assert!(matches!(
            decode_record(&[0xff; 8]),
            Err(RecordError::BadLength(_))
        ));

        let mut erased = Vec::new();
        encode_parts(&mut erased, 7, &leaf, None);
        let (record, _) = decode_record(&erased).unwrap();
        assert_eq!((record.leaf, record.payload), (leaf, None));

        // Erased in place: same length, flag set, payload zeroed.
        let mut in_place = bytes.clone();
        let payload_len = bytes.len() - RECORD_OVERHEAD;
        in_place.splice(FLAGS_OFFSET.., erasure(payload_len));
        let (record, used) = decode_record(&in_place).unwrap();
        assert_eq!(
            (record.leaf, record.payload, used),
            (leaf, None, bytes.len())
        );
        // An "erased" record that still holds bytes is damage, not erasure.
        let last = in_place.len() - 1;
        in_place[last] = 1;
        assert!(decode_record(&in_place).is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(decode_header(&encode_header(42)), Some(42));
        assert_eq!(decode_header(b"RMPTSEG2\0\0\0\0\0\0\0\0"), None);
        assert_eq!(decode_header(b"short"), None);
    }
}
