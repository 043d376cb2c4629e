//! Helpers for the loopback server tests: starting a server on a chosen backend, a `Hello`
//! service, and tokio-tungstenite clients. What every suite shares (the raw client, frames built
//! byte by byte, bounded waits, the tokio runner) comes from `ringsock-testkit`, re-exported here.

use std::io;
use std::net::SocketAddr;

use ringsock_engine::http::RequestHead;
use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{
    Accept, ConnId, Engine, EngineHandle, HttpResponse, Limits, Remote, Service, ShardCx, Upgrade,
};
use ringsock_engine::ws::{DataKind, Event};
use tokio::net::TcpStream as TokioTcp;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use ringsock_testkit::frame::{
    frame, header, server_frame, BINARY, CLOSE, CONT, PING, PONG, TEXT,
};
pub use ringsock_testkit::raw::{upgrade_request, HttpAnswer, Raw, IO_TIMEOUT};
pub use ringsock_testkit::{
    fd_limit, pattern, raise_fd_limit, run, text_pattern, wait_until, STEP,
};

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TokioTcp>>;

/// Echo for WebSockets; every plain HTTP request gets `200 hello`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hello;

impl Service for Hello {
    type Session = ();
    type Local = ();
    type Post = ();

    fn local(&self, _: usize, _: &Remote<()>) {}

    fn upgrade(&self, _: &mut (), _: &Upgrade<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }

    fn on_event(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, event: Event) {
        if let Some(open) = cx.conn(id) {
            let _ = match event {
                Event::Text(text) => open.ws.send_shared(DataKind::Text, text.into_bytes()),
                Event::Binary(data) => open.ws.send_shared(DataKind::Binary, data),
                _ => Ok(()),
            };
        }
    }

    fn on_http(&self, _request: &RequestHead) -> HttpResponse {
        HttpResponse::text(200, "hello")
    }
}

/// What a test server differs in.
pub struct Setup {
    pub addr: SocketAddr,
    pub shards: usize,
    pub limits: Limits,
    pub pool: Option<PoolConfig>,
    pub ws_path: Option<&'static str>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            shards: 1,
            limits: Limits::default(),
            pool: None,
            ws_path: None,
        }
    }
}

/// Starts a server on `kind` (never falling back) with unpinned threads.
pub fn start<S: Service>(kind: BackendKind, setup: Setup, service: S) -> EngineHandle<S::Post> {
    try_start(kind, setup, service).unwrap_or_else(|e| panic!("{kind:?} server failed: {e}"))
}

/// As [`start`], returning the error (for binds that may be impossible, like `[::1]`).
pub fn try_start<S: Service>(
    kind: BackendKind,
    setup: Setup,
    service: S,
) -> io::Result<EngineHandle<S::Post>> {
    raise_fd_limit();
    let mut builder = Engine::builder()
        .bind(setup.addr)
        .shards(setup.shards)
        .backend(kind)
        .limits(setup.limits)
        .pin_threads(false);
    if let Some(pool) = setup.pool {
        builder = builder.pool(pool);
    }
    if let Some(path) = setup.ws_path {
        builder = builder.websocket_path(path);
    }
    let server = builder.start(service)?;
    match kind {
        BackendKind::Epoll => assert_eq!(server.backend(), "epoll"),
        BackendKind::IoUring => assert_eq!(server.backend(), "io_uring"),
        BackendKind::Auto => {}
    }
    Ok(server)
}

/// Opens a tokio-tungstenite client to `path` on `addr`, with no size limits of its own (the
/// server's are under test).
pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let url = format!("ws://{addr}{path}");
    let (ws, response) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

/// `/proc/net/tcp`'s code for ESTABLISHED.
pub const TCP_ESTABLISHED: u8 = 0x01;

/// The kernel's state of the TCP socket from `local` to `remote` (`/proc/net/tcp` or `tcp6`), or
/// `None` once there is none: what a test reads to see a server close a connection whose FIN
/// cannot reach the client yet (it waits behind unread data).
pub fn tcp_state(local: SocketAddr, remote: SocketAddr) -> Option<u8> {
    let table = if local.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table).unwrap_or_else(|e| panic!("{table}: {e}"));
    let (local, remote) = (proc_net_addr(local), proc_net_addr(remote));
    text.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let (l, r, st) = (fields.next()?, fields.next()?, fields.next()?);
        (l == local && r == remote).then(|| u8::from_str_radix(st, 16).expect("a state"))
    })
}

/// An address as `/proc/net/tcp` prints it: the address's 32-bit words in hex as the host
/// reads them from network order, a colon, the port in hex.
fn proc_net_addr(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr.ip() {
        std::net::IpAddr::V4(ip) => vec![ip.octets()],
        std::net::IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let hex: String = words
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
    format!("{hex}:{:04X}", addr.port())
}
