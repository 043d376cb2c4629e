//! Counters: the server-wide [`Stats`] every shard adds to, and what one shard has sent.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::delivery::Delivery;

/// Counters over all shards, readable while the server runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages published (each counted once, however many subscribers).
    pub published: AtomicU64,
    /// Deliveries queued to subscribers.
    pub delivered: AtomicU64,
    /// Deliveries skipped by [`SlowPolicy::Drop`](crate::SlowPolicy::Drop).
    pub dropped: AtomicU64,
    /// Subscribers closed by [`SlowPolicy::Close`](crate::SlowPolicy::Close).
    pub closed_slow: AtomicU64,
    /// Publishes not forwarded to another shard because its mailbox was full.
    pub forward_dropped: AtomicU64,
    /// The next actor id: actors are numbered server-wide, so an id names one on any shard.
    pub(crate) next_actor: AtomicU64,
}

impl Stats {
    /// Counts one delivery on one shard.
    pub(crate) fn add(&self, d: Delivery) {
        self.delivered.fetch_add(d.queued as u64, Ordering::Relaxed);
        // Skipped when zero, as they almost always are: an atomic add each costs more than
        // the test.
        if d.dropped > 0 {
            self.dropped.fetch_add(d.dropped as u64, Ordering::Relaxed);
        }
        if d.closed > 0 {
            self.closed_slow
                .fetch_add(d.closed as u64, Ordering::Relaxed);
        }
    }
}

/// Messages and payload bytes sent on one shard: plain counters, not atomics, as only the
/// shard touches them (a client pool reads its own share through its handlers' contexts).
#[derive(Default)]
pub(crate) struct Sent {
    /// Messages queued by `Ctx::send` and its forms.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
}
