//! Reaching shards from other threads: a bounded queue per shard plus a wake that is written only
//! when the shard may be asleep.
//!
//! A shard about to block marks itself asleep, then looks at its queue once more; a poster pushes,
//! then wakes the shard only if it finds the mark. With both steps sequentially consistent, either
//! the shard sees the post or the poster sees the mark, so no post waits for an unrelated event,
//! and a busy shard receives posts without one eventfd write each.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::ArrayQueue;

use crate::reactor::Waker;

/// Why a post was not queued; the message comes back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError<P> {
    /// The shard's queue is full: it is behind, and the caller decides whether to retry or drop.
    #[error("the shard's queue is full")]
    Full(P),
    /// No shard has that index.
    #[error("no such shard")]
    NoShard(P),
}

impl<P> PostError<P> {
    /// The message that was not posted.
    pub fn into_inner(self) -> P {
        match self {
            PostError::Full(p) | PostError::NoShard(p) => p,
        }
    }
}

pub(crate) struct Mailbox<P> {
    queue: ArrayQueue<P>,
    asleep: AtomicBool,
    waker: OnceLock<Waker>,
}

/// A handle for posting messages to a server's shards from any thread. Cheap to clone.
pub struct Remote<P> {
    shards: Arc<[Mailbox<P>]>,
}

impl<P> Clone for Remote<P> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
        }
    }
}

impl<P> fmt::Debug for Remote<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl<P: Send> Remote<P> {
    /// Mailboxes for a server of `shards` shards, each holding up to `capacity` posts, made
    /// before the server starts so that posts can be queued (and addresses that post here
    /// handed out) while it is being configured: the server builder's `start_with` starts a
    /// server on them, and each shard takes what waits in its mailbox on its first turn, before
    /// it accepts a connection. One server per `Remote`.
    pub fn new(shards: usize, capacity: usize) -> Self {
        let shards: Vec<Mailbox<P>> = (0..shards)
            .map(|_| Mailbox {
                queue: ArrayQueue::new(capacity.max(1)),
                asleep: AtomicBool::new(false),
                waker: OnceLock::new(),
            })
            .collect();
        Self {
            shards: shards.into(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Queues `msg` for shard `shard` and wakes it if it sleeps.
    pub fn post(&self, shard: usize, msg: P) -> Result<(), PostError<P>> {
        let Some(mailbox) = self.shards.get(shard) else {
            return Err(PostError::NoShard(msg));
        };
        mailbox.queue.push(msg).map_err(PostError::Full)?;
        if mailbox.asleep.swap(false, Ordering::SeqCst) {
            if let Some(waker) = mailbox.waker.get() {
                waker.wake();
            }
        }
        Ok(())
    }

    pub(crate) fn set_waker(&self, shard: usize, waker: Waker) {
        let _ = self.shards[shard].waker.set(waker);
    }

    /// Takes the next message for `shard`.
    /// Posts waiting in `shard`'s mailbox now.
    pub(crate) fn queued(&self, shard: usize) -> usize {
        self.shards[shard].queue.len()
    }

    pub(crate) fn pop(&self, shard: usize) -> Option<P> {
        self.shards[shard].queue.pop()
    }

    /// Marks `shard` asleep; false if a message is already waiting (then it must not block).
    pub(crate) fn prepare_sleep(&self, shard: usize) -> bool {
        let mailbox = &self.shards[shard];
        mailbox.asleep.store(true, Ordering::SeqCst);
        if mailbox.queue.is_empty() {
            true
        } else {
            mailbox.asleep.store(false, Ordering::SeqCst);
            false
        }
    }

    /// Clears the mark after waking.
    pub(crate) fn awake(&self, shard: usize) {
        self.shards[shard].asleep.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_gives_the_message_back() {
        let remote = Remote::new(1, 2);
        assert_eq!(remote.post(0, 1), Ok(()));
        assert_eq!(remote.post(0, 2), Ok(()));
        assert_eq!(remote.post(0, 3), Err(PostError::Full(3)));
        assert_eq!(remote.post(5, 4), Err(PostError::NoShard(4)));
        assert_eq!(remote.pop(0), Some(1));
    }

    #[test]
    fn a_shard_with_mail_does_not_go_to_sleep() {
        let remote = Remote::new(1, 4);
        assert!(remote.prepare_sleep(0));
        remote.awake(0);
        remote.post(0, ()).unwrap();
        assert!(!remote.prepare_sleep(0));
    }
}
