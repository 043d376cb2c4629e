//! Addresses: posting typed messages to a connection or an actor from any thread.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ringsock_engine::server::{ConnId, Remote};

use crate::post::Post;

/// Why [`Addr::tell`] did not deliver; the message comes back.
#[derive(PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TellError<M> {
    /// The connection closed (or the actor stopped).
    #[error("the connection or actor is gone")]
    Gone(M),
    /// Its shard's mailbox is full; retry later or drop.
    #[error("the shard's mailbox is full")]
    Full(M),
}

impl<M> fmt::Debug for TellError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TellError::Gone(_) => f.write_str("Gone(..)"),
            TellError::Full(_) => f.write_str("Full(..)"),
        }
    }
}

impl<M> TellError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            TellError::Gone(m) | TellError::Full(m) => m,
        }
    }
}

/// What an address reaches on its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A connection's handler.
    Conn(ConnId),
    /// An actor, by id.
    Actor(u64),
}

/// Where to post `M`s: a connection whose handler takes `M` in `on_tell`, or an actor whose
/// `Msg` is `M`. `Send + Sync + Clone`; cheap to keep in the millions (no per-address thread or
/// queue: messages travel through the target shard's mailbox).
pub struct Addr<M> {
    /// Every shard's mailbox.
    remote: Remote<Post>,
    /// The target's shard.
    shard: usize,
    /// The target on that shard.
    target: Target,
    /// Cleared when the target closes or stops.
    alive: Arc<AtomicBool>,
    /// `fn(M)`: an address sends `M`s and holds none, so it is `Send + Sync` whatever `M`.
    _msg: PhantomData<fn(M)>,
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Self {
            remote: self.remote.clone(),
            shard: self.shard,
            target: self.target,
            alive: self.alive.clone(),
            _msg: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("shard", &self.shard)
            .field("target", &self.target)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl<M: Send + 'static> Addr<M> {
    /// Posts `msg` to the target's shard; its `on_tell` runs there. Fails once the target is
    /// gone, or when the shard's mailbox is full. A message posted just before the target
    /// closes is dropped with it.
    pub fn tell(&self, msg: M) -> Result<(), TellError<M>> {
        if !self.is_alive() {
            return Err(TellError::Gone(msg));
        }
        let msg: Box<dyn Any + Send> = Box::new(msg);
        let post = match self.target {
            Target::Conn(id) => Post::Tell { id, msg },
            Target::Actor(actor) => Post::ActorTell { actor, msg },
        };
        self.remote.post(self.shard, post).map_err(|e| {
            let msg = e.into_inner().into_tell_payload();
            TellError::Full(*msg.downcast::<M>().expect("a tell carries its own type"))
        })
    }
}

impl<M> Addr<M> {
    /// An address of `target` on `shard`, alive while `alive` is set.
    pub(crate) fn new(
        remote: Remote<Post>,
        shard: usize,
        target: Target,
        alive: Arc<AtomicBool>,
    ) -> Self {
        Self {
            remote,
            shard,
            target,
            alive,
            _msg: PhantomData,
        }
    }

    /// Whether the target is still there (it may close right after this answers true).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// The shard the target lives on.
    pub fn shard(&self) -> usize {
        self.shard
    }
}
