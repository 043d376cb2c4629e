//! The backend over a real ring: accept, receive, send, close, wake, the pool's limits, and the
//! receive side's skips and probes end to end (the transitions alone: `recv`'s tests).

use super::*;
use crate::reactor::uring::recv::RecvState;
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread;

/// Upper bound on any wait loop in these tests: a bug fails the test instead of hanging it, and
/// no loaded machine comes near it.
const LIMIT: Duration = Duration::from_secs(20);

fn backend(buffers: u16, buffer_size: u32) -> UringBackend {
    UringBackend::new(PoolConfig {
        buffers,
        buffer_size,
        ..PoolConfig::default()
    })
    .expect("io_uring backend")
}

fn listener() -> (Socket, SocketAddr) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(128).unwrap();
    s.set_nonblocking(true).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// Waits (in short slices), handing every completion to `seen`, until `seen` has returned
/// true (the rest of that batch is still handed over).
fn pump(b: &mut UringBackend, mut seen: impl FnMut(&mut UringBackend, Completion) -> bool) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut done = false;
    while !done {
        assert!(start.elapsed() < LIMIT, "timed out waiting for completions");
        b.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
        for c in out.drain(..) {
            done |= seen(b, c);
        }
    }
}

/// Listens, connects one client, registers the accepted socket under `token`.
fn connected(b: &mut UringBackend, token: Token) -> (Socket, TcpStream, OwnedFd) {
    let (l, addr) = listener();
    b.listen(l.as_raw_fd()).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let mut fd = None;
    pump(b, |_, c| match c {
        Completion::Accepted { fd: f } => {
            fd = Some(f);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let fd = fd.unwrap();
    b.register(token, fd.as_raw_fd()).unwrap();
    (l, client, fd)
}

/// A steady stream through a pool of 512 buffers cycles through a few of them, not all:
/// the ring holds only what the load needs, refilled most recently used first.
#[test]
fn a_steady_stream_reuses_a_few_buffers() {
    // A read budget of four buffers a turn.
    let mut b = UringBackend::new(PoolConfig {
        buffers: 512,
        buffer_size: 16 << 10,
        read_budget: 64 << 10,
    })
    .unwrap();
    let token = Token::new(0, 1);
    let (_l, mut client, fd) = connected(&mut b, token);
    let writer = thread::spawn(move || {
        let chunk = vec![7u8; 64 << 10];
        for _ in 0..64 {
            client.write_all(&chunk).unwrap();
        }
        client
    });
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    pump(&mut b, |b, c| match c {
        Completion::Received { buf, len, .. } => {
            seen.insert(buf.0);
            total += len;
            b.recycle(buf);
            total == 64 * (64 << 10)
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(
        seen.len() <= 32,
        "{} of 512 buffers used for one socket",
        seen.len()
    );
    let _client = writer.join().unwrap();
    b.close(token, fd);
    pump(&mut b, |_, c| matches!(c, Completion::Closed { .. }));
}

#[test]
fn idle_wait_times_out_empty() {
    let mut b = backend(8, 4096);
    assert_eq!(b.name(), "io_uring");
    let mut out = Vec::new();
    let start = Instant::now();
    b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
    let took = start.elapsed();
    assert!(out.is_empty(), "{out:?}");
    assert!(took >= Duration::from_millis(9), "{took:?}");
    assert!(took < LIMIT, "{took:?}");
    // A zero timeout polls and returns at once.
    b.wait(Some(Duration::ZERO), &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn pending_wake_returns_at_once() {
    let mut b = backend(8, 4096);
    b.waker().wake();
    let mut out = Vec::new();
    let start = Instant::now();
    b.wait(Some(LIMIT), &mut out).unwrap();
    assert!(matches!(out[..], [Completion::Woken]), "{out:?}");
    // At once: not at the end of the wait's timeout.
    assert!(start.elapsed() < LIMIT / 2, "{:?}", start.elapsed());
    // Drained: the next wait idles.
    out.clear();
    b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn waker_wakes_unbounded_wait_from_another_thread() {
    let mut b = backend(8, 4096);
    let token = Token::new(0, 1);
    let (_l, client, _fd) = connected(&mut b, token);
    let waker = b.waker();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let helper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        waker.wake();
        // If the wake is lost, unblock the wait with data instead so the test fails rather
        // than hangs.
        if stop_rx.recv_timeout(LIMIT).is_err() {
            (&client).write_all(b"fallback").unwrap();
        }
        client
    });
    let mut out = Vec::new();
    let start = Instant::now();
    b.wait(None, &mut out).unwrap();
    let _ = stop_tx.send(());
    let _client = helper.join().unwrap();
    assert!(
        out.iter().any(|c| matches!(c, Completion::Woken)),
        "{out:?}"
    );
    // Woken, not unblocked by the fallback's data a LIMIT later.
    assert!(start.elapsed() < LIMIT, "{:?}", start.elapsed());
}

#[test]
fn trim_releases_buffers_the_shard_does_not_hold() {
    let mut b = backend(4, 8192);
    let token = Token::new(1, 1);
    let (_l, mut client, _fd) = connected(&mut b, token);
    let mut received = Vec::new();
    for byte in [b'a', b'b'] {
        client.write_all(&[byte; 100]).unwrap();
        pump(&mut b, |_, c| match c {
            Completion::Received { buf, len, .. } => {
                received.push((buf, len));
                true
            }
            other => panic!("unexpected {other:?}"),
        });
    }
    let (held, held_len) = received[0];
    let (returned, _) = received[1];
    b.recycle(returned);
    let mut out = Vec::new();
    b.wait(Some(Duration::ZERO), &mut out).unwrap();
    assert!(out.is_empty());
    b.trim();
    assert_eq!(
        b.buffer(held, held_len),
        [b'a'; 100],
        "a held buffer keeps its bytes"
    );
    assert!(
        b.pool.raw(returned.0)[..100].iter().all(|&x| x == 0),
        "a returned buffer was given back (reads as zeros)"
    );
    // Released buffers take data again.
    b.recycle(held);
    client.write_all(b"after trim").unwrap();
    pump(&mut b, |b, c| match c {
        Completion::Received { buf, len, .. } => {
            assert_eq!(b.buffer(buf, len), b"after trim");
            true
        }
        other => panic!("unexpected {other:?}"),
    });
}

#[test]
fn accept_receive_send_eof_close() {
    let mut b = backend(16, 4096);
    let token = Token::new(3, 7);
    let (_l, mut client, fd) = connected(&mut b, token);

    // Client → server.
    client.write_all(b"hello, ring").unwrap();
    let mut got = Vec::new();
    pump(&mut b, |b, c| match c {
        Completion::Received { token: t, buf, len } => {
            assert_eq!(t, token);
            got.extend_from_slice(b.buffer(buf, len));
            b.recycle(buf);
            // Recycled: no longer readable.
            assert!(b.buffer(buf, len).is_empty());
            got.len() >= 11
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(got, b"hello, ring");

    // Server → client: several chunks, one of them large enough to need several writes.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let chunks = vec![
        Bytes::from_static(b"first "),
        Bytes::from_static(b"second "),
        Bytes::from(big.clone()),
        Bytes::from_static(b"last"),
    ];
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let total = expected.len();
    let reader = {
        let mut client = client.try_clone().unwrap();
        thread::spawn(move || {
            let mut buf = vec![0; total];
            client.set_read_timeout(Some(LIMIT)).unwrap();
            client.read_exact(&mut buf).unwrap();
            buf
        })
    };
    b.send(token, fd.as_raw_fd(), chunks.clone());
    let mut sent = None;
    pump(&mut b, |_, c| match c {
        Completion::Sent {
            token: t,
            result,
            chunks,
        } => {
            assert_eq!(t, token);
            sent = Some((result.unwrap(), chunks));
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let (n, returned) = sent.unwrap();
    assert_eq!(n, total, "MSG_WAITALL: one completion for the whole batch");
    assert_eq!(returned, chunks);
    assert_eq!(reader.join().unwrap(), expected);

    // Client shuts its side → Eof.
    client.shutdown(Shutdown::Write).unwrap();
    let mut eof = false;
    pump(&mut b, |_, c| match c {
        Completion::Eof { token: t } => {
            assert_eq!(t, token);
            eof = true;
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(eof);

    // Half-close our side too, then close → Closed, exactly once.
    b.shutdown_write(token, fd.as_raw_fd());
    b.close(token, fd);
    let mut closed = 0;
    pump(&mut b, |_, c| match c {
        Completion::Closed { token: t } => {
            assert_eq!(t, token);
            closed += 1;
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let mut out = Vec::new();
    b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(closed, 1);
    // The peer sees our FIN.
    let mut rest = Vec::new();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The slot is free again: the next generation can register.
    assert!(b.slot_of(token).is_none());
}

#[test]
fn close_reports_inflight_send_before_closed() {
    let mut b = backend(16, 4096);
    let stuck = Token::new(0, 1);
    let quick = Token::new(1, 1);
    let (_l, _client, fd) = connected(&mut b, stuck);
    let (_l2, mut client2, fd2) = connected(&mut b, quick);

    // A send the peer never reads stays in flight (socket buffers fill up); close cancels it.
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    b.send(stuck, fd.as_raw_fd(), vec![chunk; 32]);
    let mut out = Vec::new();
    b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    assert!(
        out.is_empty(),
        "a 32 MiB send to a non-reader cannot finish: {out:?}"
    );
    b.close(stuck, fd);

    // A small send completes normally; a close in the same turn still reports it first.
    b.send(quick, fd2.as_raw_fd(), vec![Bytes::from_static(b"bye")]);
    b.close(quick, fd2);

    let mut events: Vec<(Token, &'static str)> = Vec::new();
    pump(&mut b, |_, c| {
        match c {
            Completion::Sent {
                token,
                result,
                chunks,
            } => {
                if token == stuck {
                    assert_eq!(chunks.len(), 32);
                    match result {
                        Ok(n) => assert!(n < 32 << 20),
                        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
                    }
                } else {
                    assert_eq!(result.unwrap(), 3);
                }
                events.push((token, "sent"));
            }
            Completion::Closed { token } => events.push((token, "closed")),
            other => panic!("unexpected {other:?}"),
        }
        events.iter().filter(|e| e.1 == "closed").count() == 2
    });
    for t in [stuck, quick] {
        let mine: Vec<_> = events.iter().filter(|e| e.0 == t).map(|e| e.1).collect();
        assert_eq!(mine, ["sent", "closed"], "{t:?}: {events:?}");
    }
    let mut out = Vec::new();
    b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    assert!(out.is_empty(), "nothing after Closed: {out:?}");
    let mut got = Vec::new();
    client2.set_read_timeout(Some(LIMIT)).unwrap();
    client2.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
}

#[test]
fn pool_exhaustion_is_never_reported_and_loses_nothing() {
    const CLIENTS: usize = 16;
    const BYTES: usize = 64 * 1024;
    let pattern = |id: usize, i: usize| ((id * 31 + i) % 251) as u8;
    let mut b = backend(4, 4096);
    let (l, addr) = listener();
    b.listen(l.as_raw_fd()).unwrap();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|id| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut data = vec![id as u8];
                data.extend((0..BYTES).map(|i| pattern(id, i)));
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                s
            })
        })
        .collect();

    let mut next = 0usize;
    let mut fds: HashMap<Token, OwnedFd> = HashMap::new();
    let mut data: HashMap<Token, Vec<u8>> = HashMap::new();
    let mut eofs = 0;
    let mut held: Vec<BufId> = Vec::new();
    let start = Instant::now();
    let mut out = Vec::new();
    while eofs < CLIENTS {
        assert!(start.elapsed() < LIMIT, "timed out: {eofs} EOFs");
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        let idle = out.is_empty();
        for c in out.drain(..) {
            match c {
                Completion::Accepted { fd } => {
                    let token = Token::new(next, 1);
                    next += 1;
                    b.register(token, fd.as_raw_fd()).unwrap();
                    fds.insert(token, fd);
                }
                Completion::Received { token, buf, len } => {
                    data.entry(token)
                        .or_default()
                        .extend_from_slice(b.buffer(buf, len));
                    held.push(buf);
                }
                Completion::Eof { .. } => eofs += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Hold buffers across waits so the pool runs dry; give them back in batches.
        if held.len() >= 3 || idle {
            for buf in held.drain(..) {
                b.recycle(buf);
            }
        }
    }
    assert!(b.enobufs > 0, "the test must exhaust the pool");
    assert_eq!(data.len(), CLIENTS);
    let mut ids = Vec::new();
    for bytes in data.values() {
        let id = bytes[0] as usize;
        ids.push(id);
        assert_eq!(bytes.len(), BYTES + 1, "client {id}");
        assert!(
            bytes[1..]
                .iter()
                .enumerate()
                .all(|(i, &v)| v == pattern(id, i)),
            "client {id}: bytes out of order or corrupted"
        );
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..CLIENTS).collect::<Vec<_>>());
    for buf in held.drain(..) {
        b.recycle(buf);
    }
    for (token, fd) in fds {
        b.close(token, fd);
    }
    let mut closed = 0;
    pump(&mut b, |_, c| match c {
        Completion::Closed { .. } => {
            closed += 1;
            closed == CLIENTS
        }
        other => panic!("unexpected {other:?}"),
    });
    for w in writers {
        w.join().unwrap();
    }
}

#[test]
fn stop_accepting_stops_accepts() {
    let mut b = backend(8, 4096);
    let (l, addr) = listener();
    b.listen(l.as_raw_fd()).unwrap();
    let mut out = Vec::new();
    // Submit the accept, then its cancel, before anyone connects.
    b.wait(Some(Duration::ZERO), &mut out).unwrap();
    b.stop_accepting();
    b.wait(Some(Duration::ZERO), &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
    // Connects complete in the kernel backlog, but nobody accepts them any more.
    let _c = TcpStream::connect(addr).unwrap();
    b.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
    b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn unknown_tokens_are_refused_not_sent() {
    let mut b = backend(8, 4096);
    let token = Token::new(5, 2);
    b.send(token, -1, vec![Bytes::from_static(b"x")]);
    assert!(b.buffer(BufId(0), 10).is_empty(), "buffer 0 is not lent");
    b.recycle(BufId(0)); // not lent: ignored, the pool stays consistent
    let mut out = Vec::new();
    b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
    match &out[..] {
        [Completion::Sent {
            token: t,
            result: Err(e),
            chunks,
        }] => {
            assert_eq!(*t, token);
            assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
            assert_eq!(chunks.len(), 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(b.pool.in_ring(), 8);
}

#[test]
fn failing_accept_is_rearmed_once_per_wait() {
    let mut b = backend(8, 4096);
    // Bound but not listening: every accept fails at once with EINVAL. Not a resource
    // error, so no rest: re-armed at the next wait, never inside one. (EMFILE rests:
    // `accept_tests`.)
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.set_nonblocking(true).unwrap();
    b.listen(s.as_raw_fd()).unwrap();
    let mut out = Vec::new();
    for _ in 0..3 {
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        match &out[..] {
            [Completion::AcceptFailed(e)] => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
            other => panic!("expected one AcceptFailed per wait, got {other:?}"),
        }
        out.clear();
    }
    b.stop_accepting();
    b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_connection_starved_of_buffers_skips_without_one() {
    let byte = |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    let mut b = backend(1, 1024);
    let token = Token::new(0, 1);
    let (_l, mut client, fd) = connected(&mut b, token);
    let data: Vec<u8> = (0..10_000).map(byte).collect();
    client.write_all(&data).unwrap();
    // The only buffer is held, so the recv runs out of buffers and parks.
    let mut held = None;
    pump(&mut b, |_, c| match c {
        Completion::Received { buf, len, .. } => {
            assert_eq!(len, 1024);
            held = Some(buf);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let start = Instant::now();
    while b.enobufs == 0 {
        assert!(start.elapsed() < LIMIT, "the recv never ran out of buffers");
        let mut out = Vec::new();
        b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(b.conns[0].as_ref().unwrap().rx.state(), RecvState::Starved);
    b.skip(token, fd.as_raw_fd(), 5_000);
    let mut skipped = 0;
    pump(&mut b, |_, c| match c {
        Completion::Skipped { len, .. } => {
            skipped += len;
            skipped == 5_000
        }
        other => panic!("unexpected {other:?}"),
    });
    b.recycle(held.unwrap());
    let mut got = Vec::new();
    pump(&mut b, |b, c| match c {
        Completion::Received { buf, len, .. } => {
            got.extend_from_slice(b.buffer(buf, len));
            b.recycle(buf);
            got.len() == 10_000 - 6_024
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(got == data[6_024..], "the bytes after the skip");
    b.close(token, fd);
    pump(&mut b, |_, c| matches!(c, Completion::Closed { .. }));
}

#[test]
fn after_a_skip_a_header_is_read_and_the_next_skip_needs_no_cancel() {
    let byte = |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    let mut b = backend(16, 4096);
    let token = Token::new(0, 1);
    let (_l, mut client, fd) = connected(&mut b, token);
    let data: Vec<u8> = (0..100_000).map(byte).collect();
    client.write_all(&data[..1_000]).unwrap();
    let mut got = Vec::new();
    pump(&mut b, |b, c| match c {
        Completion::Received { buf, len, .. } => {
            got.extend_from_slice(b.buffer(buf, len));
            b.recycle(buf);
            got.len() == 1_000
        }
        other => panic!("unexpected {other:?}"),
    });
    b.skip(token, fd.as_raw_fd(), 10_000);
    // Everything the socket will hold for a while: the skip, then far more than a buffer.
    client.write_all(&data[1_000..]).unwrap();
    let mut skipped = 0;
    let mut probe = None;
    pump(&mut b, |b, c| match c {
        Completion::Skipped { len, .. } => {
            skipped += len;
            false
        }
        Completion::Received { buf, len, .. } => {
            assert!(probe.is_none(), "more than the probe was read");
            probe = Some(b.buffer(buf, len).to_vec());
            b.recycle(buf);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(skipped, 10_000);
    let probe = probe.unwrap();
    assert!(
        probe.len() <= PROBE_LEN,
        "the probe read {} bytes",
        probe.len()
    );
    assert!(probe == data[11_000..11_000 + probe.len()]);
    let conn = b.conns[0].as_ref().unwrap();
    assert_eq!((conn.rx.state(), conn.inflight), (RecvState::Paused, 0));
    // Asked in the turn the probe delivered: straight to dropping, nothing to cancel.
    b.skip(token, fd.as_raw_fd(), 5_000);
    let conn = b.conns[0].as_ref().unwrap();
    assert_eq!((conn.rx.state(), conn.inflight), (RecvState::Skipping, 1));
    let mut at = 11_000 + probe.len() + 5_000;
    let mut skipped = 0;
    pump(&mut b, |b, c| match c {
        Completion::Skipped { len, .. } => {
            skipped += len;
            false
        }
        Completion::Received { buf, len, .. } => {
            assert!(b.buffer(buf, len) == &data[at..at + len], "at {at}");
            at += len;
            b.recycle(buf);
            at == data.len()
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(skipped, 5_000);
    // Not asked again: the multishot recv took over and read the rest.
    assert_eq!(b.conns[0].as_ref().unwrap().rx.state(), RecvState::Armed);
    b.close(token, fd);
    pump(&mut b, |_, c| matches!(c, Completion::Closed { .. }));
}

#[test]
fn quiesce_reaps_every_op_before_memory_is_freed() {
    let mut b = backend(8, 4096);
    let token = Token::new(0, 1);
    // A listener (multishot accept), a connection (multishot recv) and a send that cannot
    // finish: all in flight when the backend goes away.
    let (_l, _client, fd) = connected(&mut b, token);
    b.send(
        token,
        fd.as_raw_fd(),
        vec![Bytes::from(vec![1u8; 1 << 20]); 32],
    );
    let mut out = Vec::new();
    b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
    assert!(
        b.in_flight >= 4,
        "waker, accept, recv, send: {}",
        b.in_flight
    );
    let start = Instant::now();
    assert!(b.quiesce(), "every CQE arrives");
    assert_eq!(b.in_flight, 0);
    // Within the grace it gives itself (what `quiesce` returning true also says).
    assert!(start.elapsed() < DROP_GRACE, "{:?}", start.elapsed());
    drop(b);
    drop(fd);
}
