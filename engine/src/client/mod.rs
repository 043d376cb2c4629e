//! How an outgoing connection reaches its server: TLS for `wss://` (and for an `https://`
//! proxy), an HTTP CONNECT proxy, and the connect timeout ([`DialOptions`]).
//!
//! The protocol's own client settings (subprotocols, extensions, headers) are
//! [`crate::ws::ClientOptions`], carried by the [`crate::ws::ClientHandshake`]; these are the
//! transport's, carried beside it in each dial. The sans-io pieces the shard runs per
//! connection (the TLS layers, the CONNECT exchange) live here too; the shard only moves bytes
//! between them and the socket.
//!
//! TLS is rustls with the `ring` provider; by default servers are checked against Mozilla's root
//! certificates compiled in (`webpki-roots`), the same on every machine whatever its CA store.
//! [`TlsOptions`] adds private CAs, drops the built-in roots, or sets a client certificate.

mod proxy;
mod tls;

use std::time::Duration;

use crate::ws::ClientHandshake;

pub use proxy::{Proxy, ProxyError};
pub(crate) use tls::TlsLayers;
pub use tls::{TlsConfig, TlsError, TlsOptions};

/// The rustls crate this engine is built with, for [`TlsConfig::from_rustls`] (a custom
/// verifier, ALPN, key logging).
pub use rustls;

/// The connect timeout when none is set: how long a TCP connection may take to come up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How an outgoing connection reaches its server: TLS settings for `wss://`, an HTTP CONNECT
/// proxy, the connect timeout.
#[derive(Clone, Debug)]
pub struct DialOptions {
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) proxy: Option<Proxy>,
    pub(crate) connect_timeout: Duration,
}

impl Default for DialOptions {
    fn default() -> Self {
        Self {
            tls: None,
            proxy: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl DialOptions {
    /// `wss://` checked against Mozilla's roots, no proxy, a 10 s connect timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// How a `wss://` server's certificate is checked and whether the client presents one
    /// ([`TlsOptions`]: extra CAs, a client certificate). Without it, `wss://` uses
    /// [`TlsConfig::default`] (Mozilla's roots). Unused for `ws://`.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Tunnels the connection through an HTTP CONNECT proxy: the socket goes to the proxy, the
    /// proxy's 200 opens a tunnel to the server, and TLS (for `wss://`) and the handshake run
    /// inside it.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// How long the TCP connection (to the server, or to the proxy) may take to come up
    /// (default 10 s); past it the dial fails with a timeout. Separate from the handshake
    /// timeout, which then bounds the rest: proxy answer, TLS and the 101.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The host and port the socket connects to for `handshake`: the proxy's when one is set
    /// (the server's name is then the proxy's to resolve), else the server's.
    pub fn socket_target<'a>(&'a self, handshake: &'a ClientHandshake) -> (&'a str, u16) {
        match &self.proxy {
            Some(proxy) => (proxy.host(), proxy.port()),
            None => (handshake.host(), handshake.port()),
        }
    }
}
