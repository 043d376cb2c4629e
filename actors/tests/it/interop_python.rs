//! permessage-deflate against an independent implementation, Python's `websockets` (pinned in
//! `interop/peers/requirements.txt`, installed by `scripts/interop-setup.sh`):
//!
//! - ringsock servers (the actors `Server` with `.deflate(...)`, and the engine's `Echo` with
//!   `ringsock-echo`'s settings) × a websockets client offering every parameter combination;
//! - ringsock's client (`ServerHandle::connect_with` with `ClientOptions::deflate`) × a websockets
//!   server configured per connection, including servers that answer what they should not.
//!
//! Each case asserts the negotiated header (RFC 7692 and the rules of
//! `engine/src/ws/deflate/params.rs`), that messages of 16 B to 1 MiB, text and binary, come back
//! intact, and that compression really happened as agreed: the peer records the RSV1 bit and
//! the wire size of every message, a repeated message shows whether each side kept its
//! context, and one case per direction is checked on the raw TCP bytes.
//!
//! One Python process per test runs all its cases. Window 8: websockets (zlib) cannot compress
//! with it, so 8 is covered only where ringsock compresses and websockets inflates.

use std::net::SocketAddr;
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::interop::*;
use crate::support::*;
use ringsock_actors::{
    Accept, BackendKind, ClientOptions, CloseCode, Closed, Ctx, DataKind, DeflateOptions,
    DialError, Handler, HandshakeError, Message, Server, ServerHandle,
};
use ringsock_engine::server::{Echo as EngineEcho, Engine, EngineHandle};
use ringsock_engine::ws::ServerOptions;
use serde_json::{json, Value};

/// The messages of every case, in order. The 200-byte text is sent twice: without context
/// takeover the second compresses to the same size, with it to a few bytes (200 bytes, so that
/// the first copy is within reach of even the smallest window, whose matches reach 250 bytes).
const MESSAGES: &[(&str, usize)] = &[
    ("text", 16),
    ("text", 200),
    ("text", 200),
    ("text", 1024),
    ("binary", 1024),
    ("text", 100 << 10),
    ("binary", 100 << 10),
    ("text", 1 << 20),
    ("binary", 1 << 20),
];

/// The index of the repeated message's second copy.
const REPEAT: usize = 2;

/// Longest a single case may take (connect, eight echoes up to 1 MiB, close) on a loaded
/// machine.
const CASE: Duration = Duration::from_secs(30);

const SNCT: &str = "server_no_context_takeover";
const CNCT: &str = "client_no_context_takeover";

/// A `Sec-WebSocket-Extensions` value: permessage-deflate with these parameters, in the order
/// ringsock writes them.
fn pmd(params: &[&str]) -> String {
    std::iter::once("permessage-deflate")
        .chain(params.iter().copied())
        .collect::<Vec<_>>()
        .join("; ")
}

fn has(header: &str, param: &str) -> bool {
    header.split(';').any(|p| p.trim() == param)
}

/// Echoes text and binary (the actors layer's echo).
struct Echo;

impl Handler for Echo {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        match message {
            Message::Text(t) => ctx.send(DataKind::Text, t.into_bytes()),
            Message::Binary(b) => ctx.send(DataKind::Binary, b),
        };
    }
}

/// A ringsock server for the Python client.
enum Target {
    Actors(ServerHandle),
    Engine(EngineHandle<()>),
}

impl Target {
    /// The actors server with an echo route at `/echo`, deflate as given (`None`: refused).
    fn actors(kind: BackendKind, deflate: Option<DeflateOptions>) -> Target {
        let mut b = builder(kind, 1).route("/echo", |_| Ok(Accept::new(Echo)));
        if let Some(opts) = deflate {
            b = b.deflate(opts);
        }
        Target::Actors(start(kind, b))
    }

    /// The engine's `Echo` service with `ringsock-echo`'s handshake options.
    fn engine_echo(kind: BackendKind) -> Target {
        raise_fd_limit();
        let handle = Engine::builder()
            .bind("127.0.0.1:0")
            .shards(1)
            .backend(kind)
            .pin_threads(false)
            .handshake(ServerOptions::new().deflate(DeflateOptions::new().context_takeover(true)))
            .start(EngineEcho)
            .expect("the engine echo server starts");
        Target::Engine(handle)
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Target::Actors(r) => r.local_addrs()[0],
            Target::Engine(h) => h.local_addrs()[0],
        }
    }

    fn shutdown(self) {
        match self {
            Target::Actors(r) => {
                r.shutdown(Duration::from_secs(1));
            }
            Target::Engine(h) => {
                h.shutdown(Duration::from_secs(1));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// websockets client × ringsock server
// ------------------------------------------------------------------------------------------

/// One connection of the Python client.
struct ServerCase {
    name: String,
    url: String,
    /// ClientPerMessageDeflateFactory's arguments, or null: no offer.
    offer: Value,
    /// The answer ringsock must give (`None`: no extension).
    expect: Option<String>,
    /// Messages from this size up must arrive compressed.
    threshold: usize,
    /// websockets really compresses (not at level 0), so its context shows in its sizes.
    peer_compresses: bool,
}

/// What the Python client offers.
mod offer {
    use serde_json::{json, Value};

    /// `permessage-deflate` with no parameter at all.
    pub fn bare() -> Value {
        json!({ "client_max_window_bits": null })
    }
    /// websockets' default offer: `permessage-deflate; client_max_window_bits`.
    pub fn default() -> Value {
        json!({})
    }
    pub fn snct() -> Value {
        json!({ "server_no_context_takeover": true })
    }
    pub fn cnct() -> Value {
        json!({ "client_no_context_takeover": true })
    }
    pub fn both() -> Value {
        json!({ "server_no_context_takeover": true, "client_no_context_takeover": true })
    }
    pub fn smwb(bits: u8) -> Value {
        json!({ "server_max_window_bits": bits })
    }
    pub fn cmwb(bits: u8) -> Value {
        json!({ "client_max_window_bits": bits })
    }
}

/// Checks one case's report; returns what is wrong.
fn check_server_case(case: &ServerCase, report: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    if !report["error"].is_null() {
        return vec![format!("failed: {}", report["error"])];
    }
    let header = report["extensions"].as_str();
    if header != case.expect.as_deref() {
        bad.push(format!(
            "answered {header:?}, expected {:?}",
            case.expect.as_deref()
        ));
        return bad;
    }
    let messages = report["messages"].as_array().cloned().unwrap_or_default();
    if messages.len() != MESSAGES.len() {
        bad.push(format!("{} messages reported", messages.len()));
        return bad;
    }
    for (m, &(kind, size)) in messages.iter().zip(MESSAGES) {
        if m["echo_ok"] != true {
            bad.push(format!("{kind} {size}: the echo differs"));
        }
    }
    let Some(header) = header else {
        // No extension: nothing may be compressed, and the client recorded nothing.
        if messages.iter().any(|m| !m["rx"].is_null()) {
            bad.push("frames recorded without an extension".into());
        }
        return bad;
    };
    // websockets' view of the agreement must be the header's.
    let agreed = &report["agreed"];
    let bits = |param: &str| {
        header
            .split(';')
            .find_map(|p| p.trim().strip_prefix(param)?.strip_prefix('='))
            .map(|b| b.parse::<u64>().unwrap())
    };
    let own_bits = bits("client_max_window_bits").or(case.offer["client_max_window_bits"].as_u64());
    let expected_agreed = json!({
        "remote_no_context_takeover": has(header, SNCT),
        "local_no_context_takeover": has(header, CNCT)
            || case.offer["client_no_context_takeover"] == true,
        "remote_max_window_bits": bits("server_max_window_bits").unwrap_or(15),
        "local_max_window_bits": own_bits.unwrap_or(15),
    });
    if *agreed != expected_agreed {
        bad.push(format!(
            "websockets agreed on {agreed}, expected {expected_agreed}"
        ));
    }
    let wire = |m: &Value, dir: &str| (m[dir][0] == true, m[dir][1].as_u64().unwrap_or(0) as usize);
    for (m, &(kind, size)) in messages.iter().zip(MESSAGES) {
        let (rsv1, len) = wire(m, "rx");
        if rsv1 != (size >= case.threshold) {
            bad.push(format!("{kind} {size} from ringsock: RSV1 {rsv1}"));
        }
        if size >= 1024 && len * 10 > size * 6 {
            bad.push(format!(
                "{kind} {size} from ringsock: {len} bytes on the wire"
            ));
        }
        if !wire(m, "tx").0 {
            bad.push(format!("{kind} {size} from websockets: not compressed"));
        }
    }
    // The repeated message: the same size twice without context takeover, a few bytes the
    // second time with it. From ringsock this shows its compressor kept (or dropped) its
    // context as agreed; from websockets, that ringsock's decompressor kept it too (else the
    // second echo would have failed).
    let (first, second) = (&messages[REPEAT - 1], &messages[REPEAT]);
    for (dir, takeover, who) in [
        ("rx", !has(header, SNCT), "ringsock"),
        (
            "tx",
            expected_agreed["local_no_context_takeover"] == false,
            "websockets",
        ),
    ] {
        if dir == "tx" && !case.peer_compresses {
            continue;
        }
        let (a, b) = (wire(first, dir).1, wire(second, dir).1);
        let ok = if takeover { b * 2 < a } else { a == b };
        if !ok {
            bad.push(format!(
                "{who} sent the repeated message as {a} then {b} bytes: context takeover \
                 {takeover} not in effect"
            ));
        }
    }
    bad
}

/// Starts `targets`, runs `cases(addrs)` through one Python client, checks every report, and
/// returns the reports (for further checks) once every case passed.
fn run_python_client(
    targets: Vec<Target>,
    cases: impl FnOnce(&[SocketAddr]) -> Vec<ServerCase>,
) -> Vec<Value> {
    let addrs: Vec<SocketAddr> = targets.iter().map(Target::addr).collect();
    let cases = cases(&addrs);
    let (mut peer, _) = Peer::python("ws_client.py");
    let input = json!({
        "cases": cases.iter().map(|c| json!({
            "name": c.name, "url": c.url, "deflate": c.offer, "messages": MESSAGES,
        })).collect::<Vec<_>>()
    });
    peer.write(&input.to_string());
    peer.close_stdin();
    let mut failures = Vec::new();
    let mut reports = Vec::new();
    for case in &cases {
        let report = peer.next_json(CASE, &case.name);
        assert_eq!(report["name"], case.name.as_str(), "reports out of order");
        for problem in check_server_case(case, &report) {
            failures.push(format!("{}: {problem}", case.name));
        }
        reports.push(report);
    }
    drop(peer);
    for t in targets {
        t.shutdown();
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    reports
}

fn case(
    name: impl Into<String>,
    addr: SocketAddr,
    offer: Value,
    expect: Option<String>,
) -> ServerCase {
    ServerCase {
        name: name.into(),
        url: format!("ws://{addr}/echo"),
        offer,
        expect,
        threshold: ringsock_engine::ws::deflate::DEFAULT_THRESHOLD,
        peer_compresses: true,
    }
}

/// Every window a client may offer, one case each: server_max_window_bits 8-15, answered with
/// itself, and client_max_window_bits 9-15, which a server with no limit of its own echoes when
/// it is below 15 (15, the default, needs no answer). `answer` makes the whole expected answer
/// from those parameters.
fn window_cases(addr: SocketAddr, answer: impl Fn(&[&str]) -> Option<String>) -> Vec<ServerCase> {
    let mut cases = Vec::new();
    for bits in 8..=15 {
        let param = format!("server_max_window_bits={bits}");
        cases.push(case(
            param.clone(),
            addr,
            offer::smwb(bits),
            answer(&[&param]),
        ));
    }
    for bits in 9..=15 {
        let param = format!("client_max_window_bits={bits}");
        let expect = if bits < 15 {
            answer(&[&param])
        } else {
            answer(&[])
        };
        cases.push(case(param, addr, offer::cmwb(bits), expect));
    }
    cases
}

/// The defaults (no context takeover either way, imposed whatever is offered): every offer,
/// every window; one connection through a capture relay, whose bytes must show compressed
/// frames both ways and match the sizes websockets reported.
#[test]
fn websockets_client_against_the_default_server() {
    let started = Instant::now();
    let capture_target = Target::actors(BackendKind::Epoll, Some(DeflateOptions::new()));
    let capture = Capture::start(capture_target.addr(), 1);
    let capture_url = format!("ws://{}/echo", capture.addr());
    let reports = run_python_client(vec![capture_target], |addrs| {
        let both = |extra: &[&str]| Some(pmd(&[&[SNCT, CNCT], extra].concat()));
        let a = addrs[0];
        let mut cases = vec![
            ServerCase {
                url: capture_url,
                ..case("captured", a, offer::default(), both(&[]))
            },
            case("bare", a, offer::bare(), both(&[])),
            case("client_max_window_bits", a, offer::default(), both(&[])),
            case(SNCT, a, offer::snct(), both(&[])),
            case(CNCT, a, offer::cnct(), both(&[])),
            case("both no_context_takeover", a, offer::both(), both(&[])),
        ];
        cases.extend(window_cases(a, both));
        cases
    });
    // The wire, as captured: the 101 names the extension, the server's frames carry RSV1 from
    // the threshold up and are the sizes websockets reported, and websockets' frames (it
    // compresses everything) all carry RSV1.
    let streams = capture.finished(0, STEP);
    let head = String::from_utf8_lossy(&streams.to_client);
    assert!(
        head.contains(&format!("Sec-WebSocket-Extensions: {}", pmd(&[SNCT, CNCT]))),
        "{}",
        &head[..head.find("\r\n\r\n").unwrap()]
    );
    let from_server = wire_messages(&wire_frames(&streams.to_client));
    let from_client = wire_messages(&wire_frames(&streams.to_server));
    assert_eq!(from_server.len(), MESSAGES.len(), "{from_server:?}");
    assert_eq!(from_client.len(), MESSAGES.len(), "{from_client:?}");
    let reported = reports[0]["messages"].as_array().unwrap();
    let (mut plain, mut sent) = (0, 0);
    for (i, &(kind, size)) in MESSAGES.iter().enumerate() {
        let (op, rsv1, len) = from_server[i];
        assert_eq!(op, if kind == "text" { 1 } else { 2 });
        assert_eq!(rsv1, size >= 128, "{kind} {size}: RSV1 on the wire");
        assert_eq!(len as u64, reported[i]["rx"][1].as_u64().unwrap());
        assert!(
            from_client[i].1,
            "{kind} {size} from websockets: RSV1 on the wire"
        );
        plain += size;
        sent += len;
    }
    assert!(
        sent * 3 < plain,
        "the server sent {sent} bytes of payload for {plain}"
    );
    eprintln!("took {:?}", started.elapsed());
}

/// Context takeover granted (the server's option) and refused by the offer, windows from 8 up,
/// zlib's extremes on the websockets side, a threshold of 0, and `ringsock-echo`'s settings on
/// the engine's echo service.
#[test]
fn websockets_client_against_takeover_servers() {
    let started = Instant::now();
    let targets = vec![
        Target::actors(
            BackendKind::IoUring,
            Some(DeflateOptions::new().context_takeover(true)),
        ),
        Target::actors(
            BackendKind::Epoll,
            Some(
                DeflateOptions::new()
                    .context_takeover(true)
                    .threshold(0)
                    .level(1),
            ),
        ),
        Target::engine_echo(BackendKind::Epoll),
    ];
    run_python_client(targets, |addrs| {
        let (a, zero, engine) = (addrs[0], addrs[1], addrs[2]);
        let some = |params: &[&str]| Some(pmd(params));
        let mut cases = vec![
            case("bare", a, offer::bare(), some(&[])),
            case("client_max_window_bits", a, offer::default(), some(&[])),
            case(SNCT, a, offer::snct(), some(&[SNCT])),
            case(CNCT, a, offer::cnct(), some(&[CNCT])),
            case(
                "both no_context_takeover",
                a,
                offer::both(),
                some(&[SNCT, CNCT]),
            ),
            ServerCase {
                peer_compresses: false,
                ..case(
                    "websockets at level 0 (stored blocks)",
                    a,
                    json!({ "compress_settings": { "level": 0 } }),
                    some(&[]),
                )
            },
            case(
                "websockets at level 9, memLevel 9",
                a,
                json!({ "compress_settings": { "level": 9, "memLevel": 9 } }),
                some(&[]),
            ),
            ServerCase {
                threshold: 0,
                ..case("threshold 0, level 1", zero, offer::default(), some(&[]))
            },
            case(
                "ringsock-echo settings",
                engine,
                offer::default(),
                some(&[]),
            ),
            case(
                "ringsock-echo settings, every parameter",
                engine,
                json!({
                    "server_no_context_takeover": true, "client_no_context_takeover": true,
                    "server_max_window_bits": 11, "client_max_window_bits": 11,
                }),
                some(&[
                    SNCT,
                    CNCT,
                    "server_max_window_bits=11",
                    "client_max_window_bits=11",
                ]),
            ),
        ];
        cases.extend(window_cases(a, some));
        cases
    });
    eprintln!("took {:?}", started.elapsed());
}

/// The server's own window limits (named only when the client asked, never above what it
/// asked), the window it requests of clients, a window of 8 (zlib runs it as 9, whose
/// matches never reach past 250 bytes: websockets inflates with a 256-byte window), and a
/// server without deflate.
#[test]
fn websockets_client_against_window_limits() {
    let started = Instant::now();
    let targets = vec![
        Target::actors(
            BackendKind::IoUring,
            Some(
                DeflateOptions::new()
                    .context_takeover(true)
                    .max_window_bits(10),
            ),
        ),
        Target::actors(
            BackendKind::Epoll,
            Some(DeflateOptions::new().request_max_window_bits(10)),
        ),
        Target::actors(
            BackendKind::IoUring,
            Some(
                DeflateOptions::new()
                    .context_takeover(true)
                    .max_window_bits(8),
            ),
        ),
        Target::actors(BackendKind::Epoll, None),
    ];
    run_python_client(targets, |addrs| {
        let (own10, asks10, own8, off) = (addrs[0], addrs[1], addrs[2], addrs[3]);
        let some = |params: &[&str]| Some(pmd(params));
        let both = |extra: &[&str]| Some(pmd(&[&[SNCT, CNCT], extra].concat()));
        vec![
            case("max 10, nothing asked", own10, offer::default(), some(&[])),
            case(
                "max 10, 9 asked",
                own10,
                offer::smwb(9),
                some(&["server_max_window_bits=9"]),
            ),
            case(
                "max 10, 12 asked",
                own10,
                offer::smwb(12),
                some(&["server_max_window_bits=10"]),
            ),
            case(
                "max 10, 15 asked",
                own10,
                offer::smwb(15),
                some(&["server_max_window_bits=10"]),
            ),
            case(
                "asks 10 of a client offering any",
                asks10,
                offer::default(),
                both(&["client_max_window_bits=10"]),
            ),
            case(
                "asks 10 of a client offering 12",
                asks10,
                offer::cmwb(12),
                both(&["client_max_window_bits=10"]),
            ),
            case(
                "asks 10 of a client offering 9",
                asks10,
                offer::cmwb(9),
                both(&["client_max_window_bits=9"]),
            ),
            case(
                "asks 10 of a client that cannot be asked",
                asks10,
                offer::bare(),
                both(&[]),
            ),
            case(
                "max 8, 8 asked",
                own8,
                offer::smwb(8),
                some(&["server_max_window_bits=8"]),
            ),
            case(
                "max 8, 9 asked",
                own8,
                offer::smwb(9),
                some(&["server_max_window_bits=8"]),
            ),
            case("max 8, nothing asked", own8, offer::default(), some(&[])),
            case("no deflate on the server", off, offer::default(), None),
            case("no offer", off, Value::Null, None),
        ]
    });
    eprintln!("took {:?}", started.elapsed());
}

// ------------------------------------------------------------------------------------------
// ringsock client × websockets server
// ------------------------------------------------------------------------------------------

/// What one client connection came to.
#[derive(Debug)]
enum Outcome {
    /// Every echo compared, and the server's statistics.
    Done {
        header: Option<String>,
        wrong_echoes: Vec<usize>,
        stats: Value,
    },
    Failed(DialError),
    /// Closed before the end: code and reason (read through `Debug` in failure messages).
    #[allow(dead_code)]
    Closed(u16, String),
}

/// Sends the messages one at a time, compares each echo, then asks for the server's stats.
struct Probe {
    messages: Vec<(DataKind, Bytes)>,
    next: usize,
    header: Option<String>,
    wrong: Vec<usize>,
    report: mpsc::Sender<Outcome>,
    done: bool,
}

impl Probe {
    fn send_next(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.messages.get(self.next) {
            Some((kind, payload)) => {
                ctx.send(*kind, payload.clone());
            }
            None => {
                ctx.send_text("stats?");
            }
        }
    }
}

impl Handler for Probe {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.header = ctx
            .response()
            .and_then(|r| r.headers().get("sec-websocket-extensions"))
            .map(str::to_owned);
        self.send_next(ctx);
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if self.next == self.messages.len() {
            let stats = serde_json::from_slice(message.as_bytes()).unwrap_or(Value::Null);
            self.done = true;
            let _ = self.report.send(Outcome::Done {
                header: self.header.take(),
                wrong_echoes: std::mem::take(&mut self.wrong),
                stats,
            });
            let _ = ctx.close(CloseCode::NORMAL, "done");
            return;
        }
        let (kind, sent) = &self.messages[self.next];
        let same_kind = matches!(
            (&message, kind),
            (Message::Text(_), DataKind::Text) | (Message::Binary(_), DataKind::Binary)
        );
        if !same_kind || message.as_bytes() != &sent[..] {
            self.wrong.push(self.next);
        }
        self.next += 1;
        self.send_next(ctx);
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        if !self.done {
            let _ = self
                .report
                .send(Outcome::Closed(closed.code.0, closed.reason.to_string()));
        }
    }
    fn on_connect_failed(&mut self, error: DialError) {
        let _ = self.report.send(Outcome::Failed(error));
    }
}

/// The client's messages, made once ([`Bytes`] clones share them).
fn messages() -> Vec<(DataKind, Bytes)> {
    static MADE: OnceLock<Vec<(DataKind, Bytes)>> = OnceLock::new();
    MADE.get_or_init(make_messages).clone()
}

fn make_messages() -> Vec<(DataKind, Bytes)> {
    MESSAGES
        .iter()
        .enumerate()
        .map(|(i, &(kind, size))| {
            // The repeat is the same message again.
            let seed = if i == REPEAT { i as u64 - 1 } else { i as u64 };
            match kind {
                "text" => (DataKind::Text, Bytes::from(text_message(size, seed))),
                _ => (DataKind::Binary, Bytes::from(binary_message(size, seed))),
            }
        })
        .collect()
}

/// One connection of ringsock's client to the Python server.
struct ClientCase {
    name: String,
    deflate: Option<DeflateOptions>,
    /// The Python server's settings for this connection (see `ws_server.py`).
    query: String,
    /// The answer the client must accept, or (part of) the reason it must refuse it.
    expect: Result<Option<String>, &'static str>,
    /// websockets really compresses (not at level 0), so its context shows in its sizes.
    peer_compresses: bool,
}

fn client_case(
    name: impl Into<String>,
    deflate: Option<DeflateOptions>,
    query: &str,
    expect: Result<Option<String>, &'static str>,
) -> ClientCase {
    ClientCase {
        name: name.into(),
        deflate,
        query: query.to_owned(),
        expect,
        peer_compresses: !query.contains("level=0"),
    }
}

/// A query that makes the Python server answer `header` instead of what it negotiated.
fn respond(header: &str) -> String {
    format!(
        "respond={}",
        url::form_urlencoded::byte_serialize(header.as_bytes()).collect::<String>()
    )
}

/// Whether these options let this side keep its compression context (`DeflateOptions` has no
/// getters: options equal to themselves with `no_context_takeover(false)` had it off).
fn keeps_context(options: &DeflateOptions) -> bool {
    *options == options.clone().no_context_takeover(false)
}

fn takeover() -> DeflateOptions {
    DeflateOptions::new().context_takeover(true)
}

/// Runs one client case against the server at `addr`; returns its outcome within [`CASE`].
fn dial(client: &ServerHandle, addr: SocketAddr, case: &ClientCase) -> Outcome {
    let mut options = ClientOptions::new();
    if let Some(opts) = &case.deflate {
        options = options.deflate(opts.clone());
    }
    let (tx, rx) = mpsc::channel();
    let probe = Probe {
        messages: messages(),
        next: 0,
        header: None,
        wrong: Vec::new(),
        report: tx,
        done: false,
    };
    client
        .connect_with(
            &format!("ws://{addr}/?{}", case.query),
            &options,
            &ringsock_actors::DialOptions::new(),
            probe,
        )
        .expect("the dial starts");
    recv_within(&rx, CASE, &case.name)
}

/// Checks a case that must succeed; returns what is wrong.
fn check_client_case(case: &ClientCase, outcome: Outcome) -> Vec<String> {
    let Ok(expect) = &case.expect else {
        unreachable!()
    };
    let (header, wrong, stats) = match outcome {
        Outcome::Done {
            header,
            wrong_echoes,
            stats,
        } => (header, wrong_echoes, stats),
        other => return vec![format!("did not finish: {other:?}")],
    };
    let mut bad = Vec::new();
    if header != *expect {
        bad.push(format!("answered {header:?}, expected {expect:?}"));
        return bad;
    }
    if !wrong.is_empty() {
        bad.push(format!("echoes differ at {wrong:?}"));
    }
    let (rx, tx) = (
        stats["rx"].as_array().cloned().unwrap_or_default(),
        stats["tx"].as_array().cloned().unwrap_or_default(),
    );
    let Some(header) = header else {
        if !rx.is_empty() || !tx.is_empty() {
            bad.push(format!("frames recorded without an extension: {stats}"));
        }
        return bad;
    };
    if rx.len() != MESSAGES.len() || tx.len() != MESSAGES.len() {
        bad.push(format!("the server recorded {stats}"));
        return bad;
    }
    let wire = |v: &Value| (v[0] == true, v[1].as_u64().unwrap_or(0) as usize);
    for (i, &(kind, size)) in MESSAGES.iter().enumerate() {
        let (rsv1, len) = wire(&rx[i]);
        if rsv1 != (size >= 128) {
            bad.push(format!("{kind} {size} from ringsock: RSV1 {rsv1}"));
        }
        if size >= 1024 && len * 10 > size * 6 {
            bad.push(format!(
                "{kind} {size} from ringsock: {len} bytes on the wire"
            ));
        }
        if !wire(&tx[i]).0 {
            bad.push(format!("{kind} {size} from websockets: not compressed"));
        }
    }
    // ringsock compresses with context takeover only when its options allow it and the answer
    // does not forbid it; websockets, unless the answer says server_no_context_takeover.
    let own_takeover = !has(&header, CNCT) && case.deflate.as_ref().is_some_and(keeps_context);
    for (list, takeover, who) in [
        (&rx, own_takeover, "ringsock"),
        (&tx, !has(&header, SNCT), "websockets"),
    ] {
        if who == "websockets" && !case.peer_compresses {
            continue;
        }
        let (a, b) = (wire(&list[REPEAT - 1]).1, wire(&list[REPEAT]).1);
        let ok = if takeover { b * 2 < a } else { a == b };
        if !ok {
            bad.push(format!(
                "{who} sent the repeated message as {a} then {b} bytes: context takeover \
                 {takeover} not in effect"
            ));
        }
    }
    bad
}

/// A client-only runtime.
fn client_runtime(kind: BackendKind) -> ServerHandle {
    raise_fd_limit();
    Server::builder()
        .shards(1)
        .backend(kind)
        .pin_threads(false)
        .start()
        .expect("a client runtime")
}

/// ringsock's client against websockets servers of every setting: what each answers, that the
/// client accepts it, compresses as it allows, and inflates what comes back; one connection
/// through a capture relay, whose bytes must show compressed frames both ways.
#[test]
fn ringsock_client_against_websockets_servers() {
    let started = Instant::now();
    let (server, hello) = Peer::python("ws_server.py");
    let addr: SocketAddr = format!("127.0.0.1:{}", hello["port"]).parse().unwrap();
    let some = |params: &[&str]| Ok(Some(pmd(params)));
    let mut cases = vec![
        client_case(
            "defaults",
            Some(DeflateOptions::new()),
            "",
            some(&[SNCT, CNCT]),
        ),
        client_case("takeover", Some(takeover()), "", some(&[])),
        client_case(
            "takeover, the server imposes server_no_context_takeover",
            Some(takeover()),
            "snct=1",
            some(&[SNCT]),
        ),
        client_case(
            "takeover, the server imposes client_no_context_takeover",
            Some(takeover()),
            "cnct=1",
            some(&[CNCT]),
        ),
        client_case(
            "takeover, the server imposes both",
            Some(takeover()),
            "snct=1&cnct=1",
            some(&[SNCT, CNCT]),
        ),
        client_case(
            "asks 12, the server's own limit is 10",
            Some(takeover().request_max_window_bits(12)),
            "smwb=10",
            some(&["server_max_window_bits=10"]),
        ),
        client_case(
            "asks 10, the server's own limit is 12",
            Some(takeover().request_max_window_bits(10)),
            "smwb=12",
            some(&["server_max_window_bits=10"]),
        ),
        client_case(
            "every parameter",
            Some(
                DeflateOptions::new()
                    .request_max_window_bits(11)
                    .max_window_bits(12),
            ),
            "cmwb=10",
            some(&[
                SNCT,
                CNCT,
                "server_max_window_bits=11",
                "client_max_window_bits=10",
            ]),
        ),
        client_case(
            "websockets at level 0 (stored blocks)",
            Some(takeover()),
            "level=0",
            some(&[]),
        ),
        client_case(
            "websockets at level 9, memLevel 9",
            Some(takeover()),
            "level=9&mem=9",
            some(&[]),
        ),
        client_case(
            "the server omits client_no_context_takeover (the client keeps it)",
            Some(DeflateOptions::new()),
            &respond(&pmd(&[SNCT])),
            some(&[SNCT]),
        ),
        client_case(
            "the server declines",
            Some(takeover()),
            "deflate=0",
            Ok(None),
        ),
        client_case("no offer", None, "", Ok(None)),
    ];
    for bits in 9..=15 {
        let answer = format!("server_max_window_bits={bits}");
        cases.push(client_case(
            format!("the server limits itself to {bits}"),
            Some(takeover()),
            &format!("smwb={bits}"),
            some(&[&answer]),
        ));
        cases.push(client_case(
            format!("asks server_max_window_bits={bits}"),
            Some(takeover().request_max_window_bits(bits)),
            "",
            some(&[&answer]),
        ));
    }
    for bits in 8..=15 {
        // websockets inflates with any window, 8 included, and ringsock compresses with 8 as 9,
        // whose matches stay within 250 bytes.
        let answer = format!("client_max_window_bits={bits}");
        cases.push(client_case(
            format!("the server limits the client to {bits}"),
            Some(takeover()),
            &format!("cmwb={bits}"),
            some(&[&answer]),
        ));
        let offered = if bits < 15 {
            some(&[&answer])
        } else {
            some(&[])
        };
        cases.push(client_case(
            format!("offers client_max_window_bits={bits}"),
            Some(takeover().max_window_bits(bits)),
            "",
            offered,
        ));
    }
    let client = client_runtime(BackendKind::Epoll);
    let mut failures = Vec::new();
    for case in &cases {
        for problem in check_client_case(case, dial(&client, addr, case)) {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    // One connection through a capture relay: ringsock's frames carry RSV1 from the threshold
    // up, match the sizes websockets recorded, and are much smaller than the messages.
    let capture = Capture::start(addr, 1);
    let case = client_case("captured", Some(takeover()), "", some(&[]));
    let outcome = dial(&client, capture.addr(), &case);
    let Outcome::Done { ref stats, .. } = outcome else {
        panic!("captured: {outcome:?}")
    };
    let rx = stats["rx"].clone();
    failures.extend(check_client_case(&case, outcome));
    let streams = capture.finished(0, STEP);
    let from_client = wire_messages(&wire_frames(&streams.to_server));
    // The last one is the stats request.
    assert_eq!(from_client.len(), MESSAGES.len() + 1, "{from_client:?}");
    let (mut plain, mut sent) = (0, 0);
    for (i, &(kind, size)) in MESSAGES.iter().enumerate() {
        let (_, rsv1, len) = from_client[i];
        assert_eq!(rsv1, size >= 128, "{kind} {size}: RSV1 on the wire");
        assert_eq!(len as u64, rx[i][1].as_u64().unwrap(), "{kind} {size}");
        plain += size;
        sent += len;
    }
    assert!(sent * 3 < plain, "the client sent {sent} bytes for {plain}");
    let from_server = wire_messages(&wire_frames(&streams.to_client));
    assert!(
        from_server.iter().all(|&(_, rsv1, _)| rsv1),
        "{from_server:?}"
    );
    client.shutdown(Duration::from_secs(1));
    drop(server);
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("took {:?}", started.elapsed());
}

/// Answers ringsock's client must refuse: a request ignored (server_no_context_takeover,
/// server_max_window_bits), a window above the one asked or offered or out of range, a bare
/// client_max_window_bits, an unknown parameter, an extension not offered, deflate twice.
/// (websockets itself always grants what is asked: these answers are written over its own.)
#[test]
fn ringsock_client_refuses_answers_it_did_not_ask_for() {
    let started = Instant::now();
    let (server, hello) = Peer::python("ws_server.py");
    let addr: SocketAddr = format!("127.0.0.1:{}", hello["port"]).parse().unwrap();
    let refuse = |name: &str, deflate: Option<DeflateOptions>, header: &str, why| {
        client_case(name, deflate, &respond(header), Err(why))
    };
    let cases = [
        refuse(
            "server_no_context_takeover ignored",
            Some(DeflateOptions::new()),
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate: the server ignored the request for server_no_context_takeover",
        ),
        refuse(
            "server_max_window_bits ignored",
            Some(takeover().request_max_window_bits(10)),
            "permessage-deflate",
            "permessage-deflate: the server ignored the request for server_max_window_bits=10",
        ),
        refuse(
            "server_max_window_bits above the one asked",
            Some(takeover().request_max_window_bits(10)),
            "permessage-deflate; server_max_window_bits=12",
            "permessage-deflate: server_max_window_bits=12 is above the 10 asked for",
        ),
        refuse(
            "server_max_window_bits out of range",
            Some(takeover()),
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate: server_max_window_bits=7 is not a window size",
        ),
        refuse(
            "client_max_window_bits above the one offered",
            Some(takeover().max_window_bits(10)),
            "permessage-deflate; client_max_window_bits=12",
            "permessage-deflate: client_max_window_bits=12 is above the 10 offered",
        ),
        refuse(
            "bare client_max_window_bits",
            Some(takeover()),
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate: client_max_window_bits in a response needs a value",
        ),
        refuse(
            "an unknown parameter",
            Some(takeover()),
            "permessage-deflate; foo=1",
            "permessage-deflate: unknown parameter foo",
        ),
        refuse(
            "a parameter twice",
            Some(DeflateOptions::new()),
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate: server_no_context_takeover appears twice",
        ),
        refuse(
            "an extension not offered",
            Some(takeover()),
            "x-webkit-deflate-frame",
            "Sec-WebSocket-Extensions header has an extension that was not offered: \
             x-webkit-deflate-frame",
        ),
        refuse(
            "deflate when nothing was offered",
            None,
            "permessage-deflate",
            "Sec-WebSocket-Extensions header has an extension that was not offered: \
             permessage-deflate",
        ),
        refuse(
            "deflate twice",
            Some(takeover()),
            "permessage-deflate, permessage-deflate",
            "Sec-WebSocket-Extensions header names permessage-deflate twice",
        ),
    ];
    let client = client_runtime(BackendKind::IoUring);
    let mut failures = Vec::new();
    for case in &cases {
        let Err(why) = case.expect else {
            unreachable!()
        };
        match dial(&client, addr, case) {
            Outcome::Failed(DialError::Handshake(e @ HandshakeError::Extension { .. })) => {
                let text = e.to_string();
                if !text.contains(why) {
                    failures.push(format!("{}: refused with {text:?}", case.name));
                }
                // The answer it refused comes with the error.
                if e.response().map(|r| r.status()) != Some(101) {
                    failures.push(format!("{}: no 101 response in the error", case.name));
                }
            }
            other => failures.push(format!("{}: {other:?}", case.name)),
        }
    }
    client.shutdown(Duration::from_secs(1));
    drop(server);
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("took {:?}", started.elapsed());
}
