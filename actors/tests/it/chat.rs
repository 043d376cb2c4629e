//! The chat example's behaviour, with three tokio-tungstenite clients in two rooms.

use std::time::Duration;

use futures_util::SinkExt;
use ringsock_actors::{Accept, BackendKind, Closed, Ctx, Handler, Message};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

struct Member {
    nick: String,
    room: String,
}

impl Handler for Member {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(&self.room);
        ctx.publish_others(&self.room, format!("* {} joined", self.nick));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(text) = message.as_text() {
            ctx.publish(&self.room, format!("{}: {}", self.nick, text));
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, _: Closed) {
        ctx.publish(&self.room, format!("* {} left", self.nick));
    }
}

fn chat_in_two_rooms(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 2).route("/chat", |req| {
            Ok(Accept::new(Member {
                nick: req.query_param("nick").unwrap_or_default().into_owned(),
                room: req.query_param("room").unwrap_or_default().into_owned(),
            }))
        }),
    );
    let addr = server.local_addrs()[0];
    run(STEP * 3, async move {
        let url = |nick: &str, room: &str| format!("/chat?nick={nick}&room={room}");
        let mut ada = connect(addr, &url("ada", "a")).await;
        // Ada learns of Bob's arrival: she is subscribed before he joins.
        let mut bob = connect(addr, &url("bob", "a")).await;
        assert_eq!(next_text(&mut ada).await, "* bob joined");
        let mut cyd = connect(addr, &url("cyd", "b")).await;

        ada.send(WsMessage::text("hello a")).await.unwrap();
        assert_eq!(next_text(&mut ada).await, "ada: hello a");
        assert_eq!(next_text(&mut bob).await, "ada: hello a");
        cyd.send(WsMessage::text("hello b")).await.unwrap();
        assert_eq!(next_text(&mut cyd).await, "cyd: hello b");

        bob.close(None).await.unwrap();
        assert_eq!(next_text(&mut ada).await, "* bob left");
        // Room b heard nothing of room a: its next message is its own.
        cyd.send(WsMessage::text("still b")).await.unwrap();
        assert_eq!(next_text(&mut cyd).await, "cyd: still b");
    });
    server.shutdown(Duration::from_secs(1));
}

on_both_backends!(chat_in_two_rooms);
