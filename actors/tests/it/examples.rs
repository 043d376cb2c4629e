//! The runnable examples, run as their built binaries (cargo builds examples before tests) and
//! driven by tokio-tungstenite clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::{connect, next_text, run, STEP};

/// An example's process, killed when dropped.
struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `target/<profile>/examples/<name> --addr <free port>` and waits until it listens.
fn start(name: &str) -> (Example, SocketAddr) {
    // The test binary is target/<profile>/deps/<test>-<hash>; examples sit beside deps/.
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(&path)
        .arg("--addr")
        .arg(addr.to_string())
        .env("RINGSOCK_BACKEND", "epoll")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let example = Example(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        // A bounded poll: the example listens once it has started, however long that takes.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (example, addr)
}

#[test]
fn chat_example_serves_its_page_and_relays_within_a_room() {
    let (_chat, addr) = start("chat");
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    http.set_read_timeout(Some(STEP)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("new WebSocket"),
        "the page has no client script"
    );
    run(STEP * 3, async move {
        let url = |q: &str| format!("ws://{addr}/chat?{q}");
        let (mut ada, _) = tokio_tungstenite::connect_async(url("nick=ada&room=r1"))
            .await
            .unwrap();
        assert_eq!(next_text(&mut ada).await, "* you are ada in #r1");
        let (mut bob, _) = tokio_tungstenite::connect_async(url("nick=bob&room=r1"))
            .await
            .unwrap();
        assert_eq!(next_text(&mut bob).await, "* you are bob in #r1");
        assert_eq!(next_text(&mut ada).await, "* bob joined #r1");
        bob.send(WsMessage::text("hi")).await.unwrap();
        assert_eq!(next_text(&mut ada).await, "bob: hi");
        assert_eq!(next_text(&mut bob).await, "bob: hi");
        bob.send(WsMessage::text("/join r2")).await.unwrap();
        assert_eq!(next_text(&mut ada).await, "* bob left #r1");
        assert_eq!(next_text(&mut bob).await, "* you are bob in #r2");
    });
}

#[test]
fn game_example_ticks_and_moves_players_by_their_inputs() {
    let (_game, addr) = start("game");
    run(STEP * 3, async move {
        // The match starts with the server (the builder spawned it), so the first player is
        // served as soon as the game listens: no 503 window.
        let mut ada = connect(addr, "/play?name=ada").await;
        // A state arrives at every tick with ada at the origin...
        let first = next_text(&mut ada).await;
        assert!(
            first.contains("{\"name\":\"ada\",\"x\":0,\"y\":0}"),
            "{first}"
        );
        // ...and after an input she moves one step per tick (20 Hz).
        ada.send(WsMessage::text("1 -1")).await.unwrap();
        let started = Instant::now();
        while !next_text(&mut ada).await.contains("\"x\":3,\"y\":-3") {}
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(100),
            "3 steps took {elapsed:?}: the match does not tick at 20 Hz"
        );
        ada.send(WsMessage::text("nonsense")).await.unwrap();
        loop {
            let reply = next_text(&mut ada).await;
            if reply.contains("error") {
                break;
            }
        }
    });
}
