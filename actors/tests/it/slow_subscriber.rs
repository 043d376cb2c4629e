//! A subscriber that stops reading meets the topic's slow-subscriber policy, and no one else
//! notices: three fast subscribers get every message, in order, whatever happens to the slow one.
//!
//! The publisher goes in lockstep with the fast subscribers (message `i + 1` is published only
//! once each of them has read `i`), so only the slow one can ever be past the high-water mark: a
//! fast one that lost a message would be a real bug, not a race of the test.

use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use std::time::Duration;

use ringsock_actors::{
    codes, Accept, BackendKind, CloseCode, Ctx, Handler, ServerBuilder, ServerHandle, SlowPolicy,
};
use ringsock_testkit::on_both_backends;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

const TOPIC: &str = "feed";
const SIZE: usize = 16 * 1024;
/// Messages published: 1,000 (16 MiB), or more if need be to stay several times what the kernel
/// buffers for a client that reads nothing (its receive buffer is fixed at 16 KiB; the server's
/// send buffer can grow to `tcp_wmem`'s maximum, 4 MiB by default).
static MESSAGES: LazyLock<u32> =
    LazyLock::new(|| (tcp_send_buffer_max() * 4 / SIZE).max(1_000) as u32);
const HIGH_WATER: usize = 64 * 1024;
const FAST: usize = 3;
/// Marks the end of a drop test, published until the slow subscriber has read one.
const END: u32 = u32::MAX;

struct Subscriber;

impl Handler for Subscriber {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(TOPIC);
    }
}

/// Message `seq`: its number, then bytes that depend on it.
fn message(seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIZE);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend((4..SIZE).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8));
    m
}

/// The number of a message, after checking all of it.
fn check(data: &[u8]) -> u32 {
    assert_eq!(data.len(), SIZE, "message length");
    let seq = u32::from_be_bytes(data[..4].try_into().unwrap());
    if seq != END {
        assert!(data == message(seq), "message {seq} corrupted");
    }
    seq
}

fn server(
    kind: BackendKind,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> ServerHandle {
    let b = builder(kind, 2)
        .high_water(HIGH_WATER, HIGH_WATER / 4)
        .route("/sub", |_| Ok(Accept::new(Subscriber)));
    start(kind, configure(b))
}

/// Fast subscribers each read every message in order, publishing how many they have read.
async fn fast_subscribers(addr: std::net::SocketAddr) -> (JoinSet<()>, Vec<watch::Receiver<u32>>) {
    let mut tasks = JoinSet::new();
    let mut progress = Vec::new();
    for _ in 0..FAST {
        let mut ws = connect(addr, "/sub").await;
        let (tx, rx) = watch::channel(0u32);
        progress.push(rx);
        tasks.spawn(async move {
            for expected in 0..*MESSAGES {
                let seq = check(&next_binary(&mut ws).await);
                assert_eq!(
                    seq, expected,
                    "a fast subscriber lost or reordered a message"
                );
                tx.send_replace(expected + 1);
            }
        });
    }
    (tasks, progress)
}

/// Publishes every message in lockstep with the fast subscribers.
async fn publish_in_lockstep(server: &ServerHandle, progress: &mut [watch::Receiver<u32>]) {
    for seq in 0..*MESSAGES {
        server.publish(TOPIC, message(seq)).unwrap();
        for rx in progress.iter_mut() {
            tokio::time::timeout(STEP, rx.wait_for(|&n| n > seq))
                .await
                .unwrap_or_else(|_| panic!("a fast subscriber did not get message {seq}"))
                .expect("a fast subscriber's task ended early");
        }
    }
}

async fn join_all(mut tasks: JoinSet<()>) {
    while let Some(done) = tasks.join_next().await {
        done.expect("a fast subscriber failed");
    }
}

/// `SlowPolicy::Drop`: the slow subscriber misses messages (counted), then reads what it was
/// sent, in order, with gaps exactly as many as the drops.
fn slow_subscriber_misses_messages_under_drop(kind: BackendKind) {
    let server = server(kind, |b| b.slow_policy(SlowPolicy::Drop));
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(60), async {
        let mut slow = connect_slow_reader(addr, "/sub").await;
        let (fast, mut progress) = fast_subscribers(addr).await;
        publish_in_lockstep(&server, &mut progress).await;
        join_all(fast).await;
        let dropped = server.stats().dropped.load(Ordering::Relaxed);
        assert!(dropped > 0, "nothing was dropped for the slow subscriber");
        assert!(
            dropped < *MESSAGES as u64,
            "everything was dropped: {dropped}"
        );

        // Now it reads; an end marker goes out until it is past the high-water mark again and
        // receives one.
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let seq = check(&next_binary(&mut slow).await);
                if seq == END {
                    return seen;
                }
                seen.push(seq);
            }
        });
        let mut ends = 0;
        let publishing = std::time::Instant::now();
        while !reader.is_finished() {
            // A bounded poll: one more marker every 20 ms until the reader has one.
            assert!(
                publishing.elapsed() < STEP * 3,
                "the slow subscriber never got an end marker ({ends} sent)"
            );
            let mut end = message(0);
            end[..4].copy_from_slice(&END.to_be_bytes());
            server.publish(TOPIC, end).unwrap();
            ends += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = reader.await.expect("the slow reader failed");
        eprintln!(
            "{kind:?}: {dropped} dropped, the slow subscriber got {} then an end marker (of {ends})",
            seen.len()
        );
        assert!(!seen.is_empty(), "the slow subscriber got nothing at all");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "the slow subscriber's messages are out of order"
        );
        assert!(
            (seen.len() as u64) < *MESSAGES as u64,
            "the slow subscriber got everything"
        );
        assert_eq!(
            *MESSAGES as u64 - seen.len() as u64,
            dropped,
            "the slow subscriber's gaps are not the drops counted"
        );
        assert_eq!(server.stats().closed_slow.load(Ordering::Relaxed), 0);
    });
    server.shutdown(Duration::from_secs(2));
}

/// `SlowPolicy::Close`: the slow subscriber gets an unbroken run of messages, then the close
/// frame with the policy's code, and its connection ends.
fn slow_subscriber_is_closed(kind: BackendKind, policy_of: PolicyFrom, code: CloseCode) {
    let server = server(kind, |b| match policy_of {
        PolicyFrom::Server => b.slow_policy(SlowPolicy::Close(code)),
        // The server default stays Drop: the topic's own policy must win.
        PolicyFrom::Topic => b
            .slow_policy(SlowPolicy::Drop)
            .topic_policy(TOPIC, SlowPolicy::Close(code)),
    });
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(60), async {
        let mut slow = connect_slow_reader(addr, "/sub").await;
        let (fast, mut progress) = fast_subscribers(addr).await;
        publish_in_lockstep(&server, &mut progress).await;
        join_all(fast).await;
        assert_eq!(server.stats().closed_slow.load(Ordering::Relaxed), 1);
        assert_eq!(server.stats().dropped.load(Ordering::Relaxed), 0);

        let mut got = 0u32;
        let close = loop {
            match next_message(&mut slow).await {
                WsMessage::Binary(b) => {
                    assert_eq!(check(&b), got, "the slow subscriber's run has a gap");
                    got += 1;
                }
                other => break other,
            }
        };
        eprintln!(
            "{kind:?}: the slow subscriber got {got} messages, then {}",
            describe(&close)
        );
        assert!(got > 0, "the close came before any data");
        assert!(got < *MESSAGES, "the slow subscriber got everything");
        assert_eq!(
            close_code(&close),
            Some(code.0),
            "expected a close with {}, got {}",
            code.0,
            describe(&close)
        );
        // tungstenite answers the close; the server then ends the connection.
        match next_raw(&mut slow).await {
            None | Some(Err(_)) => {}
            Some(Ok(more)) => panic!("a message after the close: {}", describe(&more)),
        }
    });
    server.shutdown(Duration::from_secs(2));
}

#[derive(Clone, Copy)]
enum PolicyFrom {
    Server,
    Topic,
}

fn slow_subscriber_is_closed_with_1013_by_the_server_policy(kind: BackendKind) {
    slow_subscriber_is_closed(kind, PolicyFrom::Server, codes::TRY_AGAIN_LATER);
}

fn slow_subscriber_is_closed_with_1008_by_the_topic_policy(kind: BackendKind) {
    slow_subscriber_is_closed(kind, PolicyFrom::Topic, codes::POLICY_VIOLATION);
}

on_both_backends!(
    slow_subscriber_misses_messages_under_drop,
    slow_subscriber_is_closed_with_1013_by_the_server_policy,
    slow_subscriber_is_closed_with_1008_by_the_topic_policy,
);
