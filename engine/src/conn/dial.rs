//! Outgoing connections: a socket connecting in the background, the client handshake, and
//! what a failure reports.
//!
//! The socket is registered with the reactor as soon as `connect` returns `EINPROGRESS`: both
//! backends hold a send and a receive on a connecting TCP socket until it is established (the
//! kernel answers them with `EAGAIN` and they wait for readiness), and a refused or unreachable
//! peer surfaces as a receive error. So no connect operation is needed in the reactor.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};

use crate::client::{DialOptions, ProxyError, TlsError};
use crate::ws::{ClientHandshake, Config, HandshakeError};

/// What an outgoing connection needs: where to, the prepared handshake, how to reach the server
/// (TLS for `wss://`, a proxy, the connect timeout), the protocol limits, and the service's
/// state for it.
pub struct Dial<T> {
    /// The address to connect to (resolved by the caller: the shard never blocks on DNS): the
    /// server's, or the proxy's when `options` name one.
    pub addr: SocketAddr,
    /// The local address to connect from (`None`: the kernel's pick). With port 0 the port is
    /// chosen at connect time for the whole 4-tuple (`IP_BIND_ADDRESS_NO_PORT`), so spreading
    /// connections over several source IPs multiplies the ports available to one destination.
    pub local: Option<SocketAddr>,
    /// The request to send and what the answer must hold.
    pub handshake: ClientHandshake,
    /// TLS, proxy and connect timeout.
    pub options: DialOptions,
    /// Limits of the WebSocket once open.
    pub config: Config,
    /// The service's state for the connection, handed back if it fails.
    pub session: T,
}

impl<T> std::fmt::Debug for Dial<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session is the service's, with no `Debug` required.
        f.debug_struct("Dial")
            .field("addr", &self.addr)
            .field("local", &self.local)
            .field("handshake", &self.handshake)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Why an outgoing connection did not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The socket could not be made, or connecting failed (refused, unreachable, reset).
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    /// The server answered, but not with a valid 101 for this request.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// TLS with the server (or with an `https://` proxy) failed: a certificate the client does
    /// not trust or that names another host, a server that wants a client certificate, a
    /// broken record. The text says which.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The proxy refused the tunnel (any answer but 200, e.g. 407 when it wants credentials;
    /// [`ProxyError::status`] and [`ProxyError::headers`] hold its answer) or answered with
    /// something that is not HTTP.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The peer closed before answering the handshake.
    #[error("the server closed the connection before answering the handshake")]
    Closed,
    /// The TCP connection did not come up within the connect timeout, or, once it had, the
    /// handshake (proxy answer, TLS, 101) did not finish within the handshake timeout.
    #[error(
        "timed out connecting (connect timeout) or waiting for the handshake (handshake timeout)"
    )]
    Timeout,
    /// The server is shutting down.
    #[error("the client is shutting down")]
    Shutdown,
}

/// An outgoing connection waiting for its 101.
pub(crate) struct Dialing<T> {
    pub handshake: ClientHandshake,
    pub options: DialOptions,
    pub config: Config,
    pub session: T,
    /// The answer so far (bounded by the handshake's head limits): the proxy's while
    /// proxying, then the server's.
    pub head: BytesMut,
    /// When the TCP connection was seen up (its first bytes written or read); until then the
    /// connect timeout runs, after it the handshake timeout.
    pub connected_at: Option<Instant>,
}

impl<T> Dialing<T> {
    /// When the dial fails for taking too long: `started` plus the connect timeout until the
    /// connection is up, then the handshake timeout from that moment.
    pub(crate) fn deadline(&self, started: Instant, handshake_timeout: Duration) -> Instant {
        match self.connected_at {
            None => started + self.options.connect_timeout,
            Some(at) => at + handshake_timeout,
        }
    }
}

/// A non-blocking TCP socket to `addr`, from `local` if given, connecting.
pub(crate) fn connect(addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(local) = local {
        if local.port() == 0 && local.is_ipv4() {
            // Let connect() pick the port for the whole 4-tuple instead of bind() reserving one
            // per source address: otherwise each source IP could offer only one port range in
            // all, whatever the destinations.
            set_bind_no_port(&socket)?;
        }
        socket.bind(&local.into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// `IP_BIND_ADDRESS_NO_PORT`: defer the port choice from bind() to connect().
fn set_bind_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
