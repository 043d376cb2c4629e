//! The connect timeout, apart from the handshake timeout: a server whose accept queue is full
//! never completes the TCP handshake (Linux drops the SYNs), so the dial fails after the connect
//! timeout; a server that accepts but never answers fails it after the handshake timeout,
//! counted from when the connection came up.

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringsock_actors::{BackendKind, DialError, DialOptions, Limits, Server, ServerHandle};
use ringsock_testkit::on_both_backends;
use socket2::{Domain, Socket, Type};

use crate::dial_support::*;
use crate::support::STEP;

/// A listener with a backlog of 0 that never accepts, filled until connecting to it hangs;
/// returns it with the connections that filled it (both must live for the test), or `None` if
/// this kernel never stops completing connections to it.
fn full_listener() -> Option<(Socket, Vec<TcpStream>, SocketAddr)> {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            // The queue is full: SYNs are dropped now.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Some((listener, fillers, addr))
            }
            Err(_) => return None,
        }
    }
    None
}

fn runtime(kind: BackendKind, handshake_timeout: Duration) -> ServerHandle {
    crate::support::raise_fd_limit();
    Server::builder()
        .shards(1)
        .backend(kind)
        .pin_threads(false)
        .limits(Limits {
            handshake_timeout,
            ..Limits::default()
        })
        .start()
        .expect("a client runtime")
}

fn dial(client: &ServerHandle, url: &str, options: &DialOptions) -> (Vec<Seen>, Duration) {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    client
        .connect_with(
            url,
            &ringsock_actors::ClientOptions::new(),
            options,
            Client {
                send: vec![],
                expect: 1,
                report: tx,
            },
        )
        .unwrap();
    let seen = events(&rx);
    (seen, started.elapsed())
}

fn a_server_that_never_connects_times_out_after_the_connect_timeout(kind: BackendKind) {
    // No silent skip: without a kernel that drops SYNs to a full accept queue (Linux does)
    // there is no server that never connects, and the test fails saying so.
    let (_listener, _fillers, addr) = full_listener()
        .expect("this kernel completes connections to a full accept queue: nothing to test with");
    // A long handshake timeout: only the connect timeout can end this dial in time.
    const CONNECT: Duration = Duration::from_millis(300);
    let client = runtime(kind, Duration::from_secs(30));
    let options = DialOptions::new().connect_timeout(CONNECT);
    let (seen, took) = dial(&client, &format!("ws://{addr}/"), &options);
    assert!(
        matches!(seen.as_slice(), [Seen::Failed(DialError::Timeout)]),
        "{seen:?}"
    );
    // Timed from before the dial: not before the timeout, and within a generous bound after.
    assert!(took >= CONNECT && took < CONNECT + STEP, "{took:?}");
    client.shutdown(Duration::from_secs(1));
}

fn a_server_that_never_answers_times_out_after_the_handshake_timeout(kind: BackendKind) {
    // Accepts (the kernel does) and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const HANDSHAKE: Duration = Duration::from_millis(600);
    let client = runtime(kind, HANDSHAKE);
    // A short connect timeout does not cut a connection that is up.
    let options = DialOptions::new().connect_timeout(Duration::from_millis(100));
    let (seen, took) = dial(&client, &format!("ws://{addr}/"), &options);
    assert!(
        matches!(seen.as_slice(), [Seen::Failed(DialError::Timeout)]),
        "{seen:?}"
    );
    // Timed from before the dial (the timeout runs from when the connection came up, later).
    assert!(took >= HANDSHAKE && took < HANDSHAKE + STEP, "{took:?}");
    drop(listener);
    client.shutdown(Duration::from_secs(1));
}

on_both_backends!(
    a_server_that_never_connects_times_out_after_the_connect_timeout,
    a_server_that_never_answers_times_out_after_the_handshake_timeout,
);
