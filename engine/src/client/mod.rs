//! How an outgoing connection reaches its server: TLS for `wss://` (and for an `https://`
//! proxy), an HTTP CONNECT proxy, and the connect timeout.
//!
//! These are settings carried by [`crate::ws::ClientOptions`] into each
//! [`crate::ws::ClientHandshake`], so a dial needs nothing else. The sans-io pieces the shard
//! runs per connection (the TLS layers, the CONNECT exchange) live here too; the shard only moves
//! bytes between them and the socket.
//!
//! TLS is rustls with the `ring` provider; by default servers are checked against Mozilla's root
//! certificates compiled in (`webpki-roots`), the same on every machine whatever its CA store.
//! [`TlsOptions`] adds private CAs, drops the built-in roots, or sets a client certificate.

mod endpoint;
mod proxy;
mod tls;

pub(crate) use endpoint::{Endpoint, Schemes};

pub use proxy::{Proxy, ProxyError};
pub(crate) use tls::TlsLayers;
pub use tls::{TlsConfig, TlsError, TlsOptions};

/// The rustls crate this engine is built with, for [`TlsConfig::from_rustls`] (a custom
/// verifier, ALPN, key logging).
pub use rustls;

/// The connect timeout when none is set: how long a TCP connection may take to come up.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
