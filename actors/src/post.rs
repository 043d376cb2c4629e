//! What travels through a shard's mailbox: from other shards (tells, forwarded publishes) and
//! from other threads (tells, publishes, dials, spawns).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use ringsock_engine::client::DialOptions;
use ringsock_engine::server::ConnId;
use ringsock_engine::ws::{ClientHandshake, Config};

use crate::actor_entry::ErasedActor;
use crate::runtime::ErasedHandler;
use crate::slot::ConnInfo;

/// Messages between shards and from other threads.
pub(crate) enum Post {
    /// A message for the handler of connection `id` ([`crate::Addr::tell`]).
    Tell {
        /// The connection.
        id: ConnId,
        /// Its handler's `Msg`, boxed.
        msg: Box<dyn Any + Send>,
    },
    /// A message for an actor of this shard.
    ActorTell {
        /// The actor.
        actor: u64,
        /// Its `Msg`, boxed.
        msg: Box<dyn Any + Send>,
    },
    /// A message framed once, for this shard's subscribers of `topic`.
    Publish {
        /// The topic.
        topic: Arc<str>,
        /// The message as one unmasked frame, shared by every shard it is posted to.
        frame: Bytes,
    },
    /// Open an outgoing connection on this shard.
    Dial(Box<DialPost>),
    /// Start an actor on this shard.
    Spawn {
        /// Its server-wide id.
        actor: u64,
        /// The actor.
        entry: Box<dyn ErasedActor + Send>,
        /// The flag its addresses read, made by the spawner so the address exists at once.
        alive: Arc<AtomicBool>,
    },
}

impl Post {
    /// The boxed message of a tell that could not be posted.
    pub(crate) fn into_tell_payload(self) -> Box<dyn Any + Send> {
        match self {
            Post::Tell { msg, .. } | Post::ActorTell { msg, .. } => msg,
            _ => Box::new(()),
        }
    }
}

/// An outgoing connection on its way to a shard: the handler crosses threads, so it is `Send`.
pub(crate) struct DialPost {
    /// The address to connect to (the proxy's, through a proxy).
    pub addr: SocketAddr,
    /// The local address to bind to, if chosen.
    pub local: Option<SocketAddr>,
    /// The handshake request, its key drawn already.
    pub handshake: ClientHandshake,
    /// TLS, proxy and connect timeout.
    pub options: DialOptions,
    /// The connection's protocol settings.
    pub config: Config,
    /// What the connection will remember of its upgrade.
    pub info: ConnInfo,
    /// The connection's handler.
    pub handler: Box<dyn ErasedHandler + Send>,
}
