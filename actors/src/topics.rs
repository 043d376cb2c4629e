//! Topics of one shard: who subscribes, and delivery of a message framed once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use indexmap::IndexSet;
use ringsock_engine::server::{ConnId, Conns};
use ringsock_engine::ws::CloseCode;

use crate::runtime::Slot;

/// What happens to a subscriber whose unwritten output has reached the high-water mark when a
/// published message arrives for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

struct Topic {
    name: Arc<str>,
    subscribers: IndexSet<ConnId>,
    policy: Option<SlowPolicy>,
}

/// The topic table of one shard. A topic exists while it has subscribers here.
#[derive(Default)]
pub(crate) struct Topics {
    topics: HashMap<Arc<str>, Topic>,
    /// Policies named at the server, applied to topics as they appear.
    policies: Arc<HashMap<String, SlowPolicy>>,
}

impl Topics {
    pub fn new(policies: Arc<HashMap<String, SlowPolicy>>) -> Self {
        Self {
            topics: HashMap::new(),
            policies,
        }
    }

    /// Adds `id` to `topic`; the shared name to remember for unsubscribing, if it was new.
    pub fn subscribe(&mut self, topic: &str, id: ConnId) -> Option<Arc<str>> {
        if let Some(t) = self.topics.get_mut(topic) {
            return t.subscribers.insert(id).then(|| t.name.clone());
        }
        let name: Arc<str> = Arc::from(topic);
        let mut t = Topic {
            name: name.clone(),
            subscribers: IndexSet::new(),
            policy: self.policies.get(topic).copied(),
        };
        t.subscribers.insert(id);
        self.topics.insert(name.clone(), t);
        Some(name)
    }

    /// Removes `id` from `topic`; a topic left empty is forgotten.
    pub fn unsubscribe(&mut self, topic: &str, id: ConnId) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let removed = t.subscribers.swap_remove(&id);
        if t.subscribers.is_empty() {
            self.topics.remove(topic);
        }
        removed
    }

    /// Subscribers of `topic` on this shard.
    pub fn count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.subscribers.len())
    }

    /// Sets the slow-subscriber policy of `topic` on this shard (while it exists).
    pub fn set_policy(&mut self, topic: &str, policy: SlowPolicy) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.policy = Some(policy);
        }
    }

    /// Queues `frame` for every subscriber of `topic` except `exclude`, applying the policy to
    /// those at or past `high_water` bytes of unwritten output.
    pub fn deliver(
        &self,
        conns: &mut Conns<'_, Slot>,
        topic: &str,
        frame: &Bytes,
        exclude: Option<ConnId>,
        limits: DeliveryLimits,
    ) -> Delivery {
        let mut delivery = Delivery::default();
        let Some(t) = self.topics.get(topic) else {
            return delivery;
        };
        let policy = t.policy.unwrap_or(limits.policy);
        for &id in &t.subscribers {
            if Some(id) == exclude {
                continue;
            }
            if conns.buffered(id) < limits.high_water {
                if conns.send_raw(id, frame) {
                    delivery.queued += 1;
                }
                continue;
            }
            match policy {
                SlowPolicy::Drop => delivery.dropped += 1,
                SlowPolicy::Close(code) => {
                    if let Some(open) = conns.get(id) {
                        if open
                            .ws
                            .close_as_endpoint(code, "slow consumer: too much unread", limits.now)
                            .is_ok()
                        {
                            delivery.closed += 1;
                        }
                    }
                }
            }
        }
        delivery
    }
}

/// The budget a delivery checks subscribers against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeliveryLimits {
    pub high_water: usize,
    pub policy: SlowPolicy,
    pub now: Instant,
}
