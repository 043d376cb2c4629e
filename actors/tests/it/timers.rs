//! Timers of connections and of actors: they fire (not early), a cancelled one does not, a
//! closed connection's do not, and an actor spawned with `ServerHandle::spawn` ticks, publishes to
//! subscribers on both shards, stops, and is then gone.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use ringsock_actors::{
    Accept, Actor, ActorCtx, BackendKind, Closed, Ctx, Handler, Message, TellError, TimerId,
};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// Sets three timers on open (40, 80 and 120 ms), cancels the middle one, and reports each that
/// fires by name; the last re-arms itself twice.
#[derive(Default)]
struct Timed {
    a: Option<TimerId>,
    b: Option<TimerId>,
    c: Option<TimerId>,
    rearmed: u32,
}

impl Handler for Timed {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let a = ctx.set_timer(Duration::from_millis(40));
        let b = ctx.set_timer(Duration::from_millis(80));
        let c = ctx.set_timer(Duration::from_millis(120));
        let distinct = a != b && b != c && a != c;
        let first = ctx.cancel_timer(b);
        let second = ctx.cancel_timer(b);
        ctx.send_text(&format!(
            "distinct {distinct}, cancel {first}, again {second}"
        ));
        (self.a, self.b, self.c) = (Some(a), Some(b), Some(c));
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: TimerId) {
        let name = if Some(timer) == self.a {
            "a"
        } else if Some(timer) == self.b {
            "b"
        } else if Some(timer) == self.c {
            "c"
        } else {
            "unknown"
        };
        // A timer that fired cannot be cancelled any more.
        let cancel = ctx.cancel_timer(timer);
        ctx.send_text(&format!("fired {name}, cancel {cancel}"));
        if name == "c" && self.rearmed < 2 {
            self.rearmed += 1;
            self.c = Some(ctx.set_timer(Duration::from_millis(30)));
        }
    }
}

fn timers_fire_in_order_and_a_cancelled_one_does_not(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 1).route("/timed", |_| Ok(Accept::new(Timed::default()))),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let started = Instant::now();
        let mut ws = connect(addr, "/timed").await;
        assert_eq!(
            next_text(&mut ws).await,
            "distinct true, cancel true, again false"
        );
        assert_eq!(next_text(&mut ws).await, "fired a, cancel false");
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "a fired early"
        );
        assert_eq!(next_text(&mut ws).await, "fired c, cancel false");
        assert!(
            started.elapsed() >= Duration::from_millis(120),
            "c fired early"
        );
        assert_eq!(next_text(&mut ws).await, "fired c, cancel false");
        assert_eq!(next_text(&mut ws).await, "fired c, cancel false");
        assert!(
            started.elapsed() >= Duration::from_millis(180),
            "re-armed c fired early"
        );
        // b never fires, and c stopped re-arming.
        expect_silence(&mut ws, Duration::from_millis(250)).await;
    });
    server.shutdown(Duration::from_secs(2));
}

/// The delay of `Doomed`'s timer, and of `Witness`'s.
const DOOMED_TIMER: Duration = Duration::from_millis(100);

/// Sets a timer on open and reports whether it fires, and its close.
struct Doomed {
    report: mpsc::Sender<&'static str>,
}

impl Handler for Doomed {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.set_timer(DOOMED_TIMER);
        ctx.send_text("armed");
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: TimerId) {
        let _ = self.report.send("fired");
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, _: Closed) {
        let _ = self.report.send("closed");
    }
}

/// Sets a timer on open as long as `Doomed`'s and reports when it fires: opened after the doomed
/// connection closed, its deadline is later, so once it has fired the doomed timer's deadline has
/// passed too (one shard, one timer heap, fired in deadline order).
struct Witness {
    report: mpsc::Sender<&'static str>,
}

impl Handler for Witness {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.set_timer(DOOMED_TIMER);
    }
    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: TimerId) {
        let _ = self.report.send("witness fired");
    }
}

fn a_closed_connections_timers_do_not_fire(kind: BackendKind) {
    let (tx, rx) = mpsc::channel();
    let witness = tx.clone();
    let server = start(
        kind,
        builder(kind, 1)
            .route("/doomed", move |_| {
                Ok(Accept::new(Doomed { report: tx.clone() }))
            })
            .route("/witness", move |_| {
                Ok(Accept::new(Witness {
                    report: witness.clone(),
                }))
            }),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let mut ws = connect(addr, "/doomed").await;
        assert_eq!(next_text(&mut ws).await, "armed");
        ws.close(None).await.unwrap();
        assert_eq!(recv_async(&rx, STEP, "the close").await, "closed");
        let _witness = connect(addr, "/witness").await;
        assert_eq!(
            recv_async(&rx, STEP, "the witness's timer").await,
            "witness fired",
            "a closed connection's timer fired"
        );
    });
    server.shutdown(Duration::from_secs(2));
}

/// Re-arms a zero-delay timer from its own `on_timer` until told "stop" (or for 20 s at most, so
/// that a shard that fires it in a loop without serving its sockets recovers and the test ends);
/// answers "count" with how often it fired, and "stop" with that and whether it was still
/// spinning when the message came.
struct Spinner {
    since: Instant,
    fired: u64,
    stop: bool,
}

/// How long a `Spinner` spins if nothing stops it.
const SPIN_AT_MOST: Duration = Duration::from_secs(20);

impl Spinner {
    fn spinning(&self) -> bool {
        !self.stop && self.since.elapsed() < SPIN_AT_MOST
    }
}

impl Handler for Spinner {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.since = Instant::now();
        ctx.set_timer(Duration::ZERO);
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _: TimerId) {
        self.fired += 1;
        if self.spinning() {
            ctx.set_timer(Duration::ZERO);
        }
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let spinning = self.spinning();
        if message.as_text() == Some("stop") {
            self.stop = true;
        }
        ctx.send_text(&format!("fired {} spinning {spinning}", self.fired));
    }
}

/// Its fire count and whether it was spinning, from a `Spinner`'s answer.
fn spin_report(answer: &str) -> (u64, bool) {
    let (fired, spinning) = answer
        .strip_prefix("fired ")
        .and_then(|rest| rest.split_once(" spinning "))
        .unwrap_or_else(|| panic!("{answer:?}"));
    (fired.parse().unwrap(), spinning.parse().unwrap())
}

/// A timer set for now from `on_timer` runs on a later loop turn, after the sockets are served:
/// a handler that keeps deferring work to a zero-delay timer does not starve its shard. Its
/// messages are answered while it spins (a starved shard would answer them only once the spinner
/// gave up, 20 s later), and another connection is served meanwhile.
fn a_zero_delay_timer_rearmed_forever_does_not_starve_the_shard(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 1).route("/spin", |_| {
            Ok(Accept::new(Spinner {
                since: Instant::now(),
                fired: 0,
                stop: false,
            }))
        }),
    );
    let addr = server.local_addrs()[0];
    run(SPIN_AT_MOST * 3, async {
        let mut ws = connect(addr, "/spin").await;
        // Until it has fired more than once: a message answered while it re-arms.
        let fired = loop {
            ws.send(WsMessage::text("count")).await.unwrap();
            let (fired, spinning) = spin_report(&next_text(&mut ws).await);
            assert!(
                spinning,
                "answered only after it stopped spinning ({fired} fires)"
            );
            if fired > 1 {
                break fired;
            }
        };
        // Another connection on the same shard is served while the first one spins.
        let mut other = connect(addr, "/spin").await;
        other.send(WsMessage::text("stop")).await.unwrap();
        let (_, spinning) = spin_report(&next_text(&mut other).await);
        assert!(
            spinning,
            "the second connection was served only after it stopped spinning"
        );
        ws.send(WsMessage::text("stop")).await.unwrap();
        let answer = next_text(&mut ws).await;
        let (last, spinning) = spin_report(&answer);
        eprintln!("{kind:?}: {answer}");
        assert!(
            spinning,
            "answered only after it stopped spinning: {answer}"
        );
        assert!(last >= fired, "{answer} after {fired} fires");
    });
    server.shutdown(Duration::from_secs(2));
}

/// Subscribes to "ticks" and tells its client which shard it is on.
struct TickListener;

impl Handler for TickListener {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe("ticks");
        ctx.send_text(&format!("shard {}", ctx.shard()));
    }
}

enum Cmd {
    /// Start ticking.
    Go,
}

/// Once told to go, publishes "NAME tick N" every 20 ms, five times, then stops. On start it
/// sets and cancels a timer that must never fire.
struct Ticker {
    name: &'static str,
    ticks: u32,
    decoy: Option<TimerId>,
    report: mpsc::Sender<String>,
}

impl Actor for Ticker {
    type Msg = Cmd;

    fn on_start(&mut self, ctx: &mut ActorCtx<'_, Self>) {
        let decoy = ctx.set_timer(Duration::from_millis(5));
        let cancelled = ctx.cancel_timer(decoy);
        let again = ctx.cancel_timer(decoy);
        self.decoy = Some(decoy);
        let _ = self.report.send(format!(
            "{} started on shard {}, cancel {cancelled}, again {again}",
            self.name,
            ctx.shard()
        ));
    }

    fn on_tell(&mut self, ctx: &mut ActorCtx<'_, Self>, cmd: Cmd) {
        match cmd {
            Cmd::Go => {
                ctx.set_timer(Duration::from_millis(20));
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut ActorCtx<'_, Self>, timer: TimerId) {
        if Some(timer) == self.decoy {
            ctx.publish("ticks", format!("{} decoy fired", self.name));
            return;
        }
        self.ticks += 1;
        ctx.publish("ticks", format!("{} tick {}", self.name, self.ticks));
        if self.ticks == 5 {
            ctx.stop();
        } else {
            ctx.set_timer(Duration::from_millis(20));
        }
    }

    fn on_stop(&mut self, ctx: &mut ActorCtx<'_, Self>) {
        ctx.publish("ticks", format!("{} stopped", self.name));
    }
}

fn spawned_actors_tick_publish_to_both_shards_and_stop(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 2).route("/ticks", |_| Ok(Accept::new(TickListener))),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        // A listener on each shard.
        let mut on: [Option<Ws>; 2] = [None, None];
        let mut extra = Vec::new();
        for _ in 0..100 {
            let mut ws = connect(addr, "/ticks").await;
            let shard: usize = next_text(&mut ws)
                .await
                .strip_prefix("shard ")
                .unwrap()
                .parse()
                .unwrap();
            match &on[shard] {
                None => on[shard] = Some(ws),
                Some(_) => extra.push(ws),
            }
            if on.iter().all(Option::is_some) {
                break;
            }
        }
        let [Some(mut l0), Some(mut l1)] = on else {
            panic!("100 connections all landed on one shard");
        };

        // Two actors, spawned round robin: one on each shard.
        let (tx, rx) = mpsc::channel();
        let names = ["red", "blue"];
        let addrs: Vec<_> = names
            .iter()
            .map(|&name| {
                server.spawn(Ticker {
                    name,
                    ticks: 0,
                    decoy: None,
                    report: tx.clone(),
                })
            })
            .collect();
        let mut started = Vec::new();
        for _ in 0..2 {
            started.push(recv_async(&rx, STEP, "on_start").await);
        }
        started.sort();
        assert_eq!(
            started,
            [
                "blue started on shard 1, cancel true, again false",
                "red started on shard 0, cancel true, again false",
            ]
        );
        assert_eq!((addrs[0].shard(), addrs[1].shard()), (0, 1));
        for a in &addrs {
            assert!(a.is_alive());
            a.tell(Cmd::Go).unwrap_or_else(|_| panic!("tell Go"));
        }

        for listener in [&mut l0, &mut l1] {
            let mut next = [1u32, 1];
            let mut stopped = [false, false];
            while stopped != [true, true] {
                let text = next_text(listener).await;
                let (name, rest) = text.split_once(' ').unwrap();
                let i = names.iter().position(|n| *n == name).expect("a ticker");
                assert!(!stopped[i], "{text:?} after {name} stopped");
                if rest == "stopped" {
                    assert_eq!(next[i], 6, "{name} stopped after {} ticks", next[i] - 1);
                    stopped[i] = true;
                } else {
                    assert_eq!(rest, format!("tick {}", next[i]), "{name}'s ticks");
                    next[i] += 1;
                }
            }
            expect_silence(listener, Duration::from_millis(100)).await;
        }

        // Stopped actors' addresses are dead.
        for a in &addrs {
            assert!(!a.is_alive());
            assert!(matches!(a.tell(Cmd::Go), Err(TellError::Gone(Cmd::Go))));
        }
        drop(extra);
    });
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(
    timers_fire_in_order_and_a_cancelled_one_does_not,
    a_closed_connections_timers_do_not_fire,
    a_zero_delay_timer_rearmed_forever_does_not_starve_the_shard,
    spawned_actors_tick_publish_to_both_shards_and_stop,
);
