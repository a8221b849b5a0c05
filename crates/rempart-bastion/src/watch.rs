//! Each session's grant, checked again every `grant_recheck`: a session
//! ends within that time of its grant being revoked or ending, and at the
//! grant's known end even when the control plane cannot be asked.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::Bastion;
use crate::session::Session;

pub fn spawn(bastion: Arc<Bastion>, session: Arc<Session>) {
    tokio::spawn(async move {
        let mut cut = session.cut.subscribe();
        let mut tick = tokio::time::interval(bastion.config.grant_recheck);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cut.changed() => break,
            }
            if session.cut_reason().is_some() || session.upstream.is_closed() {
                break;
            }
            let ends_at = *session.ends_at.lock().unwrap_or_else(|e| e.into_inner());
            if OffsetDateTime::now_utc() >= ends_at {
                session.end(format!("your grant ended at {ends_at}"));
                break;
            }
            match bastion
                .control
                .check_grant(&session.user, &session.target.name)
                .await
            {
                Ok(check) if !check.allow => {
                    session.end(format!(
                        "your grant ended: {}",
                        check.reason.unwrap_or_default()
                    ));
                    break;
                }
                Ok(check) => {
                    if let Some(end) = check.ends_at {
                        *session.ends_at.lock().unwrap_or_else(|e| e.into_inner()) = end;
                    }
                }
                Err(err) => {
                    // Revocations cannot be heard now; the known end still holds.
                    tracing::warn!(session = %session.id, error = %err, "grant recheck: the control plane did not answer");
                }
            }
        }
        let closed = session.closed.load(std::sync::atomic::Ordering::Relaxed);
        if let (Some(reason), false) = (session.cut_reason(), closed) {
            cut_session(&session, &reason).await;
        }
    });
}

/// Tells the user on every open channel, then closes both connections.
pub async fn cut_session(session: &Session, reason: &str) {
    tracing::info!(session = %session.id, %reason, "session cut");
    if let Some(handle) = session.user_connection.get() {
        let channels: Vec<_> = session
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for id in channels {
            let _ = handle
                .extended_data(id, 1, format!("\r\nrempart: {reason}\r\n").into_bytes())
                .await;
            let _ = handle.exit_status_request(id, 255).await;
            let _ = handle.close(id).await;
        }
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                format!("rempart: {reason}"),
                "en".into(),
            )
            .await;
    }
    let _ = session
        .upstream
        .disconnect(
            russh::Disconnect::ByApplication,
            "session cut by the bastion",
            "en",
        )
        .await;
}
