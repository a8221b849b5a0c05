//! Checkpoints (C2SP tlog-checkpoint) signed as notes (C2SP signed-note).
//!
//! A checkpoint says "the log named ORIGIN has SIZE entries and this ROOT":
//!
//! ```text
//! rempart.example/welllog
//! 1234
//! QwA4l6eV4M8dcKbh+CnSsvsS8lN2mJ8Zsa5b3iYoEXs=
//!
//! — rempart.example/welllog Az3grl9Bsb+tXJGKfkmYfsrmBq0...
//! ```
//!
//! The signature line carries the key id (the first 4 bytes of
//! SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)) and an Ed25519 signature of the
//! text above the blank line. Keys are written in the same text forms as Go's
//! `golang.org/x/mod/sumdb/note` (`PRIVATE+KEY+name+id+key` and `name+id+key`),
//! so witnesses and third-party verifiers can use them unchanged.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::Hash;

/// The algorithm byte of Ed25519 keys in the signed-note format.
const ALG_ED25519: u8 = 0x01;
/// U+2014 EM DASH and a space start every signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a key, a note or a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("the note has no signature by {0}")]
    NoSignature(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

/// The signed statement of a log's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, one per line.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    /// Parses a checkpoint's text (extension lines after the root are
    /// allowed and ignored, as the format says).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty());
        let size = lines.next();
        let root = lines.next();
        let (Some(origin), Some(size), Some(root)) = (origin, size, root) else {
            return Err(NoteError::BadCheckpoint(
                "it needs origin, size and root lines",
            ));
        };
        let canonical = size == "0" || (!size.starts_with('0') && !size.is_empty());
        if !canonical || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NoteError::BadCheckpoint("the size is not a decimal number"));
        }
        let size = size
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("the size is too large"))?;
        let root = Hash::from_base64(root)
            .map_err(|_| NoteError::BadCheckpoint("the root is not a base64 SHA-256 hash"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALG_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    let bad = name.is_empty()
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        Err(NoteError::BadKey(
            "a key name is non-empty, without spaces or '+'",
        ))
    } else {
        Ok(())
    }
}

/// Splits `name+hex id+base64 key` (the verifier form; the signer form has a
/// `PRIVATE+KEY+` prefix) and checks the algorithm byte.
fn split_key(text: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected name+id+key"));
    };
    check_name(name)?;
    let id = u32::from_str_radix(id, 16)
        .ok()
        .filter(|_| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(NoteError::BadKey("the key id is 8 hex digits"))?
        .to_be_bytes();
    let key = STANDARD
        .decode(key)
        .map_err(|_| NoteError::BadKey("the key is not base64"))?;
    match key.split_first() {
        Some((&ALG_ED25519, rest)) if rest.len() == 32 => Ok((name, id, rest.to_vec())),
        _ => Err(NoteError::BadKey(
            "only 32-byte Ed25519 keys (algorithm 1) are supported",
        )),
    }
}

/// Signs notes; holds an Ed25519 private key.
pub struct NoteSigner {
    name: String,
    seed: [u8; 32],
    key_pair: Ed25519KeyPair,
    id: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key", &"<secret>")
            .finish()
    }
}

impl NoteSigner {
    /// A new key for `name`, from the operating system's random source.
    pub fn generate(name: &str) -> Result<NoteSigner, NoteError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| NoteError::BadKey("the system random source failed"))?;
        NoteSigner::from_seed(name, seed)
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let key_pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadKey("not an Ed25519 seed"))?;
        let id = key_id(name, key_pair.public_key().as_ref());
        Ok(NoteSigner {
            name: name.to_owned(),
            seed,
            key_pair,
            id,
        })
    }

    /// Reads `PRIVATE+KEY+name+id+key`, checking that the id matches the key.
    pub fn from_text(text: &str) -> Result<NoteSigner, NoteError> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("a signer key starts with PRIVATE+KEY+"))?;
        let (name, id, seed) = split_key(rest)?;
        let seed = <[u8; 32]>::try_from(seed.as_slice())
            .map_err(|_| NoteError::BadKey("an Ed25519 seed is 32 bytes"))?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if signer.id != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// The private key in Go's text form. A secret: store it mode 0600.
    pub fn to_text(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex(&self.id),
            STANDARD.encode(key)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public verifier key, `name+id+key`, to give to auditors and witnesses.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            public_key: self.key_pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `text` (non-empty lines, each ending in a newline) and returns
    /// the whole note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key_pair.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(signature.as_ref());
        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// Checks notes signed by one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public_key: Vec<u8>,
}

impl NoteVerifier {
    pub fn from_text(text: &str) -> Result<NoteVerifier, NoteError> {
        let (name, id, public_key) = split_key(text.trim_end())?;
        if key_id(name, &public_key) != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            id,
            public_key,
        })
    }

    pub fn to_text(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.public_key);
        format!("{}+{}+{}", self.name, hex(&self.id), STANDARD.encode(key))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `note` carries a valid signature by this key and returns its
    /// text. Signatures by other keys are allowed (witnesses add theirs).
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        check_text(text)?;
        if !signatures.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the signatures do not end with a newline",
            ));
        }
        for line in signatures.lines() {
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::Malformed(
                    "a signature line starts with an em dash",
                ))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or(NoteError::Malformed("a signature line is: name base64"))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            return UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(text.as_bytes(), &blob[4..])
                .map(|()| text)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::NoSignature(self.name.clone()))
    }

    /// Verifies a signed checkpoint and parses it.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(self.verify(note)?)
    }
}

/// The signed text: UTF-8, non-empty lines each ending in a newline, no
/// control characters besides the newlines.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(NoteError::Malformed("the text has a blank line"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("the text has control characters"));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of golang.org/x/mod/sumdb/note, the reference implementation.
    const GO_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    // The example of the C2SP signed-note specification.
    const SPEC_VERIFIER: &str =
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn signs_exactly_like_the_go_reference() {
        let signer = NoteSigner::from_text(GO_SIGNER).unwrap();
        assert_eq!(signer.to_text(), GO_SIGNER);
        assert_eq!(signer.verifier().to_text(), GO_VERIFIER);
        assert_eq!(signer.sign(GO_TEXT).unwrap(), GO_NOTE);
    }

    #[test]
    fn verifies_the_reference_notes() {
        let go = NoteVerifier::from_text(GO_VERIFIER).unwrap();
        assert_eq!(go.verify(GO_NOTE).unwrap(), GO_TEXT);
        let spec = NoteVerifier::from_text(SPEC_VERIFIER).unwrap();
        assert_eq!(
            spec.verify(SPEC_NOTE).unwrap(),
            "This is an example message.\n"
        );
        // Each key refuses the other's note.
        assert!(matches!(
            spec.verify(GO_NOTE),
            Err(NoteError::NoSignature(_))
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let go = NoteVerifier::from_text(GO_VERIFIER).unwrap();
        let changed = GO_NOTE.replace("problem,", "problem;");
        assert_eq!(
            go.verify(&changed),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        for malformed in [
            "",
            "text\n",
            "text\n\n",
            "\n\nx",
            "text\n\n- PeterNeumann AAAA\n",
        ] {
            assert!(go.verify(malformed).is_err(), "{malformed:?}");
        }
        // A wrong key id in the verifier key is refused.
        assert!(NoteVerifier::from_text(&GO_VERIFIER.replace("c74f20a3", "c74f20a4")).is_err());
    }

    #[test]
    fn checkpoints_round_trip_through_a_signed_note() {
        let signer = NoteSigner::generate("rempart.test/welllog").unwrap();
        let checkpoint = Checkpoint {
            origin: "rempart.test/welllog".into(),
            size: 42,
            root: crate::leaf_hash(b"x"),
        };
        let note = signer.sign(&checkpoint.to_text()).unwrap();
        let verifier = NoteVerifier::from_text(&signer.verifier().to_text()).unwrap();
        assert_eq!(verifier.verify_checkpoint(&note).unwrap(), checkpoint);
        let other = NoteSigner::generate("rempart.test/welllog")
            .unwrap()
            .verifier();
        assert!(other.verify_checkpoint(&note).is_err());
        assert!(!format!("{signer:?}").contains(&signer.to_text()[12..]));
    }

    #[test]
    fn checkpoint_bodies_are_strict() {
        let root = crate::leaf_hash(b"x").to_base64();
        for bad in [
            String::new(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n99999999999999999999999\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        let with_extension = format!("o\n0\n{root}\nextra line\n");
        assert_eq!(Checkpoint::parse(&with_extension).unwrap().size, 0);
    }
}
