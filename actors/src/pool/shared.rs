//! What the pool's handlers, its driver thread and its owner share: the counters, each written
//! by one thread, and the driver's inbox.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread::Thread;

use ringsock_engine::ws::CloseCode;

/// The pool's counters, summed over its shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Dials started (first dials and redials).
    pub dialed: u64,
    /// Dials in progress: neither open nor failed yet.
    pub connecting: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections that opened, in all.
    pub opened: u64,
    /// Dials that did not open (refused, timed out, a handshake refused, no socket).
    pub failed: u64,
    /// Open connections that closed, in all.
    pub closed: u64,
    /// Of those, how many without a close handshake (1006: the transport dropped, a close
    /// went unanswered).
    pub dropped: u64,
    /// Redials scheduled after a failure or a close.
    pub reconnects: u64,
    /// Connections given up after the reconnect policy's attempt limit.
    pub gave_up: u64,
    /// Whole messages received.
    pub messages_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Messages the pool's handlers sent with [`Ctx::send`](crate::Ctx::send) and its
    /// `send_*` forms.
    pub messages_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
}

/// Counters one shard writes (single writer: a load and a store, no atomic read-modify-write),
/// on a cache line of their own.
#[derive(Default)]
#[repr(align(128))]
pub(super) struct ShardCounters {
    /// Connections that opened.
    pub opened: AtomicU64,
    /// Open connections that closed.
    pub closed: AtomicU64,
    /// Of those, closed without a close handshake (1006).
    pub dropped: AtomicU64,
    /// Whole messages received.
    pub messages_in: AtomicU64,
    /// Their payload bytes.
    pub bytes_in: AtomicU64,
    /// Messages sent.
    pub messages_out: AtomicU64,
    /// Their payload bytes.
    pub bytes_out: AtomicU64,
}

/// Counters the driver thread writes.
#[derive(Default)]
#[repr(align(128))]
pub(super) struct DriverCounters {
    /// Dials started.
    pub dialed: AtomicU64,
    /// Redials scheduled.
    pub reconnects: AtomicU64,
    /// Slots given up.
    pub gave_up: AtomicU64,
}

/// Adds `n` to a counter only this thread writes.
#[inline]
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// What the pool's handlers and its owner share with the driver.
pub(super) struct Shared {
    /// One set of counters per shard, each written by its shard only.
    pub shards: Box<[ShardCounters]>,
    /// The counters the driver writes.
    pub driver: DriverCounters,
    /// Written from any shard (`on_connect_failed` has no shard) and by the driver.
    pub failed: AtomicU64,
    /// The pool is stopping: nothing more is dialled.
    pub stopping: AtomicBool,
    /// The driver's inbox.
    pub events: mpsc::Sender<Event>,
    /// The driver is parked until something happens (it is not when busy: then it looks at
    /// its events every tick by itself, and nobody pays a wake-up per event).
    pub driver_parked: AtomicBool,
    /// The driver's thread, to unpark it.
    pub driver_thread: OnceLock<Thread>,
}

impl Shared {
    /// Counters for `shards` shards, and nothing heard yet.
    pub(super) fn new(shards: usize, events: mpsc::Sender<Event>) -> Self {
        Self {
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            driver: DriverCounters::default(),
            failed: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            events,
            driver_parked: AtomicBool::new(false),
            driver_thread: OnceLock::new(),
        }
    }

    /// Tells the driver something happened.
    pub(super) fn notify(&self, event: Event) {
        let _ = self.events.send(event);
        // SeqCst on both sides (here after the send, there after marking itself parked and
        // before looking at the inbox): one of the two always sees the other.
        if self.driver_parked.load(Ordering::SeqCst)
            && self.driver_parked.swap(false, Ordering::SeqCst)
        {
            if let Some(thread) = self.driver_thread.get() {
                thread.unpark();
            }
        }
    }

    /// The counters now. Each is exact for its shard and read without stopping anything, so
    /// a snapshot taken while connections change may be off by those changes.
    pub(super) fn stats(&self) -> PoolStats {
        let mut s = PoolStats::default();
        let d = &self.driver;
        for c in self.shards.iter() {
            s.opened += c.opened.load(Ordering::Relaxed);
            s.closed += c.closed.load(Ordering::Relaxed);
            s.dropped += c.dropped.load(Ordering::Relaxed);
            s.messages_in += c.messages_in.load(Ordering::Relaxed);
            s.bytes_in += c.bytes_in.load(Ordering::Relaxed);
            s.messages_out += c.messages_out.load(Ordering::Relaxed);
            s.bytes_out += c.bytes_out.load(Ordering::Relaxed);
        }
        s.failed = self.failed.load(Ordering::Relaxed);
        // Read after what it bounds, so `connecting` never goes below zero by much.
        s.dialed = d.dialed.load(Ordering::Relaxed);
        s.reconnects = d.reconnects.load(Ordering::Relaxed);
        s.gave_up = d.gave_up.load(Ordering::Relaxed);
        s.connecting = s.dialed.saturating_sub(s.opened + s.failed);
        s.open = s.opened.saturating_sub(s.closed);
        s
    }

    /// Shard `shard`'s counters.
    pub(super) fn shard(&self, shard: usize) -> &ShardCounters {
        // Sized by the runtime's shard count: a shard index is always in range.
        &self.shards[shard]
    }
}

/// What the driver hears.
pub(super) enum Event {
    /// Slot `index` opened.
    Opened {
        /// The slot.
        index: usize,
    },
    /// Slot `index`'s dial failed.
    Failed {
        /// The slot.
        index: usize,
    },
    /// Slot `index` closed with `code`.
    Closed {
        /// The slot.
        index: usize,
        /// Its close code.
        code: CloseCode,
    },
    /// The pool is stopping.
    Stop,
}
