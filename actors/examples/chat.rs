//! A chat server: rooms are topics, the nick comes from the query string, joins and leaves are
//! announced, and nothing is kept (no history).
//!
//! ```text
//! cargo run --release -p ringsock-actors --example chat -- --addr 127.0.0.1:9001
//! ```
//! Then open http://127.0.0.1:9001/ in a browser, or connect any WebSocket client to
//! `ws://127.0.0.1:9001/chat?room=lobby&nick=ada`. Each text message is sent to the room as
//! `nick: text`; `/join other-room` moves rooms.

use std::net::SocketAddr;

use ringsock_actors::{Accept, Closed, Ctx, Handler, HttpResponse, Message, Server};

/// The browser client, served at `/`.
const PAGE: &str = include_str!("chat.html");

/// Longest nick and room name kept (longer ones are cut).
const MAX_NAME: usize = 32;

struct Member {
    nick: String,
    room: String,
}

impl Member {
    fn topic(&self) -> String {
        format!("room:{}", self.room)
    }
}

impl Handler for Member {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let topic = self.topic();
        ctx.subscribe(&topic);
        ctx.send_text(&format!("* you are {} in #{}", self.nick, self.room));
        ctx.publish_others(&topic, format!("* {} joined #{}", self.nick, self.room));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let Some(text) = message.as_text() else {
            ctx.send_text("* only text messages are relayed");
            return;
        };
        if let Some(room) = text.strip_prefix("/join ") {
            let room = clean(room, "lobby");
            let old = self.topic();
            ctx.publish_others(&old, format!("* {} left #{}", self.nick, self.room));
            ctx.unsubscribe(&old);
            self.room = room;
            let topic = self.topic();
            ctx.subscribe(&topic);
            ctx.send_text(&format!("* you are {} in #{}", self.nick, self.room));
            ctx.publish_others(&topic, format!("* {} joined #{}", self.nick, self.room));
            return;
        }
        let topic = self.topic();
        ctx.publish(&topic, format!("{}: {}", self.nick, text));
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, _closed: Closed) {
        let topic = self.topic();
        ctx.publish(&topic, format!("* {} left #{}", self.nick, self.room));
    }
}

/// Keeps names short and printable; an empty one becomes `default`.
fn clean(name: &str, default: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_alphanumeric() || "-_.".contains(*c))
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        default.to_owned()
    } else {
        name
    }
}

fn main() -> std::io::Result<()> {
    let mut addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(a)) => match a.parse() {
                Ok(a) => addr = a,
                Err(e) => return Err(std::io::Error::other(format!("--addr {a}: {e}"))),
            },
            _ => {
                eprintln!("usage: chat [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    let server = Server::builder()
        .bind(addr)
        .route("/chat", |req| {
            let nick = clean(&req.query_param("nick").unwrap_or_default(), "guest");
            let room = clean(&req.query_param("room").unwrap_or_default(), "lobby");
            Ok(Accept::new(Member { nick, room }))
        })
        .http(|req| match req.path() {
            "/" => HttpResponse::with_body(200, "text/html; charset=utf-8", PAGE),
            _ => HttpResponse::not_found(),
        })
        .start()?;
    eprintln!(
        "chat: open http://{}/ (backend {})",
        server.local_addrs()[0],
        server.backend()
    );
    // Ctrl-C or SIGTERM: every member hears 1001, with 5 s to finish the close handshake.
    let report = server.shutdown_on_signal(std::time::Duration::from_secs(5))?;
    eprintln!(
        "chat: {} of {} closed cleanly",
        report.closed_cleanly, report.closing
    );
    Ok(())
}
