//! A message framed in advance, for sending many times without framing or masking it again.

use bytes::Bytes;
use ringsock_engine::ws::{client_frame, server_frame, DataKind, OpCode, Role};

use crate::message::Message;

/// A message framed once, for sending many times with [`Ctx::send_prepared`](crate::Ctx::send_prepared): as the server
/// role frames it (unmasked) and as the client role does (masked).
///
/// The client frame is masked once, with one random key that every copy then shares, where
/// RFC 6455 wants a fresh key per frame. Masking exists so that bytes a script in a browser
/// chose never cross an intermediary in the clear; a load generator or a trusted client sending
/// its own message over and over does not need that, and saves a copy of the payload per send.
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    /// The message itself, for connections whose extensions must encode it.
    message: Message,
    /// As the server role sends it.
    server: Bytes,
    /// As the client role sends it, masked with its one key.
    client: Bytes,
}

impl PreparedMessage {
    /// Frames `message` for both roles (holding its payload three times).
    pub fn new(message: impl Into<Message>) -> Self {
        let message = message.into();
        let opcode = match &message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        let server = server_frame(opcode, message.as_bytes());
        let client = client_frame(opcode, message.as_bytes(), rand::random());
        Self {
            message,
            server,
            client,
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Its payload's length.
    pub fn len(&self) -> usize {
        self.message.as_bytes().len()
    }

    /// Whether its payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its frames as `role` sends them.
    pub(crate) fn frames(&self, role: Role) -> &Bytes {
        match role {
            Role::Client => &self.client,
            Role::Server => &self.server,
        }
    }

    /// Its kind and payload (shared), for a connection that must encode it itself.
    pub(crate) fn payload(&self) -> (DataKind, Bytes) {
        match &self.message {
            Message::Text(t) => (DataKind::Text, t.clone().into_bytes()),
            Message::Binary(b) => (DataKind::Binary, b.clone()),
        }
    }
}
