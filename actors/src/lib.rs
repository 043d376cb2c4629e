//! ringsock-actors: ringsock's public face.
//!
//! Each WebSocket connection is an actor living on the shard that accepted it. An application
//! implements [`Handler`] for its connections' state and behaviour, decides each upgrade in a
//! hook (auth, subprotocol, the initial state), and uses the [`Ctx`] it is handed to send,
//! ping, close, subscribe and publish to topics, set timers, and hand out [`Addr`]s that other
//! threads post to. [`Actor`]s are the same without a socket (a game match, a feed).
//!
//! The same handlers run outgoing connections: [`ServerHandle::connect`] opens one,
//! [`ClientPool`] keeps N of them open over the shards (paced, redialled after a backoff,
//! counted); `ringsock-load` is a load generator built on it.
//!
//! ```no_run
//! use ringsock_actors::{Accept, Ctx, Handler, Message, Server};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Msg = ();
//!     fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
//!         match message {
//!             Message::Text(t) => ctx.send_text(t.as_str()),
//!             Message::Binary(b) => ctx.send_binary(b),
//!         };
//!     }
//! }
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:9001")
//!     .route("/", |_req| Ok(Accept::new(Echo)))
//!     .start()?;
//! server.wait();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Guarantees
//!
//! - **One thread per connection.** Every callback of a connection's handler, its upgrade hook
//!   included, runs on the shard thread that accepted (or dialled) it, one at a time. The same
//!   holds for an [`Actor`] on its shard. Nothing here may block: a hook or callback that waits
//!   (on a lock held elsewhere, a database, DNS) stalls every connection of its shard. Work that
//!   waits belongs on another thread, which answers through an [`Addr`].
//! - **The upgrade hook** runs before the 101 is sent, on the shard, with the request's head
//!   ([`UpgradeRequest`]); it returns the handler (with a subprotocol, headers, a deflate
//!   choice) or any HTTP response as the refusal.
//! - **Open, then close, once each.** A handler whose hook accepted gets `on_open` once, then
//!   any number of the other callbacks, then `on_close` exactly once, whatever ends the
//!   connection: its own close, the peer's, a protocol error (after `on_error`), a dropped
//!   socket (code 1006), a ping timeout, or the server's shutdown (1001, or 1006 for a
//!   connection cut when the grace period ran out). An outgoing connection gets either
//!   `on_connect_failed` or this same sequence.
//! - **Order per sender.** Messages one sender (a thread, a connection, an actor) tells to one
//!   [`Addr`] arrive in the order told; messages one sender publishes arrive at every
//!   subscriber in the order published, and subscribers on one shard see the publishes of
//!   different senders in one common order. Between a tell and a publish from the same sender
//!   no order is promised (a publish reaches the subscribers of the sender's own shard at once,
//!   a tell goes through the target's mailbox). A publish or tell made before
//!   [`ServerHandle::shutdown`] is delivered before the shutdown's 1001.
//! - **Nothing is buffered without bound.** A subscriber past the high-water mark is skipped or
//!   closed by its topic's [`SlowPolicy`]; a send past [`Limits`]'s output maximum closes the
//!   connection (1008); a full shard mailbox refuses a tell or publish at once
//!   ([`TellError::Full`], [`PublishError`]) rather than queueing it.

#![deny(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

// The data: plain types that the behaviour below uses and that import no behaviour.
mod actor_entry;
mod batch;
mod delivery;
mod local;
mod message;
mod outgoing;
mod post;
mod prepared;
mod registry;
mod runtime;
mod settings;
mod slot;
mod stats;
mod timer;
mod topics;
mod upgrade;

// The behaviour: each imports the data and never, through any chain, imports itself (the
// `Handler` trait and its `Ctx` excepted: they belong together).
mod actor;
mod addr;
mod builder;
mod ctx;
mod dispatch;
mod handler;
mod keepalive;
mod pool;
mod publish;
mod server_handle;
mod service;

pub use actor::{Actor, ActorCtx};
pub use addr::{Addr, TellError};
pub use builder::{Server, ServerBuilder};
pub use ctx::{Ctx, CtxError, SendStatus};
pub use delivery::{codes, Delivery, SlowPolicy};
pub use handler::Handler;
pub use message::{Closed, Message};
pub use pool::{ClientPool, ClientPoolBuilder, PoolSlot, PoolStats, Reconnect};
pub use prepared::PreparedMessage;
pub use registry::{TopicEvent, TopicInfo};
pub use server_handle::{ConnectError, PublishError, ServerHandle};
pub use stats::Stats;
pub use timer::TimerId;
pub use upgrade::{Accept, UpgradeRequest};

pub use ringsock_engine::client::{
    DialOptions, Proxy, ProxyError, TlsConfig, TlsError, TlsOptions,
};
pub use ringsock_engine::http::{HeadLimits, InvalidHeader, RequestHead, ResponseHead};
pub use ringsock_engine::server::{
    ConnId, DialError, HttpResponse, Limits, OutputLimits, ShutdownReport,
};
pub use ringsock_engine::ws::Utf8Bytes;
pub use ringsock_engine::ws::{ClientOptions, DeflateOptions, DeflateStrategy, HandshakeError};
pub use ringsock_engine::ws::{CloseCode, DataKind, Overflow, ProtocolError, ServerOptions};
pub use ringsock_engine::{BackendKind, PoolConfig};

// The README's examples, compiled (and the runnable ones run) as this crate's doctests, so the
// guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
