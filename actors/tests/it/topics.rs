//! Topic membership as handlers see it: publish reaches every subscriber (the publisher
//! included), `publish_others` leaves the publisher out, unsubscribing stops delivery,
//! subscribing twice counts once, and a closed connection leaves for good — even if its
//! `on_close` tries to subscribe again.

use std::time::Duration;

use futures_util::SinkExt;
use ringsock_actors::{Accept, BackendKind, Closed, Ctx, Handler, Message};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

const ROOM: &str = "room";

struct Member {
    name: String,
}

impl Handler for Member {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(ROOM);
        ctx.send_text("joined");
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let text = message.as_text().unwrap_or_default().to_owned();
        let (cmd, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let reply = match cmd {
            "say" => {
                let d = ctx.publish(ROOM, format!("{}: {arg}", self.name));
                format!("delivered {}", d.queued)
            }
            "others" => {
                let d = ctx.publish_others(ROOM, format!("{}: {arg}", self.name));
                format!("delivered {}", d.queued)
            }
            "count" => format!("count {}", ctx.subscribers(ROOM)),
            "leave" => {
                ctx.unsubscribe(ROOM);
                ctx.unsubscribe(ROOM);
                "left".to_owned()
            }
            "join" => {
                ctx.subscribe(ROOM);
                ctx.subscribe(ROOM);
                "joined".to_owned()
            }
            _ => format!("unknown {cmd}"),
        };
        ctx.send_text(&reply);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, _: Closed) {
        // A careless handler: re-subscribing a closed connection must not leave it in the room.
        ctx.subscribe(ROOM);
        ctx.publish(ROOM, format!("{} left", self.name));
    }
}

async fn say(ws: &mut Ws, text: &str) {
    tokio::time::timeout(STEP, ws.send(WsMessage::text(text)))
        .await
        .expect("send timed out")
        .unwrap();
}

fn membership_follows_subscribe_unsubscribe_and_close(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 1).route("/room", |req| {
            Ok(Accept::new(Member {
                name: req.query_param("name").unwrap_or_default().into_owned(),
            }))
        }),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let mut a = connect(addr, "/room?name=a").await;
        let mut b = connect(addr, "/room?name=b").await;
        let mut c = connect(addr, "/room?name=c").await;
        for ws in [&mut a, &mut b, &mut c] {
            assert_eq!(next_text(ws).await, "joined");
        }
        say(&mut a, "count").await;
        assert_eq!(next_text(&mut a).await, "count 3");

        // publish: everyone, the publisher included.
        say(&mut a, "say hi").await;
        assert_eq!(next_text(&mut a).await, "a: hi");
        assert_eq!(next_text(&mut a).await, "delivered 3");
        assert_eq!(next_text(&mut b).await, "a: hi");
        assert_eq!(next_text(&mut c).await, "a: hi");

        // publish_others: everyone but the publisher.
        say(&mut b, "others yo").await;
        assert_eq!(next_text(&mut b).await, "delivered 2");
        assert_eq!(next_text(&mut a).await, "b: yo");
        assert_eq!(next_text(&mut c).await, "b: yo");

        // c leaves: a's next message does not reach it (its next message is its own reply).
        say(&mut c, "leave").await;
        assert_eq!(next_text(&mut c).await, "left");
        say(&mut a, "say without c").await;
        assert_eq!(next_text(&mut a).await, "a: without c");
        assert_eq!(next_text(&mut a).await, "delivered 2");
        assert_eq!(next_text(&mut b).await, "a: without c");
        say(&mut c, "count").await;
        assert_eq!(next_text(&mut c).await, "count 2");

        // c joins twice: it is in the room once.
        say(&mut c, "join").await;
        assert_eq!(next_text(&mut c).await, "joined");
        say(&mut c, "say back").await;
        assert_eq!(next_text(&mut c).await, "c: back");
        assert_eq!(next_text(&mut c).await, "delivered 3");
        assert_eq!(next_text(&mut a).await, "c: back");
        assert_eq!(next_text(&mut b).await, "c: back");

        // b closes; its on_close re-subscribes (ignored) and says goodbye.
        b.close(None).await.unwrap();
        assert_eq!(next_text(&mut a).await, "b left");
        assert_eq!(next_text(&mut c).await, "b left");
        say(&mut a, "count").await;
        assert_eq!(next_text(&mut a).await, "count 2");
        say(&mut a, "say bye").await;
        assert_eq!(next_text(&mut a).await, "a: bye");
        assert_eq!(next_text(&mut a).await, "delivered 2");
    });
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(membership_follows_subscribe_unsubscribe_and_close,);
