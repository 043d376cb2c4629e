//! ringsock-engine: the WebSocket protocol core, sans-io.
//!
//! Everything here turns bytes into events and messages into bytes; nothing touches a socket, a
//! clock or a thread. Time is an argument ([`std::time::Instant`]), so every rule can be tested
//! without a network. The io_uring reactor and the shards arrive in their own modules.
//!
//! - [`http`]: bounded HTTP/1.1 head parsing and header lookup.
//! - [`client`]: how outgoing connections reach their server: TLS, an HTTP CONNECT proxy.
//! - [`ws`]: the WebSocket protocol: handshake, frames, masking, UTF-8, extensions and the
//!   [`ws::Connection`] state machine shared by the server and client roles.

#![warn(missing_docs)]

pub mod client;
pub mod http;
pub mod reactor;
pub mod server;
mod shard;
pub mod ws;
