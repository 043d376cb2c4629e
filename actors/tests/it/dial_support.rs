//! Helpers for the outgoing-connection tests over TLS and proxies: a client handler that reports
//! what it sees, a test PKI made with rcgen at run time, a `wss://` echo server
//! (tokio-tungstenite over tokio-rustls) for one connection or a pool's, and an HTTP CONNECT
//! proxy written here.
//!
//! Every wait is bounded by [`STEP`]; the servers' threads end on their own.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use ringsock_actors::{
    BackendKind, CloseCode, Closed, Ctx, DialError, Handler, Message, Server, ServerHandle,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::support::{raise_fd_limit, recv_within, run, STEP};

// ------------------------------------------------------------------------------------------
// The client side
// ------------------------------------------------------------------------------------------

/// What a client handler saw.
#[derive(Debug)]
pub enum Seen {
    Open(u16),
    Text(String),
    Closed(u16),
    Failed(DialError),
}

/// Sends its messages once open, reports what comes back, closes after as many replies.
pub struct Client {
    pub send: Vec<String>,
    pub expect: usize,
    pub report: mpsc::Sender<Seen>,
}

impl Handler for Client {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let status = ctx.response().map_or(0, |r| r.status());
        let _ = self.report.send(Seen::Open(status));
        for text in &self.send {
            ctx.send_text(text);
        }
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let _ = self.report.send(Seen::Text(
            message.as_text().unwrap_or("<binary>").to_owned(),
        ));
        self.expect -= 1;
        if self.expect == 0 {
            ctx.close(CloseCode::NORMAL, "done").unwrap();
        }
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        let _ = self.report.send(Seen::Closed(closed.code.0));
    }
    fn on_connect_failed(&mut self, error: DialError) {
        let _ = self.report.send(Seen::Failed(error));
    }
}

/// A client-only runtime: shards with no listener.
pub fn client_runtime(kind: BackendKind) -> ServerHandle {
    raise_fd_limit();
    Server::builder()
        .shards(2)
        .backend(kind)
        .pin_threads(false)
        .start()
        .expect("a client runtime")
}

/// One line per event (long texts by their length), for comparing a whole exchange at once.
pub fn summary(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| match s {
            Seen::Open(status) => format!("open {status}"),
            Seen::Text(t) if t.len() > 64 => format!("text of {} bytes", t.len()),
            Seen::Text(t) => format!("text {t}"),
            Seen::Closed(code) => format!("closed {code}"),
            Seen::Failed(e) => format!("failed {e}"),
        })
        .collect()
}

/// The events of one client, up to its close or failure.
pub fn events(rx: &mpsc::Receiver<Seen>) -> Vec<Seen> {
    let mut seen = Vec::new();
    loop {
        let s = recv_within(rx, STEP, "the client's next event");
        let done = matches!(s, Seen::Closed(_) | Seen::Failed(_));
        seen.push(s);
        if done {
            return seen;
        }
    }
}

/// Connects with `options` (TLS, proxy, timeouts), sends `send`, expects as many echoes;
/// returns what the client saw.
pub fn exchange(
    client: &ServerHandle,
    url: &str,
    options: &ringsock_actors::DialOptions,
    send: &[&str],
) -> Vec<Seen> {
    let (tx, rx) = mpsc::channel();
    client
        .connect_with(
            url,
            &ringsock_actors::ClientOptions::new(),
            options,
            Client {
                send: send.iter().map(|s| s.to_string()).collect(),
                expect: send.len().max(1),
                report: tx,
            },
        )
        .unwrap();
    events(&rx)
}

/// What a successful echo of `["one", "two"]` looks like.
pub const ECHOED: [&str; 4] = ["open 101", "text one", "text two", "closed 1000"];

// ------------------------------------------------------------------------------------------
// Certificates
// ------------------------------------------------------------------------------------------

/// A test CA and certificates it signed: one for servers (`localhost`, `127.0.0.1` and any
/// extra names) and one for a client.
pub struct Pki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new(server_names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ringsock test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let names: Vec<String> = server_names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params.signed_by(&client_key, &issuer).unwrap();

        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// The usual one: a server certificate for `localhost` and `127.0.0.1`.
    pub fn localhost() -> Pki {
        Pki::new(&["localhost", "127.0.0.1"])
    }

    /// A server configuration with this PKI's server certificate; with `client_auth`, clients
    /// must present a certificate the CA signed.
    pub fn server_config(&self, client_auth: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::try_from(self.server_key.clone()).unwrap();
        Arc::new(
            builder
                .with_single_cert(self.server_chain.clone(), key)
                .unwrap(),
        )
    }

    /// Client TLS settings trusting this PKI's CA.
    pub fn trusting(&self) -> ringsock_actors::TlsConfig {
        ringsock_actors::TlsOptions::new()
            .ca_pem(self.ca_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }
}

// ------------------------------------------------------------------------------------------
// A wss:// echo server
// ------------------------------------------------------------------------------------------

/// What the `wss://` server saw of its one connection.
#[derive(Debug)]
pub struct ServerSaw {
    /// The SNI the client sent (none for an IP address).
    pub sni: Option<String>,
    /// How the TLS handshake and the echo went.
    pub result: Result<(), String>,
}

/// A tokio-tungstenite echo server over tokio-rustls on a loopback port, for one connection;
/// its report arrives on the receiver.
pub fn wss_echo_server(config: Arc<ServerConfig>) -> (SocketAddr, mpsc::Receiver<ServerSaw>) {
    wss_echo_server_for(config, 1)
}

/// As [`wss_echo_server`], for `connections` connections served at once (a pool's); one report
/// per connection, in the order they end.
pub fn wss_echo_server_for(
    config: Arc<ServerConfig>,
    connections: usize,
) -> (SocketAddr, mpsc::Receiver<ServerSaw>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        run(STEP * 3, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut served = Vec::new();
            for _ in 0..connections {
                let Ok(Ok((tcp, _))) = tokio::time::timeout(STEP, listener.accept()).await else {
                    break;
                };
                served.push(tokio::spawn(echo_over_tls(tcp, config.clone(), tx.clone())));
            }
            for connection in served {
                let _ = connection.await;
            }
        })
    });
    (addr, rx)
}

/// Serves one `wss://` connection: TLS, the WebSocket handshake, echoes until the client
/// closes; then reports what it saw.
async fn echo_over_tls(
    tcp: tokio::net::TcpStream,
    config: Arc<ServerConfig>,
    report: mpsc::Sender<ServerSaw>,
) {
    let accept = TlsAcceptor::from(config).accept(tcp).into_fallible();
    let tls = match tokio::time::timeout(STEP, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((e, mut tcp))) => {
            // Keep the socket until the client closes it, so the alert is read before any
            // reset.
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut sink)).await;
            let _ = report.send(ServerSaw {
                sni: None,
                result: Err(format!("TLS: {e}")),
            });
            return;
        }
        Err(_) => return,
    };
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let result = async {
        let mut ws = tokio_tungstenite::accept_async(tls)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| e.to_string())?;
            if msg.is_text() || msg.is_binary() {
                ws.send(msg).await.map_err(|e| e.to_string())?;
            }
        }
        // After the close handshake the client ends TLS cleanly: tokio-rustls reports an end
        // without close_notify as an error.
        let mut rest = Vec::new();
        ws.get_mut()
            .read_to_end(&mut rest)
            .await
            .map_err(|e| format!("the TLS stream did not end cleanly: {e}"))?;
        Ok(())
    };
    let result = tokio::time::timeout(STEP, result)
        .await
        .unwrap_or_else(|_| Err("the echo did not end".into()));
    let _ = report.send(ServerSaw { sni, result });
}

// ------------------------------------------------------------------------------------------
// An HTTP CONNECT proxy
// ------------------------------------------------------------------------------------------

/// How the test proxy behaves.
#[derive(Clone, Default)]
pub struct ProxyRules {
    /// The `Proxy-Authorization` value it insists on (407 otherwise).
    pub auth: Option<String>,
    /// A header line it insists on (403 otherwise), e.g. `X-Tenant: blue`.
    pub require: Option<String>,
    /// TLS toward the client (an `https://` proxy).
    pub tls: Option<Arc<ServerConfig>>,
}

/// A running test proxy: its address and the CONNECT heads it received.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub heads: mpsc::Receiver<String>,
}

impl TestProxy {
    /// The next CONNECT head the proxy received.
    pub fn head(&self) -> String {
        recv_within(&self.heads, STEP, "the proxy's CONNECT head")
    }
}

/// Starts a proxy on a loopback port for `connections` tunnels. It reads the CONNECT head,
/// applies `rules`, then connects to the target (`localhost` is 127.0.0.1), answers 200 and
/// splices bytes both ways.
pub fn start_proxy(rules: ProxyRules, connections: usize) -> TestProxy {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (tx, heads) = mpsc::channel();
    std::thread::spawn(move || {
        run(STEP * 3, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut tunnels = Vec::new();
            for _ in 0..connections {
                let Ok(Ok((tcp, _))) = tokio::time::timeout(STEP, listener.accept()).await else {
                    break;
                };
                let (rules, tx) = (rules.clone(), tx.clone());
                tunnels.push(tokio::spawn(async move {
                    match rules.tls.clone() {
                        None => serve(tcp, &rules, &tx).await,
                        Some(config) => {
                            if let Ok(tls) = TlsAcceptor::from(config).accept(tcp).await {
                                serve(tls, &rules, &tx).await;
                            }
                        }
                    }
                }));
            }
            for tunnel in tunnels {
                let _ = tokio::time::timeout(STEP * 2, tunnel).await;
            }
        })
    });
    TestProxy { addr, heads }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    rules: &ProxyRules,
    heads: &mpsc::Sender<String>,
) {
    // Byte by byte, so nothing of the tunnel is read as part of the head.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(STEP, client.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => return,
        }
        assert!(head.len() < 8192, "the CONNECT head never ended");
    }
    let head = String::from_utf8(head).unwrap();
    let _ = heads.send(head.clone());
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let refuse = match (&rules.auth, &rules.require) {
        (Some(auth), _) if header("proxy-authorization").as_ref() != Some(auth) => Some(
            "407 Proxy Authentication Required\r\n\
             Proxy-Authenticate: Basic realm=\"ringsock-test\"",
        ),
        (_, Some(line)) if !head.contains(&format!("\r\n{line}\r\n")) => Some("403 Forbidden"),
        _ => None,
    };
    if let Some(status) = refuse {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = client.write_all(answer.as_bytes()).await;
        let _ = client.shutdown().await;
        // Wait for the client to go, so it reads the answer before any reset.
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(STEP, client.read_to_end(&mut sink)).await;
        return;
    }
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split(' ').next())
        .expect("a CONNECT request line")
        .replace("localhost:", "127.0.0.1:");
    let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(
        STEP,
        tokio::io::copy_bidirectional(&mut client, &mut upstream),
    )
    .await;
}

/// Basic credentials as a `Proxy-Authorization` value.
pub fn basic(user: &str, password: &str) -> String {
    use std::fmt::Write;
    // A tiny base64 encoder, so the tests need no extra crate.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = out.write_char(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
