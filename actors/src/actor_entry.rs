//! An actor as its shard keeps it: type-erased, beside the flag its addresses read. The
//! behaviour (the [`Actor`](crate::Actor) trait, its context, running a callback) is in `actor`.

use std::any::Any;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::runtime::EngineCx;
use crate::timer::TimerId;

/// What an actor is called for.
pub(crate) enum Call {
    /// `on_start`.
    Start,
    /// `on_tell`, with the message still boxed as it travelled.
    Tell(Box<dyn Any + Send>),
    /// `on_timer`.
    Timer(TimerId),
}

/// An [`Actor`](crate::Actor) with its type erased, so actors of different types share a
/// shard's table. (Every actor implements it; the implementation is in `actor`.)
pub(crate) trait ErasedActor {
    /// Runs one callback; true if the actor asked to stop.
    fn call(&mut self, cx: &mut EngineCx<'_>, actor: u64, call: Call) -> bool;
    /// Runs `on_stop`, the last callback.
    fn stop(&mut self, cx: &mut EngineCx<'_>, actor: u64);
}

/// An actor in its shard's table.
pub(crate) struct ActorEntry {
    /// `None` while one of its callbacks runs.
    pub actor: Option<Box<dyn ErasedActor + Send>>,
    /// Read by its addresses; cleared when it stops.
    pub alive: Arc<AtomicBool>,
}
