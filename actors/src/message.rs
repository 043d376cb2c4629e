//! What travels over a connection as the application sees it: a whole message, and how a
//! connection ended. Plain data, so topics, actors and the server handle can speak of messages
//! without reaching for the handler trait.

use bytes::Bytes;
use ringsock_engine::ws::{server_frame, CloseCode, OpCode, Utf8Bytes};

/// A whole message from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message, checked UTF-8 (`as_str()` borrows it, `into_bytes()` shares it).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The payload's bytes, whatever the kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_str().as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(Utf8Bytes::from(text.to_owned()))
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(Utf8Bytes::from(text))
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(Bytes::from(data))
    }
}

/// How a connection ended, as [`Handler::on_close`](crate::Handler::on_close) hears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The peer's close code, the code we sent on a protocol error, or 1006 (no close
    /// handshake: the transport dropped, a close went unanswered, or the peer stopped answering
    /// pings).
    pub code: CloseCode,
    /// The reason that came with the code; empty for 1006.
    pub reason: String,
}

/// A message as one unmasked frame, ready to be queued to many connections: a publish is
/// framed once, whoever publishes it (a handler, an actor, another thread).
pub(crate) fn frame(message: Message) -> Bytes {
    match message {
        Message::Text(t) => server_frame(OpCode::Text, t.as_str().as_bytes()),
        Message::Binary(b) => server_frame(OpCode::Binary, &b),
    }
}
