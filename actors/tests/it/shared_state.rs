//! What a small live-scoreboard server needs, end to end: an actor spawned by the builder whose
//! address the routes hold before the start (its first client is served, no 503 window),
//! actors spawned by handlers, server-wide topic counts and the topic list with the
//! first/last-subscriber hook, a handle shared with a publishing thread while another waits on
//! it, and `bind` by name.

use std::sync::mpsc;
use std::time::Duration;

use futures_util::SinkExt;
use ringsock_actors::{
    Accept, Actor, ActorCtx, Addr, BackendKind, CloseCode, Ctx, Handler, Message, Server,
    TopicEvent,
};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// The scoreboard: adds what it is told and answers the new total to whoever asked.
struct Scoreboard {
    total: i64,
    started: bool,
}

enum Score {
    Add(i64, Addr<String>),
}

impl Actor for Scoreboard {
    type Msg = Score;

    fn on_start(&mut self, _: &mut ActorCtx<'_, Self>) {
        self.started = true;
    }

    fn on_tell(&mut self, _: &mut ActorCtx<'_, Self>, msg: Score) {
        let Score::Add(n, reply) = msg;
        self.total += n;
        let answer = if self.started {
            format!("total {}", self.total)
        } else {
            "told before on_start".to_owned()
        };
        let _ = reply.tell(answer);
    }
}

/// A fan: "add N" goes to the scoreboard; what comes back goes to the client.
struct Fan {
    board: Addr<Score>,
}

impl Handler for Fan {
    type Msg = String;

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let n = message.as_text().and_then(|t| t.strip_prefix("add "));
        let n: i64 = n.and_then(|n| n.parse().ok()).expect("add N");
        let reply = ctx.addr();
        if self.board.tell(Score::Add(n, reply)).is_err() {
            ctx.send_text("the scoreboard is gone");
        }
    }

    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: String) {
        ctx.send_text(&msg);
    }
}

fn a_builder_spawned_actor_serves_the_first_connection(kind: BackendKind) {
    let mut b = builder(kind, 2);
    let boards: Vec<Addr<Score>> = (0..4)
        .map(|_| {
            b.spawn(Scoreboard {
                total: 0,
                started: false,
            })
        })
        .collect();
    let shards: Vec<usize> = boards.iter().map(Addr::shard).collect();
    assert_eq!(shards, [0, 1, 0, 1], "spawned actors are dealt round robin");
    assert!(boards.iter().all(Addr::is_alive));
    let board = boards[1].clone();
    let server = start(
        kind,
        b.route("/fan", move |_| {
            Ok(Accept::new(Fan {
                board: board.clone(),
            }))
        }),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        let mut ws = connect(addr, "/fan").await;
        ws.send(WsMessage::text("add 5")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "total 5");
        let mut other = connect(addr, "/fan").await;
        other.send(WsMessage::text("add 2")).await.unwrap();
        assert_eq!(next_text(&mut other).await, "total 7", "one actor, shared");
    });
    // A spawn after the start goes on after those of the builder.
    let late = server.spawn(Scoreboard {
        total: 0,
        started: false,
    });
    assert_eq!(
        late.shard(),
        0,
        "the round robin continues after the builder's four"
    );
    server.shutdown(Duration::from_secs(2));
}

fn spawning_before_the_shard_count_is_set_fails_the_start(_: BackendKind) {
    let mut b = Server::builder().bind("127.0.0.1:0").shards(2);
    let _ = b.spawn(Scoreboard {
        total: 0,
        started: false,
    });
    let err = b
        .shards(3)
        .start()
        .expect_err("actors were dealt to 2 shards");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("before `spawn`"), "{err}");
}

/// Spawns a scoreboard of its own on open, and reports the actor's shard beside its own.
struct Owner {
    board: Option<Addr<Score>>,
}

impl Handler for Owner {
    type Msg = String;

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let board = ctx.spawn(Scoreboard {
            total: 100,
            started: false,
        });
        ctx.send_text(&format!(
            "board on {}, me on {}",
            board.shard(),
            ctx.shard()
        ));
        // Told at once, from the callback that spawned it: it still starts first.
        board
            .tell(Score::Add(1, ctx.addr()))
            .expect("a fresh actor's mailbox has room");
        self.board = Some(board);
    }

    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: String) {
        ctx.send_text(&msg);
    }
}

fn a_handler_spawns_an_actor_on_its_shard(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 2).route("/own", |_| Ok(Accept::new(Owner { board: None }))),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        for _ in 0..4 {
            let mut ws = connect(addr, "/own").await;
            let placed = next_text(&mut ws).await;
            let (actor, me) = placed
                .strip_prefix("board on ")
                .and_then(|s| s.split_once(", me on "))
                .expect("where they are");
            assert_eq!(actor, me, "{placed}");
            assert_eq!(next_text(&mut ws).await, "total 101");
        }
    });
    server.shutdown(Duration::from_secs(2));
}

/// Subscribes to "scores" on open; answers "count" with the server-wide and this shard's
/// subscriber counts.
struct Viewer;

impl Handler for Viewer {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe("scores");
        ctx.send_text(&format!("on {}", ctx.shard()));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, _: Message) {
        let (all, here) = (ctx.subscribers("scores"), ctx.subscribers_here("scores"));
        ctx.send_text(&format!("{all} {here}"));
    }
}

fn topics_are_counted_over_all_shards_and_the_hook_hears_first_and_last(kind: BackendKind) {
    let (events_tx, events) = mpsc::channel();
    let hook_tx = std::sync::Mutex::new(events_tx);
    let server = start(
        kind,
        builder(kind, 2)
            .route("/view", |_| Ok(Accept::new(Viewer)))
            .on_topic(move |event| {
                let said = match event {
                    TopicEvent::FirstSubscriber(t) => format!("first {t}"),
                    TopicEvent::LastUnsubscribed(t) => format!("last {t}"),
                    other => format!("{other:?}"),
                };
                let _ = hook_tx.lock().unwrap().send(said);
            }),
    );
    let addr = server.local_addrs()[0];
    assert!(server.topics().is_empty());
    let server_view = server.clone();
    run(Duration::from_secs(30), async {
        let mut clients = Vec::new();
        let mut shards = [0usize; 2];
        for _ in 0..6 {
            let mut ws = connect(addr, "/view").await;
            let on = next_text(&mut ws).await;
            shards[on.strip_prefix("on ").unwrap().parse::<usize>().unwrap()] += 1;
            clients.push(ws);
        }
        assert!(
            shards.iter().all(|&n| n > 0),
            "both shards hold viewers: {shards:?}"
        );
        assert_eq!(server_view.subscribers("scores"), 6);
        let topics = server_view.topics();
        assert_eq!(topics.len(), 1, "{topics:?}");
        assert_eq!(
            (topics[0].name.as_str(), topics[0].subscribers),
            ("scores", 6)
        );
        // As a handler sees them: all six, and its own shard's share.
        clients[0].send(WsMessage::text("count")).await.unwrap();
        let counts = next_text(&mut clients[0]).await;
        let (all, here) = counts.split_once(' ').unwrap();
        assert_eq!(all, "6");
        assert!(
            shards.contains(&here.parse().unwrap()),
            "{counts} vs {shards:?}"
        );
        assert_eq!(
            recv_async(&events, STEP, "the first subscriber").await,
            "first scores"
        );
        assert!(events.try_recv().is_err(), "one first, however many shards");
        for mut ws in clients {
            ws.close(None).await.unwrap();
            while let Some(Ok(_)) = next_raw(&mut ws).await {}
        }
        assert_eq!(
            recv_async(&events, STEP, "the last subscriber leaving").await,
            "last scores"
        );
    });
    assert_eq!(server.subscribers("scores"), 0);
    assert!(server.topics().is_empty());
    server.shutdown(Duration::from_secs(2));
    assert!(events.try_recv().is_err(), "nothing after the last");
}

fn the_handle_is_shared_with_a_publisher_and_waited_on(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 2).route("/view", |_| Ok(Accept::new(Viewer))),
    );
    let addr = server.local_addrs()[0];
    let (go_tx, go) = mpsc::channel::<()>();
    let publisher = {
        let server = server.clone();
        std::thread::spawn(move || {
            go.recv().expect("the subscriber is in");
            for i in 0..3 {
                server
                    .publish("scores", format!("tick {i}"))
                    .expect("the mailboxes have room");
            }
            // Shut down from this thread while the test's thread waits on its own clone.
            server.shutdown(Duration::from_secs(5))
        })
    };
    run(Duration::from_secs(30), async {
        let mut ws = connect(addr, "/view").await;
        next_text(&mut ws).await;
        go_tx.send(()).unwrap();
        for i in 0..3 {
            assert_eq!(next_text(&mut ws).await, format!("tick {i}"));
        }
        match next_raw(&mut ws).await {
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), CloseCode::GOING_AWAY.0)
            }
            other => panic!("expected the shutdown's close, got {other:?}"),
        }
        while let Some(Ok(_)) = next_raw(&mut ws).await {}
    });
    let waited = server.wait();
    let shut = publisher.join().expect("the publishing thread");
    assert_eq!(waited, shut, "every clone sees the one report");
    assert_eq!((shut.closing, shut.closed_cleanly), (1, 1), "{shut:?}");
}

fn bind_takes_names_and_a_bad_address_fails_the_start(kind: BackendKind) {
    let server = start(
        kind,
        Server::builder()
            .bind(("127.0.0.1", 0))
            .shards(1)
            .backend(kind)
            .pin_threads(false),
    );
    assert!(server.local_addrs()[0].ip().is_loopback());
    server.shutdown(Duration::from_secs(1));
    let err = Server::builder()
        .bind("127.0.0.1:not-a-port")
        .shards(1)
        .backend(kind)
        .start()
        .expect_err("no such port");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

on_both_backends!(
    a_builder_spawned_actor_serves_the_first_connection,
    spawning_before_the_shard_count_is_set_fails_the_start,
    a_handler_spawns_an_actor_on_its_shard,
    topics_are_counted_over_all_shards_and_the_hook_hears_first_and_last,
    the_handle_is_shared_with_a_publisher_and_waited_on,
    bind_takes_names_and_a_bad_address_fails_the_start,
);
