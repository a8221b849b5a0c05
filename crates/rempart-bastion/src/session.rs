//! One user's session through the bastion, once the certificate is valid
//! and the grant is known: who, where, by which grant, the connection to
//! the target, the counters of the session-end event, and the signal that
//! cuts it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use russh::ChannelId;
use russh::client;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::Target;
use crate::recording::Recorded;
use crate::upstream::TargetCheck;

pub struct Session {
    pub id: String,
    pub user: String,
    pub target: Target,
    pub grant: String,
    pub principal: String,
    /// Ports on the target's loopback the grant lets the user forward to.
    pub forward_ports: Option<[u16; 2]>,
    pub client: Option<SocketAddr>,
    pub started: OffsetDateTime,
    pub upstream: client::Handle<TargetCheck>,
    /// When the grant ends, as last heard from the control plane.
    pub ends_at: Mutex<OffsetDateTime>,
    pub bytes_from_user: AtomicU64,
    pub bytes_to_user: AtomicU64,
    /// Recordings of this session's PTY channels, as they finish.
    pub recordings: Mutex<Vec<Recorded>>,
    /// How many recordings were started: each gets its own file name.
    pub recordings_begun: AtomicU64,
    /// Set once, with the reason, when the session must end.
    pub cut: watch::Sender<Option<String>>,
    /// Session channels open to the user, by id: told why when cut.
    pub channels: Mutex<BTreeMap<ChannelId, ()>>,
    /// The user's connection, to tell and disconnect them when cut.
    pub user_connection: OnceLock<russh::server::Handle>,
    /// The relays of this session's channels, awaited before the end event
    /// so that it carries every recording's hash.
    pub relays: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The user's connection is gone: nobody is left to tell.
    pub closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("target", &self.target.name)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn count_from_user(&self, n: usize) {
        self.bytes_from_user.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn count_to_user(&self, n: usize) {
        self.bytes_to_user.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The number of the next recording of this session.
    pub fn recordings_started(&self) -> u64 {
        self.recordings_begun.fetch_add(1, Ordering::Relaxed)
    }

    /// The fields every event of this session carries.
    pub fn fields(&self) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.insert("actor".into(), json!(self.user));
        map.insert("host".into(), json!(self.target.name));
        map.insert("target".into(), json!(format!("host:{}", self.target.name)));
        map.insert("grant".into(), json!(self.grant));
        map.insert("session".into(), json!(self.id));
        map.insert("principal".into(), json!(self.principal));
        if let Some(client) = self.client {
            map.insert("client".into(), json!(client.to_string()));
        }
        map
    }

    /// Asks for the session to end (the first reason is kept).
    pub fn end(&self, reason: String) {
        self.cut.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The summary the control plane stores, as things stand.
    pub fn summary(&self, reason: &str) -> rempart_api::SessionSummary {
        rempart_api::SessionSummary {
            id: self.id.clone(),
            user: self.user.clone(),
            target: self.target.name.clone(),
            grant: self.grant.clone(),
            client: self.client.map(|c| c.to_string()).unwrap_or_default(),
            started_at: self.started,
            ended_at: OffsetDateTime::now_utc(),
            reason: reason.to_owned(),
            bytes_from_user: self.bytes_from_user.load(Ordering::Relaxed),
            bytes_to_user: self.bytes_to_user.load(Ordering::Relaxed),
            recordings: self
                .recordings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|r| rempart_api::RecordingRef {
                    name: r
                        .path
                        .file_stem()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    sha256: r.sha256.clone(),
                    bytes: r.bytes,
                })
                .collect(),
        }
    }

    pub fn cut_reason(&self) -> Option<String> {
        self.cut.borrow().clone()
    }
}

/// A short random id: `s-` and 16 hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    format!("s-{}", crate::recording::hex(&bytes))
}
