//! The SSH side facing users: certificate authentication, the grant check
//! and the connection to the target at login, then channels relayed or
//! refused.
//!
//! A user connects as `USER+TARGET` (`ssh -p 2222 alice+db-1@bastion`).
//! Only an OpenSSH certificate from the deployment's user CA, valid now,
//! naming USER, gets in. The grant for `host:TARGET` is checked with the
//! control plane on every connection; without one, or when the check
//! cannot be made, the user is told why on the first channel and nothing
//! reaches the target.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use rempart_api::OpenSession;
use russh::keys::{Certificate, HashAlg};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session as SshSession};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use serde_json::json;
use time::OffsetDateTime;

use crate::Bastion;
use crate::session::{Session, new_id};
use crate::{relay, upstream};

/// Where a connection stands.
#[derive(Debug)]
enum State {
    Unauthenticated,
    /// Authenticated, but not let through: the reason is shown to the user.
    Refused(String),
    Open(Arc<Session>),
}

#[derive(Debug)]
pub struct Connection {
    bastion: Arc<Bastion>,
    peer: Option<SocketAddr>,
    state: State,
    /// The session, for the accept loop's end event.
    pub outcome: Arc<Mutex<Option<Arc<Session>>>>,
    /// The refusals of this connection's attempts, for one `ssh.auth`
    /// failure event if it never gets in (`login`, reasons).
    pub refusals: Arc<Mutex<Refusals>>,
    /// Set once authenticated: the accept loop closes connections that
    /// are not within the login grace time.
    pub authenticated: Arc<std::sync::atomic::AtomicBool>,
}

/// What a connection that never got in tried, and why it was refused.
#[derive(Debug, Default)]
pub struct Refusals {
    pub login: Option<String>,
    pub reasons: Vec<String>,
    /// A certificate reached Rempart's own checks (and was refused there).
    pub checked: bool,
}

impl Connection {
    pub fn new(
        bastion: Arc<Bastion>,
        peer: Option<SocketAddr>,
        outcome: Arc<Mutex<Option<Arc<Session>>>>,
        refusals: Arc<Mutex<Refusals>>,
        authenticated: Arc<std::sync::atomic::AtomicBool>,
    ) -> Connection {
        Connection {
            bastion,
            peer,
            state: State::Unauthenticated,
            outcome,
            refusals,
            authenticated,
        }
    }

    fn remember(&self, login: &str, reason: Option<String>) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.login = Some(login.to_owned());
        if let Some(reason) = reason
            && !refusals.reasons.contains(&reason)
        {
            refusals.reasons.push(reason);
        }
    }

    fn client_field(&self) -> serde_json::Value {
        self.peer
            .map_or(serde_json::Value::Null, |p| json!(p.to_string()))
    }

    /// A refused certificate: noted for the connection's one `ssh.auth`
    /// failure event (see [`report_refusal`]), so that one connection cannot
    /// write more than one entry however many attempts it makes.
    async fn auth_failed(&self, user: &str, target: Option<&str>, reason: String) -> Auth {
        tracing::info!(user, ?target, %reason, "ssh: refused");
        let login = match target {
            Some(target) => format!("{user}+{target}"),
            None => user.to_owned(),
        };
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.login = Some(login);
        refusals.checked = true;
        if !refusals.reasons.contains(&reason) {
            refusals.reasons.push(reason);
        }
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    /// Checks the certificate itself: issuer, validity, type, principal.
    fn check_certificate(&self, user: &str, cert: &Certificate) -> Result<(), String> {
        let Some(user_ca) = self.bastion.user_ca() else {
            return Err(
                "the bastion does not know the user CA yet (control plane unreachable)".into(),
            );
        };
        let now = OffsetDateTime::now_utc().unix_timestamp().unsigned_abs();
        if cert.signature_key().fingerprint(HashAlg::Sha256) != user_ca {
            return Err("the certificate is not from this deployment's user CA".into());
        }
        if now >= cert.valid_before() {
            let at = OffsetDateTime::from_unix_timestamp(
                i64::try_from(cert.valid_before()).unwrap_or(0),
            )
            .map(|t| t.to_string())
            .unwrap_or_default();
            return Err(format!(
                "the certificate expired at {at}; run `rempart login`"
            ));
        }
        if now < cert.valid_after() {
            return Err("the certificate is not valid yet".into());
        }
        cert.validate_at(now, [&user_ca])
            .map_err(|e| format!("the certificate does not verify: {e}"))?;
        if !cert.cert_type().is_user() {
            return Err("a host certificate is not a user's".into());
        }
        if !cert.valid_principals().iter().any(|p| p == user) {
            return Err(format!(
                "the certificate is for {:?}, not {user}",
                cert.valid_principals()
            ));
        }
        if let Some((option, _)) = cert.critical_options().iter().next() {
            return Err(format!("unknown critical option {option:?}"));
        }
        Ok(())
    }

    /// The grant check and the connection to the target, for an
    /// authenticated user: an open session, or why not.
    async fn open(
        &self,
        user: &str,
        target_name: &str,
        cert: &Certificate,
    ) -> Result<Arc<Session>, String> {
        let Some(target) = self.bastion.config.target(target_name).cloned() else {
            return Err(format!("the bastion knows no host {target_name}"));
        };
        let key = upstream::session_key().map_err(|e| e.to_string())?;
        let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
        let answer = self
            .bastion
            .control
            .open_session(&OpenSession {
                user: user.to_owned(),
                target: target_name.to_owned(),
                public_key: public,
                client_address: self.peer.map(|p| p.to_string()).unwrap_or_default(),
            })
            .await
            .map_err(|e| {
                format!("the grant cannot be checked, so the bastion refuses (fail closed): {e}")
            })?;
        if !answer.allow {
            return Err(format!(
                "no grant for {user} on host:{target_name}: {}; ask with `rempart access request --resource host:{target_name}`",
                answer.reason.unwrap_or_default()
            ));
        }
        let (Some(grant), Some(ends_at), Some(principal), Some(session_cert)) = (
            answer.grant,
            answer.ends_at,
            answer.principal,
            answer.certificate,
        ) else {
            return Err("the control plane's answer lacks the grant's details".into());
        };
        let session_cert = Certificate::from_openssh(&session_cert)
            .map_err(|e| format!("the session certificate does not parse: {e}"))?;
        let connection = upstream::connect(&target, &principal, Arc::new(key), session_cert)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let (cut, _) = tokio::sync::watch::channel(None);
        let _ = cert;
        Ok(Arc::new(Session {
            id: new_id(),
            user: user.to_owned(),
            target,
            grant,
            principal,
            forward_ports: answer.forward_ports,
            client: self.peer,
            started: OffsetDateTime::now_utc(),
            upstream: connection,
            ends_at: Mutex::new(ends_at),
            bytes_from_user: Default::default(),
            bytes_to_user: Default::default(),
            recordings: Mutex::new(Vec::new()),
            recordings_begun: Default::default(),
            cut,
            channels: Mutex::new(Default::default()),
            user_connection: Default::default(),
            relays: Mutex::new(Vec::new()),
            closed: Default::default(),
        }))
    }
}

/// Channels one connection may have open at once (sessions and forwards):
/// each holds two relay buffers.
const MAX_CHANNELS: usize = 16;

fn too_many_channels(session: &Session) -> bool {
    let mut relays = session.relays.lock().unwrap_or_else(|e| e.into_inner());
    relays.retain(|relay| !relay.is_finished());
    relays.len() >= MAX_CHANNELS
}

/// `alice+db-1` → (`alice`, `db-1`).
fn split_login(login: &str) -> Option<(&str, &str)> {
    let (user, target) = login.split_once('+')?;
    (!user.is_empty() && !target.is_empty()).then_some((user, target))
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, login: &str) -> Result<Auth, Self::Error> {
        self.remember(login, None);
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    /// A plain key is refused without an event of its own: OpenSSH offers
    /// one before the certificate. If nothing else gets in, the end of the
    /// connection reports it (see [`report_refusal`]).
    async fn auth_publickey(
        &mut self,
        login: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.remember(
            login,
            Some("a plain key: the bastion takes only certificates from `rempart login`".into()),
        );
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_openssh_certificate(
        &mut self,
        login: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        self.remember(login, None);
        let Some((user, target)) = split_login(login) else {
            return Ok(self
                .auth_failed(
                    login,
                    None,
                    format!("log in as USER+TARGET (e.g. {login}+db-1), not {login:?}"),
                )
                .await);
        };
        if let Err(reason) = self.check_certificate(user, certificate) {
            return Ok(self.auth_failed(user, Some(target), reason).await);
        }
        match self.open(user, target, certificate).await {
            Ok(session) => {
                let mut fields = session.fields();
                fields.insert("serial".into(), json!(certificate.serial()));
                fields.insert("key_id".into(), json!(certificate.key_id()));
                self.bastion
                    .events
                    .emit("ssh.auth", "success", fields.clone().into())
                    .await;
                self.bastion
                    .events
                    .emit("ssh.session.start", "success", fields.into())
                    .await;
                tracing::info!(session = %session.id, user, target, "ssh: session opened");
                // Noted on disk first: a session the bastion cannot account
                // for after a crash does not start.
                if let Err(err) =
                    crate::ship::note_open(&self.bastion.config.state_dir, &session.summary("open"))
                {
                    let reason = format!("the bastion cannot note the session ({err:#})");
                    tracing::error!(%reason);
                    let _ = session
                        .upstream
                        .disconnect(russh::Disconnect::ByApplication, "", "en")
                        .await;
                    self.state = State::Refused(reason);
                    self.authenticated
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(Auth::Accept);
                }
                self.bastion
                    .open_sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(session.id.clone(), session.clone());
                crate::watch::spawn(self.bastion.clone(), session.clone());
                *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
                self.state = State::Open(session);
            }
            Err(reason) => {
                // The person is who they say; the access is what is refused.
                // They are let in to be told why, and nothing goes further.
                let mut fields = json!({
                    "actor": user,
                    "host": target,
                    "target": format!("host:{target}"),
                    "client": self.client_field(),
                    "reason": reason,
                    "serial": certificate.serial(),
                });
                fields["key_id"] = json!(certificate.key_id());
                self.bastion.events.emit("ssh.auth", "denied", fields).await;
                tracing::info!(user, target, %reason, "ssh: denied");
                self.state = State::Refused(reason);
            }
        }
        self.authenticated
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        match &self.state {
            State::Unauthenticated => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
            }
            State::Refused(reason) => {
                reply.accept().await;
                tokio::spawn(tell_and_close(channel, session.handle(), reason.clone()));
            }
            State::Open(open) if open.cut_reason().is_some() => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
            }
            State::Open(open) if too_many_channels(open) => {
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
            }
            State::Open(open) => {
                let open = open.clone();
                let target_channel = match open.upstream.channel_open_session().await {
                    Ok(c) => c,
                    Err(err) => {
                        tracing::warn!(session = %open.id, error = %err, "the target refused a channel");
                        reply.reject(ChannelOpenFailure::ConnectFailed).await;
                        return Ok(());
                    }
                };
                reply.accept().await;
                open.channels
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(channel.id(), ());
                let _ = open.user_connection.set(session.handle());
                let relay = tokio::spawn(relay::session_channel(
                    self.bastion.clone(),
                    open.clone(),
                    session.handle(),
                    channel,
                    target_channel,
                ));
                open.relays
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(relay);
            }
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let State::Open(open) = &self.state else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if open.cut_reason().is_some() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        if too_many_channels(open) {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let open = open.clone();
        let destination = format!("{host}:{port}");
        let verdict = forward_allowed(open.forward_ports, host, port);
        let mut fields = open.fields();
        fields.insert("destination".into(), json!(destination));
        if let Err(reason) = verdict {
            fields.insert("reason".into(), json!(reason));
            self.bastion
                .events
                .emit("ssh.forward", "denied", fields.into())
                .await;
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let target_channel = match open
            .upstream
            .channel_open_direct_tcpip(host, port, originator_address, originator_port)
            .await
        {
            Ok(c) => c,
            Err(err) => {
                fields.insert("reason".into(), json!(format!("the target refused: {err}")));
                self.bastion
                    .events
                    .emit("ssh.forward", "failure", fields.into())
                    .await;
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        self.bastion
            .events
            .emit("ssh.forward", "success", fields.into())
            .await;
        reply.accept().await;
        let _ = open.user_connection.set(session.handle());
        let relay = tokio::spawn(relay::forward_channel(
            open.clone(),
            channel,
            target_channel,
        ));
        open.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(relay);
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // Unix sockets on the target are not reachable through the bastion.
        if let State::Open(open) = &self.state {
            let mut fields = open.fields();
            fields.insert("destination".into(), json!(socket_path));
            fields.insert("reason".into(), json!("forwarding to Unix sockets is off"));
            self.bastion
                .events
                .emit("ssh.forward", "denied", fields.into())
                .await;
        }
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        // Remote forwarding (-R) would open a way into the user's machine
        // from the target: never.
        if let State::Open(open) = &self.state {
            let mut fields = open.fields();
            fields.insert("destination".into(), json!(format!("{address}:{port}")));
            fields.insert("direction".into(), json!("remote"));
            fields.insert("reason".into(), json!("remote forwarding is off"));
            self.bastion
                .events
                .emit("ssh.forward", "denied", fields.into())
                .await;
        }
        Ok(false)
    }
}

/// One `ssh.auth` failure event for a connection that never got in and
/// whose refusal no event reported yet: plain keys only, or a certificate
/// russh refused before Rempart's checks (expired, not yet valid, badly
/// signed).
pub async fn report_refusal(bastion: &Bastion, peer: Option<SocketAddr>, refusals: &Refusals) {
    let Some(login) = &refusals.login else {
        return; // not even a login name: a scanner or a failed handshake
    };
    let Some(suppressed) = bastion.failure_budget() else {
        return; // counted, and said in the next event that goes out
    };
    let (user, target) = split_login(login).unwrap_or((login, ""));
    let mut reasons = refusals.reasons.clone();
    if !refusals.checked {
        reasons.push(
            "no acceptable certificate: expired, not yet valid or badly signed certificates are refused before any other check".into(),
        );
    }
    let mut fields = json!({
        "actor": user,
        "client": peer.map(|p| p.to_string()),
        "reason": reasons.join("; "),
    });
    if !target.is_empty() {
        fields["host"] = json!(target);
        fields["target"] = json!(format!("host:{target}"));
    }
    if suppressed > 0 {
        fields["suppressed_before"] = json!(suppressed);
    }
    bastion.events.emit("ssh.auth", "failure", fields).await;
}

/// Local forwarding reaches only the target's own loopback, on the ports the
/// grant's resource allows.
fn forward_allowed(ports: Option<[u16; 2]>, host: &str, port: u32) -> Result<(), String> {
    let Some([first, last]) = ports else {
        return Err("the grant does not allow port forwarding".into());
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "::1") {
        return Err(format!(
            "only the target's loopback may be reached, not {host}"
        ));
    }
    let in_range = u16::try_from(port).is_ok_and(|p| (first..=last).contains(&p));
    if !in_range {
        return Err(format!("port {port} is outside {first}-{last}"));
    }
    Ok(())
}

/// Tells a refused user why, on the first channel, and ends it.
async fn tell_and_close(mut channel: Channel<Msg>, handle: russh::server::Handle, reason: String) {
    let id: ChannelId = channel.id();
    // Wait for the request (shell, exec, subsystem) so the client is ready
    // to print what comes; a client that asks for nothing still hears it.
    let wait = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(message) = channel.wait().await {
            match message {
                russh::ChannelMsg::RequestShell { .. }
                | russh::ChannelMsg::Exec { .. }
                | russh::ChannelMsg::RequestSubsystem { .. } => return,
                russh::ChannelMsg::RequestPty { .. } => {
                    let _ = handle.channel_success(id).await;
                }
                _ => {}
            }
        }
    });
    let _ = wait.await;
    let _ = handle.channel_success(id).await;
    let _ = handle
        .extended_data(id, 1, format!("rempart: {reason}\r\n").into_bytes())
        .await;
    let _ = handle.exit_status_request(id, 1).await;
    let _ = handle.eof(id).await;
    let _ = handle.close(id).await;
    // Then the connection goes: a refused user holds no slot.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let _ = handle
        .disconnect(
            russh::Disconnect::ByApplication,
            format!("rempart: {reason}"),
            "en".into(),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_forwarding_rules() {
        assert_eq!(split_login("alice+db-1"), Some(("alice", "db-1")));
        assert_eq!(split_login("alice"), None);
        assert_eq!(split_login("+db-1"), None);
        assert_eq!(split_login("alice+"), None);
        assert!(forward_allowed(None, "127.0.0.1", 5432).is_err());
        assert!(forward_allowed(Some([5432, 5432]), "127.0.0.1", 5432).is_ok());
        assert!(forward_allowed(Some([5432, 5432]), "10.0.0.1", 5432).is_err());
        assert!(forward_allowed(Some([5432, 5432]), "localhost", 5433).is_err());
        assert!(forward_allowed(Some([1, 65535]), "::1", 70_000).is_err());
    }
}
