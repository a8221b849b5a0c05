//! The server's clock for access decisions. In tests (and only when the
//! server was started with `--danger-test-clock`) an admin can move it
//! forward to see requests and grants expire without waiting.

use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    adjustable: bool,
}

impl Clock {
    pub fn new(adjustable: bool) -> Clock {
        Clock {
            offset_ms: AtomicI64::new(0),
            adjustable,
        }
    }

    /// Unix milliseconds, moved forward by the test offset if any.
    pub fn now_ms(&self) -> i64 {
        crate::auth::now_ms().saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    pub fn is_adjustable(&self) -> bool {
        self.adjustable
    }

    /// Moves the clock forward (never back: time in the log only grows).
    /// `false` when the clock is not adjustable.
    pub fn advance(&self, ms: i64) -> bool {
        if !self.adjustable || ms < 0 {
            return false;
        }
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_test_clock_moves_and_only_forward() {
        let fixed = Clock::new(false);
        assert!(!fixed.advance(1000));
        let test = Clock::new(true);
        let before = test.now_ms();
        assert!(test.advance(3_600_000));
        assert!(!test.advance(-1));
        assert!(test.now_ms() >= before + 3_600_000);
    }
}
