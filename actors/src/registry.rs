//! The server-wide view of topics: which topics have a subscriber on any shard, how many
//! subscribers each has over all shards, and the hook told when a topic gains its first
//! subscriber or loses its last (where a broker subscribes upstream and unsubscribes).
//!
//! Each shard keeps its own topic table (`topics`), and comes here only when a topic appears on
//! it or leaves it (under one lock, so the hook sees a topic's first and last in the order they
//! happened), plus one atomic add per subscribe or unsubscribe. A publish never comes here.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What the topic hook ([`crate::ServerBuilder::on_topic`]) is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicEvent<'a> {
    /// The topic had no subscriber on any shard and now has one.
    FirstSubscriber(&'a str),
    /// The topic's last subscriber, server-wide, unsubscribed or closed.
    LastUnsubscribed(&'a str),
}

/// A live topic and its subscribers over all shards, as [`crate::ServerHandle::topics`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its subscribers on all shards.
    pub subscribers: usize,
}

/// The topic hook, type-erased.
pub(crate) type TopicHook = Box<dyn Fn(TopicEvent<'_>) + Send + Sync>;

/// A topic with a subscriber on some shard.
struct Live {
    /// Its subscribers over all shards; each shard's table holds a clone and adds to it.
    subscribers: Arc<AtomicUsize>,
    /// The shards it has subscribers on.
    shards: usize,
}

/// The server-wide topic registry, shared by every shard and the [`crate::ServerHandle`] handle.
#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<Arc<str>, Live>>,
    hook: Option<TopicHook>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("topics", &self.lock().len())
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Registry {
    /// A registry that tells `hook` of each topic's first and last subscriber.
    pub(crate) fn new(hook: Option<TopicHook>) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            hook,
        }
    }

    // A hook that panicked poisons nothing worth refusing: the map is updated before it runs.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A shard has its first subscriber of `topic`: the counter its subscribes add to.
    pub(crate) fn join(&self, topic: &Arc<str>) -> Arc<AtomicUsize> {
        let mut live = self.lock();
        if let Some(entry) = live.get_mut(topic) {
            entry.shards += 1;
            return entry.subscribers.clone();
        }
        let subscribers = Arc::new(AtomicUsize::new(0));
        live.insert(
            topic.clone(),
            Live {
                subscribers: subscribers.clone(),
                shards: 1,
            },
        );
        if let Some(hook) = &self.hook {
            hook(TopicEvent::FirstSubscriber(topic));
        }
        subscribers
    }

    /// A shard has lost its last subscriber of `topic`.
    pub(crate) fn leave(&self, topic: &str) {
        let mut live = self.lock();
        let Some(entry) = live.get_mut(topic) else {
            return;
        };
        entry.shards -= 1;
        if entry.shards == 0 {
            live.remove(topic);
            if let Some(hook) = &self.hook {
                hook(TopicEvent::LastUnsubscribed(topic));
            }
        }
    }

    /// Subscribers of `topic` over all shards.
    pub(crate) fn subscribers(&self, topic: &str) -> usize {
        self.lock()
            .get(topic)
            .map_or(0, |t| t.subscribers.load(Ordering::Relaxed))
    }

    /// Every topic with a subscriber, by name.
    pub(crate) fn list(&self) -> Vec<TopicInfo> {
        let mut list: Vec<TopicInfo> = self
            .lock()
            .iter()
            .map(|(name, t)| TopicInfo {
                name: name.to_string(),
                subscribers: t.subscribers.load(Ordering::Relaxed),
            })
            .collect();
        list.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (Registry, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let hook: TopicHook = Box::new(move |event| {
            log.lock().unwrap().push(format!("{event:?}"));
        });
        (Registry::new(Some(hook)), seen)
    }

    #[test]
    fn the_hook_hears_the_first_shard_join_and_the_last_leave() {
        let (registry, seen) = recording();
        let t: Arc<str> = Arc::from("scores");
        let a = registry.join(&t);
        let b = registry.join(&t);
        assert!(Arc::ptr_eq(&a, &b), "shards share one counter");
        a.fetch_add(2, Ordering::Relaxed);
        b.fetch_add(1, Ordering::Relaxed);
        assert_eq!(registry.subscribers("scores"), 3);
        registry.leave("scores");
        assert_eq!(seen.lock().unwrap().len(), 1, "one shard still has it");
        registry.leave("scores");
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "FirstSubscriber(\"scores\")",
                "LastUnsubscribed(\"scores\")"
            ]
        );
        assert_eq!(registry.subscribers("scores"), 0);
        assert!(registry.list().is_empty());
    }

    #[test]
    fn the_list_is_by_name_with_counts() {
        let registry = Registry::default();
        for (name, n) in [("b", 2), ("a", 1)] {
            registry
                .join(&Arc::from(name))
                .fetch_add(n, Ordering::Relaxed);
        }
        let names: Vec<(String, usize)> = registry
            .list()
            .into_iter()
            .map(|t| (t.name, t.subscribers))
            .collect();
        assert_eq!(names, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }
}
