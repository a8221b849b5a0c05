//! Each direction of a relayed channel reads through a buffer of its own.
//!
//! russh gives a peer more window as soon as data arrives, not when it is
//! consumed, so the only brake on a peer is the connection's read loop
//! waiting for a channel's queue. Waiting there directly would couple the
//! two connections of a session: with a user slow to read and a target
//! that echoes (`ssh host cat`), each loop would wait for the other and
//! the session would hang for good. Here a reader task takes messages off
//! the connection at once into a buffer of [`CAP`] bytes, and waits only
//! when that is full; a channel whose two directions both stay full for
//! [`STALL`] is reported as stalled, and the relay cuts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use russh::{ChannelMsg, ChannelReadHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of data a direction holds before it stops reading: twice the
/// window the bastion gives, so a full window always fits.
pub const CAP: usize = 4 << 20;
/// How long both directions may stay full before the channel is cut.
pub const STALL: Duration = Duration::from_secs(30);

/// A message and the share of the buffer it holds until it is written.
pub type Buffered = (ChannelMsg, Option<OwnedSemaphorePermit>);

/// Since when (ms after `origin`, +1) the reader waits for room; 0: it does not.
#[derive(Debug, Clone)]
pub struct Full {
    since: Arc<AtomicU64>,
    origin: Instant,
    /// The direction's reader has ended (the channel closed).
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Full {
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// How long the reader has been waiting for room, if it is.
    pub fn waiting(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

/// Starts the reader of one direction.
pub fn read(mut from: ChannelReadHalf) -> (mpsc::UnboundedReceiver<Buffered>, Full) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(CAP));
    let full = Full {
        since: Arc::new(AtomicU64::new(0)),
        origin: Instant::now(),
        done: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let marker = full.clone();
    tokio::spawn(async move {
        read_all(&mut from, &tx, &room, &marker).await;
        marker.done.store(true, Ordering::Relaxed);
    });
    (rx, full)
}

async fn read_all(
    from: &mut ChannelReadHalf,
    tx: &mpsc::UnboundedSender<Buffered>,
    room: &Arc<Semaphore>,
    marker: &Full,
) {
    while let Some(message) = from.wait().await {
        let size = match &message {
            ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
            _ => 0,
        };
        let permit = if size == 0 {
            None
        } else {
            let wanted = u32::try_from(size.min(CAP)).unwrap_or(u32::MAX);
            let permit = match room.clone().try_acquire_many_owned(wanted) {
                Ok(permit) => permit,
                Err(_) => {
                    let ms = u64::try_from(marker.origin.elapsed().as_millis()).unwrap_or(0);
                    marker.since.store(ms + 1, Ordering::Relaxed);
                    let permit = room.clone().acquire_many_owned(wanted).await;
                    marker.since.store(0, Ordering::Relaxed);
                    match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    }
                }
            };
            Some(permit)
        };
        if tx.send((message, permit)).is_err() {
            return;
        }
    }
}

/// Whether both directions have waited for room longer than [`STALL`].
pub fn stalled(a: &Full, b: &Full) -> bool {
    matches!((a.waiting(), b.waiting()), (Some(x), Some(y)) if x >= STALL && y >= STALL)
}
