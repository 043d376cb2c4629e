//! Timer ids and the key space the runtime shares with the engine's timers.

/// Names a timer set with `set_timer`; pass it to `cancel_timer`, or compare it in `on_timer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) u64);

/// Engine timer keys with this bit are the runtime's own (pings), never a [`TimerId`].
pub(crate) const INTERNAL: u64 = 1 << 63;
/// Time to send the next automatic ping.
pub(crate) const PING_TICK: u64 = INTERNAL;
/// The pong for automatic ping `key & !PONG_DUE` is due (this bit set, ids below 2^62).
pub(crate) const PONG_DUE: u64 = INTERNAL | (1 << 62);
