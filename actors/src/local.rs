//! One shard's runtime state, beside the engine's: its topic table, the batch of posted
//! publishes, its actors and timer keys, and what it has sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ringsock_engine::server::Remote;

use crate::actor_entry::ActorEntry;
use crate::batch::Batch;
use crate::delivery::DeliveryLimits;
use crate::post::Post;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::stats::{Sent, Stats};
use crate::topics::Topics;

/// One shard's runtime state.
pub(crate) struct Local {
    /// This shard's index.
    pub shard: usize,
    /// Every shard's mailbox, for forwarding publishes and handing out addresses.
    pub remote: Remote<Post>,
    /// The server-wide settings.
    pub settings: Arc<Settings>,
    /// The server-wide counters.
    pub stats: Arc<Stats>,
    /// Who subscribes to what on this shard.
    pub topics: Topics,
    /// Posted publishes waiting to be delivered together.
    pub batch: Batch,
    /// The last timer key handed out (keys are per shard and never reused).
    next_timer: u64,
    /// This shard's actors, by id.
    pub actors: HashMap<u64, ActorEntry>,
    /// Shard timers: timer key → the actor that set it.
    pub actor_timers: HashMap<u64, u64>,
    /// What [`crate::Ctx::send`] queued on this shard (a client pool counts its own share).
    pub sent: Sent,
}

impl Local {
    /// Shard `shard`'s empty state.
    pub(crate) fn new(
        shard: usize,
        remote: Remote<Post>,
        settings: Arc<Settings>,
        stats: Arc<Stats>,
        registry: Arc<Registry>,
    ) -> Self {
        let topics = Topics::new(settings.topic_policies.clone(), registry);
        Local {
            shard,
            remote,
            settings,
            stats,
            topics,
            batch: Batch::default(),
            next_timer: 0,
            actors: HashMap::new(),
            actor_timers: HashMap::new(),
            sent: Sent::default(),
        }
    }

    /// A fresh timer key.
    pub(crate) fn timer_id(&mut self) -> u64 {
        self.next_timer += 1;
        self.next_timer
    }

    /// The budget a delivery at `now` checks subscribers against.
    pub(crate) fn delivery_limits(&self, now: Instant) -> DeliveryLimits {
        DeliveryLimits {
            high_water: self.settings.high_water,
            policy: self.settings.policy,
            now,
        }
    }
}
