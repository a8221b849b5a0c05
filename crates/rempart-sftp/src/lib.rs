//! What an SFTP session does, read from the packets passing through the
//! bastion (SFTP v3, draft-ietf-secsh-filexfer-02, as OpenSSH speaks it):
//! each file operation becomes an event once the server answered it, with
//! its path and outcome. Reads and writes are counted per open file and
//! reported when it is closed, so a large transfer is one event, not one
//! per packet.
//!
//! The bytes come from the user and the target: a packet that cannot be
//! parsed is an error, and the relay ends the channel (an SFTP session
//! that cannot be logged does not go on).
#![forbid(unsafe_code)]

use std::collections::HashMap;

/// The largest packet accepted: OpenSSH's sftp-server refuses above
/// 256 KiB; a little more leaves room for other servers' headers.
pub const MAX_PACKET: usize = 256 * 1024 + 1024;
/// Requests waiting for an answer, and files open, at most (OpenSSH's
/// client keeps 64 requests in flight).
const MAX_PENDING: usize = 1024;
/// The longest path noted (Linux's PATH_MAX): with the limits above, what
/// one channel holds stays under a few MiB.
pub const MAX_PATH: usize = 4096;

const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const OPENDIR: u8 = 11;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const RENAME: u8 = 18;
const SYMLINK: u8 = 20;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const EXTENDED: u8 = 200;

const PFLAG_READ: u32 = 0x1;
const PFLAG_WRITE: u32 = 0x2;
const PFLAG_APPEND: u32 = 0x4;
const PFLAG_CREAT: u32 = 0x8;
const PFLAG_TRUNC: u32 = 0x10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SftpError {
    #[error("an SFTP packet of {0} bytes: more than {MAX_PACKET}")]
    TooLarge(usize),
    #[error("a malformed SFTP packet of type {kind}: {what}")]
    Malformed { kind: u8, what: &'static str },
    #[error("more than {MAX_PENDING} SFTP requests or open files at once")]
    TooMany,
    #[error("SFTP request id {0} is already waiting for its answer")]
    IdInUse(u32),
    #[error("an SFTP path of {0} bytes: more than {MAX_PATH}")]
    PathTooLong(usize),
}

/// One logged operation: `sftp.<kind>`, its outcome and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `open`, `read`, `write`, `remove`, `rename`, `mkdir`, `rmdir`,
    /// `symlink`, `link`, `setstat`, `copy`, `opendir`.
    pub kind: &'static str,
    pub success: bool,
    pub path: String,
    /// The new path of a rename, the target of a symlink.
    pub to: Option<String>,
    /// Open: "read", "write", "read,write", with "create", "truncate", "append".
    pub mode: Option<String>,
    /// Read and write: bytes moved through the handle until it was closed.
    pub bytes: Option<u64>,
    /// The server's message, for a failure.
    pub message: Option<String>,
}

/// A request sent and not answered yet.
#[derive(Debug, Clone)]
enum Pending {
    Open {
        path: String,
        mode: String,
        dir: bool,
    },
    Read {
        handle: Vec<u8>,
    },
    Write,
    Close {
        handle: Vec<u8>,
    },
    Path {
        kind: &'static str,
        path: String,
        to: Option<String>,
    },
}

#[derive(Debug, Default)]
struct OpenFile {
    path: String,
    read: u64,
    written: u64,
}

/// Follows one SFTP channel.
#[derive(Debug, Default)]
pub struct Observer {
    from_user: Vec<u8>,
    from_target: Vec<u8>,
    pending: HashMap<u32, Pending>,
    open: HashMap<Vec<u8>, OpenFile>,
}

/// A cursor over one packet's body.
struct Reader<'a> {
    kind: u8,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SftpError> {
        if self.rest.len() < n {
            return Err(SftpError::Malformed {
                kind: self.kind,
                what,
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, SftpError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], SftpError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn text(&mut self, what: &'static str) -> Result<String, SftpError> {
        Ok(String::from_utf8_lossy(self.bytes(what)?).into_owned())
    }

    /// A path: text no longer than [`MAX_PATH`].
    fn path(&mut self, what: &'static str) -> Result<String, SftpError> {
        let bytes = self.bytes(what)?;
        if bytes.len() > MAX_PATH {
            return Err(SftpError::PathTooLong(bytes.len()));
        }
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// A handle: servers make them short (OpenSSH: 4 bytes).
    fn handle(&mut self) -> Result<Vec<u8>, SftpError> {
        let bytes = self.bytes("handle")?;
        if bytes.len() > 256 {
            return Err(SftpError::Malformed {
                kind: self.kind,
                what: "a handle over 256 bytes",
            });
        }
        Ok(bytes.to_vec())
    }
}

/// Splits whole packets off `buffer` (after appending `data`), giving each
/// one's type and body.
fn packets(buffer: &mut Vec<u8>, data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, SftpError> {
    buffer.extend_from_slice(data);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let available = &buffer[start..];
        if available.len() < 4 {
            break;
        }
        let length =
            u32::from_be_bytes([available[0], available[1], available[2], available[3]]) as usize;
        if length > MAX_PACKET {
            return Err(SftpError::TooLarge(length));
        }
        if length == 0 {
            return Err(SftpError::Malformed {
                kind: 0,
                what: "an empty packet",
            });
        }
        if available.len() < 4 + length {
            break;
        }
        let kind = available[4];
        out.push((kind, available[5..4 + length].to_vec()));
        start += 4 + length;
    }
    buffer.drain(..start);
    Ok(out)
}

fn mode(flags: u32) -> String {
    let mut parts = Vec::new();
    if flags & PFLAG_READ != 0 {
        parts.push("read");
    }
    if flags & PFLAG_WRITE != 0 {
        parts.push("write");
    }
    if flags & PFLAG_APPEND != 0 {
        parts.push("append");
    }
    if flags & PFLAG_CREAT != 0 {
        parts.push("create");
    }
    if flags & PFLAG_TRUNC != 0 {
        parts.push("truncate");
    }
    parts.join(",")
}

impl Observer {
    /// Bytes held back, waiting for the rest of their packet (at most one
    /// packet per direction).
    pub fn buffered(&self) -> usize {
        self.from_user.len() + self.from_target.len()
    }

    /// Notes a request until its answer. An id already waiting is an
    /// error: answers are matched by id, so reusing one could put one
    /// operation's outcome on another.
    fn expect(&mut self, id: u32, pending: Pending) -> Result<(), SftpError> {
        if self.pending.contains_key(&id) {
            return Err(SftpError::IdInUse(id));
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(SftpError::TooMany);
        }
        self.pending.insert(id, pending);
        Ok(())
    }

    fn path_of(&self, handle: &[u8]) -> String {
        self.open
            .get(handle)
            .map_or_else(|| "(unknown handle)".to_owned(), |f| f.path.clone())
    }

    /// Bytes the user sent: requests are noted until answered.
    pub fn from_user(&mut self, data: &[u8]) -> Result<(), SftpError> {
        for (kind, body) in packets(&mut self.from_user, data)? {
            let mut r = Reader { kind, rest: &body };
            if kind == INIT {
                r.u32("version")?;
                continue;
            }
            let id = r.u32("request id")?;
            match kind {
                OPEN => {
                    let path = r.path("filename")?;
                    let flags = r.u32("pflags")?;
                    self.expect(
                        id,
                        Pending::Open {
                            path,
                            mode: mode(flags),
                            dir: false,
                        },
                    )?;
                }
                OPENDIR => {
                    let path = r.path("path")?;
                    self.expect(
                        id,
                        Pending::Open {
                            path,
                            mode: "list".into(),
                            dir: true,
                        },
                    )?;
                }
                CLOSE => {
                    let handle = r.handle()?;
                    self.expect(id, Pending::Close { handle })?;
                }
                READ => {
                    let handle = r.handle()?;
                    self.expect(id, Pending::Read { handle })?;
                }
                WRITE => {
                    let handle = r.handle()?;
                    r.take(8, "offset")?;
                    let data = r.bytes("data")?;
                    if let Some(file) = self.open.get_mut(&handle) {
                        file.written += data.len() as u64;
                    }
                    self.expect(id, Pending::Write)?;
                }
                REMOVE | RMDIR | MKDIR | SETSTAT => {
                    let path = r.path("path")?;
                    let kind = match kind {
                        REMOVE => "remove",
                        RMDIR => "rmdir",
                        SETSTAT => "setstat",
                        _ => "mkdir",
                    };
                    self.expect(
                        id,
                        Pending::Path {
                            kind,
                            path,
                            to: None,
                        },
                    )?;
                }
                FSETSTAT => {
                    let handle = r.handle()?;
                    let path = self.path_of(&handle);
                    self.expect(
                        id,
                        Pending::Path {
                            kind: "setstat",
                            path,
                            to: None,
                        },
                    )?;
                }
                RENAME | SYMLINK => {
                    let from = r.path("path")?;
                    let to = r.path("path")?;
                    let kind = if kind == RENAME { "rename" } else { "symlink" };
                    self.expect(
                        id,
                        Pending::Path {
                            kind,
                            path: from,
                            to: Some(to),
                        },
                    )?;
                }
                EXTENDED => {
                    let name = r.text("extension name")?;
                    match name.as_str() {
                        "posix-rename@openssh.com" | "hardlink@openssh.com" => {
                            let from = r.path("path")?;
                            let to = r.path("path")?;
                            let kind = if name.starts_with("posix-rename") {
                                "rename"
                            } else {
                                "link"
                            };
                            self.expect(
                                id,
                                Pending::Path {
                                    kind,
                                    path: from,
                                    to: Some(to),
                                },
                            )?;
                        }
                        // Server-side copy between two open files.
                        "copy-data" => {
                            let from = r.handle()?;
                            r.take(16, "offset and length")?;
                            let to = r.handle()?;
                            let (path, to) = (self.path_of(&from), self.path_of(&to));
                            self.expect(
                                id,
                                Pending::Path {
                                    kind: "copy",
                                    path,
                                    to: Some(to),
                                },
                            )?;
                        }
                        _ => {}
                    }
                }
                // Stat, readdir, realpath and the like change nothing.
                _ => {}
            }
        }
        Ok(())
    }

    /// Bytes the target sent: answers complete the requests noted; the
    /// operations they finish are returned.
    pub fn from_target(&mut self, data: &[u8]) -> Result<Vec<Operation>, SftpError> {
        let mut done = Vec::new();
        for (kind, body) in packets(&mut self.from_target, data)? {
            let mut r = Reader { kind, rest: &body };
            if kind == VERSION {
                continue;
            }
            let id = r.u32("request id")?;
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            match (kind, pending) {
                (HANDLE, Pending::Open { path, mode, dir }) => {
                    let handle = r.handle()?;
                    if self.open.len() >= MAX_PENDING {
                        return Err(SftpError::TooMany);
                    }
                    done.push(Operation {
                        kind: if dir { "opendir" } else { "open" },
                        success: true,
                        path: path.clone(),
                        to: None,
                        mode: Some(mode),
                        bytes: None,
                        message: None,
                    });
                    self.open.insert(
                        handle,
                        OpenFile {
                            path,
                            read: 0,
                            written: 0,
                        },
                    );
                }
                (DATA, Pending::Read { handle }) => {
                    let data = r.bytes("data")?;
                    if let Some(file) = self.open.get_mut(&handle) {
                        file.read += data.len() as u64;
                    }
                }
                (STATUS, Pending::Close { handle }) => {
                    if let Some(file) = self.open.remove(&handle) {
                        for (kind, bytes) in [("read", file.read), ("write", file.written)] {
                            if bytes > 0 {
                                done.push(Operation {
                                    kind,
                                    success: true,
                                    path: file.path.clone(),
                                    to: None,
                                    mode: None,
                                    bytes: Some(bytes),
                                    message: None,
                                });
                            }
                        }
                    }
                }
                (STATUS, Pending::Open { path, mode, dir }) => {
                    let (success, message) = status(&mut r)?;
                    done.push(Operation {
                        kind: if dir { "opendir" } else { "open" },
                        success,
                        path,
                        to: None,
                        mode: Some(mode),
                        bytes: None,
                        message,
                    });
                }
                (STATUS, Pending::Path { kind, path, to }) => {
                    let (success, message) = status(&mut r)?;
                    done.push(Operation {
                        kind,
                        success,
                        path,
                        to,
                        mode: None,
                        bytes: None,
                        message,
                    });
                }
                // End of file on a read, a write acknowledged: nothing to log.
                _ => {}
            }
        }
        Ok(done)
    }

    /// Files still open when the channel ends: what moved through them.
    pub fn finish(&mut self) -> Vec<Operation> {
        let mut done = Vec::new();
        for (_, file) in self.open.drain() {
            for (kind, bytes) in [("read", file.read), ("write", file.written)] {
                if bytes > 0 {
                    done.push(Operation {
                        kind,
                        success: true,
                        path: file.path.clone(),
                        to: None,
                        mode: None,
                        bytes: Some(bytes),
                        message: Some("the file was not closed".into()),
                    });
                }
            }
        }
        done
    }
}

/// A STATUS answer: success, or the server's message.
fn status(r: &mut Reader<'_>) -> Result<(bool, Option<String>), SftpError> {
    let code = r.u32("status code")?;
    let message = r.text("status message").unwrap_or_default();
    Ok((code == 0, (code != 0).then_some(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![kind];
        for f in fields {
            body.extend_from_slice(f);
        }
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut out = (s.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(s);
        out
    }

    fn u32b(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    #[test]
    fn an_upload_and_a_rename_become_events_with_paths() {
        let mut o = Observer::default();
        let open = packet(
            OPEN,
            &[&u32b(1), &string(b"/tmp/upload.bin"), &u32b(0x1a), &u32b(0)],
        );
        let write = packet(
            WRITE,
            &[
                &u32b(2),
                &string(b"h1"),
                &0u64.to_be_bytes(),
                &string(&[7u8; 1000]),
            ],
        );
        let close = packet(CLOSE, &[&u32b(3), &string(b"h1")]);
        let rename = packet(
            RENAME,
            &[
                &u32b(4),
                &string(b"/tmp/upload.bin"),
                &string(b"/tmp/final.bin"),
            ],
        );
        // The user's requests arrive cut anywhere: packets are reassembled.
        let mut first = open.clone();
        let tail = first.split_off(7);
        o.from_user(&first).expect("ok");
        o.from_user(&tail).expect("ok");
        let status_ok = |id| packet(STATUS, &[&u32b(id), &u32b(0), &string(b""), &string(b"")]);
        let mut done = o
            .from_target(&packet(HANDLE, &[&u32b(1), &string(b"h1")]))
            .expect("ok");
        o.from_user(&write).expect("ok");
        done.extend(o.from_target(&status_ok(2)).expect("ok"));
        o.from_user(&[close, rename].concat()).expect("ok");
        let answers = [
            status_ok(3),
            packet(
                STATUS,
                &[&u32b(4), &u32b(4), &string(b"Failure"), &string(b"")],
            ),
        ]
        .concat();
        done.extend(o.from_target(&answers).expect("ok"));
        let kinds: Vec<_> = done
            .iter()
            .map(|d| (d.kind, d.success, d.path.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("open", true, "/tmp/upload.bin"),
                ("write", true, "/tmp/upload.bin"),
                ("rename", false, "/tmp/upload.bin"),
            ]
        );
        assert_eq!(done[0].mode.as_deref(), Some("write,create,truncate"));
        assert_eq!(done[1].bytes, Some(1000));
        assert_eq!(done[2].to.as_deref(), Some("/tmp/final.bin"));
        assert_eq!(done[2].message.as_deref(), Some("Failure"));
    }

    #[test]
    fn a_reused_id_or_a_huge_path_ends_the_stream_and_links_are_logged() {
        let mut o = Observer::default();
        let remove = packet(REMOVE, &[&u32b(1), &string(b"/etc/x")]);
        let mkdir = packet(MKDIR, &[&u32b(1), &string(b"/tmp/y"), &u32b(0)]);
        o.from_user(&remove).expect("ok");
        assert_eq!(o.from_user(&mkdir), Err(SftpError::IdInUse(1)));

        let mut o = Observer::default();
        let long = packet(REMOVE, &[&u32b(1), &string(&[b'a'; MAX_PATH + 1])]);
        assert_eq!(
            o.from_user(&long),
            Err(SftpError::PathTooLong(MAX_PATH + 1))
        );

        let mut o = Observer::default();
        let link = packet(
            EXTENDED,
            &[
                &u32b(7),
                &string(b"hardlink@openssh.com"),
                &string(b"/a"),
                &string(b"/b"),
            ],
        );
        o.from_user(&link).expect("ok");
        let done = o
            .from_target(&packet(
                STATUS,
                &[&u32b(7), &u32b(0), &string(b""), &string(b"")],
            ))
            .expect("ok");
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].kind, done[0].path.as_str()), ("link", "/a"));
        assert_eq!(done[0].to.as_deref(), Some("/b"));
    }

    #[test]
    fn bad_packets_are_errors() {
        let mut o = Observer::default();
        assert_eq!(
            o.from_user(&u32b(10_000_000)),
            Err(SftpError::TooLarge(10_000_000))
        );
        let mut o = Observer::default();
        let short = packet(OPEN, &[&u32b(1), &u32b(50)]);
        assert!(matches!(
            o.from_user(&short),
            Err(SftpError::Malformed { kind: OPEN, .. })
        ));
        let mut o = Observer::default();
        assert!(o.from_user(&[0, 0, 0, 0]).is_err());
    }
}
