//! ringsock-engine: the kernel side of ringsock, on top of the sans-io protocol core
//! ([`ringsock_proto`], re-exported here as [`ws`] and [`http`]).
//!
//! - The reactor, one per shard, owns the kernel side of I/O: io_uring, or epoll where io_uring
//!   is missing, behind one completion-style contract ([`BackendKind`] chooses, [`PoolConfig`]
//!   sizes its receive buffers).
//! - [`server`]: the server builder and the [`server::Service`] hook; shards (one thread per
//!   core) run the connections, feeding their bytes to the protocol and flushing their output.
//! - [`client`]: how outgoing connections reach their server: TLS, an HTTP CONNECT proxy.

#![deny(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod client;
mod conn;
// The kernel side of a shard: internal, public only for the benchmarks; its settings are
// re-exported below.
#[doc(hidden)]
pub mod reactor;
pub mod server;
pub mod service;
mod shard;
mod timers;

pub use reactor::{BackendKind, PoolConfig};
pub use ringsock_proto::{endpoint, http, ws};
