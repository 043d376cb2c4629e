//! permessage-deflate with a browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/interop-setup.sh`; `CHROMIUM` names another binary) loads a page from a ringsock
//! server and runs WebSockets to four ringsock servers (deflate's defaults, context takeover,
//! takeover with a client window of 8, no deflate), each through a capture relay.
//!
//! Chromium offers `permessage-deflate; client_max_window_bits`. The test asserts, per server:
//! the offer as the server saw it, the answer as the page saw it (`WebSocket.extensions`), every
//! message intact both ways (the server checks a hash of what the page sent, the page compares
//! every echo), and on the captured bytes that compression and context takeover happened in
//! each direction as agreed.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::interop::*;
use ringsock_actors::{
    Accept, BackendKind, Ctx, DataKind, DeflateOptions, Handler, HttpResponse, Message,
    ServerHandle,
};
use serde_json::Value;

use crate::support::*;

const PAGE: &str = include_str!("../interop/deflate.html");

/// The page's messages: (text?, bytes), as `MESSAGES` in deflate.html makes them.
const SENT: &[(bool, usize)] = &[
    (true, 16),
    (true, 200),
    (true, 200),
    (true, 1024),
    (true, 0), // unicode: its byte count is the page's to report
    (false, 1024),
    (false, 100 << 10),
    (true, 1 << 20),
];

/// The index of the repeated message's second copy.
const REPEAT: usize = 2;

/// The longest the whole browser run may take.
const RUN: Duration = Duration::from_secs(90);

/// What the servers saw.
#[derive(Debug)]
enum Seen {
    /// An upgrade, with its `Sec-WebSocket-Extensions` offer.
    Open(&'static str, Option<String>),
    /// A data message: text?, bytes, FNV-1a.
    Received(&'static str, bool, usize, u32),
    /// The page's summary of one connection.
    Summary(&'static str, Value),
    /// The page is done: "ok" or what went wrong.
    Done(String),
}

/// FNV-1a, 32 bits (as the page computes it).
fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Echoes data messages and reports them, and the page's summary.
struct BrowserEcho {
    label: &'static str,
    report: mpsc::Sender<Seen>,
}

impl Handler for BrowserEcho {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let offer = ctx
            .request_header("sec-websocket-extensions")
            .map(str::to_owned);
        let _ = self.report.send(Seen::Open(self.label, offer));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(summary) = message.as_text().and_then(|t| t.strip_prefix("summary:")) {
            let json = serde_json::from_str(summary).unwrap_or(Value::Null);
            let _ = self.report.send(Seen::Summary(self.label, json));
            return;
        }
        let text = message.as_text().is_some();
        let bytes = message.as_bytes();
        let _ = self
            .report
            .send(Seen::Received(self.label, text, bytes.len(), fnv(bytes)));
        match message {
            Message::Text(t) => ctx.send(DataKind::Text, t.into_bytes()),
            Message::Binary(b) => ctx.send(DataKind::Binary, b),
        };
    }
}

/// One server the page talks to.
struct Target {
    label: &'static str,
    server: ServerHandle,
    capture: Capture,
    /// What `WebSocket.extensions` must say.
    answer: &'static str,
    /// Context takeover from the server, and from the browser.
    server_takeover: bool,
    client_takeover: bool,
}

fn target(
    label: &'static str,
    kind: BackendKind,
    deflate: Option<DeflateOptions>,
    report: &mpsc::Sender<Seen>,
    page: bool,
) -> ServerHandle {
    let tx = report.clone();
    let mut b = builder(kind, 1)
        .keep_request_headers(true)
        .route("/echo", move |_| {
            Ok(Accept::new(BrowserEcho {
                label,
                report: tx.clone(),
            }))
        });
    if let Some(opts) = deflate {
        b = b.deflate(opts);
    }
    if page {
        let tx = report.clone();
        b = b.http(move |req| match req.path() {
            "/" => HttpResponse::with_body(200, "text/html; charset=utf-8", PAGE),
            "/done" => {
                let result = req
                    .query()
                    .and_then(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "result")
                            .map(|(_, v)| v.into_owned())
                    })
                    .unwrap_or_default();
                let _ = tx.send(Seen::Done(result));
                HttpResponse::text(200, "thanks")
            }
            _ => HttpResponse::not_found(),
        });
    }
    start(kind, b)
}

/// Headless Chromium in its own process group and a fresh profile, both gone when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let found = binary.contains('/')
            || std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(&binary).is_file())
            });
        assert!(
            found,
            "`{binary}` is not installed: the browser interop test needs Chromium; run \
             `bash scripts/setup.sh` (it installs Debian's `chromium`), or set CHROMIUM"
        );
        // A fresh profile: nothing cached or remembered from an earlier run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let profile =
            std::env::temp_dir().join(format!("ringsock-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("a profile folder");
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(profile.join("stderr.log")).expect("a log file"),
            ))
            // Its own group: the browser's helper processes are killed with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&profile);
                panic!("cannot start {binary}: {e}")
            });
        Browser { child, profile }
    }

    /// The browser's stderr without D-Bus complaints (there is no bus here), last 3 KB.
    fn stderr_tail(&self) -> String {
        let log = std::fs::read_to_string(self.profile.join("stderr.log")).unwrap_or_default();
        let kept: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        let text = kept.join("\n");
        text[text.len().saturating_sub(3000)..].to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group we made for it, by its id (the browser's pid): the browser and its helpers.
        // SAFETY: killpg with a pid we spawned and a valid signal has no memory effects.
        unsafe {
            libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[test]
fn chromium_negotiates_deflate_and_messages_cross_intact() {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let page = target("page", BackendKind::Epoll, None, &tx, true);
    let mut targets = Vec::new();
    for (label, kind, deflate, answer, server_takeover, client_takeover) in [
        (
            "defaults",
            BackendKind::IoUring,
            Some(DeflateOptions::new()),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            false,
            false,
        ),
        (
            "takeover",
            BackendKind::Epoll,
            Some(DeflateOptions::new().context_takeover(true)),
            "permessage-deflate",
            true,
            true,
        ),
        (
            "takeover, client window 8",
            BackendKind::IoUring,
            Some(
                DeflateOptions::new()
                    .context_takeover(true)
                    .request_max_window_bits(8),
            ),
            "permessage-deflate; client_max_window_bits=8",
            true,
            true,
        ),
        ("no deflate", BackendKind::Epoll, None, "", false, false),
    ] {
        let server = target(label, kind, deflate, &tx, false);
        let capture = Capture::start(server.local_addrs()[0], 1);
        targets.push(Target {
            label,
            server,
            capture,
            answer,
            server_takeover,
            client_takeover,
        });
    }
    drop(tx);
    let urls: Vec<String> = targets
        .iter()
        .map(|t| format!("ws://{}/echo", t.capture.addr()))
        .collect();
    let page_addr: SocketAddr = page.local_addrs()[0];
    let mut browser = Browser::open(&format!("http://{page_addr}/?targets={}", urls.join(",")));

    // Everything the servers saw, until the page says it is done.
    let until = Instant::now() + RUN;
    let mut seen = Vec::new();
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Seen::Done(result)) => break result,
            Ok(s) => seen.push(s),
            Err(_) => {
                // A browser that exited will never finish: fail now, with what it said.
                let exited = browser.child.try_wait().ok().flatten();
                assert!(
                    exited.is_none() && Instant::now() < until,
                    "the page did not finish (browser exit status {exited:?}, {:?} since start); \
                     the servers saw {seen:?}\n--- chromium ---\n{}",
                    started.elapsed(),
                    browser.stderr_tail()
                );
            }
        }
    };
    assert_eq!(result, "ok", "the page failed; the servers saw {seen:?}");

    let mut failures = Vec::new();
    for t in &targets {
        failures.extend(
            check_target(t, &seen)
                .into_iter()
                .map(|p| format!("{}: {p}", t.label)),
        );
    }
    drop(browser);
    for t in targets {
        t.server.shutdown(Duration::from_secs(1));
    }
    page.shutdown(Duration::from_secs(1));
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("took {:?}", started.elapsed());
}

/// Checks one target's connection: offer, answer, contents, and the captured wire.
fn check_target(t: &Target, seen: &[Seen]) -> Vec<String> {
    let mut bad = Vec::new();
    let offers: Vec<&Option<String>> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Open(l, offer) if *l == t.label => Some(offer),
            _ => None,
        })
        .collect();
    // Chromium's offer, whatever the server does with it.
    if offers
        != [&Some(
            "permessage-deflate; client_max_window_bits".to_owned(),
        )]
    {
        bad.push(format!("the server saw the offers {offers:?}"));
    }
    let received: Vec<(bool, usize, u32)> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Received(l, text, len, hash) if *l == t.label => Some((*text, *len, *hash)),
            _ => None,
        })
        .collect();
    let Some(summary) = seen.iter().find_map(|s| match s {
        Seen::Summary(l, json) if *l == t.label => Some(json),
        _ => None,
    }) else {
        bad.push("no summary from the page".into());
        return bad;
    };
    if !summary["error"].is_null() {
        bad.push(format!("the page reported {}", summary["error"]));
    }
    if summary["extensions"] != t.answer {
        bad.push(format!(
            "WebSocket.extensions is {}, expected {:?}",
            summary["extensions"], t.answer
        ));
    }
    // What the page sent, as it describes it, is what the server received; every echo came
    // back equal.
    let sent: Vec<(bool, usize, u32)> = summary["messages"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    (
                        m["kind"] == "text",
                        m["bytes"].as_u64().unwrap_or(0) as usize,
                        m["fnv"].as_u64().unwrap_or(0) as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if sent.len() != SENT.len()
        || sent
            .iter()
            .zip(SENT)
            .any(|(s, &(text, len))| s.0 != text || (len != 0 && s.1 != len))
    {
        bad.push(format!("the page sent {sent:?}"));
    }
    if received != sent {
        bad.push(format!(
            "the server received {received:?}, the page sent {sent:?}"
        ));
    }
    let wrong: Vec<usize> = (0..sent.len())
        .filter(|&i| summary["messages"][i]["echo_ok"] != true)
        .collect();
    if !wrong.is_empty() {
        bad.push(format!("echoes differ at {wrong:?}"));
    }
    if !bad.is_empty() {
        return bad;
    }

    // The wire. Server to browser: RSV1 from the threshold up (none without deflate), the
    // repeated message smaller the second time only with the server's context takeover.
    let streams = t.capture.finished(0, STEP);
    let deflate = !t.answer.is_empty();
    let down = wire_messages(&wire_frames(&streams.to_client));
    let up = wire_messages(&wire_frames(&streams.to_server));
    if down.len() != sent.len() || up.len() != sent.len() + 1 {
        bad.push(format!(
            "captured {} messages down, {} up",
            down.len(),
            up.len()
        ));
        return bad;
    }
    for (i, &(_, len, _)) in sent.iter().enumerate() {
        let (_, rsv1, _) = down[i];
        if rsv1 != (deflate && len >= 128) {
            bad.push(format!(
                "message {i} ({len} bytes) to the browser: RSV1 {rsv1}"
            ));
        }
        // Chromium compresses whatever it sends once deflate is agreed.
        let (_, rsv1, _) = up[i];
        if rsv1 != deflate {
            bad.push(format!(
                "message {i} ({len} bytes) from the browser: RSV1 {rsv1}"
            ));
        }
    }
    let plain: usize = sent.iter().map(|s| s.1).sum();
    for (dir, msgs, takeover) in [
        ("to the browser", &down, t.server_takeover),
        ("from the browser", &up, t.client_takeover),
    ] {
        let wire: usize = msgs[..sent.len()].iter().map(|m| m.2).sum();
        if deflate && wire * 10 > plain {
            bad.push(format!("{wire} bytes {dir} for {plain}"));
        }
        if !deflate && wire != plain {
            bad.push(format!("{wire} bytes {dir} for {plain}, without deflate"));
        }
        let (a, b) = (msgs[REPEAT - 1].2, msgs[REPEAT].2);
        let ok = if !deflate || !takeover {
            a == b
        } else {
            b * 2 < a
        };
        if !ok {
            bad.push(format!(
                "the repeated message {dir}: {a} then {b} bytes (context takeover {takeover})"
            ));
        }
    }
    bad
}
