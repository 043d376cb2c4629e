//! A game backend: one match actor ticks at 20 Hz and broadcasts the state of the match to its
//! players (a topic); each player's connection forwards its inputs to the match with an `Addr`.
//!
//! ```text
//! cargo run --release -p ringsock-actors --example game -- --addr 127.0.0.1:9002
//! ```
//! Connect to `ws://127.0.0.1:9002/play?name=ada` and send `dx dy` lines (each -1, 0 or 1): the
//! match moves your player and every 50 ms sends everyone
//! `{"tick":N,"players":[{"name":"ada","x":3,"y":-1},...]}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringsock_actors::{
    Accept, Actor, ActorCtx, Addr, CloseCode, Closed, Ctx, Handler, Message, Server, TimerId,
};

/// The match's state broadcasts go to this topic.
const TOPIC: &str = "match";
/// 20 Hz.
const TICK: Duration = Duration::from_millis(50);
/// The field is a square of this half-width; players stay inside.
const FIELD: i32 = 50;

/// What players tell the match.
enum ToMatch {
    Join { player: u64, name: String },
    Input { player: u64, dx: i32, dy: i32 },
    Leave { player: u64 },
}

struct PlayerState {
    name: String,
    x: i32,
    y: i32,
    /// The latest input, applied at each tick until changed.
    dx: i32,
    dy: i32,
}

/// The match: the only owner of the game state, so no locks.
#[derive(Default)]
struct Match {
    tick: u64,
    players: BTreeMap<u64, PlayerState>,
}

impl Actor for Match {
    type Msg = ToMatch;

    fn on_start(&mut self, ctx: &mut ActorCtx<'_, Self>) {
        ctx.set_timer(TICK);
    }

    fn on_tell(&mut self, _ctx: &mut ActorCtx<'_, Self>, msg: ToMatch) {
        match msg {
            ToMatch::Join { player, name } => {
                self.players.insert(
                    player,
                    PlayerState {
                        name,
                        x: 0,
                        y: 0,
                        dx: 0,
                        dy: 0,
                    },
                );
            }
            ToMatch::Input { player, dx, dy } => {
                if let Some(p) = self.players.get_mut(&player) {
                    (p.dx, p.dy) = (dx.clamp(-1, 1), dy.clamp(-1, 1));
                }
            }
            ToMatch::Leave { player } => {
                self.players.remove(&player);
            }
        }
    }

    fn on_timer(&mut self, ctx: &mut ActorCtx<'_, Self>, _timer: TimerId) {
        ctx.set_timer(TICK);
        if self.players.is_empty() {
            return;
        }
        self.tick += 1;
        let mut state = format!("{{\"tick\":{},\"players\":[", self.tick);
        for (i, p) in self.players.values_mut().enumerate() {
            p.x = (p.x + p.dx).clamp(-FIELD, FIELD);
            p.y = (p.y + p.dy).clamp(-FIELD, FIELD);
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                state,
                "{sep}{{\"name\":\"{}\",\"x\":{},\"y\":{}}}",
                p.name, p.x, p.y
            );
        }
        state.push_str("]}");
        // Framed once, queued to every player on every shard.
        ctx.publish(TOPIC, state);
    }
}

/// One player's connection.
struct Player {
    id: u64,
    name: String,
    game: Addr<ToMatch>,
}

impl Handler for Player {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(TOPIC);
        let join = ToMatch::Join {
            player: self.id,
            name: self.name.clone(),
        };
        if self.game.tell(join).is_err() {
            let _ = ctx.close(CloseCode(4000), "the match is not running");
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let mut parts = message.as_text().unwrap_or("").split_whitespace();
        let mut next = || parts.next().and_then(|v| v.parse::<i32>().ok());
        match (next(), next()) {
            (Some(dx), Some(dy)) => {
                let input = ToMatch::Input {
                    player: self.id,
                    dx,
                    dy,
                };
                let _ = self.game.tell(input);
            }
            _ => {
                ctx.send_text("{\"error\":\"send two integers: dx dy\"}");
            }
        }
    }

    fn on_close(&mut self, _ctx: &mut Ctx<'_, Self>, _closed: Closed) {
        let _ = self.game.tell(ToMatch::Leave { player: self.id });
    }
}

/// Names are echoed into JSON: keep them to safe characters.
fn clean(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect();
    if name.is_empty() {
        "player".into()
    } else {
        name
    }
}

fn main() -> std::io::Result<()> {
    let mut addr: SocketAddr = "127.0.0.1:9002".parse().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().map(|a| a.parse())) {
            ("--addr", Some(Ok(a))) => addr = a,
            _ => {
                eprintln!("usage: game [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    // The match starts with the server: its address exists before the first player does.
    let mut builder = Server::builder().bind(addr);
    let game: Addr<ToMatch> = builder.spawn(Match::default());
    let ids = AtomicU64::new(1);
    let server = builder
        .route("/play", move |req| {
            Ok(Accept::new(Player {
                id: ids.fetch_add(1, Ordering::Relaxed),
                name: clean(&req.query_param("name").unwrap_or_default()),
                game: game.clone(),
            }))
        })
        .start()?;
    eprintln!("game: ws://{}/play?name=you", server.local_addrs()[0]);
    let report = server.shutdown_on_signal(Duration::from_secs(5))?;
    eprintln!(
        "game: {} of {} players closed cleanly",
        report.closed_cleanly, report.closing
    );
    Ok(())
}
