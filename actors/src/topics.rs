//! The topic table of one shard: who subscribes to what, and delivery of a message framed once
//! to every subscriber here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use indexmap::IndexSet;
use ringsock_engine::server::{ConnId, Conns};

use crate::delivery::{Delivery, DeliveryLimits, SlowPolicy};
use crate::outgoing::Outgoing;
use crate::registry::Registry;
use crate::slot::Slot;

/// One topic on one shard.
struct Topic {
    /// Its name, shared with the subscribers' slots.
    name: Arc<str>,
    /// Its subscribers here: O(1) to remove, a dense vector to walk on publish.
    subscribers: IndexSet<ConnId>,
    /// Its own slow-subscriber policy, if it has one.
    policy: Option<SlowPolicy>,
    /// Its subscribers over all shards (the registry's counter).
    everywhere: Arc<AtomicUsize>,
}

/// The topic table of one shard. A topic exists while it has subscribers here.
#[derive(Default)]
pub(crate) struct Topics {
    /// The topics with subscribers here, by name.
    topics: HashMap<Arc<str>, Topic>,
    /// Policies named at the server, applied to topics as they appear.
    policies: Arc<HashMap<String, SlowPolicy>>,
    /// The server-wide view, told as topics appear here and leave.
    registry: Arc<Registry>,
}

impl Topics {
    /// An empty table that gives the topics named in `policies` their policy as they appear,
    /// and tells `registry` of each topic that appears here or leaves.
    pub(crate) fn new(policies: Arc<HashMap<String, SlowPolicy>>, registry: Arc<Registry>) -> Self {
        Self {
            topics: HashMap::new(),
            policies,
            registry,
        }
    }

    /// Adds `id` to `topic`; the shared name to remember for unsubscribing, if it was new.
    pub(crate) fn subscribe(&mut self, topic: &str, id: ConnId) -> Option<Arc<str>> {
        if let Some(t) = self.topics.get_mut(topic) {
            let added = t.subscribers.insert(id);
            if added {
                t.everywhere.fetch_add(1, Ordering::Relaxed);
            }
            return added.then(|| t.name.clone());
        }
        let name: Arc<str> = Arc::from(topic);
        let everywhere = self.registry.join(&name);
        everywhere.fetch_add(1, Ordering::Relaxed);
        let mut t = Topic {
            name: name.clone(),
            subscribers: IndexSet::new(),
            policy: self.policies.get(topic).copied(),
            everywhere,
        };
        t.subscribers.insert(id);
        self.topics.insert(name.clone(), t);
        Some(name)
    }

    /// Removes `id` from `topic`; a topic left empty is forgotten.
    pub(crate) fn unsubscribe(&mut self, topic: &str, id: ConnId) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        let removed = t.subscribers.swap_remove(&id);
        if removed {
            t.everywhere.fetch_sub(1, Ordering::Relaxed);
        }
        if t.subscribers.is_empty() {
            self.topics.remove(topic);
            self.registry.leave(topic);
        }
        removed
    }

    /// Subscribers of `topic` on this shard.
    pub(crate) fn count_here(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.subscribers.len())
    }

    /// Subscribers of `topic` on every shard.
    pub(crate) fn count(&self, topic: &str) -> usize {
        match self.topics.get(topic) {
            Some(t) => t.everywhere.load(Ordering::Relaxed),
            None => self.registry.subscribers(topic),
        }
    }

    /// Sets the slow-subscriber policy of `topic` on this shard (while it exists).
    pub(crate) fn set_policy(&mut self, topic: &str, policy: SlowPolicy) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.policy = Some(policy);
        }
    }

    /// Queues `out` for every subscriber of `topic` except `exclude`, applying the policy to
    /// those at or past `high_water` bytes of unwritten output.
    pub(crate) fn deliver(
        &self,
        conns: &mut Conns<'_, Slot>,
        topic: &str,
        out: &mut Outgoing,
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
                if conns.get(id).is_some_and(|open| out.queue(&mut open.ws)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ringsock_engine::ws::CloseCode;

    fn ids() -> (ConnId, ConnId) {
        (ConnId::from_u64(1), ConnId::from_u64(2))
    }

    #[test]
    fn a_topic_exists_while_it_has_subscribers() {
        let (a, b) = ids();
        let mut topics = Topics::default();
        let name = topics.subscribe("t", a).expect("first subscription is new");
        assert_eq!(&*name, "t");
        assert_eq!(
            topics.subscribe("t", a),
            None,
            "subscribing twice is a no-op"
        );
        assert!(topics.subscribe("t", b).is_some());
        assert_eq!(topics.count_here("t"), 2);
        assert_eq!(topics.count("t"), 2, "the server-wide count, one shard");
        assert!(topics.unsubscribe("t", a));
        assert!(!topics.unsubscribe("t", a));
        assert_eq!(topics.count_here("t"), 1);
        assert!(topics.unsubscribe("t", b));
        assert!(topics.topics.is_empty(), "an empty topic is forgotten");
        assert!(topics.registry.list().is_empty(), "and left the registry");
    }

    #[test]
    fn a_named_policy_applies_to_its_topic_when_it_appears() {
        let (a, _) = ids();
        let policies = HashMap::from([(
            "ticker".to_owned(),
            SlowPolicy::Close(CloseCode::POLICY_VIOLATION),
        )]);
        let mut topics = Topics::new(Arc::new(policies), Arc::default());
        topics.subscribe("ticker", a);
        topics.subscribe("other", a);
        assert_eq!(
            topics.topics["ticker"].policy,
            Some(SlowPolicy::Close(CloseCode::POLICY_VIOLATION))
        );
        assert_eq!(topics.topics["other"].policy, None);
    }
}
