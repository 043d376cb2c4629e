//! The server-wide settings every shard applies to its connections, fixed at start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::delivery::SlowPolicy;

/// Server-wide settings the runtime applies to every connection.
pub(crate) struct Settings {
    /// How often to ping each connection, if at all.
    pub ping: Option<Duration>,
    /// How long a peer has to answer an automatic ping before it is cut.
    pub pong_timeout: Duration,
    /// The engine's high output level, copied out for topics and send statuses.
    pub high_water: usize,
    /// The engine's low output level, at which a connection past `high_water` hears `on_drain`.
    pub low_water: usize,
    /// What topics do with slow subscribers, unless a topic has its own policy.
    pub policy: SlowPolicy,
    /// Policies named per topic at the server, applied as each topic appears on a shard.
    pub topic_policies: Arc<HashMap<String, SlowPolicy>>,
    /// Whether each connection keeps its upgrade request (for `Ctx::request`).
    pub keep_request: bool,
}
