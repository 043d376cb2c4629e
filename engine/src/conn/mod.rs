//! One socket as its shard sees it: which phase it is in (request head, answered, an open
//! WebSocket, dialing), what waits to be written, and where it is in being closed; with TLS
//! between the socket and the phase when it has any ([`tls`]), and the outgoing side's dial
//! ([`dial`]).
//!
//! Data the shard's loop and the service's context both use: it imports neither.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use slab::Slab;

use crate::client::TlsLayers;
use crate::reactor::Token;
use crate::ws::Connection;

pub(crate) mod dial;
pub(crate) mod tls;

/// An open WebSocket and the application's state for it.
#[derive(Debug)]
pub struct Open<T> {
    /// The protocol state: send, ping, close.
    pub ws: Connection,
    /// What the service's `upgrade` returned for this connection.
    pub session: T,
    /// The subprotocol the handshake chose.
    pub protocol: Option<Box<str>>,
}

/// What the bytes arriving on a socket currently mean.
pub(crate) enum Phase<T> {
    /// Reading the HTTP request head (bounded by the head limit).
    Head(BytesMut),
    /// A plain HTTP answer or a refusal is queued; the socket closes once it is written.
    Answered,
    /// An open (or closing) WebSocket and the service's state for it.
    Ws(Box<Open<T>>),
    /// An outgoing connection waiting for the server's 101.
    Dialing(Box<dial::Dialing<T>>),
    /// An outgoing connection waiting for its proxy's answer to CONNECT; `Dialing` follows on
    /// the same socket once the tunnel is open.
    Proxying(Box<dial::Dialing<T>>),
}

/// How far the socket is from being closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Reading and writing.
    Live,
    /// Nothing more is read; the socket closes when its output is written.
    CloseWhenFlushed,
    /// The backend was told to close; waiting for its `Closed`.
    Closing,
}

/// The connection `token` names, if its slot still holds that generation: a completion for a
/// closed connection must never reach the slot's next occupant.
pub(crate) fn slot<T>(conns: &mut Slab<Conn<T>>, token: Token) -> Option<&mut Conn<T>> {
    conns
        .get_mut(token.index())
        .filter(|c| c.generation == token.generation())
}

/// [`Conn::drain_below`] when no drain report is wanted.
pub(crate) const NO_DRAIN: u32 = u32::MAX;

/// A socket's state in its shard's slab.
pub(crate) struct Conn<T> {
    /// The socket, until it is handed to the reactor to close ([`Conn::take_fd`]).
    fd: Option<OwnedFd>,
    pub generation: u32,
    pub phase: Phase<T>,
    /// TLS between the socket and the phase (outgoing `wss://`, or an `https://` proxy); `None`
    /// for plain sockets, whose bytes go straight through.
    pub tls: Option<Box<TlsLayers>>,
    /// Chunks waiting for the next send (the one in flight holds its own).
    pub out: VecDeque<Bytes>,
    /// Bytes in `out` plus those of the send in flight.
    pub queued: usize,
    /// Report a drain once `queued` and the protocol's pending output are at most this;
    /// [`NO_DRAIN`]: none asked for. (A u32, clamped, with a sentinel rather than an `Option`:
    /// the bytes saved keep `Conn` in its size budget.)
    pub drain_below: u32,
    pub sending: bool,
    /// Reading is paused ([`crate::reactor::Backend::pause`]): the output passed the high level
    /// and has not yet fallen to the low one.
    pub read_paused: bool,
    /// A keepalive ping went out and nothing has been received since (`Limits::keepalive`).
    pub pinged: bool,
    /// Bytes a [`crate::reactor::Backend::skip`] asked for and not yet dropped or delivered:
    /// while any are, no other skip is asked for. (A u32, so `Conn` does not grow: a longer
    /// payload is skipped in several asks.)
    pub skipping: u32,
    pub lifecycle: Lifecycle,
    /// Queued in the shard's dirty list for this loop turn's flush.
    pub dirty: bool,
    /// The deadline this connection's timer entry is scheduled for.
    pub timer: Option<Instant>,
    pub accepted_at: Instant,
    pub last_activity: Instant,
}

impl<T> Conn<T> {
    /// The socket's number for the reactor's calls; -1 once it was handed over to be closed,
    /// so a late call fails with EBADF instead of reaching whatever socket reuses the number.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// The socket while the connection holds it.
    pub(crate) fn socket(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }

    /// The socket, to hand to the reactor's `close` (once: later calls get `None`).
    pub(crate) fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    pub(crate) fn new(fd: OwnedFd, generation: u32, now: Instant) -> Self {
        Self {
            fd: Some(fd),
            generation,
            phase: Phase::Head(BytesMut::new()),
            tls: None,
            out: VecDeque::new(),
            queued: 0,
            drain_below: NO_DRAIN,
            sending: false,
            read_paused: false,
            pinged: false,
            skipping: 0,
            lifecycle: Lifecycle::Live,
            dirty: false,
            timer: None,
            accepted_at: now,
            last_activity: now,
        }
    }

    /// Queues a chunk for the next send.
    pub(crate) fn push_out(&mut self, chunk: Bytes) {
        self.queued += chunk.len();
        self.out.push_back(chunk);
    }

    /// Bytes arrived from the peer at `now`.
    pub(crate) fn heard_from(&mut self, now: Instant) {
        self.last_activity = now;
        self.pinged = false;
    }

    /// Drops the connection at once: its WebSocket (if open) reports a close with 1006, queued
    /// output is discarded, and the socket closes at the next flush.
    pub(crate) fn abort(&mut self) {
        if let Phase::Ws(open) = &mut self.phase {
            open.ws.transport_closed();
            while open.ws.poll_transmit().is_some() {}
        }
        self.discard_output();
        if self.lifecycle == Lifecycle::Live {
            self.lifecycle = Lifecycle::CloseWhenFlushed;
        }
    }

    /// Forgets all output, the send in flight included.
    pub(crate) fn discard_output(&mut self) {
        self.out.clear();
        self.queued = 0;
    }

    /// Puts back what a partial send did not write, in order, ahead of newer output.
    /// `chunks` is left empty, its allocation the caller's to reuse.
    pub(crate) fn requeue_unsent(&mut self, chunks: &mut Vec<Bytes>, mut written: usize) {
        self.queued = self.queued.saturating_sub(written);
        // The chunks written in full, then the one written in part.
        let mut done = 0;
        while done < chunks.len() && written >= chunks[done].len() {
            written -= chunks[done].len();
            done += 1;
        }
        if let Some(partial) = chunks.get_mut(done) {
            let _ = partial.split_to(written);
        }
        while chunks.len() > done {
            if let Some(chunk) = chunks.pop() {
                self.out.push_front(chunk);
            }
        }
        chunks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection costs its slab entry and its boxed protocol state; both are kept
    /// under the allocator size class they fit today (384 bytes for the box), so growth is a
    /// decision, not an accident.
    #[test]
    fn an_idle_connection_stays_small() {
        assert!(std::mem::size_of::<Conn<()>>() <= 160);
        assert!(std::mem::size_of::<Open<()>>() <= 384);
    }

    #[test]
    fn a_partial_send_requeues_the_unwritten_tail_in_order() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let mut conn = Conn::<()>::new(null.into(), 0, Instant::now());
        conn.out.push_back(Bytes::from_static(b"later"));
        let chunks = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"hi"),
        ];
        let mut chunks = chunks;
        conn.requeue_unsent(&mut chunks, 5);
        assert!(chunks.is_empty());
        let all: Vec<u8> = conn.out.iter().flat_map(|c| c.to_vec()).collect();
        assert_eq!(all, b"fghilater");
    }
}
