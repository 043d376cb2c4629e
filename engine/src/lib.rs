//! ringsock-engine: the kernel side of ringsock, on top of the sans-io protocol core
//! ([`ringsock_proto`], re-exported here as [`ws`] and [`http`]).
//!
//! - [`reactor`]: one per shard, it owns the kernel side of I/O: io_uring, or epoll where
//!   io_uring is missing, behind one completion-style contract.
//! - [`server`]: the server builder and the [`server::Service`] hook; shards (one thread per
//!   core) run the connections, feeding their bytes to the protocol and flushing their output.
//! - [`client`]: how outgoing connections reach their server: TLS, an HTTP CONNECT proxy.

#![warn(missing_docs)]

pub mod client;
mod conn;
pub mod reactor;
pub mod server;
pub mod service;
mod shard;
mod timers;

pub use ringsock_proto::{endpoint, http, ws};
