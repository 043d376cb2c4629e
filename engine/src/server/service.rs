//! The hook between a shard and the application: what to do with an opened WebSocket, its
//! events, and plain HTTP requests.
//!
//! This is the engine's low-level interface; the actors layer implements it to run user
//! `Handler`s. It sees the protocol [`Connection`] directly, so replies are queued in place and
//! flushed with everything else the shard writes in the same loop turn.

use bytes::Bytes;

use crate::http::RequestHead;
use crate::ws::{Connection, Event};

/// An answer to a plain (non-WebSocket) HTTP request. The connection closes after it.
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

/// What the server does with connections. One value serves every shard, so it is `Sync`;
/// per-connection state belongs to the layer above (actors keep theirs beside the connection).
pub trait Service: Send + Sync + 'static {
    /// A WebSocket connection opened (its 101 is queued). Messages may be sent at once.
    fn on_open(&self, conn: &mut Connection, request: &RequestHead) {
        let _ = (conn, request);
    }

    /// Something happened on an open connection. [`Event::Close`] is the last call for it.
    fn on_event(&self, conn: &mut Connection, event: Event);

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
    fn on_event(&self, conn: &mut Connection, event: Event) {
        use crate::ws::DataKind;
        // A send can only fail once the connection is closing, when the echo is moot.
        let _ = match event {
            Event::Text(text) => conn.send_shared(DataKind::Text, text.into_bytes()),
            Event::Binary(data) => conn.send_shared(DataKind::Binary, data),
            _ => Ok(()),
        };
    }
}
