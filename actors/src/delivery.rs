//! The vocabulary of topic delivery: what to do with a slow subscriber, and how a publish went.
//! Plain data shared by the topic table, the settings, the counters and the public API.

use std::time::Instant;

use ringsock_engine::ws::CloseCode;

/// What happens to a subscriber whose unwritten output has reached the high-water mark when a
/// published message arrives for it. (Small messages published from outside the shard in a
/// quick run are delivered as one batch, and the policy then applies to the batch as a whole.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowPolicy {
    /// Skip this message for that subscriber (counted in [`crate::Stats`]).
    Drop,
    /// Close the subscriber with this code (1008 policy violation, or 1013 try again later).
    /// The close frame queues behind what it has not read yet.
    Close(CloseCode),
}

/// How one publish went on one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers the message was queued for.
    pub queued: usize,
    /// Subscribers that were past the high-water mark and skipped.
    pub dropped: usize,
    /// Subscribers closed by the policy.
    pub closed: usize,
}

/// The budget a delivery checks subscribers against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeliveryLimits {
    /// Unwritten bytes from which a subscriber counts as slow.
    pub high_water: usize,
    /// What to do with a slow subscriber, for topics without a policy of their own.
    pub policy: SlowPolicy,
    /// The loop turn's time, for the close handshake a [`SlowPolicy::Close`] starts.
    pub now: Instant,
}

/// Close codes for [`SlowPolicy::Close`].
pub mod codes {
    use super::CloseCode;
    /// 1008: the subscriber broke the server's policy (did not keep up).
    pub const POLICY_VIOLATION: CloseCode = CloseCode::POLICY_VIOLATION;
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
}
