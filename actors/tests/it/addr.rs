//! `Addr::tell`: from a plain thread, from a handler on another shard, and to a connection that
//! has closed (`TellError::Gone`, with the message given back).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use ringsock_actors::{
    Accept, Addr, BackendKind, Closed, Ctx, Handler, Message, ServerHandle, TellError,
};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

type Registry = Arc<Mutex<HashMap<String, Addr<String>>>>;

/// A named connection: registers its address, tells others on "tell NAME TEXT", and sends what
/// it is told to its client.
struct Named {
    name: String,
    registry: Registry,
    opened: mpsc::Sender<(String, usize, Addr<String>)>,
    closed: mpsc::Sender<(String, bool)>,
}

impl Handler for Named {
    type Msg = String;

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let addr = ctx.addr();
        self.registry
            .lock()
            .unwrap()
            .insert(self.name.clone(), addr.clone());
        let _ = self.opened.send((self.name.clone(), ctx.shard(), addr));
        ctx.send_text(&format!("shard {}", ctx.shard()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let text = message.as_text().expect("text").to_owned();
        let mut words = text.splitn(3, ' ');
        assert_eq!(words.next(), Some("tell"));
        let (to, what) = (words.next().unwrap(), words.next().unwrap());
        let addr = self.registry.lock().unwrap().get(to).cloned();
        let Some(addr) = addr else {
            ctx.send_text(&format!("no {to}"));
            return;
        };
        let msg = format!("{what} from {} on shard {}", self.name, ctx.shard());
        let answer = match addr.tell(msg.clone()) {
            Ok(()) => format!("told {to}"),
            Err(TellError::Gone(back)) if back == msg => format!("{to} is gone"),
            Err(TellError::Gone(back)) => format!("{to} is gone, and Gone gave back {back:?}"),
            Err(TellError::Full(_)) => format!("{to}'s shard is full"),
            Err(other) => format!("{to}: {other}"),
        };
        ctx.send_text(&answer);
    }

    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: String) {
        ctx.send_text(&msg);
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, _: Closed) {
        // Its addresses are gone by its last callback, a fresh one included.
        let _ = self.closed.send((self.name.clone(), ctx.addr().is_alive()));
    }
}

type Opened = mpsc::Receiver<(String, usize, Addr<String>)>;
/// Each connection's name as it closes, and whether an address it makes in `on_close` is alive.
type ClosedRx = mpsc::Receiver<(String, bool)>;

fn named_server(kind: BackendKind, shards: usize) -> (ServerHandle, Opened, ClosedRx) {
    let registry = Registry::default();
    let (tx, rx) = mpsc::channel();
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, shards).route("/named", move |req| {
            Ok(Accept::new(Named {
                name: req.query_param("name").expect("a name").into_owned(),
                registry: registry.clone(),
                opened: tx.clone(),
                closed: closed_tx.clone(),
            }))
        }),
    );
    (server, rx, closed_rx)
}

/// Connects `name`; returns the client, its shard and its address.
async fn open(addr: SocketAddr, opened: &Opened, name: &str) -> (Ws, usize, Addr<String>) {
    let mut ws = connect(addr, &format!("/named?name={name}")).await;
    let (got, shard, a) = recv_async(opened, STEP, "on_open").await;
    assert_eq!(got, name);
    assert!(a.is_alive());
    assert_eq!(a.shard(), shard);
    assert_eq!(next_text(&mut ws).await, format!("shard {shard}"));
    (ws, shard, a)
}

fn tell_from_a_plain_thread_arrives_in_order_and_gone_after_close(kind: BackendKind) {
    let (server, opened, closed) = named_server(kind, 1);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        let (mut ws, _, target) = open(addr, &opened, "ada").await;
        let teller = target.clone();
        let thread = std::thread::spawn(move || {
            for i in 0..200 {
                teller
                    .tell(format!("note {i}"))
                    .expect("tell from a thread");
            }
        });
        for i in 0..200 {
            assert_eq!(next_text(&mut ws).await, format!("note {i}"));
        }
        thread.join().expect("the telling thread");

        // The server processes the client's close (and marks the address dead) before it
        // answers it, so once the close handshake is done the address is gone.
        ws.close(None).await.unwrap();
        loop {
            match next_raw(&mut ws).await {
                Some(Ok(WsMessage::Close(_))) => continue,
                None | Some(Err(_)) => break,
                Some(Ok(other)) => panic!("after close: {}", describe(&other)),
            }
        }
        assert!(!target.is_alive());
        assert_eq!(
            recv_async(&closed, STEP, "on_close").await,
            ("ada".to_owned(), false),
            "an address made in on_close is alive"
        );
        let back = std::thread::spawn(move || target.tell("too late".to_owned()))
            .join()
            .unwrap();
        match back {
            Err(TellError::Gone(msg)) => assert_eq!(msg, "too late"),
            other => panic!("expected Gone, got {other:?}"),
        }
    });
    server.shutdown(Duration::from_secs(2));
}

fn tell_crosses_shards_between_handlers_and_reports_gone(kind: BackendKind) {
    let (server, opened, _closed) = named_server(kind, 2);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        // Connect until there is a client on each shard (the kernel spreads them by hash).
        let mut on: [Option<(Ws, String, Addr<String>)>; 2] = [None, None];
        let mut extra = Vec::new();
        for i in 0..100 {
            let name = format!("c{i}");
            let (ws, shard, a) = open(addr, &opened, &name).await;
            if on[shard].is_none() {
                on[shard] = Some((ws, name, a));
            } else {
                extra.push(ws);
            }
            if on.iter().all(Option::is_some) {
                break;
            }
        }
        let [Some((mut a, a_name, _)), Some((mut b, b_name, b_addr))] = on else {
            panic!("100 connections all landed on one shard");
        };
        assert_eq!(b_addr.shard(), 1);

        // Shard 0's handler tells shard 1's, and the other way round.
        a.send(WsMessage::text(format!("tell {b_name} hello")))
            .await
            .unwrap();
        assert_eq!(next_text(&mut a).await, format!("told {b_name}"));
        assert_eq!(
            next_text(&mut b).await,
            format!("hello from {a_name} on shard 0")
        );
        b.send(WsMessage::text(format!("tell {a_name} hi")))
            .await
            .unwrap();
        assert_eq!(next_text(&mut b).await, format!("told {a_name}"));
        assert_eq!(
            next_text(&mut a).await,
            format!("hi from {b_name} on shard 1")
        );

        // B leaves; A's handler, on the other shard, finds it gone.
        b.close(None).await.unwrap();
        while let Some(Ok(_)) = next_raw(&mut b).await {}
        a.send(WsMessage::text(format!("tell {b_name} anyone?")))
            .await
            .unwrap();
        assert_eq!(next_text(&mut a).await, format!("{b_name} is gone"));
        assert!(matches!(
            b_addr.tell("late".into()),
            Err(TellError::Gone(m)) if m == "late"
        ));
        drop(extra);
    });
    server.shutdown(Duration::from_secs(2));
}

/// Blocks its shard when told "block", after saying so on `blocked`, until the test says so on
/// `release` (or a step has passed, so a failing test still ends).
struct Blocker {
    blocked: mpsc::Sender<Addr<String>>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Handler for Blocker {
    type Msg = String;
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, _: ringsock_actors::Message) {
        let _ = self.blocked.send(ctx.addr());
        let _ = self.release.lock().unwrap().recv_timeout(STEP);
    }
    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: String) {
        ctx.send_text(&msg);
    }
}

/// While the shard is busy its mailbox (4 posts here) fills: the fifth tell gets `Full` with its
/// message back, and `ServerHandle::publish` reports the full shard. The four that fit arrive.
fn tell_to_a_full_mailbox_gives_the_message_back(kind: BackendKind) {
    let (tx, blocked) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let released = Arc::new(Mutex::new(released));
    let server = start(
        kind,
        builder(kind, 1).mailbox(4).route("/block", move |_| {
            Ok(Accept::new(Blocker {
                blocked: tx.clone(),
                release: released.clone(),
            }))
        }),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        let mut ws = connect(addr, "/block").await;
        ws.send(WsMessage::text("block")).await.unwrap();
        let target = recv_async(&blocked, STEP, "the shard blocking").await;
        let mut outcomes = Vec::new();
        for i in 0..6 {
            outcomes.push(match target.tell(format!("note {i}")) {
                Ok(()) => "ok".to_owned(),
                Err(TellError::Full(back)) => format!("full, gave back {back}"),
                Err(TellError::Gone(_)) => "gone".to_owned(),
                Err(other) => panic!("a tell error this test does not know: {other:?}"),
            });
        }
        let published = server.publish("nowhere", "x");
        release.send(()).unwrap();
        assert_eq!(
            outcomes,
            [
                "ok",
                "ok",
                "ok",
                "ok",
                "full, gave back note 4",
                "full, gave back note 5"
            ]
        );
        let err = published.expect_err("a publish into a full mailbox");
        assert_eq!((err.full, err.shards), (1, 1));
        for i in 0..4 {
            assert_eq!(next_text(&mut ws).await, format!("note {i}"));
        }
        // The mailbox has room again.
        target.tell("after".into()).unwrap();
        assert_eq!(next_text(&mut ws).await, "after");
    });
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(
    tell_to_a_full_mailbox_gives_the_message_back,
    tell_from_a_plain_thread_arrives_in_order_and_gone_after_close,
    tell_crosses_shards_between_handlers_and_reports_gone,
);
