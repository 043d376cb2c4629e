//! Actors that are not connections: a game match, a feed, a room with state. They live on a
//! shard, receive posts through an [`Addr`], set timers and publish to topics.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringsock_engine::server::Remote;

use crate::actor_entry::{ActorEntry, Call, ErasedActor};
use crate::addr::{Addr, Target};
use crate::delivery::Delivery;
use crate::message::{frame, Message};
use crate::post::Post;
use crate::publish::publish;
use crate::runtime::EngineCx;
use crate::timer::TimerId;

/// A shard-resident actor. Callbacks run on its shard, one at a time.
pub trait Actor: Send + Sized + 'static {
    /// What its [`Addr`] carries.
    type Msg: Send + 'static;

    /// Runs once, on its shard, before any message.
    fn on_start(&mut self, ctx: &mut ActorCtx<'_, Self>) {
        let _ = ctx;
    }

    /// A message posted with its [`Addr`].
    fn on_tell(&mut self, ctx: &mut ActorCtx<'_, Self>, msg: Self::Msg) {
        let _ = (ctx, msg);
    }

    /// A timer set with [`ActorCtx::set_timer`] is due.
    fn on_timer(&mut self, ctx: &mut ActorCtx<'_, Self>, timer: TimerId) {
        let _ = (ctx, timer);
    }

    /// The actor stopped ([`ActorCtx::stop`]); the last call.
    fn on_stop(&mut self, ctx: &mut ActorCtx<'_, Self>) {
        let _ = ctx;
    }
}

impl<A> std::fmt::Debug for ActorCtx<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorCtx")
            .field("actor", &self.actor)
            .field("shard", &self.cx.shard())
            .finish_non_exhaustive()
    }
}

/// An actor callback's view of its shard.
pub struct ActorCtx<'a, A> {
    /// The shard's context.
    cx: EngineCx<'a>,
    /// This actor's id.
    actor: u64,
    /// Set by [`ActorCtx::stop`].
    stop: bool,
    /// The actor type, for the address's message type.
    _actor: PhantomData<fn(A)>,
}

impl<A: Actor> ActorCtx<'_, A> {
    /// An address for posting to this actor.
    pub fn addr(&mut self) -> Addr<A::Msg> {
        let shard = self.cx.shard();
        let actor = self.actor;
        let local = self.cx.local_mut();
        let alive = local
            .actors
            .get(&actor)
            .map_or_else(|| Arc::new(AtomicBool::new(false)), |e| e.alive.clone());
        Addr::new(local.remote.clone(), shard, Target::Actor(actor), alive)
    }

    /// Publishes to `topic` on every shard (framed once).
    pub fn publish(&mut self, topic: &str, message: impl Into<Message>) -> Delivery {
        publish(&mut self.cx, topic, frame(message.into()), None, true)
    }

    /// Subscribers of `topic` on every shard.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.cx.local().topics.count(topic)
    }

    /// Subscribers of `topic` on this shard.
    pub fn subscribers_here(&self, topic: &str) -> usize {
        self.cx.local().topics.count_here(topic)
    }

    /// Starts `actor` on this shard and returns its address. It starts (`on_start`) after this
    /// callback returns, before any message posted to it.
    pub fn spawn<B: Actor>(&mut self, actor: B) -> Addr<B::Msg> {
        let local = self.cx.local_mut();
        let id = local.stats.next_actor.fetch_add(1, Ordering::Relaxed);
        post_spawn(&local.remote, local.shard, id, actor)
    }

    /// Calls [`Actor::on_timer`] after `after`, unless cancelled or the actor stopped.
    pub fn set_timer(&mut self, after: Duration) -> TimerId {
        let at = self.cx.now() + after;
        let actor = self.actor;
        let local = self.cx.local_mut();
        let key = local.timer_id();
        local.actor_timers.insert(key, actor);
        self.cx.set_timer(None, at, key);
        TimerId(key)
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.cx.local_mut().actor_timers.remove(&timer.0).is_some()
    }

    /// Stops the actor after this callback: [`Actor::on_stop`] runs, its address goes dead.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// The shard it lives on.
    pub fn shard(&self) -> usize {
        self.cx.shard()
    }
}

impl<A: Actor> ErasedActor for A {
    fn call(&mut self, cx: &mut EngineCx<'_>, actor: u64, call: Call) -> bool {
        let mut ctx = ActorCtx::<A> {
            cx: cx.reborrow(),
            actor,
            stop: false,
            _actor: PhantomData,
        };
        match call {
            Call::Start => self.on_start(&mut ctx),
            Call::Tell(msg) => {
                if let Ok(msg) = msg.downcast::<A::Msg>() {
                    self.on_tell(&mut ctx, *msg);
                }
            }
            Call::Timer(t) => self.on_timer(&mut ctx, t),
        }
        ctx.stop
    }

    fn stop(&mut self, cx: &mut EngineCx<'_>, actor: u64) {
        let mut ctx = ActorCtx::<A> {
            cx: cx.reborrow(),
            actor,
            stop: true,
            _actor: PhantomData,
        };
        self.on_stop(&mut ctx);
    }
}

/// Runs one callback of `actor`, taken out of its table for the call (so the callback's context
/// can reach the table); an actor that asks to stop hears `on_stop` and leaves the table, its
/// timers and its addresses.
fn run(cx: &mut EngineCx<'_>, actor: u64, what: Call) {
    let Some(mut boxed) = cx
        .local_mut()
        .actors
        .get_mut(&actor)
        .and_then(|e| e.actor.take())
    else {
        return;
    };
    if boxed.call(cx, actor, what) {
        boxed.stop(cx, actor);
        let local = cx.local_mut();
        if let Some(entry) = local.actors.remove(&actor) {
            entry.alive.store(false, Ordering::Release);
        }
        local.actor_timers.retain(|_, a| *a != actor);
        return;
    }
    if let Some(entry) = cx.local_mut().actors.get_mut(&actor) {
        entry.actor = Some(boxed);
    }
}

/// Posts `actor`, numbered `id`, to shard `shard`, and returns its address: dead if that shard's
/// mailbox is full, as the actor is then dropped. Whatever posts to the address after this
/// returns queues behind the spawn, so the actor starts before its first message.
pub(crate) fn post_spawn<A: Actor>(
    remote: &Remote<Post>,
    shard: usize,
    id: u64,
    actor: A,
) -> Addr<A::Msg> {
    let alive = Arc::new(AtomicBool::new(true));
    let post = Post::Spawn {
        actor: id,
        entry: Box::new(actor),
        alive: alive.clone(),
    };
    if remote.post(shard, post).is_err() {
        alive.store(false, Ordering::Release);
    }
    Addr::new(remote.clone(), shard, Target::Actor(id), alive)
}

/// Installs a spawned actor on this shard and runs its `on_start`.
pub(crate) fn start(
    cx: &mut EngineCx<'_>,
    actor: u64,
    boxed: Box<dyn ErasedActor + Send>,
    alive: Arc<AtomicBool>,
) {
    cx.local_mut().actors.insert(
        actor,
        ActorEntry {
            actor: Some(boxed),
            alive,
        },
    );
    run(cx, actor, Call::Start);
}

/// Delivers a post to an actor of this shard.
pub(crate) fn tell(cx: &mut EngineCx<'_>, actor: u64, msg: Box<dyn Any + Send>) {
    run(cx, actor, Call::Tell(msg));
}

/// A shard timer fired: it belongs to an actor, unless cancelled.
pub(crate) fn on_shard_timer(cx: &mut EngineCx<'_>, key: u64) {
    if let Some(actor) = cx.local_mut().actor_timers.remove(&key) {
        run(cx, actor, Call::Timer(TimerId(key)));
    }
}
