//! The engine [`Service`] that runs handlers and actors: per-connection slots, per-shard topic
//! tables, and the posts that travel between shards.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringsock_engine::http::{RequestHead, ResponseHead};
use ringsock_engine::server::{
    Accept, ConnId, Cx, Dial, DialError, HttpResponse, Remote, Service, Upgrade,
};
use ringsock_engine::ws::{CloseFrame, Event, PingId};

use crate::actor::{ActorEntry, ErasedActor};
use crate::ctx::Ctx;
use crate::handler::{Closed, Handler, Message};
use crate::timer::{TimerId, INTERNAL, PING_TICK, PONG_DUE};
use crate::topics::{
    Batch, Delivery, DeliveryLimits, Outgoing, SlowPolicy, Topics, BATCH_FRAME_MAX,
};
use crate::upgrade::{Accepted, UpgradeRequest};

/// The engine's context as the runtime uses it.
pub(crate) type EngineCx<'a> = Cx<'a, Runtime>;

/// Counters over all shards, readable while the server runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages published (each counted once, however many subscribers).
    pub published: AtomicU64,
    /// Deliveries queued to subscribers.
    pub delivered: AtomicU64,
    /// Deliveries skipped by [`SlowPolicy::Drop`].
    pub dropped: AtomicU64,
    /// Subscribers closed by [`SlowPolicy::Close`].
    pub closed_slow: AtomicU64,
    /// Publishes not forwarded to another shard because its mailbox was full.
    pub forward_dropped: AtomicU64,
    pub(crate) next_actor: AtomicU64,
}

impl Stats {
    fn add(&self, d: Delivery) {
        self.delivered.fetch_add(d.queued as u64, Ordering::Relaxed);
        if d.dropped > 0 {
            self.dropped.fetch_add(d.dropped as u64, Ordering::Relaxed);
        }
        if d.closed > 0 {
            self.closed_slow
                .fetch_add(d.closed as u64, Ordering::Relaxed);
        }
    }
}

/// Server-wide settings the runtime applies to every connection.
pub(crate) struct Settings {
    pub ping: Option<Duration>,
    pub pong_timeout: Duration,
    /// The engine's output levels, copied out for topics and send statuses.
    pub high_water: usize,
    pub low_water: usize,
    pub policy: SlowPolicy,
    pub topic_policies: Arc<HashMap<String, SlowPolicy>>,
    pub keep_request: bool,
}

/// A type-erased upgrade hook: it makes the connection's handler.
pub(crate) type Hook = Box<
    dyn Fn(&UpgradeRequest<'_>) -> Result<Accepted<Box<dyn ErasedHandler>>, HttpResponse>
        + Send
        + Sync,
>;

/// Answers plain HTTP requests.
pub(crate) type Responder = Box<dyn Fn(&RequestHead) -> HttpResponse + Send + Sync>;

/// The service: routes upgrades to hooks by path and runs what they return.
pub(crate) struct Runtime {
    pub routes: Vec<(String, Hook)>,
    pub http: Option<Responder>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
}

/// What the runtime keeps beside each connection.
pub(crate) struct Slot {
    /// `None` only while one of its callbacks runs.
    pub handler: Option<Box<dyn ErasedHandler>>,
    pub topics: Vec<Arc<str>>,
    /// Made when the first [`crate::Addr`] is; cleared at close so addresses see it gone.
    pub alive: Option<Arc<AtomicBool>>,
    /// Timers set and not yet fired or cancelled.
    pub timers: Vec<u64>,
    /// The automatic ping waiting for its pong.
    pub auto_ping: Option<(PingId, Instant)>,
    /// The connection has closed for good ([`leave`] ran): `on_close` may still be running, but
    /// nothing may subscribe it, arm its timers or hand out a live address for it any more.
    pub closed: bool,
    pub info: ConnInfo,
}

/// What a connection remembers of its upgrade.
pub(crate) struct ConnInfo {
    /// The request target (server side) or the URL dialled (client side).
    pub target: Box<str>,
    pub peer: Option<SocketAddr>,
    pub request: Option<Box<RequestHead>>,
    /// The server's 101, on an outgoing connection.
    pub response: Option<Box<ResponseHead>>,
}

impl Slot {
    pub fn new(handler: Box<dyn ErasedHandler>, info: ConnInfo) -> Self {
        Slot {
            handler: Some(handler),
            topics: Vec::new(),
            alive: None,
            timers: Vec::new(),
            auto_ping: None,
            closed: false,
            info,
        }
    }
}

/// One shard's runtime state.
pub(crate) struct Local {
    pub shard: usize,
    pub remote: Remote<Post>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    pub topics: Topics,
    /// Posted publishes waiting to be delivered together.
    pub batch: Batch,
    pub next_timer: u64,
    pub actors: HashMap<u64, ActorEntry>,
    /// Shard timers: timer key → the actor that set it.
    pub actor_timers: HashMap<u64, u64>,
    /// What [`crate::Ctx::send`] queued on this shard (a client pool counts its own share).
    pub sent: Sent,
}

/// Messages and payload bytes sent on one shard.
#[derive(Default)]
pub(crate) struct Sent {
    pub messages: u64,
    pub bytes: u64,
}

impl Local {
    pub fn timer_id(&mut self) -> u64 {
        self.next_timer += 1;
        self.next_timer
    }

    pub fn delivery_limits(&self, now: std::time::Instant) -> DeliveryLimits {
        DeliveryLimits {
            high_water: self.settings.high_water,
            policy: self.settings.policy,
            now,
        }
    }
}

/// Messages between shards and from other threads.
pub(crate) enum Post {
    Tell {
        id: ConnId,
        msg: Box<dyn Any + Send>,
    },
    ActorTell {
        actor: u64,
        msg: Box<dyn Any + Send>,
    },
    /// A message framed once, for this shard's subscribers of `topic`.
    Publish { topic: Arc<str>, frame: Bytes },
    /// Open an outgoing connection on this shard.
    Dial(Box<DialPost>),
    Spawn {
        actor: u64,
        entry: Box<dyn ErasedActor + Send>,
        alive: Arc<AtomicBool>,
    },
}

impl Post {
    /// The boxed message of a tell that could not be posted.
    pub fn into_tell_payload(self) -> Box<dyn Any + Send> {
        match self {
            Post::Tell { msg, .. } | Post::ActorTell { msg, .. } => msg,
            _ => Box::new(()),
        }
    }
}

/// An outgoing connection on its way to a shard: the handler crosses threads, so it is `Send`.
pub(crate) struct DialPost {
    pub addr: SocketAddr,
    pub local: Option<SocketAddr>,
    pub handshake: ringsock_engine::ws::ClientHandshake,
    pub options: ringsock_engine::client::DialOptions,
    pub config: ringsock_engine::ws::Config,
    pub info: ConnInfo,
    pub handler: Box<dyn ErasedHandler + Send>,
}

/// What a handler is called for.
pub(crate) enum Dispatch {
    Open,
    Message(Message),
    Pong(Bytes),
    Close(Closed),
    Error(ringsock_engine::ws::ProtocolError),
    Drain,
    Tell(Box<dyn Any + Send>),
    Timer(TimerId),
}

/// A [`Handler`] with its type erased, so connections of different handler types share a shard.
pub(crate) trait ErasedHandler {
    fn dispatch(&mut self, cx: &mut EngineCx<'_>, id: ConnId, what: Dispatch);
    fn connect_failed(&mut self, error: DialError);
}

impl<H: Handler> ErasedHandler for H {
    fn dispatch(&mut self, cx: &mut EngineCx<'_>, id: ConnId, what: Dispatch) {
        let mut ctx = Ctx::new(cx, id);
        match what {
            Dispatch::Open => self.on_open(&mut ctx),
            Dispatch::Message(m) => self.on_message(&mut ctx, m),
            Dispatch::Pong(p) => self.on_pong(&mut ctx, p),
            Dispatch::Close(c) => self.on_close(&mut ctx, c),
            Dispatch::Error(e) => self.on_error(&mut ctx, e),
            Dispatch::Drain => self.on_drain(&mut ctx),
            Dispatch::Tell(msg) => {
                // An Addr<M> only reaches handlers whose Msg is M, so this always succeeds.
                if let Ok(msg) = msg.downcast::<H::Msg>() {
                    self.on_tell(&mut ctx, *msg)
                }
            }
            Dispatch::Timer(t) => self.on_timer(&mut ctx, t),
        }
    }

    fn connect_failed(&mut self, error: DialError) {
        self.on_connect_failed(error);
    }
}

/// Runs one handler callback for `id`: the handler is taken out of its slot for the call, so
/// the callback's context can reach every connection of the shard, its own included.
pub(crate) fn call(cx: &mut EngineCx<'_>, id: ConnId, what: Dispatch) {
    let Some(mut handler) = cx.conns().session(id).and_then(|s| s.handler.take()) else {
        return;
    };
    handler.dispatch(cx, id, what);
    if let Some(slot) = cx.conns().session(id) {
        slot.handler = Some(handler);
    }
}

/// Queues `frame` for `topic`'s subscribers on this shard (minus `exclude`) and, when
/// `forward`, posts it once to every other shard.
pub(crate) fn publish(
    cx: &mut EngineCx<'_>,
    topic: &str,
    frame: Bytes,
    exclude: Option<ConnId>,
    forward: bool,
) -> Delivery {
    let now = cx.now();
    let (local, conns) = cx.split();
    let mut out = Outgoing::new(frame.clone());
    let delivery =
        local
            .topics
            .deliver(conns, topic, &mut out, exclude, local.delivery_limits(now));
    local.stats.add(delivery);
    if forward {
        local.stats.published.fetch_add(1, Ordering::Relaxed);
        let shards = local.remote.shards();
        if shards > 1 {
            let name: Arc<str> = Arc::from(topic);
            for shard in (0..shards).filter(|&s| s != local.shard) {
                let post = Post::Publish {
                    topic: name.clone(),
                    frame: frame.clone(),
                };
                if local.remote.post(shard, post).is_err() {
                    local.stats.forward_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    delivery
}

/// Delivers the batch of posted publishes, if any: each subscriber gets all its messages at once
/// (or, past the high-water mark, none of them).
fn deliver_batch(cx: &mut EngineCx<'_>) {
    let Some((topic, frames, messages)) = cx.local().batch.take() else {
        return;
    };
    let now = cx.now();
    let (local, conns) = cx.split();
    let d = local.topics.deliver(
        conns,
        &topic,
        &mut Outgoing::new(frames),
        None,
        local.delivery_limits(now),
    );
    local.stats.add(Delivery {
        queued: d.queued * messages,
        dropped: d.dropped * messages,
        closed: d.closed,
    });
}

impl Runtime {
    /// A connection opened, either way: start its pings, then its handler.
    fn opened(&self, cx: &mut EngineCx<'_>, id: ConnId) {
        if let Some(interval) = self.settings.ping {
            let at = cx.now() + interval;
            cx.set_timer(Some(id), at, PING_TICK);
        }
        call(cx, id, Dispatch::Open);
    }
}

impl Service for Runtime {
    type Session = Slot;
    type Local = Local;
    type Post = Post;

    fn local(&self, shard: usize, remote: &Remote<Post>) -> Local {
        Local {
            shard,
            remote: remote.clone(),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            topics: Topics::new(self.settings.topic_policies.clone()),
            batch: Batch::default(),
            next_timer: 0,
            actors: HashMap::new(),
            actor_timers: HashMap::new(),
            sent: Sent::default(),
        }
    }

    fn upgrade(&self, _: &mut Local, upgrade: &Upgrade<'_>) -> Result<Accept<Slot>, HttpResponse> {
        let path = upgrade.request.path();
        let Some((_, hook)) = self.routes.iter().find(|(p, _)| p == path) else {
            return Err(HttpResponse::not_found());
        };
        let accepted = hook(&UpgradeRequest::new(upgrade))?;
        let request = upgrade.request;
        let info = ConnInfo {
            target: request.target().into(),
            peer: upgrade.peer,
            request: self
                .settings
                .keep_request
                .then(|| Box::new(request.clone())),
            response: None,
        };
        Ok(Accept {
            session: Slot::new(accepted.handler, info),
            protocol: accepted.protocol,
            headers: accepted.headers,
        })
    }

    fn on_open(&self, cx: &mut EngineCx<'_>, id: ConnId, request: &RequestHead) {
        let _ = request;
        self.opened(cx, id);
    }

    fn on_connected(&self, cx: &mut EngineCx<'_>, id: ConnId, response: &ResponseHead) {
        if let Some(slot) = cx.conns().session(id) {
            slot.info.response = Some(Box::new(response.clone()));
        }
        self.opened(cx, id);
    }

    fn on_connect_failed(&self, _cx: &mut EngineCx<'_>, session: Slot, error: DialError) {
        if let Some(mut handler) = session.handler {
            handler.connect_failed(error);
        }
    }

    fn on_event(&self, cx: &mut EngineCx<'_>, id: ConnId, event: Event) {
        match event {
            Event::Text(t) => call(cx, id, Dispatch::Message(Message::Text(t))),
            Event::Binary(b) => call(cx, id, Dispatch::Message(Message::Binary(b))),
            Event::Ping(_) => {}
            Event::Pong { payload, id: ping } => {
                let Some(slot) = cx.conns().session(id) else {
                    return;
                };
                if ping.is_some() && ping == slot.auto_ping.map(|(p, _)| p) {
                    slot.auto_ping = None;
                } else {
                    call(cx, id, Dispatch::Pong(payload));
                }
            }
            Event::Error(e) => call(cx, id, Dispatch::Error(e)),
            Event::Close(CloseFrame { code, reason }) => {
                leave(cx, id);
                call(cx, id, Dispatch::Close(Closed { code, reason }));
            }
        }
    }

    fn on_drain(&self, cx: &mut EngineCx<'_>, id: ConnId) {
        call(cx, id, Dispatch::Drain);
    }

    fn on_timer(&self, cx: &mut EngineCx<'_>, id: Option<ConnId>, key: u64) {
        let Some(id) = id else {
            return crate::actor::on_shard_timer(cx, key);
        };
        if key & INTERNAL == 0 {
            let Some(slot) = cx.conns().session(id) else {
                return;
            };
            let Some(i) = slot.timers.iter().position(|&t| t == key) else {
                return; // cancelled
            };
            slot.timers.swap_remove(i);
            return call(cx, id, Dispatch::Timer(TimerId(key)));
        }
        let now = cx.now();
        if key == PING_TICK {
            let Some(interval) = self.settings.ping else {
                return;
            };
            let Some(open) = cx.conn(id) else { return };
            // One automatic ping at a time: while one is unanswered its deadline stands. A new
            // ping would take its place in `auto_ping`, and the older deadline would then find
            // it "answered" — so with a deadline at or past the interval (the default is equal)
            // a silent peer was never dropped.
            if open.session.auto_ping.is_none() {
                let Ok(ping) = open.ws.ping(b"") else { return };
                open.session.auto_ping = Some((ping, now));
                if let Some(due) = now.checked_add(self.settings.pong_timeout) {
                    cx.set_timer(Some(id), due, PONG_DUE | ping.0);
                }
            }
            cx.set_timer(Some(id), now + interval, PING_TICK);
        } else if key & PONG_DUE == PONG_DUE {
            let ping = PingId(key & !PONG_DUE);
            let last = cx.conns().last_received(id);
            let Some(slot) = cx.conns().session(id) else {
                return;
            };
            let Some((outstanding, sent)) = slot.auto_ping else {
                return;
            };
            if outstanding != ping {
                return;
            }
            // Any bytes since the ping went out prove the peer alive, even if its pong was lost
            // to the protocol's bounded ping memory (a handler's own pings can push ours out).
            if last.is_some_and(|last| last > sent) {
                slot.auto_ping = None;
            } else {
                // The peer is gone or wedged: a close frame would wait behind the same silence.
                cx.conns().abort(id);
            }
        }
    }

    fn on_post(&self, cx: &mut EngineCx<'_>, post: Post) {
        // Whatever a post does (a tell that sends, an actor that publishes) comes after the
        // publishes posted before it, so anything but a small publish delivers the batch first.
        deliver_batch_unless_small_publish(cx, &post);
        match post {
            Post::Publish { topic, frame } if frame.len() < BATCH_FRAME_MAX => {
                if !cx.local().batch.add(&topic, &frame) {
                    deliver_batch(cx);
                    cx.local().batch.add(&topic, &frame);
                }
            }
            Post::Publish { topic, frame } => {
                publish(cx, &topic, frame, None, false);
            }
            Post::Tell { id, msg } => call(cx, id, Dispatch::Tell(msg)),
            Post::ActorTell { actor, msg } => crate::actor::tell(cx, actor, msg),
            Post::Dial(dial) => {
                let DialPost {
                    addr,
                    local,
                    handshake,
                    options,
                    config,
                    info,
                    handler,
                } = *dial;
                let dial = Dial {
                    addr,
                    local,
                    handshake,
                    options,
                    config,
                    session: Slot::new(handler, info),
                };
                if let Err((error, slot)) = cx.connect(dial) {
                    self.on_connect_failed(cx, slot, error);
                }
            }
            Post::Spawn {
                actor,
                entry,
                alive,
            } => crate::actor::start(cx, actor, entry, alive),
        }
    }

    fn on_posts_done(&self, cx: &mut EngineCx<'_>) {
        deliver_batch(cx);
    }

    fn on_http(&self, request: &RequestHead) -> HttpResponse {
        match &self.http {
            Some(respond) => respond(request),
            None => HttpResponse::not_found(),
        }
    }
}

/// Delivers the pending batch before any post that is not one more small publish.
fn deliver_batch_unless_small_publish(cx: &mut EngineCx<'_>, post: &Post) {
    if !matches!(post, Post::Publish { frame, .. } if frame.len() < BATCH_FRAME_MAX) {
        deliver_batch(cx);
    }
}

/// A connection is closing for good: it leaves its topics, its timers stop, its addresses see
/// it gone.
fn leave(cx: &mut EngineCx<'_>, id: ConnId) {
    let (local, conns) = cx.split();
    let Some(slot) = conns.session(id) else {
        return;
    };
    for topic in slot.topics.drain(..) {
        local.topics.unsubscribe(&topic, id);
    }
    slot.timers.clear();
    slot.auto_ping = None;
    slot.closed = true;
    if let Some(alive) = slot.alive.take() {
        alive.store(false, Ordering::Release);
    }
}
