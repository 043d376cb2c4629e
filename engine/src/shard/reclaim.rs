//! Giving freed memory back to the operating system after a burst.
//!
//! A peer that makes the server hold a lot (output it does not read, a large message it resets
//! in the middle of) leaves that memory free but resident once it is gone: glibc returns a
//! thread arena's memory to the kernel only from the top of its heap, and only past a
//! threshold. So the shard counts the bytes that pass through it (received, and written), which
//! is what it allocates and frees, and once they add up to [`RECLAIM_MIN`] it asks the allocator
//! to release every free page (`malloc_trim`), at most once per [`RECLAIM_EVERY`]; a shard
//! going idle trims whatever it owes. Under any load that is one trim a second at most.

use std::time::{Duration, Instant};

/// Bytes let go of that make a trim worth its cost (it walks every arena's free lists).
pub(super) const RECLAIM_MIN: usize = 8 << 20;

/// The least time between two trims.
pub(super) const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// What the shard has let go of since its last trim.
#[derive(Debug)]
pub(crate) struct Reclaim {
    released: usize,
    last: Instant,
}

impl Reclaim {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            released: 0,
            last: now,
        }
    }

    /// `bytes` passed through the shard (received or written).
    pub(super) fn released(&mut self, bytes: usize) {
        self.released = self.released.saturating_add(bytes);
    }

    /// When a trim will be due, if one is owed: the shard wakes for it even when idle.
    pub(super) fn due_at(&self) -> Option<Instant> {
        (self.released >= RECLAIM_MIN).then_some(self.last + RECLAIM_EVERY)
    }

    /// Trims if one is due (`force`: anything released at all, for a shard going idle).
    /// Returns whether it did.
    pub(super) fn maybe_trim(&mut self, now: Instant, force: bool) -> bool {
        let owed = self.released >= RECLAIM_MIN || (force && self.released > 0);
        if !owed || now < self.last + RECLAIM_EVERY {
            return false;
        }
        self.released = 0;
        self.last = now;
        trim();
        true
    }
}

/// Returns free memory to the kernel, in every arena.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a padding size and touches only the allocator's own state,
    // under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_waits_for_enough_bytes_and_for_its_interval() {
        let t0 = Instant::now();
        let mut r = Reclaim::new(t0);
        r.released(RECLAIM_MIN - 1);
        assert_eq!(r.due_at(), None);
        assert!(!r.maybe_trim(t0 + RECLAIM_EVERY, false));
        r.released(1);
        assert_eq!(r.due_at(), Some(t0 + RECLAIM_EVERY));
        assert!(!r.maybe_trim(t0, false), "too soon after the last");
        assert!(r.maybe_trim(t0 + RECLAIM_EVERY, false));
        assert_eq!(r.due_at(), None);
        // Going idle trims whatever was released, still no more often than the interval.
        r.released(10);
        assert!(!r.maybe_trim(t0 + RECLAIM_EVERY, true));
        assert!(r.maybe_trim(t0 + 2 * RECLAIM_EVERY, true));
        assert!(
            !r.maybe_trim(t0 + 5 * RECLAIM_EVERY, true),
            "nothing released"
        );
    }
}
