//! ringsock-actors: ringsock's public face.
//!
//! Each WebSocket connection is an actor living on the shard that accepted it. An application
//! implements [`Handler`] for its connections' state and behaviour, decides each upgrade in a
//! hook (auth, subprotocol, the initial state), and uses the [`Ctx`] it is handed to send,
//! ping, close, subscribe and publish to topics, set timers, and hand out [`Addr`]s that other
//! threads post to. [`Actor`]s are the same without a socket (a game match, a feed).
//!
//! The same handlers run outgoing connections: [`Running::connect`] opens one,
//! [`ClientPool`] keeps N of them open over the shards (paced, redialled after a backoff,
//! counted); `ringsock-load` is a load generator built on it.
//!
//! ```no_run
//! use ringsock_actors::{Accepted, Ctx, Handler, Message, Server};
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
//!     .route("/", |_req| Ok(Accepted::new(Echo)))
//!     .start()?;
//! server.wait();
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs)]

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
mod running;
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
pub use running::{ConnectError, PublishError, Running};
pub use stats::Stats;
pub use timer::TimerId;
pub use upgrade::{Accepted, UpgradeRequest};

pub use ringsock_engine::client::{
    DialOptions, Proxy, ProxyError, TlsConfig, TlsError, TlsOptions,
};
pub use ringsock_engine::http::RequestHead;
pub use ringsock_engine::http::ResponseHead;
pub use ringsock_engine::reactor::BackendKind;
pub use ringsock_engine::server::{ConnId, DialError, HttpResponse, Limits, ShutdownReport};
pub use ringsock_engine::ws::{ClientOptions, DeflateOptions, DeflateStrategy, HandshakeError};
pub use ringsock_engine::ws::{CloseCode, DataKind, ProtocolError, Utf8Bytes};
