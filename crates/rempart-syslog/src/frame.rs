//! Splitting a TCP or TLS stream into messages (RFC 6587 §3.4): a frame is
//! either `LENGTH SP MESSAGE` (octet counting) or a message ending in LF
//! (non-transparent framing). Each frame says which it uses by its first byte.

/// The largest message accepted; RFC 5425 asks receivers to take at least
/// 2048 octets and recommends 8192.
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is larger than {MAX_FRAME}")]
    TooLarge(usize),
    #[error("an octet count is not a number: {0:?}")]
    BadCount(String),
}

/// Collects bytes as they arrive and yields whole frames.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    /// Where the unread bytes start: frames are consumed by moving this, and
    /// the buffer is compacted once per `push`, not once per frame.
    start: usize,
    /// Bytes of an oversized LF frame still to drop, up to its LF.
    skipping: bool,
    /// How far (from `start`) the unread bytes are known to hold no LF: a
    /// line that arrives a byte at a time is scanned once, not once per byte.
    searched: usize,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    fn unread(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        self.searched = 0;
    }

    fn clear(&mut self) {
        self.buffer.clear();
        self.start = 0;
        self.searched = 0;
    }

    /// The next complete frame, an error for a frame that cannot be
    /// accepted (its bytes are dropped), or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            if self.skipping {
                match self.unread().iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        self.consume(end + 1);
                        self.skipping = false;
                    }
                    None => {
                        self.clear();
                        return None;
                    }
                }
            }
            let first = *self.unread().first()?;
            if first == b'\n' || first == b'\r' {
                let blank = self
                    .unread()
                    .iter()
                    .take_while(|b| **b == b'\n' || **b == b'\r')
                    .count();
                self.consume(blank);
                continue;
            }
            if first.is_ascii_digit() {
                return self.octet_counted();
            }
            return self.lf_terminated();
        }
    }

    fn octet_counted(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let unread = self.unread();
        let digits = unread.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == unread.len() {
            if digits > 7 {
                let count = String::from_utf8_lossy(unread).into_owned();
                self.clear();
                return Some(Err(FrameError::BadCount(count)));
            }
            return None; // The count is still arriving.
        }
        if unread[digits] != b' ' || digits > 7 {
            // Not a count after all: treat the frame as LF-terminated text
            // (some senders start a bare message with a digit).
            return self.lf_terminated();
        }
        let count: usize = std::str::from_utf8(&unread[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(usize::MAX);
        if count > MAX_FRAME {
            self.clear();
            return Some(Err(FrameError::TooLarge(count)));
        }
        let body = digits + 1;
        if unread.len() < body + count {
            return None;
        }
        let frame = unread[body..body + count].to_vec();
        self.consume(body + count);
        Some(Ok(frame))
    }

    fn lf_terminated(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let unread = self.unread();
        let from = self.searched.min(unread.len());
        let found = unread[from..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| from + i);
        match found {
            Some(end) if end > MAX_FRAME => {
                self.consume(end + 1);
                Some(Err(FrameError::TooLarge(end)))
            }
            Some(end) => {
                let mut line = &unread[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let frame = line.to_vec();
                self.consume(end + 1);
                Some(Ok(frame))
            }
            None if unread.len() > MAX_FRAME => {
                let len = unread.len();
                self.clear();
                self.skipping = true;
                Some(Err(FrameError::TooLarge(len)))
            }
            None => {
                self.searched = unread.len();
                None
            }
        }
    }

    /// What is left when the stream ends: a last message without its LF.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = self.unread().to_vec();
        let skipping = self.skipping;
        self.clear();
        (!rest.is_empty() && !skipping).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(frame) = framer.next_frame() {
                out.push(frame);
            }
        }
        out.extend(framer.finish().map(Ok));
        out
    }

    #[test]
    fn both_framings_in_any_chunking() {
        let stream: &[u8] = b"5 hello<13>1 - - - - - - lf one\n3 abc\r\nlast";
        let expected = vec![
            Ok(b"hello".to_vec()),
            Ok(b"<13>1 - - - - - - lf one".to_vec()),
            Ok(b"abc".to_vec()),
            Ok(b"last".to_vec()),
        ];
        assert_eq!(frames(&[stream]), expected);
        // Byte by byte gives the same frames.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytes), expected);
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors_not_stalls() {
        let big = format!("{} x", MAX_FRAME + 1);
        assert_eq!(
            frames(&[big.as_bytes()])[0],
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
        let long_line = vec![b'a'; MAX_FRAME + 10];
        let result = frames(&[&long_line, b"aaa\nnext\n"]);
        assert!(matches!(result[0], Err(FrameError::TooLarge(_))));
        assert_eq!(result[1], Ok(b"next".to_vec()));
        // A count too long to be one: the line is a message, kept whole.
        assert_eq!(
            frames(&[b"123456789012 x\n"])[0],
            Ok(b"123456789012 x".to_vec())
        );
        assert!(matches!(
            frames(&[b"123456789012345"])[0],
            Err(FrameError::BadCount(_))
        ));
    }
}
