//! ringsock-proto: the WebSocket protocol core, sans-io.
//!
//! Everything here turns bytes into events and messages into bytes; nothing touches a socket, a
//! clock, a thread or a global random generator. Time is an argument ([`std::time::Instant`]),
//! and randomness (client masking keys, handshake keys) comes from the caller, so every rule can
//! be tested without a network and a client's output can be pinned byte for byte.
//!
//! - [`http`]: bounded HTTP/1.1 head parsing, header lookup and head writing.
//! - [`endpoint`]: where a `ws://`/`wss://` (or proxy `http://`/`https://`) URL says to connect.
//! - [`ws`]: the WebSocket protocol: handshake, frames, masking, UTF-8, extensions with
//!   permessage-deflate, and the [`ws::Connection`] state machine shared by the server and client
//!   roles.

#![deny(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod endpoint;
pub mod http;
pub mod ws;
