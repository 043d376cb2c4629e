//! Topic fan-out at scale: 2,000 subscribers over 2 shards, 3 publishers × 1,000 messages each.
//! Every subscriber must get every message exactly once, in order per publisher, whichever shard
//! the publisher and the subscriber live on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, SelectAll, StreamExt};
use futures_util::SinkExt;
use ringsock_actors::{Accept, BackendKind, Ctx, Handler, Message, ServerHandle};
use ringsock_testkit::on_both_backends;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

const TOPIC: &str = "fan";
/// Subscribers of the client-driven case (the number).
const SUBSCRIBERS: usize = 2_000;
/// Subscribers of the `ServerHandle::publish` case, which adds concurrent posting from threads.
const THREAD_CASE_SUBSCRIBERS: usize = 500;
const PUBLISHERS: usize = 3;
const PER_PUBLISHER: u32 = 1_000;
/// Tokio tasks reading the subscribers' sockets.
const READERS: usize = 8;

/// Subscribes on open and counts itself per shard.
struct Subscriber {
    per_shard: Arc<[AtomicUsize; 2]>,
}

impl Handler for Subscriber {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(TOPIC);
        self.per_shard[ctx.shard()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes every message it receives to the topic.
struct Publisher;

impl Handler for Publisher {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        ctx.publish(TOPIC, message);
    }
}

fn fanout_server(kind: BackendKind) -> (ServerHandle, Arc<[AtomicUsize; 2]>) {
    let per_shard = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let counts = per_shard.clone();
    let server = start(
        kind,
        builder(kind, 2)
            .route("/sub", move |_| {
                Ok(Accept::new(Subscriber {
                    per_shard: counts.clone(),
                }))
            })
            .route("/pub", |_| Ok(Accept::new(Publisher))),
    );
    (server, per_shard)
}

/// Connects `n` subscribers, 32 handshakes at a time.
async fn subscribe_all(addr: std::net::SocketAddr, n: usize) -> Vec<Ws> {
    let mut clients = Vec::with_capacity(n);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while clients.len() < n {
        while started < n && pending.len() < 32 {
            pending.spawn(async move { connect(addr, "/sub").await });
            started += 1;
        }
        let ws = tokio::time::timeout(STEP, pending.join_next())
            .await
            .expect("a handshake within the step")
            .expect("a pending handshake")
            .expect("the handshake task");
        clients.push(ws);
    }
    clients
}

/// `"p{publisher} {seq}"`.
fn parse(text: &str) -> (usize, u32) {
    let (p, seq) = text
        .strip_prefix('p')
        .and_then(|t| t.split_once(' '))
        .unwrap_or_else(|| panic!("unexpected message {text:?}"));
    (p.parse().unwrap(), seq.parse().unwrap())
}

/// Reads every subscriber of `group` (indices below `subscribers`) until each has all
/// `PUBLISHERS × PER_PUBLISHER` messages, checking each publisher's sequence is gapless and in
/// order; then each must read `end` next (so a duplicate of a last message cannot hide). Returns
/// how many subscribers it read.
async fn read_group(group: Vec<(usize, Ws)>, subscribers: usize) -> usize {
    let n = group.len();
    let ids: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
    let mut next = vec![[0u32; PUBLISHERS]; subscribers];
    let mut complete = 0;
    let mut all: SelectAll<_> = stream::select_all(
        group
            .into_iter()
            .map(|(i, ws)| ws.map(move |m| (i, m)).boxed()),
    );
    let wanted = PER_PUBLISHER * PUBLISHERS as u32;
    let mut ended = 0;
    while ended < n {
        let (i, msg) = tokio::time::timeout(STEP, all.next())
            .await
            .unwrap_or_else(|_| {
                let got: Vec<u32> = ids.iter().map(|&i| next[i].iter().sum()).collect();
                panic!(
                    "a subscriber group stalled: {complete} of {n} complete, the furthest \
                     behind at {} of {wanted} messages, {ended} read `end`",
                    got.iter().min().unwrap_or(&0)
                )
            })
            .expect("the subscriber streams are open");
        let text = match msg.expect("a valid message") {
            WsMessage::Text(t) => t,
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("subscriber {i}: unexpected {}", describe(&other)),
        };
        let got: u32 = next[i].iter().sum();
        if text.as_str() == "end" {
            assert_eq!(got, wanted, "subscriber {i} got `end` early");
            ended += 1;
            continue;
        }
        assert!(got < wanted, "subscriber {i}: extra message {text:?}");
        let (p, seq) = parse(&text);
        assert_eq!(
            seq, next[i][p],
            "subscriber {i}: publisher {p} out of order or duplicated"
        );
        next[i][p] += 1;
        if got + 1 == wanted {
            complete += 1;
        }
    }
    n
}

/// Splits the subscribers over `READERS` tasks and reads them all.
fn spawn_readers(subs: Vec<Ws>) -> JoinSet<usize> {
    let subscribers = subs.len();
    let mut groups: Vec<Vec<(usize, Ws)>> = (0..READERS).map(|_| Vec::new()).collect();
    for (i, ws) in subs.into_iter().enumerate() {
        groups[i % READERS].push((i, ws));
    }
    let mut readers = JoinSet::new();
    for group in groups {
        readers.spawn(read_group(group, subscribers));
    }
    readers
}

async fn join_readers(mut readers: JoinSet<usize>, subscribers: usize) {
    let mut read = 0;
    while let Some(done) = readers.join_next().await {
        read += done.expect("a reader task panicked");
    }
    assert_eq!(read, subscribers);
}

fn check_stats(server: &ServerHandle, per_shard: &[AtomicUsize; 2], subscribers: usize) {
    let (a, b) = (
        per_shard[0].load(Ordering::Relaxed),
        per_shard[1].load(Ordering::Relaxed),
    );
    assert_eq!(a + b, subscribers);
    assert!(a > 0 && b > 0, "subscribers all on one shard: {a} and {b}");
    let stats = server.stats();
    let messages = PUBLISHERS as u64 * PER_PUBLISHER as u64 + 1; // and `end`
    assert_eq!(stats.published.load(Ordering::Relaxed), messages);
    assert_eq!(
        stats.delivered.load(Ordering::Relaxed),
        messages * subscribers as u64
    );
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(stats.forward_dropped.load(Ordering::Relaxed), 0);
}

/// Publishers are clients: each sends its 1,000 messages as fast as it can, and its handler
/// publishes each one.
fn client_publishers_reach_2000_subscribers_in_order(kind: BackendKind) {
    let (server, per_shard) = fanout_server(kind);
    let addr = server.local_addrs()[0];
    let started = Instant::now();
    // Every step inside is bounded by STEP of no progress; this bounds a stuck test overall.
    run(Duration::from_secs(300), async {
        let subs = subscribe_all(addr, SUBSCRIBERS).await;
        let connected = started.elapsed();
        let readers = spawn_readers(subs);
        let mut publishers = JoinSet::new();
        for p in 0..PUBLISHERS {
            let mut ws = connect(addr, "/pub").await;
            publishers.spawn(async move {
                for seq in 0..PER_PUBLISHER {
                    tokio::time::timeout(STEP, ws.feed(WsMessage::text(format!("p{p} {seq}"))))
                        .await
                        .expect("publishing stalled")
                        .unwrap();
                }
                tokio::time::timeout(STEP, ws.flush())
                    .await
                    .expect("publishing stalled")
                    .unwrap();
                ws
            });
        }
        // The publishers stay connected until the end.
        let mut connected_publishers = Vec::new();
        while let Some(ws) = publishers.join_next().await {
            connected_publishers.push(ws.expect("a publisher task panicked"));
        }
        // Every publisher's messages are queued or on their way; `end` follows them all on
        // every shard (one mailbox per shard, in order). Delivering 6 M messages takes as long
        // as the machine makes it: the bound is on no progress for a step, not on the whole.
        wait_progress_async(
            STEP,
            "the publishes",
            PUBLISHERS as u64 * PER_PUBLISHER as u64,
            || server.stats().published.load(Ordering::Relaxed),
        )
        .await;
        server.publish(TOPIC, "end").unwrap();
        join_readers(readers, SUBSCRIBERS).await;
        eprintln!(
            "{kind:?}: {SUBSCRIBERS} subscribers connected in {connected:?}, all messages in {:?}",
            started.elapsed()
        );
        drop(connected_publishers);
    });
    check_stats(&server, &per_shard, SUBSCRIBERS);
    server.shutdown(Duration::from_secs(2));
}

/// Publishers are three std threads calling `ServerHandle::publish`.
fn thread_publishers_reach_500_subscribers_in_order(kind: BackendKind) {
    let (server, per_shard) = fanout_server(kind);
    let addr = server.local_addrs()[0];
    let server = Arc::new(server);
    run(Duration::from_secs(300), async {
        let subs = subscribe_all(addr, THREAD_CASE_SUBSCRIBERS).await;
        let readers = spawn_readers(subs);
        let threads: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let server = server.clone();
                std::thread::spawn(move || {
                    for seq in 0..PER_PUBLISHER {
                        server
                            .publish(TOPIC, format!("p{p} {seq}"))
                            .expect("a shard mailbox was full");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a publisher thread panicked");
        }
        server.publish(TOPIC, "end").unwrap();
        join_readers(readers, THREAD_CASE_SUBSCRIBERS).await;
    });
    check_stats(&server, &per_shard, THREAD_CASE_SUBSCRIBERS);
    let server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("the server is still shared"));
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(
    client_publishers_reach_2000_subscribers_in_order,
    thread_publishers_reach_500_subscribers_in_order,
);
