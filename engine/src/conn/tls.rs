//! The shard's side of TLS and proxies for outgoing connections: what goes out first (the
//! CONNECT request or the handshake request, through TLS when there is any), the switch into the
//! tunnel after the proxy's 200, and moving TLS records to the socket's send queue.
//!
//! A connection without TLS never comes here past one `Option` check: its bytes go from the
//! receive buffer to the phase, and from the protocol to the send queue, as before.

use bytes::Bytes;

use super::dial::DialError;
use super::Conn;
use crate::client::{DialOptions, TlsConfig, TlsLayers};
use crate::ws::ClientHandshake;

/// The start of an outgoing connection, prepared before its socket is made so that a TLS name
/// that cannot be used fails without one.
pub(crate) struct Opening {
    tls: Option<Box<TlsLayers>>,
    first: Vec<u8>,
    proxying: bool,
}

/// `host:port` as a person writes it (IPv6 bracketed), for error texts.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Starts TLS to the server named by `handshake` inside `layers`, as `options` say.
fn push_origin(
    layers: &mut TlsLayers,
    handshake: &ClientHandshake,
    options: &DialOptions,
) -> Result<(), DialError> {
    let config = options.tls.clone().unwrap_or_default();
    let peer = authority(handshake.host(), handshake.port());
    layers.push(&config, handshake.host(), peer)?;
    Ok(())
}

impl Opening {
    /// Through a proxy: (TLS to an `https://` proxy and) the CONNECT request. Direct: (TLS to
    /// a `wss://` server and) the handshake request.
    pub(crate) fn new(
        handshake: &ClientHandshake,
        options: &DialOptions,
    ) -> Result<Opening, DialError> {
        if let Some(proxy) = &options.proxy {
            let tls = if proxy.is_secure() {
                let mut layers = TlsLayers::new();
                let config = proxy
                    .tls_config()
                    .cloned()
                    .unwrap_or_else(TlsConfig::default);
                let peer = format!("the proxy {}", authority(proxy.host(), proxy.port()));
                layers.push(&config, proxy.host(), peer)?;
                Some(Box::new(layers))
            } else {
                None
            };
            return Ok(Opening {
                tls,
                first: proxy.connect_request(handshake.host(), handshake.port()),
                proxying: true,
            });
        }
        let tls = if handshake.is_secure() {
            let mut layers = TlsLayers::new();
            push_origin(&mut layers, handshake, options)?;
            Some(Box::new(layers))
        } else {
            None
        };
        Ok(Opening {
            tls,
            first: handshake.request_bytes().to_vec(),
            proxying: false,
        })
    }

    /// Sets the connection's TLS and queues its first bytes; true if the proxy's answer comes
    /// first.
    pub(crate) fn apply<T>(self, conn: &mut Conn<T>) -> bool {
        conn.tls = self.tls;
        match conn.tls.as_deref_mut() {
            None => conn.push_out(Bytes::from(self.first)),
            Some(_) => conn.send_plain(&self.first),
        }
        self.proxying
    }
}

/// The proxy said 200: TLS to the server starts inside the tunnel (for `wss://`) and the
/// handshake request follows. Returns the TLS layer bytes from the tunnel enter at, if any
/// (bytes that arrived right behind the proxy's answer are that layer's records).
pub(crate) fn open_tunnel<T>(
    conn: &mut Conn<T>,
    handshake: &ClientHandshake,
    options: &DialOptions,
) -> Result<Option<usize>, DialError> {
    let mut inner = None;
    if handshake.is_secure() {
        let layers = conn.tls.get_or_insert_with(|| Box::new(TlsLayers::new()));
        push_origin(layers, handshake, options)?;
        inner = Some(layers.len() - 1);
    }
    conn.send_plain(handshake.request_bytes());
    Ok(inner)
}

impl<T> Conn<T> {
    /// Queues plaintext for the peer: encrypted when the connection has TLS.
    pub(crate) fn send_plain(&mut self, bytes: &[u8]) {
        match self.tls.as_deref_mut() {
            None => self.push_out(Bytes::copy_from_slice(bytes)),
            Some(tls) => {
                tls.send(bytes);
                self.transmit_tls();
            }
        }
    }

    /// Moves the TLS records waiting to be written (handshake messages, encrypted data,
    /// alerts) to the send queue.
    pub(crate) fn transmit_tls(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            let (out, queued) = (&mut self.out, &mut self.queued);
            tls.transmit(|records| {
                *queued += records.len();
                out.push_back(records);
            });
        }
    }
}
