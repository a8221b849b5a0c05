//! The two directions of a relayed channel, each read through a buffer of
//! its own.
//!
//! russh gives a peer more window as soon as data arrives, not when it is
//! consumed, so the only brake on a peer is its connection's read loop
//! waiting for a channel's queue. A loop that waits reads nothing else,
//! window adjustments included. With a user slow to read from a target that
//! echoes (`ssh host cat < big`), the user's loop would wait for room
//! upward (the target takes no more input until its output is read), the
//! target's loop for room downward (the user reads slowly), and neither
//! would see the window adjustment the other needs: the session would hang
//! for good.
//!
//! So each direction holds up to [`CAP`] bytes and then waits, as flow
//! control should; but while the *other* direction is the one waiting, it
//! keeps reading, into an overflow of up to [`OVERFLOW`] bytes. That is
//! enough for the window adjustments to get through. A direction that
//! would need more has its channel cut (see [`Pair::overflowed`]), so
//! memory stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use russh::{ChannelMsg, ChannelReadHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of data a direction holds before it waits: twice the window the
/// bastion gives, so a full window always fits.
pub const CAP: usize = 4 << 20;
/// Bytes a direction may hold beyond [`CAP`] while the other direction waits.
pub const OVERFLOW: usize = 32 << 20;
/// How often a waiting direction looks whether the other one waits too.
const RECHECK: Duration = Duration::from_millis(20);

/// A message and the share of the buffer it holds until it is written.
pub type Buffered = (ChannelMsg, Option<OwnedSemaphorePermit>);

/// What one direction's reader shows the other, and the relay.
#[derive(Debug, Clone)]
pub struct Side {
    /// Since when (ms after `origin`, +1) the reader waits for room; 0: not.
    since: Arc<AtomicU64>,
    origin: Instant,
    done: Arc<AtomicBool>,
    overflowed: Arc<AtomicBool>,
}

impl Side {
    fn new(origin: Instant) -> Side {
        Side {
            since: Arc::new(AtomicU64::new(0)),
            origin,
            done: Arc::new(AtomicBool::new(false)),
            overflowed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The reader has ended (the channel closed).
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// The reader waits for room.
    pub fn is_waiting(&self) -> bool {
        self.since.load(Ordering::Relaxed) != 0
    }

    /// More than [`CAP`] + [`OVERFLOW`] would have been needed: the relay
    /// cuts the channel.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    fn wait_starts(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(0);
        self.since.store(ms + 1, Ordering::Relaxed);
    }

    fn wait_ends(&self) {
        self.since.store(0, Ordering::Relaxed);
    }
}

/// The two readers of a channel: the user's side and the target's.
#[derive(Debug)]
pub struct Pair {
    pub from_user: mpsc::UnboundedReceiver<Buffered>,
    pub from_target: mpsc::UnboundedReceiver<Buffered>,
    pub user: Side,
    pub target: Side,
}

/// Starts both readers.
pub fn pair(from_user: ChannelReadHalf, from_target: ChannelReadHalf) -> Pair {
    let origin = Instant::now();
    let (user, target) = (Side::new(origin), Side::new(origin));
    let (user_tx, user_rx) = mpsc::unbounded_channel();
    let (target_tx, target_rx) = mpsc::unbounded_channel();
    tokio::spawn(read(from_user, user_tx, user.clone(), target.clone()));
    tokio::spawn(read(from_target, target_tx, target.clone(), user.clone()));
    Pair {
        from_user: user_rx,
        from_target: target_rx,
        user,
        target,
    }
}

async fn read(
    mut from: ChannelReadHalf,
    tx: mpsc::UnboundedSender<Buffered>,
    me: Side,
    other: Side,
) {
    let room = Arc::new(Semaphore::new(CAP));
    let overflow = Arc::new(Semaphore::new(OVERFLOW));
    while let Some(message) = from.wait().await {
        let size = match &message {
            ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
            _ => 0,
        };
        let permit = if size == 0 {
            None
        } else {
            let wanted = u32::try_from(size.min(CAP)).unwrap_or(u32::MAX);
            match take_room(&room, &overflow, wanted, &me, &other).await {
                Some(permit) => Some(permit),
                None => {
                    me.overflowed.store(true, Ordering::Relaxed);
                    break;
                }
            }
        };
        if tx.send((message, permit)).is_err() {
            break;
        }
    }
    me.done.store(true, Ordering::Relaxed);
}

/// Room for `wanted` bytes: in the buffer, waiting if need be; or in the
/// overflow while the other direction waits. `None` when the overflow is
/// spent too.
async fn take_room(
    room: &Arc<Semaphore>,
    overflow: &Arc<Semaphore>,
    wanted: u32,
    me: &Side,
    other: &Side,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = room.clone().try_acquire_many_owned(wanted) {
        return Some(permit);
    }
    me.wait_starts();
    let permit = loop {
        if other.is_waiting() {
            break overflow.clone().try_acquire_many_owned(wanted).ok();
        }
        tokio::select! {
            permit = room.clone().acquire_many_owned(wanted) => break permit.ok(),
            () = tokio::time::sleep(RECHECK) => {}
        }
    };
    me.wait_ends();
    permit
}
