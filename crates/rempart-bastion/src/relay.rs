//! Moving one channel's traffic between the user and the target, both ways,
//! with what the record needs taken on the way: PTY output, input and
//! resizes for the recording, commands for `ssh.exec`, byte counts.
//!
//! Each direction is its own task, so a full window on one side never
//! stalls the other; flow control passes through (a write waits for the
//! receiver's window).

use std::sync::{Arc, Mutex};

use russh::server::Handle;
use russh::{Channel, ChannelMsg, client, server};
use serde_json::json;

use crate::Bastion;
use crate::buffer::{self, Side};
use crate::recording::Recorder;
use crate::session::Session;
use rempart_sftp::{Observer, Operation};

/// What the user asked of the channel's terminal, for the recording.
#[derive(Debug, Clone)]
struct Pty {
    term: String,
    width: u32,
    height: u32,
}

type SharedRecorder = Arc<Mutex<Option<Recorder>>>;

/// Which refused forwarding a request asked for.
enum MessageKind {
    X11,
    Other,
}
/// Set once the channel runs the sftp subsystem.
type SharedSftp = Arc<Mutex<Option<Observer>>>;

/// Sends `sftp.<kind>` events for finished operations.
async fn log_sftp(bastion: &Bastion, session: &Session, operations: Vec<Operation>) {
    for op in operations {
        let mut fields = session.fields();
        fields.insert("path".into(), json!(op.path));
        if let Some(to) = op.to {
            fields.insert("to".into(), json!(to));
        }
        if let Some(mode) = op.mode {
            fields.insert("mode".into(), json!(mode));
        }
        if let Some(bytes) = op.bytes {
            fields.insert("bytes".into(), json!(bytes));
        }
        if let Some(message) = op.message {
            fields.insert("reason".into(), json!(message));
        }
        let outcome = if op.success { "success" } else { "failure" };
        bastion
            .events
            .emit(&format!("sftp.{}", op.kind), outcome, fields.into())
            .await;
    }
}

/// An SFTP stream that cannot be followed is logged, and its channel ends.
async fn sftp_broken(
    bastion: &Bastion,
    session: &Session,
    handle: &Handle,
    id: russh::ChannelId,
    why: String,
) {
    let mut fields = session.fields();
    fields.insert("reason".into(), json!(why));
    bastion
        .events
        .emit("sftp.error", "failure", fields.into())
        .await;
    let _ = handle.close(id).await;
}

fn with_recorder(recorder: &SharedRecorder, f: impl FnOnce(&mut Recorder)) {
    if let Some(r) = recorder.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        f(r);
    }
}

/// Records with `f`, then starts the next part when this one is full.
fn record(
    bastion: &Bastion,
    session: &Session,
    recorder: &SharedRecorder,
    f: impl FnOnce(&mut Recorder),
) {
    let mut slot = recorder.lock().unwrap_or_else(|e| e.into_inner());
    let Some(r) = slot.as_mut() else {
        return;
    };
    f(r);
    if r.has_failed() {
        // Fail closed: what cannot be recorded does not go on.
        session.end("the bastion cannot record this session (a write failed)".into());
        return;
    }
    if !r.is_full() {
        return;
    }
    let Some(full) = slot.take() else {
        return;
    };
    let next = format!("{}-{}", session.id, session.recordings_started());
    match full.next_part(&bastion.recordings_dir(), &next) {
        Ok((done, part)) => {
            session
                .recordings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(done);
            *slot = Some(part);
        }
        Err(err) => {
            tracing::error!(session = %session.id, error = %err, "cannot record: the session is cut");
            session.end(format!("the bastion cannot record this session ({err})"));
        }
    }
}

/// Cuts the session when a direction of a channel would need more than
/// its buffer and overflow (see [`buffer`]): memory stays bounded, and the
/// user is told why.
fn watch_for_overflow(session: &Arc<Session>, user: Side, target: Side) {
    let session = session.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        while session.cut_reason().is_none()
            && !session.upstream.is_closed()
            && !(user.is_done() && target.is_done())
        {
            tick.tick().await;
            let which = if user.overflowed() {
                Some("your input is not being taken by the target")
            } else if target.overflowed() {
                Some("the target's output is not being read")
            } else {
                None
            };
            if let Some(which) = which {
                session.end(format!(
                    "the channel was cut: {which}, and more than {} MiB waited in the bastion",
                    (buffer::CAP + buffer::OVERFLOW) >> 20
                ));
            }
        }
    });
}

/// Relays a session channel (shell, exec, subsystem) until either side
/// closes it, then finishes its recording.
pub async fn session_channel(
    bastion: Arc<Bastion>,
    session: Arc<Session>,
    handle: Handle,
    user_channel: Channel<server::Msg>,
    target_channel: Channel<client::Msg>,
) {
    let id = user_channel.id();
    let (from_user, to_user) = user_channel.split();
    let (from_target, to_target) = target_channel.split();
    let buffer::Pair {
        mut from_user,
        mut from_target,
        user: user_side,
        target: target_side,
    } = buffer::pair(from_user, from_target);
    watch_for_overflow(&session, user_side, target_side);
    let recorder: SharedRecorder = Arc::new(Mutex::new(None));
    let sftp: SharedSftp = Arc::new(Mutex::new(None));

    let upward = {
        let session = session.clone();
        let recorder = recorder.clone();
        let bastion = bastion.clone();
        let sftp = sftp.clone();
        let handle = handle.clone();
        async move {
            let mut pty: Option<Pty> = None;
            let mut started = false;
            while let Some((message, _room)) = from_user.recv().await {
                let message_kind = if matches!(message, ChannelMsg::RequestX11 { .. }) {
                    MessageKind::X11
                } else {
                    MessageKind::Other
                };
                let sent = match message {
                    ChannelMsg::Data { data } => {
                        session.count_from_user(data.len());
                        record(&bastion, &session, &recorder, |r| r.input(&data));
                        let followed = sftp
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_mut()
                            .map(|o| o.from_user(&data));
                        if let Some(Err(err)) = followed {
                            sftp_broken(&bastion, &session, &handle, id, err.to_string()).await;
                            let _ = to_target.close().await;
                            break;
                        }
                        to_target.data_bytes(data).await
                    }
                    ChannelMsg::ExtendedData { data, ext } => {
                        session.count_from_user(data.len());
                        to_target.extended_data_bytes(ext, data).await
                    }
                    ChannelMsg::Eof => to_target.eof().await,
                    ChannelMsg::Close => {
                        let _ = to_target.close().await;
                        break;
                    }
                    ChannelMsg::RequestPty {
                        term,
                        col_width,
                        row_height,
                        pix_width,
                        pix_height,
                        terminal_modes,
                        ..
                    } => {
                        pty = Some(Pty {
                            term: term.clone(),
                            width: col_width,
                            height: row_height,
                        });
                        to_target
                            .request_pty(
                                true,
                                &term,
                                col_width,
                                row_height,
                                pix_width,
                                pix_height,
                                &terminal_modes,
                            )
                            .await
                    }
                    // One shell, command or subsystem per channel (RFC 4254
                    // §6.5): a second request is refused here, so what the
                    // record says the channel runs stays true.
                    ChannelMsg::RequestShell { .. }
                    | ChannelMsg::Exec { .. }
                    | ChannelMsg::RequestSubsystem { .. }
                        if started =>
                    {
                        handle
                            .channel_failure(id)
                            .await
                            .map_err(|()| russh::Error::SendError)
                    }
                    ChannelMsg::RequestShell { .. } => {
                        started = true;
                        let mut fields = session.fields();
                        fields.insert("pty".into(), json!(pty.is_some()));
                        bastion
                            .events
                            .emit("ssh.shell", "success", fields.into())
                            .await;
                        // A shell is recorded with or without a terminal: what
                        // is typed into it is the record (`ssh host < script`).
                        let terminal = pty.clone().unwrap_or(Pty {
                            term: "none".into(),
                            width: 80,
                            height: 24,
                        });
                        start_recording(&bastion, &session, &recorder, Some(&terminal), "shell");
                        to_target.request_shell(true).await
                    }
                    ChannelMsg::Exec { command, .. } => {
                        started = true;
                        let text = String::from_utf8_lossy(&command).into_owned();
                        let mut fields = session.fields();
                        fields.insert("command".into(), json!(text));
                        fields.insert("pty".into(), json!(pty.is_some()));
                        bastion
                            .events
                            .emit("ssh.exec", "success", fields.into())
                            .await;
                        start_recording(&bastion, &session, &recorder, pty.as_ref(), &text);
                        to_target.exec(true, command).await
                    }
                    ChannelMsg::RequestSubsystem { name, .. } => {
                        started = true;
                        if name == "sftp" {
                            *sftp.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(Observer::default());
                        }
                        let mut fields = session.fields();
                        fields.insert("subsystem".into(), json!(name));
                        bastion
                            .events
                            .emit("ssh.subsystem", "success", fields.into())
                            .await;
                        to_target.request_subsystem(true, &name).await
                    }
                    ChannelMsg::WindowChange {
                        col_width,
                        row_height,
                        pix_width,
                        pix_height,
                    } => {
                        with_recorder(&recorder, |r| r.resize(col_width, row_height));
                        to_target
                            .window_change(col_width, row_height, pix_width, pix_height)
                            .await
                    }
                    ChannelMsg::Signal { signal } => to_target.signal(signal).await,
                    ChannelMsg::SetEnv {
                        variable_name,
                        variable_value,
                        ..
                    } => {
                        to_target
                            .set_env(false, variable_name, variable_value)
                            .await
                    }
                    // Agent and X11 forwarding stay off, and are logged as
                    // refused (russh answers the agent request itself).
                    ChannelMsg::RequestX11 { .. } | ChannelMsg::AgentForward { .. } => {
                        let x11 = matches!(message_kind, MessageKind::X11);
                        let mut fields = session.fields();
                        fields.insert("direction".into(), json!(if x11 { "x11" } else { "agent" }));
                        fields.insert("reason".into(), json!("agent and X11 forwarding are off"));
                        bastion
                            .events
                            .emit("ssh.forward", "denied", fields.into())
                            .await;
                        if x11 {
                            handle
                                .channel_failure(id)
                                .await
                                .map_err(|()| russh::Error::SendError)
                        } else {
                            Ok(())
                        }
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    };

    let downward = {
        let session = session.clone();
        let recorder = recorder.clone();
        let handle = handle.clone();
        let bastion = bastion.clone();
        let sftp = sftp.clone();
        async move {
            while let Some((message, _room)) = from_target.recv().await {
                let sent = match message {
                    ChannelMsg::Data { data } => {
                        session.count_to_user(data.len());
                        record(&bastion, &session, &recorder, |r| r.output(&data));
                        let followed = sftp
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_mut()
                            .map(|o| o.from_target(&data));
                        match followed {
                            Some(Ok(done)) => log_sftp(&bastion, &session, done).await,
                            Some(Err(err)) => {
                                sftp_broken(&bastion, &session, &handle, id, err.to_string()).await;
                                break;
                            }
                            None => {}
                        }
                        to_user.data_bytes(data).await
                    }
                    ChannelMsg::ExtendedData { data, ext } => {
                        session.count_to_user(data.len());
                        record(&bastion, &session, &recorder, |r| r.output(&data));
                        to_user.extended_data_bytes(ext, data).await
                    }
                    ChannelMsg::Eof => to_user.eof().await,
                    ChannelMsg::ExitStatus { exit_status } => {
                        to_user.exit_status(exit_status).await
                    }
                    ChannelMsg::ExitSignal {
                        signal_name,
                        core_dumped,
                        error_message,
                        lang_tag,
                    } => handle
                        .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                        .await
                        .map_err(|()| russh::Error::SendError),
                    ChannelMsg::Success => handle
                        .channel_success(id)
                        .await
                        .map_err(|()| russh::Error::SendError),
                    ChannelMsg::Failure => handle
                        .channel_failure(id)
                        .await
                        .map_err(|()| russh::Error::SendError),
                    ChannelMsg::Close => {
                        let _ = to_user.close().await;
                        break;
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    };

    // Either side ending ends the channel; the other side is told.
    let up = tokio::spawn(upward);
    let down = tokio::spawn(downward);
    let _ = tokio::join!(up, down);
    let unfinished = sftp
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .map(Observer::finish)
        .unwrap_or_default();
    log_sftp(&bastion, &session, unfinished).await;
    session
        .channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    let finished = recorder
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(Recorder::finish);
    match finished {
        Some(Ok(recorded)) => session
            .recordings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(recorded),
        Some(Err(err)) => {
            tracing::error!(session = %session.id, error = %err, "the recording could not be finished")
        }
        None => {}
    }
}

fn start_recording(
    bastion: &Bastion,
    session: &Session,
    recorder: &SharedRecorder,
    pty: Option<&Pty>,
    what: &str,
) {
    let Some(pty) = pty else {
        return;
    };
    let mut slot = recorder.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() {
        return;
    }
    let name = format!("{}-{}", session.id, session.recordings_started());
    let title = format!("{} on {}: {what}", session.user, session.target.name);
    match Recorder::create(
        &bastion.recordings_dir(),
        &name,
        pty.width,
        pty.height,
        &pty.term,
        &title,
    ) {
        Ok(r) => *slot = Some(r),
        Err(err) => {
            // Fail closed: a PTY session that cannot be recorded does not go on.
            tracing::error!(session = %session.id, error = %err, "cannot record: the session is cut");
            session.end(format!("the bastion cannot record this session ({err})"));
        }
    }
}

/// Relays a forwarded TCP connection (direct-tcpip) both ways.
pub async fn forward_channel(
    session: Arc<Session>,
    user_channel: Channel<server::Msg>,
    target_channel: Channel<client::Msg>,
) {
    let (from_user, to_user) = user_channel.split();
    let (from_target, to_target) = target_channel.split();
    let buffer::Pair {
        mut from_user,
        mut from_target,
        user: user_side,
        target: target_side,
    } = buffer::pair(from_user, from_target);
    watch_for_overflow(&session, user_side, target_side);
    let upward = {
        let session = session.clone();
        async move {
            while let Some((message, _room)) = from_user.recv().await {
                let sent = match message {
                    ChannelMsg::Data { data } => {
                        session.count_from_user(data.len());
                        to_target.data_bytes(data).await
                    }
                    ChannelMsg::Eof => to_target.eof().await,
                    ChannelMsg::Close => {
                        let _ = to_target.close().await;
                        break;
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    };
    let downward = async move {
        while let Some((message, _room)) = from_target.recv().await {
            let sent = match message {
                ChannelMsg::Data { data } => {
                    session.count_to_user(data.len());
                    to_user.data_bytes(data).await
                }
                ChannelMsg::Eof => to_user.eof().await,
                ChannelMsg::Close => {
                    let _ = to_user.close().await;
                    break;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
    };
    let _ = tokio::join!(tokio::spawn(upward), tokio::spawn(downward));
}
