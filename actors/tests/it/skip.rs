//! A client that discards payloads, against a tokio-tungstenite server sending large messages:
//! the rest of each large payload is dropped in the kernel, unread, and every message still
//! arrives with its kind and length, in order, with the small messages and pings between them
//! intact. A skip that took one byte too many would cut into the next frame's header.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringsock_actors::{
    BackendKind, CloseCode, Closed, Ctx, Handler, Message, Server, ServerHandle,
};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// What the server sends, as (text?, length) of each message; a fragmented one is split in two.
enum Send {
    Whole(bool, usize),
    Fragmented(usize, usize),
    Ping,
    /// Lets what was sent so far arrive before the rest, so reads end inside frames.
    Pause,
}

/// One round of the script: large messages (16 KiB, 1 MiB, 5 MiB: more than the backends drop
/// in one receive), small ones right behind them, pings between, a fragmented message.
fn script() -> Vec<Send> {
    use Send::*;
    vec![
        Whole(false, 1 << 20),
        Whole(true, 5),
        Ping,
        Whole(false, 16 << 10),
        Whole(false, 16 << 10),
        Pause,
        Whole(false, 5 << 20),
        Whole(false, 0),
        Fragmented(64 << 10, 200 << 10),
        Ping,
        Whole(true, 300_000),
        Pause,
        Whole(false, 100),
        Whole(false, 1 << 20),
    ]
}

/// The messages the client should see for `rounds` rounds of the script, then the last text.
fn expected(rounds: usize) -> Vec<(bool, usize)> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        for s in script() {
            match s {
                Send::Whole(text, len) => seen.push((text, len)),
                Send::Fragmented(a, b) => seen.push((false, a + b)),
                Send::Ping | Send::Pause => {}
            }
        }
    }
    seen.push((true, LAST));
    seen
}

/// The length of the text that ends the exchange (no other text in the script has it).
const LAST: usize = 3;

const ROUNDS: usize = 3;

/// Discards payloads from the start, reports each message's kind and length, and closes on the
/// last one.
struct Counter {
    report: mpsc::Sender<(bool, usize)>,
}

impl Handler for Counter {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.discard_payloads(true);
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let bytes = message.as_bytes();
        assert!(
            bytes.iter().all(|&b| b == 0),
            "a discarded payload is zeros"
        );
        let entry = (message.as_text().is_some(), bytes.len());
        let _ = self.report.send(entry);
        if entry == (true, LAST) {
            ctx.close(CloseCode::NORMAL, "done").unwrap();
        }
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        assert_eq!(closed.code.0, 1000, "{closed:?}");
    }
}

fn client_runtime(kind: BackendKind) -> ServerHandle {
    raise_fd_limit();
    let runtime = Server::builder()
        .shards(1)
        .backend(kind)
        .pin_threads(false)
        .start()
        .expect("a client runtime");
    assert_eq!(
        runtime.backend(),
        match kind {
            BackendKind::Epoll => "epoll",
            _ => "io_uring",
        }
    );
    runtime
}

fn discarded_messages_keep_kind_length_and_order_when_skipped(kind: BackendKind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let peer = std::thread::spawn(move || {
        run(4 * STEP, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut pings = 0;
            for round in 0..ROUNDS {
                for s in script() {
                    let fill = round as u8 + 1;
                    match s {
                        Send::Whole(true, len) => {
                            ws.feed(WsMessage::text("t".repeat(len))).await.unwrap()
                        }
                        Send::Whole(false, len) => {
                            ws.feed(WsMessage::binary(vec![fill; len])).await.unwrap()
                        }
                        Send::Fragmented(a, b) => {
                            let first =
                                Frame::message(vec![fill; a], OpCode::Data(Data::Binary), false);
                            let rest =
                                Frame::message(vec![fill; b], OpCode::Data(Data::Continue), true);
                            ws.feed(WsMessage::Frame(first)).await.unwrap();
                            ws.feed(WsMessage::Frame(rest)).await.unwrap();
                        }
                        Send::Ping => {
                            pings += 1;
                            ws.feed(WsMessage::Ping(vec![pings].into())).await.unwrap();
                        }
                        Send::Pause => {
                            ws.flush().await.unwrap();
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
            ws.send(WsMessage::text("t".repeat(LAST))).await.unwrap();
            // Read to the end: the pongs, then the client's close (answered while read).
            let mut pongs = Vec::new();
            while let Some(msg) = ws.next().await {
                match msg.unwrap() {
                    WsMessage::Pong(p) => pongs.push(p[0]),
                    WsMessage::Close(_) => {}
                    other => panic!("the client sent {other:?}"),
                }
            }
            pongs
        })
    });
    let client = client_runtime(kind);
    let (tx, rx) = mpsc::channel();
    client
        .connect(&format!("ws://{addr}/"), Counter { report: tx })
        .unwrap();
    let want = expected(ROUNDS);
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        seen.push(recv_within(&rx, STEP, "the next message"));
        assert_eq!(seen[..], want[..seen.len()], "message {}", seen.len() - 1);
    }
    let pongs = peer.join().unwrap();
    let pings = (ROUNDS * 2) as u8;
    assert_eq!(
        pongs,
        (1..=pings).collect::<Vec<_>>(),
        "every ping answered"
    );
    client.shutdown(Duration::from_secs(1));
}

on_both_backends!(discarded_messages_keep_kind_length_and_order_when_skipped,);
