//! The contract between the server, its shards and the application: the [`Service`] hook (what
//! happens at an upgrade, to an open WebSocket's events, on timers, to messages posted from
//! other threads, and to plain HTTP), the context its callbacks get ([`ShardCx`]), the ids and
//! handles they use ([`ConnId`], [`Remote`]), the answers they give ([`HttpResponse`],
//! [`Accept`]), the limits every connection runs under and the shutdown report.
//!
//! Both the server (which builds and starts shards) and the shards (which call the service)
//! use this module; it uses neither, so nothing imports back up.
//!
//! This is the engine's low-level interface; the actors layer implements it to run user
//! `Handler`s. Callbacks run on the shard that owns the connection, with a [`ShardCx`] that reaches
//! every connection of that shard, so a reply or a fan-out is queued in place and flushed with
//! everything else the shard writes in the same loop turn.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::http::{RequestHead, ResponseHead};
use crate::reactor::Token;
use crate::ws::Event;

mod cx;
mod limits;
mod remote;
pub(crate) mod route;

pub use crate::conn::dial::{Dial, DialError};
pub use crate::conn::Open;
pub use cx::{Conns, ShardCx};
pub(crate) use limits::ShardSettings;
pub use limits::{Limits, OutputLimits, ShutdownReport};
pub use remote::{PostError, Remote};

/// Names one WebSocket connection on its shard. A stale id (the connection closed, its slot
/// reused) never reaches another connection: lookups check a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub(crate) Token);

impl ConnId {
    /// The id as one number (slot and generation), for maps and logs.
    pub fn as_u64(self) -> u64 {
        self.0 .0
    }

    /// The id back from [`ConnId::as_u64`]. A made-up number names no connection, or a
    /// connection of that shard: lookups check the generation, never memory.
    pub fn from_u64(n: u64) -> Self {
        ConnId(Token(n))
    }
}

/// An answer to a plain (non-WebSocket) HTTP request, or a refused upgrade. The connection
/// closes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length` and `Connection: close` are added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A response with a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(body.into()),
        }
    }

    /// A response with a body of the given content type.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self::text(404, "Not Found")
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A valid WebSocket upgrade request, before its answer: what the application sees to decide.
#[derive(Debug)]
pub struct Upgrade<'a> {
    /// The request head (method, path, query, headers).
    pub request: &'a RequestHead,
    /// The client's subprotocols, in its order of preference.
    pub protocols: &'a [&'a str],
    /// The peer's address, when the socket still has one.
    pub peer: Option<SocketAddr>,
    /// The shard the connection lives on.
    pub shard: usize,
}

/// The application's yes to an upgrade.
#[derive(Debug)]
pub struct Accept<T> {
    /// The connection's state, kept beside it until it closes.
    pub session: T,
    /// The subprotocol to answer with; it must be one the client offered (else 500). `None`
    /// leaves it to the server's handshake options.
    pub protocol: Option<String>,
    /// Headers added to the 101.
    pub headers: Vec<(String, String)>,
}

impl<T> Accept<T> {
    /// Accepts with `session`, no subprotocol choice and no extra headers.
    pub fn new(session: T) -> Self {
        Self {
            session,
            protocol: None,
            headers: Vec::new(),
        }
    }
}

/// What the server does with connections. One value serves every shard, so it is `Sync`;
/// state lives in each connection's `Session` and each shard's `Local`.
pub trait Service: Send + Sync + Sized + 'static {
    /// Per-connection state, created by [`Service::upgrade`].
    type Session: 'static;
    /// Per-shard state (topic tables, shard-local actors), made on the shard's thread.
    type Local: 'static;
    /// Messages posted to a shard from other threads (or other shards) with a [`Remote`].
    type Post: Send + 'static;

    /// Makes shard `shard`'s local state, on that shard's thread, before it serves anything.
    fn local(&self, shard: usize, remote: &Remote<Self::Post>) -> Self::Local;

    /// Decides a valid upgrade request: its session and additions to the 101, or a refusal
    /// (any status, headers and body).
    fn upgrade(
        &self,
        local: &mut Self::Local,
        upgrade: &Upgrade<'_>,
    ) -> Result<Accept<Self::Session>, HttpResponse>;

    /// A WebSocket connection opened (its 101 is queued). Messages may be sent at once.
    fn on_open(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, request: &RequestHead) {
        let _ = (cx, id, request);
    }

    /// An outgoing connection ([`ShardCx::connect`]) got its 101 and is open; `response` is the
    /// server's answer (status and headers). Its events follow through [`Service::on_event`].
    fn on_connected(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, response: &ResponseHead) {
        let _ = (cx, id, response);
    }

    /// An outgoing connection did not open; its session comes back.
    fn on_connect_failed(
        &self,
        cx: &mut ShardCx<'_, Self>,
        session: Self::Session,
        error: DialError,
    ) {
        let _ = (cx, session, error);
    }

    /// Something happened on an open connection. [`Event::Close`] is the last call for it,
    /// whatever ends it (close handshake, protocol error, transport loss, shutdown).
    fn on_event(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, event: Event);

    /// The connection's unwritten output fell to the level asked for with
    /// [`Conns::notify_drain`].
    fn on_drain(&self, cx: &mut ShardCx<'_, Self>, id: ConnId) {
        let _ = (cx, id);
    }

    /// A timer set with [`ShardCx::set_timer`] is due; `id` is the connection it was set for, or
    /// `None` for a shard timer. Timers of a closed connection do not fire.
    fn on_timer(&self, cx: &mut ShardCx<'_, Self>, id: Option<ConnId>, key: u64) {
        let _ = (cx, id, key);
    }

    /// A message posted to this shard.
    fn on_post(&self, cx: &mut ShardCx<'_, Self>, post: Self::Post) {
        let _ = (cx, post);
    }

    /// The loop turn's posts have all been handed to [`Service::on_post`] (called only on turns
    /// that had any, before timers fire and before the turn's flush): the place to finish work
    /// gathered across posts. The actors runtime delivers consecutive publishes to one topic
    /// here, all at once.
    fn on_posts_done(&self, cx: &mut ShardCx<'_, Self>) {
        let _ = cx;
    }

    /// A request that is not a WebSocket upgrade (and not for a WebSocket-only path).
    fn on_http(&self, request: &RequestHead) -> HttpResponse {
        let _ = request;
        HttpResponse::not_found()
    }
}

/// Echoes every text and binary message back unchanged (the payload is shared, not copied).
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Service for Echo {
    type Session = ();
    type Local = ();
    type Post = ();

    fn local(&self, _: usize, _: &Remote<()>) {}

    fn upgrade(&self, _: &mut (), _: &Upgrade<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }

    fn on_event(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, event: Event) {
        use crate::ws::DataKind;
        let Some(open) = cx.conn(id) else { return };
        // A send can only fail once the connection is closing, when the echo is moot.
        let _ = match event {
            Event::Text(text) => open.ws.send_shared(DataKind::Text, text.into_bytes()),
            Event::Binary(data) => open.ws.send_shared(DataKind::Binary, data),
            _ => Ok(()),
        };
    }
}
