//! The chat example's behaviour, with three tokio-tungstenite clients in two rooms.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringsock_actors::{Accepted, BackendKind, Closed, Ctx, Handler, Message, Server};
use tokio_tungstenite::tungstenite::Message as WsMessage;

struct Member {
    nick: String,
    room: String,
}

impl Handler for Member {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, '_, Self>) {
        ctx.subscribe(&self.room);
        ctx.publish_others(&self.room, format!("* {} joined", self.nick));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_, Self>, message: Message) {
        if let Some(text) = message.as_text() {
            ctx.publish(&self.room, format!("{}: {}", self.nick, text));
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_, '_, Self>, _: Closed) {
        ctx.publish(&self.room, format!("* {} left", self.nick));
    }
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the stream is open")
            .expect("a valid message");
        if let WsMessage::Text(t) = msg {
            return t.to_string();
        }
    }
}

fn chat_in_two_rooms(kind: BackendKind) {
    let server = Server::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .shards(2)
        .backend(kind)
        .pin_threads(false)
        .route("/chat", |req| {
            Ok(Accepted::new(Member {
                nick: req.query_param("nick").unwrap_or_default().into_owned(),
                room: req.query_param("room").unwrap_or_default().into_owned(),
            }))
        })
        .start()
        .unwrap();
    let addr = server.local_addrs()[0];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let url = |nick: &str, room: &str| format!("ws://{addr}/chat?nick={nick}&room={room}");
        let (mut ada, _) = tokio_tungstenite::connect_async(url("ada", "a"))
            .await
            .unwrap();
        // Ada learns of Bob's arrival: she is subscribed before he joins.
        let (mut bob, _) = tokio_tungstenite::connect_async(url("bob", "a"))
            .await
            .unwrap();
        assert_eq!(next_text(&mut ada).await, "* bob joined");
        let (mut cyd, _) = tokio_tungstenite::connect_async(url("cyd", "b"))
            .await
            .unwrap();

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

#[test]
fn chat_in_two_rooms_io_uring() {
    chat_in_two_rooms(BackendKind::IoUring);
}

#[test]
fn chat_in_two_rooms_epoll() {
    chat_in_two_rooms(BackendKind::Epoll);
}
