//! PTY sessions recorded as asciicast v2: a header line, then one JSON
//! array per event, `[seconds, "o"|"i"|"r", data]` (output, input,
//! resize "COLSxROWS"). Written to the bastion's disk as the session goes,
//! so a recording survives the control plane being away; its SHA-256 goes
//! into the session-end event of the well-log.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};

/// A recording is cut into parts of about this size, each a whole
/// asciicast file, so that each fits one upload to the control plane.
pub const PART_BYTES: u64 = 8 << 20;

#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: BufWriter<std::fs::File>,
    /// The SHA-256 of what was written, as it was written: a change made to
    /// the file on disk meanwhile does not go into the hash.
    digest: Sha256,
    started: Instant,
    written: u64,
    width: u32,
    height: u32,
    term: String,
    title: String,
    /// Bytes of an output UTF-8 sequence cut between two reads.
    output_tail: Vec<u8>,
    input_tail: Vec<u8>,
    failed: bool,
}

/// A finished recording.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

impl Recorder {
    pub fn create(
        dir: &Path,
        session: &str,
        width: u32,
        height: u32,
        term: &str,
        title: &str,
    ) -> std::io::Result<Recorder> {
        Self::create_at(dir, session, width, height, term, title, Instant::now())
    }

    fn create_at(
        dir: &Path,
        session: &str,
        width: u32,
        height: u32,
        term: &str,
        title: &str,
        started: Instant,
    ) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{session}.cast"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut file = BufWriter::new(file);
        let mut digest = Sha256::new();
        let header = json!({
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": time::OffsetDateTime::now_utc().unix_timestamp(),
            "title": title,
            "env": { "TERM": term },
        });
        let mut line = serde_json::to_vec(&header)?;
        line.push(b'\n');
        digest.update(&line);
        file.write_all(&line)?;
        Ok(Recorder {
            path,
            file,
            digest,
            started,
            written: 0,
            width,
            height,
            term: term.to_owned(),
            title: title.to_owned(),
            output_tail: Vec::new(),
            input_tail: Vec::new(),
            failed: false,
        })
    }

    pub fn output(&mut self, data: &[u8]) {
        let text = take_text(&mut self.output_tail, data);
        self.event("o", &text);
    }

    pub fn input(&mut self, data: &[u8]) {
        let text = take_text(&mut self.input_tail, data);
        self.event("i", &text);
    }

    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.event("r", &format!("{width}x{height}"));
    }

    /// Whether a write failed: the recording is incomplete.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Whether this part reached [`PART_BYTES`].
    pub fn is_full(&self) -> bool {
        self.written >= PART_BYTES
    }

    /// Finishes this part and starts the next, named `next`, whose times
    /// go on from this one's.
    pub fn next_part(self, dir: &Path, next: &str) -> std::io::Result<(Recorded, Recorder)> {
        let (width, height, started) = (self.width, self.height, self.started);
        let (term, title) = (self.term.clone(), self.title.clone());
        let done = self.finish()?;
        let next = Self::create_at(dir, next, width, height, &term, &title, started)?;
        Ok((done, next))
    }

    fn event(&mut self, code: &str, data: &str) {
        if data.is_empty() || self.failed {
            return;
        }
        let at = self.started.elapsed().as_secs_f64();
        let line = serde_json::to_vec(&json!([at, code, data])).map_err(std::io::Error::from);
        let written = line.and_then(|mut line| {
            line.push(b'\n');
            self.written += line.len() as u64;
            self.digest.update(&line);
            // Each event reaches the OS at once: a bastion killed mid-session
            // leaves a recording complete up to its last event.
            self.file.write_all(&line).and_then(|()| self.file.flush())
        });
        if let Err(err) = written {
            // The session goes on; the end event says the recording failed.
            tracing::error!(error = %err, path = %self.path.display(), "recording: write failed");
            self.failed = true;
        }
    }

    /// Flushes, syncs and hashes the file. An error if any write failed.
    pub fn finish(mut self) -> std::io::Result<Recorded> {
        let tail = std::mem::take(&mut self.output_tail);
        self.event("o", &String::from_utf8_lossy(&tail));
        if self.failed {
            return Err(std::io::Error::other("a write to the recording failed"));
        }
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let bytes = self.file.get_ref().metadata()?.len();
        Ok(Recorded {
            sha256: hex(&self.digest.finalize()),
            bytes,
            path: self.path,
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of `tail` + `data`, keeping back an incomplete UTF-8 sequence
/// at the end for the next read; invalid bytes become U+FFFD.
fn take_text(tail: &mut Vec<u8>, data: &[u8]) -> String {
    tail.extend_from_slice(data);
    let cut = match std::str::from_utf8(tail) {
        Ok(_) => tail.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => tail.len(),
    };
    let text = String::from_utf8_lossy(&tail[..cut]).into_owned();
    tail.drain(..cut);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_cut_between_reads_is_kept_whole() {
        let mut tail = Vec::new();
        let e_acute = "é".as_bytes();
        assert_eq!(take_text(&mut tail, &[b'a', e_acute[0]]), "a");
        assert_eq!(take_text(&mut tail, &[e_acute[1], b'b']), "éb");
        assert_eq!(take_text(&mut tail, &[0xff, b'c']), "\u{fffd}c");
    }

    #[test]
    fn a_long_recording_is_cut_into_whole_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut recorder =
            Recorder::create(dir.path(), "s1-0", 80, 24, "xterm", "alice on db-1").expect("made");
        let chunk = "y".repeat(64 * 1024);
        while !recorder.is_full() {
            recorder.output(chunk.as_bytes());
        }
        let (first, mut second) = recorder.next_part(dir.path(), "s1-1").expect("next part");
        second.output(b"after");
        let second = second.finish().expect("finished");
        assert!(first.bytes >= PART_BYTES);
        let text = std::fs::read_to_string(&second.path).expect("read");
        let mut lines = text.lines();
        let header: serde_json::Value =
            serde_json::from_str(lines.next().expect("header")).expect("json");
        assert_eq!(header["version"], 2);
        let event: serde_json::Value =
            serde_json::from_str(lines.next().expect("event")).expect("json");
        assert_eq!(event[2], "after");
        assert!(
            event[0].as_f64().expect("time") > 0.0,
            "times go on from the first part"
        );
    }

    #[test]
    fn an_asciicast_v2_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut recorder =
            Recorder::create(dir.path(), "s1", 80, 24, "xterm", "alice on db-1").expect("made");
        recorder.output(b"$ ");
        recorder.input(b"ls\r");
        recorder.resize(100, 30);
        let done = recorder.finish().expect("finished");
        let text = std::fs::read_to_string(&done.path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "$ ");
        assert_eq!(lines[2][1], "i");
        assert_eq!(lines[3][2], "100x30");
        assert_eq!(done.sha256, hex(&Sha256::digest(text.as_bytes())));
    }
}
