//! The WebSocket protocol (RFC 6455) as a pure state machine.
//!
//! A connection's life: the HTTP head is parsed by [`crate::http`]; [`handshake`] checks it and
//! writes the answer (server) or writes the request and checks the answer (client); then a
//! [`Connection`] takes bytes in and gives [`Event`]s out, and takes messages in and gives bytes
//! out. Both roles run the same [`Connection`]; [`Role`] decides masking and the close rules.

pub mod close;
pub mod connection;
pub mod deflate;
pub mod extension;
pub mod frame;
pub mod handshake;
// Internal: public only for the benchmarks, tests and fuzz targets.
#[doc(hidden)]
pub mod mask;
pub mod message;
// Internal: public only for the benchmarks.
#[doc(hidden)]
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use connection::{
    Config, Connection, Event, Overflow, PingId, ProtocolError, Role, SendError, State,
    FRAGMENT_GRACE,
};
pub use deflate::{DeflateOptions, PerMessageDeflate, Strategy as DeflateStrategy};
pub use extension::{DataKind, Extension, ExtensionError, ExtensionSession, Extensions, Rsv};
pub use frame::{client_frame, server_frame, server_frame_rsv, FrameError, FrameHeader, OpCode};
pub use handshake::{
    accept_key, is_websocket_upgrade, ClientHandshake, ClientNegotiated, ClientOptions, Decision,
    HandshakeError, Negotiated, ProtocolSelector, Refusal, ServerOptions, UpgradeError,
};
pub use message::Utf8Bytes;
