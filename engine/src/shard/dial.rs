//! Outgoing connections: a socket connecting in the background, the client handshake, and
//! what a failure reports.
//!
//! The socket is registered with the reactor as soon as `connect` returns `EINPROGRESS`: both
//! backends hold a send and a receive on a connecting TCP socket until it is established (the
//! kernel answers them with `EAGAIN` and they wait for readiness), and a refused or unreachable
//! peer surfaces as a receive error. So no connect operation is needed in the reactor.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};

use crate::ws::{ClientHandshake, Config, HandshakeError};

/// What an outgoing connection needs: where to, the prepared handshake, the protocol limits,
/// and the service's state for it.
pub struct Dial<T> {
    /// The address to connect to (resolved by the caller: the shard never blocks on DNS).
    pub addr: SocketAddr,
    /// The request to send and what the answer must hold.
    pub handshake: ClientHandshake,
    /// Limits of the WebSocket once open.
    pub config: Config,
    /// The service's state for the connection, handed back if it fails.
    pub session: T,
}

/// Why an outgoing connection did not open.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The socket could not be made, or connecting failed (refused, unreachable, reset).
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    /// The server answered, but not with a valid 101 for this request.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer closed before answering the handshake.
    #[error("the server closed the connection before answering the handshake")]
    Closed,
    /// No complete answer within the handshake timeout.
    #[error("no handshake answer within the handshake timeout")]
    Timeout,
    /// The server is shutting down.
    #[error("the client is shutting down")]
    Shutdown,
}

/// An outgoing connection waiting for its 101.
pub(crate) struct Dialing<T> {
    pub handshake: ClientHandshake,
    pub config: Config,
    pub session: T,
    /// The answer so far (bounded by the handshake's head limits).
    pub head: BytesMut,
}

/// A non-blocking TCP socket to `addr`, connecting.
pub(crate) fn connect(addr: SocketAddr) -> io::Result<RawFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into_raw_fd())
}
