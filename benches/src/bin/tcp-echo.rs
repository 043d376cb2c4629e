//! `tcp-echo`: the plain TCP baseline of the load scenarios: whatever bytes arrive go back.
//!
//! One thread, edge-triggered epoll through `mio`, one fixed buffer per connection. No framing,
//! no copies beyond the kernel's: this is how fast one core can move bytes through loopback
//! sockets, the ceiling for scenario C's 1 MiB messages. The load generator also runs against it
//! in raw mode (`ws-load --raw`) to show that it drives far more than any WebSocket server.

use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// Per-connection buffer, allocated on first data. 1 MiB: a whole scenario-C message then moves
/// in as few syscalls as the socket allows; with 128 KiB the baseline was 10-20% slower there.
const BUF_LEN: usize = 1024 * 1024;
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    /// Allocated on first data, so idle connections cost no buffer.
    buf: Vec<u8>,
    /// `buf[start..end]` was read and not yet written back.
    start: usize,
    end: usize,
}

fn main() {
    let addr = ringsock_benches::addr_from_args("tcp-echo", "127.0.0.1:9104");
    let mut poll = Poll::new().expect("epoll");
    let mut listener =
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register the listener");
    eprintln!("tcp-echo: listening on {addr}");
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {e}");
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns);
                continue;
            }
            let id = event.token().0;
            let Some(conn) = conns.get_mut(id) else {
                continue;
            };
            if pump(conn).is_err() {
                let mut conn = conns.remove(id);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let id = conns.vacant_key();
                if poll
                    .registry()
                    .register(
                        &mut stream,
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_ok()
                {
                    conns.insert(Conn {
                        stream,
                        buf: Vec::new(),
                        start: 0,
                        end: 0,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors: stop for now; edge-triggered, so the rest waits for the
                // next connection to arrive.
                eprintln!("tcp-echo: accept: {e}");
                return;
            }
        }
    }
}

/// Moves bytes until the socket would block either way. `Err` means the connection is over.
fn pump(conn: &mut Conn) -> io::Result<()> {
    loop {
        if conn.start < conn.end {
            match conn.stream.write(&conn.buf[conn.start..conn.end]) {
                Ok(n) => conn.start += n,
                // Wait for a writable edge; reading more now would only grow what is owed.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if conn.buf.is_empty() {
            conn.buf = vec![0; BUF_LEN];
        }
        match conn.stream.read(&mut conn.buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => (conn.start, conn.end) = (0, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
