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
            let ends_at = *session.ends_at.lock().unwrap_or_else(|e| e.into_inner());
            let until_end = (ends_at - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(std::time::Duration::ZERO);
            tokio::select! {
                _ = tick.tick() => {}
                _ = cut.changed() => break,
                // The known end holds whatever the control plane does.
                () = tokio::time::sleep(until_end) => {}
            }
            if session.cut_reason().is_some() || session.upstream.is_closed() {
                break;
            }
            if OffsetDateTime::now_utc() >= ends_at {
                session.end(format!("your grant ended at {ends_at}"));
                break;
            }
            // An answer slower than the period counts as no answer.
            let check = tokio::time::timeout(
                bastion.config.grant_recheck,
                bastion
                    .control
                    .check_grant(&session.user, &session.target.name),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within the recheck period")));
            match check {
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

/// Closes the target connection, tells the user on every open channel
/// (bounded: a client that reads nothing cannot hold the cut back), then
/// closes the user's connection.
pub async fn cut_session(session: &Session, reason: &str) {
    tracing::info!(session = %session.id, %reason, "session cut");
    let bounded = std::time::Duration::from_secs(2);
    // The target first: from now on nothing more reaches it.
    let _ = tokio::time::timeout(
        bounded,
        session.upstream.disconnect(
            russh::Disconnect::ByApplication,
            "session cut by the bastion",
            "en",
        ),
    )
    .await;
    let Some(handle) = session.user_connection.get() else {
        return;
    };
    let channels: Vec<_> = session
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .copied()
        .collect();
    let _ = tokio::time::timeout(bounded, async {
        for id in channels {
            let _ = handle
                .extended_data(id, 1, format!("\r\nrempart: {reason}\r\n").into_bytes())
                .await;
            let _ = handle.exit_status_request(id, 255).await;
            let _ = handle.close(id).await;
        }
    })
    .await;
    let _ = tokio::time::timeout(
        bounded,
        handle.disconnect(
            russh::Disconnect::ByApplication,
            format!("rempart: {reason}"),
            "en".into(),
        ),
    )
    .await;
}
