//! A burst of publishes from outside the server (which a shard delivers in batches) reaches a
//! subscriber whole and in order, interleaved correctly with another topic, with a tell posted
//! in the middle, and with messages too large to batch.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use ringsock_actors::{Accept, Addr, BackendKind, Ctx, Handler};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

struct Sub {
    ready: mpsc::Sender<Addr<String>>,
}

impl Handler for Sub {
    type Msg = String;
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe("a");
        ctx.subscribe("b");
        let _ = self.ready.send(ctx.addr());
    }
    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: String) {
        ctx.send_text(&msg);
    }
}

fn burst_in_order(kind: BackendKind) {
    let (tx, rx) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1).route("/", move |_| Ok(Accept::new(Sub { ready: tx.clone() }))),
    );
    let addr = server.local_addrs()[0];
    // The client is not read while the burst is published: it all waits in its socket.
    run(STEP * 6, async {
        let mut ws = connect(addr, "/").await;
        let me = recv_async(&rx, STEP, "the subscriber's address").await;

        // What the subscriber must see, in this order.
        let mut expected = Vec::new();
        let publish = |expected: &mut Vec<String>, topic: &str, text: String| {
            server.publish(topic, text.clone()).unwrap();
            expected.push(text);
        };
        for i in 0..100 {
            publish(&mut expected, "a", format!("a{i}"));
        }
        for i in 0..50 {
            publish(&mut expected, "b", format!("b{i}"));
        }
        me.tell("told".to_owned()).unwrap();
        expected.push("told".to_owned());
        for i in 100..300 {
            // Every 50th message is too large to go in a batch.
            let text = if i % 50 == 0 {
                format!("a{i}:{}", "x".repeat(2000))
            } else {
                format!("a{i}")
            };
            publish(&mut expected, "a", text);
        }
        // Past one batch's 64 KiB: the burst is split into several batches.
        for i in 0..2000 {
            publish(&mut expected, "b", format!("b{i}:{}", "y".repeat(60)));
        }

        for want in &expected {
            assert_eq!(next_message(&mut ws).await, WsMessage::text(want.as_str()));
        }
    });
    let stats = server.stats();
    assert_eq!(stats.published.load(Ordering::Relaxed), 2350);
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 2350);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    server.shutdown(Duration::from_secs(1));
}

on_both_backends!(burst_in_order);
