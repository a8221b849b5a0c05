//! Which statements a PostgreSQL session ran, read from its two streams.
//!
//! The proxy passes bytes through unchanged and shows them to an
//! [`Observer`] too: what the client sends (the few frontend messages that
//! matter, read here: `postgres-protocol` only writes them, and `pgwire`'s
//! decoder panics on a malformed Bind, found by fuzzing) and what the
//! server answers (backend messages, framed and decoded by
//! `postgres-protocol`). Requests are queued in the order sent
//! and completed by the answers in the same order, which is how the
//! protocol pipelines:
//!
//! - a simple query (`Q`) ends at its `ReadyForQuery`, with the tags of all
//!   the statements its text held;
//! - an extended query ends at its `Execute`'s `CommandComplete` (or error,
//!   or `PortalSuspended`); after an error the server skips to the next
//!   `Sync`, and the executes it skipped are reported as not run;
//! - COPY counts the bytes that went each way.
//!
//! Outside input on both sides: every message is bounded ([`MAX_MESSAGE`]),
//! except data rows and copy data, which are counted without being kept.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{Header, Message};

/// The largest message kept to be read (a query, a bind, an error): 64 MiB.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Statements prepared, portals bound and requests waiting, at most.
const MAX_PENDING: usize = 10_000;
/// A parameter value is shown up to this many bytes.
const PARAMETER_SHOWN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    #[error("a PostgreSQL message of {0} bytes: more than {MAX_MESSAGE}")]
    TooLarge(usize),
    #[error("a malformed PostgreSQL message from the {side}: {detail}")]
    Malformed { side: &'static str, detail: String },
    #[error("more than {MAX_PENDING} prepared statements, portals or requests at once")]
    TooMany,
}

/// How a statement came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Simple,
    Extended,
}

/// Which way a COPY went, and how many bytes of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// `COPY … FROM STDIN`: data from the client.
    In(u64),
    /// `COPY … TO STDOUT`: data to the client.
    Out(u64),
}

/// One statement (a simple query's whole text, or one execute) and how it
/// ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub protocol: Protocol,
    pub sql: String,
    /// Extended protocol: the bound values (text as is; binary as `\x` and
    /// hex; `None` for NULL), each cut to 1 KiB.
    pub parameters: Vec<Option<String>>,
    /// The command tags (`SELECT 1`, `INSERT 0 3`), one per statement run.
    pub tags: Vec<String>,
    /// Data rows sent to the client.
    pub rows: u64,
    pub copy: Option<Copy>,
    /// `SQLSTATE: message` of the error, if any.
    pub error: Option<String>,
    pub duration: Duration,
}

/// A request waiting for its answers.
#[derive(Debug)]
enum Pending {
    Query(Statement, Instant),
    /// An extended execute; `skipped` once an error made the server skip
    /// to the next sync.
    Execute(Statement, Instant),
    Sync,
}

/// Follows one session.
#[derive(Debug)]
pub struct Observer {
    from_client: BytesMut,
    from_server: BytesMut,
    /// A data row or copy data being passed over: bytes left.
    skipping_server: usize,
    skipping_client: usize,
    prepared: HashMap<String, String>,
    portals: HashMap<String, (String, Vec<Option<String>>)>,
    pending: VecDeque<Pending>,
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            from_client: BytesMut::new(),
            from_server: BytesMut::new(),
            skipping_server: 0,
            skipping_client: 0,
            prepared: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
        }
    }
}

fn malformed(side: &'static str, detail: impl ToString) -> ObserveError {
    ObserveError::Malformed {
        side,
        detail: detail.to_string(),
    }
}

fn render(value: Option<&[u8]>, binary: bool) -> Option<String> {
    let value = value?;
    let shown = &value[..value.len().min(PARAMETER_SHOWN)];
    let mut text = if binary {
        let mut hex = String::from("\\x");
        for b in shown {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    } else {
        String::from_utf8_lossy(shown).into_owned()
    };
    if value.len() > shown.len() {
        text.push('…');
    }
    Some(text)
}

/// A cursor over one frontend message's body: every read is checked.
struct Reader<'a> {
    rest: &'a [u8],
    kind: u8,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &str) -> ObserveError {
        malformed(
            "client",
            format!("message {:?}: {what}", char::from(self.kind)),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ObserveError> {
        if self.rest.len() < n {
            return Err(self.fail("shorter than its fields"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ObserveError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, ObserveError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A count (of formats, of values): not negative.
    fn count(&mut self) -> Result<usize, ObserveError> {
        usize::try_from(self.i16()?).map_err(|_| self.fail("a negative count"))
    }

    /// A NUL-terminated string.
    fn text(&mut self) -> Result<String, ObserveError> {
        let end = self
            .rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.fail("a string without its end"))?;
        let text = String::from_utf8_lossy(&self.rest[..end]).into_owned();
        self.rest = &self.rest[end + 1..];
        Ok(text)
    }

    /// A length-prefixed value; -1 is NULL.
    fn value(&mut self) -> Result<Option<&'a [u8]>, ObserveError> {
        let b = self.take(4)?;
        let length = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        match length {
            -1 => Ok(None),
            n if n < 0 => Err(self.fail("a negative length")),
            n => Ok(Some(self.take(usize::try_from(n).unwrap_or(usize::MAX))?)),
        }
    }
}

/// Rows a command tag reports (`SELECT 5`, `INSERT 0 5`, `COPY 5`).
fn tag_rows(tag: &str) -> Option<u64> {
    tag.rsplit(' ').next()?.parse().ok()
}

impl Observer {
    fn push(&mut self, pending: Pending) -> Result<(), ObserveError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(ObserveError::TooMany);
        }
        self.pending.push_back(pending);
        Ok(())
    }

    /// The statement the server's answers are about now.
    fn current(&mut self) -> Option<&mut Statement> {
        match self.pending.front_mut()? {
            Pending::Query(statement, _) | Pending::Execute(statement, _) => Some(statement),
            Pending::Sync => None,
        }
    }

    /// Bytes the client sent.
    pub fn from_client(&mut self, data: &[u8]) -> Result<(), ObserveError> {
        let mut data = data;
        // Copy data passed over without being kept.
        if self.skipping_client > 0 {
            let n = self.skipping_client.min(data.len());
            self.count_copy_in(n as u64);
            self.skipping_client -= n;
            data = &data[n..];
        }
        self.from_client.extend_from_slice(data);
        loop {
            if self.from_client.len() < 5 {
                return Ok(());
            }
            let kind = self.from_client[0];
            let length = u32::from_be_bytes([
                self.from_client[1],
                self.from_client[2],
                self.from_client[3],
                self.from_client[4],
            ]) as usize;
            if length < 4 {
                return Err(malformed("client", "a length under 4"));
            }
            if kind == b'd' {
                // CopyData: count it and let it go.
                let body = length - 4;
                let here = (self.from_client.len() - 5).min(body);
                self.count_copy_in(here as u64);
                self.from_client.advance(5 + here);
                self.skipping_client = body - here;
                if self.skipping_client > 0 {
                    return Ok(());
                }
                continue;
            }
            if length > MAX_MESSAGE {
                return Err(ObserveError::TooLarge(length));
            }
            if self.from_client.len() < 1 + length {
                return Ok(());
            }
            let message = self.from_client.split_to(1 + length);
            self.client_message(kind, &message[5..])?;
        }
    }

    fn count_copy_in(&mut self, n: u64) {
        if let Some(statement) = self.current()
            && let Some(Copy::In(bytes)) = &mut statement.copy
        {
            *bytes += n;
        }
    }

    fn client_message(&mut self, kind: u8, body: &[u8]) -> Result<(), ObserveError> {
        let now = Instant::now();
        let mut r = Reader { rest: body, kind };
        match kind {
            b'Q' => {
                let statement = Statement {
                    protocol: Protocol::Simple,
                    sql: r.text()?,
                    parameters: Vec::new(),
                    tags: Vec::new(),
                    rows: 0,
                    copy: None,
                    error: None,
                    duration: Duration::ZERO,
                };
                self.push(Pending::Query(statement, now))?;
            }
            b'P' => {
                let name = r.text()?;
                let sql = r.text()?;
                if self.prepared.len() >= MAX_PENDING && !self.prepared.contains_key(&name) {
                    return Err(ObserveError::TooMany);
                }
                self.prepared.insert(name, sql);
            }
            b'B' => {
                let portal = r.text()?;
                let statement = r.text()?;
                let formats: Vec<i16> =
                    (0..r.count()?).map(|_| r.i16()).collect::<Result<_, _>>()?;
                let mut parameters = Vec::new();
                for i in 0..r.count()? {
                    // One format code applies to all; none means text.
                    let code = match formats.len() {
                        0 => 0,
                        1 => formats[0],
                        _ => formats.get(i).copied().unwrap_or(0),
                    };
                    parameters.push(render(r.value()?, code == 1));
                }
                let sql = self
                    .prepared
                    .get(&statement)
                    .cloned()
                    .unwrap_or_else(|| "(a statement prepared before the proxy saw it)".into());
                if self.portals.len() >= MAX_PENDING && !self.portals.contains_key(&portal) {
                    return Err(ObserveError::TooMany);
                }
                self.portals.insert(portal, (sql, parameters));
            }
            b'E' => {
                let portal = r.text()?;
                let (sql, parameters) = self
                    .portals
                    .get(&portal)
                    .cloned()
                    .unwrap_or_else(|| ("(an unknown portal)".into(), Vec::new()));
                let statement = Statement {
                    protocol: Protocol::Extended,
                    sql,
                    parameters,
                    tags: Vec::new(),
                    rows: 0,
                    copy: None,
                    error: None,
                    duration: Duration::ZERO,
                };
                self.push(Pending::Execute(statement, now))?;
            }
            b'S' => self.push(Pending::Sync)?,
            b'C' => {
                let target = r.byte()?;
                let name = r.text()?;
                if target == b'S' {
                    self.prepared.remove(&name);
                } else {
                    self.portals.remove(&name);
                }
            }
            // Describe, Flush, CopyDone, CopyFail, Terminate, function
            // calls: nothing to note.
            _ => {}
        }
        Ok(())
    }

    /// Bytes the server sent; the statements they finished.
    pub fn from_server(&mut self, data: &[u8]) -> Result<Vec<Statement>, ObserveError> {
        let mut done = Vec::new();
        let mut data = data;
        if self.skipping_server > 0 {
            let n = self.skipping_server.min(data.len());
            self.skipping_server -= n;
            data = &data[n..];
        }
        self.from_server.extend_from_slice(data);
        loop {
            let header = Header::parse(&self.from_server).map_err(|e| malformed("server", e))?;
            let Some(header) = header else {
                return Ok(done);
            };
            let length = usize::try_from(header.len()).unwrap_or(usize::MAX);
            // Data rows and copy data: counted, not kept.
            if matches!(header.tag(), b'D' | b'd') {
                let body = length - 4;
                if let Some(statement) = self.current() {
                    if header.tag() == b'D' {
                        statement.rows += 1;
                    } else if let Some(Copy::Out(bytes)) = &mut statement.copy {
                        *bytes += body as u64;
                    }
                }
                let here = (self.from_server.len() - 5).min(body);
                self.from_server.advance(5 + here);
                self.skipping_server = body - here;
                if self.skipping_server > 0 {
                    return Ok(done);
                }
                continue;
            }
            if length > MAX_MESSAGE {
                return Err(ObserveError::TooLarge(length));
            }
            let parsed =
                Message::parse(&mut self.from_server).map_err(|e| malformed("server", e))?;
            let Some(message) = parsed else {
                return Ok(done);
            };
            self.server_message(message, &mut done)?;
        }
    }

    fn server_message(
        &mut self,
        message: Message,
        done: &mut Vec<Statement>,
    ) -> Result<(), ObserveError> {
        let now = Instant::now();
        match message {
            Message::CommandComplete(body) => {
                let tag = body.tag().map_err(|e| malformed("server", e))?.to_owned();
                self.complete(tag, now, done);
            }
            Message::EmptyQueryResponse => self.complete(String::new(), now, done),
            Message::PortalSuspended => self.complete("(suspended)".into(), now, done),
            Message::CopyInResponse(_) => {
                if let Some(statement) = self.current() {
                    statement.copy = Some(Copy::In(0));
                }
            }
            Message::CopyOutResponse(_) => {
                if let Some(statement) = self.current() {
                    statement.copy = Some(Copy::Out(0));
                }
            }
            Message::ErrorResponse(body) => {
                let mut code = String::new();
                let mut text = String::new();
                let mut fields = body.fields();
                while let Some(field) = fields.next().map_err(|e| malformed("server", e))? {
                    match field.type_() {
                        b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                        b'M' => text = String::from_utf8_lossy(field.value_bytes()).into_owned(),
                        _ => {}
                    }
                }
                let error = format!("{code}: {text}");
                match self.pending.front_mut() {
                    // A simple query goes on to its ReadyForQuery.
                    Some(Pending::Query(statement, _)) => statement.error = Some(error),
                    Some(Pending::Execute(..)) => {
                        if let Some(Pending::Execute(mut statement, started)) =
                            self.pending.pop_front()
                        {
                            statement.error = Some(error);
                            statement.duration = now.duration_since(started);
                            done.push(statement);
                        }
                        self.skip_to_sync(now, done);
                    }
                    // An error outside any request (e.g. the server shutting down).
                    _ => {}
                }
            }
            Message::ReadyForQuery(_) => {
                // Up to the simple query or the sync it answers; an execute
                // still waiting before that sync was skipped by the server.
                while let Some(pending) = self.pending.pop_front() {
                    match pending {
                        Pending::Query(mut statement, started) => {
                            statement.duration = now.duration_since(started);
                            done.push(statement);
                            break;
                        }
                        Pending::Execute(mut statement, started) => {
                            statement.error =
                                Some("not run: an earlier statement of the pipeline failed".into());
                            statement.duration = now.duration_since(started);
                            done.push(statement);
                        }
                        Pending::Sync => break,
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A command finished: a simple query notes it and waits for its
    /// ReadyForQuery; an execute is done.
    fn complete(&mut self, tag: String, now: Instant, done: &mut Vec<Statement>) {
        match self.pending.front_mut() {
            Some(Pending::Query(statement, _)) => {
                if let Some(rows) = tag_rows(&tag).filter(|_| statement.rows == 0) {
                    statement.rows = rows;
                }
                statement.tags.push(tag);
            }
            Some(Pending::Execute(..)) => {
                if let Some(Pending::Execute(mut statement, started)) = self.pending.pop_front() {
                    if let Some(rows) = tag_rows(&tag).filter(|_| statement.rows == 0) {
                        statement.rows = rows;
                    }
                    statement.tags.push(tag);
                    statement.duration = now.duration_since(started);
                    done.push(statement);
                }
            }
            _ => {}
        }
    }

    /// After an extended-protocol error, the executes before the next sync
    /// were not run: reported as such.
    fn skip_to_sync(&mut self, now: Instant, done: &mut Vec<Statement>) {
        while let Some(Pending::Execute(..)) = self.pending.front() {
            if let Some(Pending::Execute(mut statement, started)) = self.pending.pop_front() {
                statement.error =
                    Some("not run: an earlier statement of the pipeline failed".into());
                statement.duration = now.duration_since(started);
                done.push(statement);
            }
        }
    }

    /// How many more server bytes end the message under way: `0` when the
    /// server's stream is between two messages (where the proxy may put a
    /// message of its own), else at least one (when even the length is not
    /// known yet, enough to learn it).
    pub fn server_message_remaining(&self) -> usize {
        if self.skipping_server > 0 {
            return self.skipping_server;
        }
        let held = self.from_server.len();
        if held == 0 {
            return 0;
        }
        if held < 5 {
            return 5 - held;
        }
        let length = u32::from_be_bytes([
            self.from_server[1],
            self.from_server[2],
            self.from_server[3],
            self.from_server[4],
        ]) as usize;
        (1 + length).saturating_sub(held).max(1)
    }

    /// Bytes held back, waiting for the rest of their message.
    pub fn buffered(&self) -> usize {
        self.from_client.len() + self.from_server.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message: type byte, length, body.
    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn cstr(text: &str) -> Vec<u8> {
        let mut out = text.as_bytes().to_vec();
        out.push(0);
        out
    }

    fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', &cstr(sql))
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        msg(
            b'P',
            &[cstr(name), cstr(sql), 0i16.to_be_bytes().to_vec()].concat(),
        )
    }

    /// A bind of text values (`None`: NULL).
    fn bind(portal: &str, statement: &str, values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = [cstr(portal), cstr(statement)].concat();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for value in values {
            match value {
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        body.extend_from_slice(&0i16.to_be_bytes());
        msg(b'B', &body)
    }

    fn execute(portal: &str) -> Vec<u8> {
        msg(b'E', &[cstr(portal), 0i32.to_be_bytes().to_vec()].concat())
    }

    fn sync() -> Vec<u8> {
        msg(b'S', &[])
    }

    fn complete(tag: &str) -> Vec<u8> {
        msg(b'C', &cstr(tag))
    }

    fn ready() -> Vec<u8> {
        msg(b'Z', b"I")
    }

    fn row() -> Vec<u8> {
        msg(
            b'D',
            &[
                1i16.to_be_bytes().to_vec(),
                1i32.to_be_bytes().to_vec(),
                b"1".to_vec(),
            ]
            .concat(),
        )
    }

    fn error(code: &str, text: &str) -> Vec<u8> {
        msg(
            b'E',
            &[
                b"S".to_vec(),
                cstr("ERROR"),
                b"C".to_vec(),
                cstr(code),
                b"M".to_vec(),
                cstr(text),
                vec![0],
            ]
            .concat(),
        )
    }

    /// Feeds both streams, cut into pieces of `piece` bytes.
    fn run(client: &[u8], server: &[u8], piece: usize) -> Vec<Statement> {
        let mut o = Observer::default();
        for chunk in client.chunks(piece) {
            o.from_client(chunk).expect("client");
        }
        let mut done = Vec::new();
        for chunk in server.chunks(piece) {
            done.extend(o.from_server(chunk).expect("server"));
        }
        assert_eq!(o.buffered(), 0);
        done
    }

    #[test]
    fn a_simple_query_with_two_statements() {
        let client = query("SELECT 1; SELECT 2");
        let server = [
            row(),
            complete("SELECT 1"),
            row(),
            complete("SELECT 1"),
            ready(),
        ]
        .concat();
        for piece in [1, 3, 1000] {
            let done = run(&client, &server, piece);
            assert_eq!(done.len(), 1);
            assert_eq!(done[0].protocol, Protocol::Simple);
            assert_eq!(done[0].sql, "SELECT 1; SELECT 2");
            assert_eq!(done[0].tags, ["SELECT 1", "SELECT 1"]);
            assert_eq!(done[0].rows, 2);
            assert_eq!(done[0].error, None);
        }
    }

    #[test]
    fn pipelined_extended_queries_with_their_parameters() {
        let client = [
            parse("s1", "SELECT $1::int, $2::text"),
            bind("", "s1", &[Some(b"42"), None]),
            execute(""),
            parse("", "INSERT INTO t VALUES ($1)"),
            bind("", "", &[Some(b"x")]),
            execute(""),
            sync(),
        ]
        .concat();
        let server = [
            msg(b'1', &[]),
            msg(b'2', &[]),
            row(),
            complete("SELECT 1"),
            msg(b'1', &[]),
            msg(b'2', &[]),
            complete("INSERT 0 1"),
            ready(),
        ]
        .concat();
        let done = run(&client, &server, 2);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].sql, "SELECT $1::int, $2::text");
        assert_eq!(done[0].parameters, [Some("42".to_owned()), None]);
        assert_eq!(done[0].rows, 1);
        assert_eq!(done[1].sql, "INSERT INTO t VALUES ($1)");
        assert_eq!(done[1].tags, ["INSERT 0 1"]);
        assert_eq!(done[1].rows, 1);
    }

    #[test]
    fn an_error_in_a_pipeline_and_the_executes_it_skipped() {
        let client = [
            parse("", "SELECT 1/0"),
            bind("", "", &[]),
            execute(""),
            parse("", "SELECT 2"),
            bind("", "", &[]),
            execute(""),
            sync(),
            query("SELECT 3"),
        ]
        .concat();
        let server = [
            msg(b'1', &[]),
            msg(b'2', &[]),
            error("22012", "division by zero"),
            ready(),
            row(),
            complete("SELECT 1"),
            ready(),
        ]
        .concat();
        let done = run(&client, &server, 7);
        assert_eq!(done.len(), 3);
        assert_eq!(done[0].error.as_deref(), Some("22012: division by zero"));
        assert!(
            done[1]
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("not run"))
        );
        assert_eq!(done[2].sql, "SELECT 3");
        assert_eq!(done[2].error, None);
    }

    #[test]
    fn copy_in_and_out_count_their_bytes() {
        let copy_in = msg(b'G', &[0, 0, 1, 0, 0]);
        let copy_out = msg(b'H', &[0, 0, 1, 0, 0]);
        let mut o = Observer::default();
        o.from_client(&query("COPY t FROM STDIN")).expect("ok");
        assert!(o.from_server(&copy_in).expect("ok").is_empty());
        let data = [
            msg(b'd', &[b'a'; 60]),
            msg(b'd', &[b'b'; 40]),
            msg(b'c', &[]),
        ]
        .concat();
        for chunk in data.chunks(9) {
            o.from_client(chunk).expect("ok");
        }
        let done = o
            .from_server(&[complete("COPY 2"), ready()].concat())
            .expect("ok");
        assert_eq!(done[0].copy, Some(Copy::In(100)));
        assert_eq!(done[0].rows, 2);

        o.from_client(&query("COPY t TO STDOUT")).expect("ok");
        let answer = [
            copy_out,
            msg(b'd', &[b'z'; 30]),
            msg(b'c', &[]),
            complete("COPY 1"),
            ready(),
        ]
        .concat();
        let mut done = Vec::new();
        for chunk in answer.chunks(4) {
            done.extend(o.from_server(chunk).expect("ok"));
        }
        assert_eq!(done[0].copy, Some(Copy::Out(30)));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut o = Observer::default();
        assert!(o.from_client(&[b'Q', 0, 0, 0, 2]).is_err());
        let mut o = Observer::default();
        assert_eq!(
            o.from_client(&[b'Q', 0x7f, 0xff, 0xff, 0xff]),
            Err(ObserveError::TooLarge(0x7fff_ffff))
        );
        let mut o = Observer::default();
        assert!(o.from_server(&[b'C', 0, 0, 0, 1]).is_err());
        // A truncated message waits for the rest rather than failing.
        let mut o = Observer::default();
        assert!(o.from_client(&query("SELECT 1")[..6]).is_ok());
        assert_eq!(o.buffered(), 6);
    }
}
