//! Outgoing connections through an HTTP CONNECT proxy written in the test: `ws://` without and
//! with credentials, a 407 that reaches the handler typed with its status and headers, `wss://`
//! with TLS to the server inside the tunnel, and an `https://` proxy (TLS inside TLS).

use std::time::Duration;

use crate::dial_support::*;
use ringsock_actors::{Accept, BackendKind, Ctx, DialError, DialOptions, Handler, Message, Proxy};
use ringsock_testkit::on_both_backends;

use crate::support::{builder, start};

/// Echo for the server side.
struct Echo;
impl Handler for Echo {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(t) = message.as_text() {
            ctx.send_text(t);
        }
    }
}

fn ws_through_the_proxy(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 1).route("/echo", |_| Ok(Accept::new(Echo))),
    );
    let target = server.local_addrs()[0];
    let proxy = start_proxy(ProxyRules::default(), 1);
    let client = client_runtime(kind);
    let options = DialOptions::new().proxy(Proxy::new(&format!("http://{}", proxy.addr)).unwrap());
    let seen = exchange(
        &client,
        &format!("ws://{target}/echo"),
        &options,
        &["one", "two"],
    );
    assert_eq!(summary(&seen), ECHOED);
    assert_eq!(
        proxy.head(),
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
    );
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

fn credentials_in_the_proxy_url_are_sent(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 1).route("/echo", |_| Ok(Accept::new(Echo))),
    );
    let target = server.local_addrs()[0];
    let rules = ProxyRules {
        auth: Some(basic("alice", "s3cret:x")),
        ..ProxyRules::default()
    };
    let proxy = start_proxy(rules, 1);
    let client = client_runtime(kind);
    let url = format!("http://alice:s3cret%3Ax@{}", proxy.addr);
    let options = DialOptions::new().proxy(Proxy::new(&url).unwrap());
    let seen = exchange(
        &client,
        &format!("ws://{target}/echo"),
        &options,
        &["one", "two"],
    );
    assert_eq!(summary(&seen), ECHOED);
    let head = proxy.head();
    assert!(
        head.contains(&format!(
            "\r\nProxy-Authorization: {}\r\n",
            basic("alice", "s3cret:x")
        )),
        "{head}"
    );
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

fn a_407_is_a_typed_proxy_error(kind: BackendKind) {
    let rules = ProxyRules {
        auth: Some(basic("alice", "pw")),
        ..ProxyRules::default()
    };
    let proxy = start_proxy(rules, 1);
    let client = client_runtime(kind);
    let options = DialOptions::new().proxy(Proxy::new(&format!("http://{}", proxy.addr)).unwrap());
    // The target is never reached: any port will do.
    let seen = exchange(&client, "ws://127.0.0.1:9/echo", &options, &["one"]);
    match seen.as_slice() {
        [Seen::Failed(DialError::Proxy(e))] => {
            assert_eq!(e.status(), Some(407));
            assert_eq!(
                e.headers().unwrap().get("proxy-authenticate"),
                Some("Basic realm=\"ringsock-test\"")
            );
            assert_eq!(
                e.to_string(),
                "the proxy refused the tunnel: 407 Proxy Authentication Required"
            );
        }
        other => panic!("expected a 407 proxy error, got {other:?}"),
    }
    client.shutdown(Duration::from_secs(1));
}

/// `wss://` through a plain proxy: the proxy sees only `CONNECT localhost:port`; TLS, with the
/// host name as SNI, runs inside the tunnel.
fn wss_inside_the_tunnel(kind: BackendKind) {
    let pki = Pki::localhost();
    let (origin, server) = wss_echo_server(pki.server_config(false));
    let proxy = start_proxy(ProxyRules::default(), 1);
    let client = client_runtime(kind);
    let options = DialOptions::new()
        .tls(pki.trusting())
        .proxy(Proxy::new(&format!("http://{}", proxy.addr)).unwrap());
    let url = format!("wss://localhost:{}/", origin.port());
    let seen = exchange(&client, &url, &options, &["one", "two"]);
    assert_eq!(summary(&seen), ECHOED);
    assert!(proxy
        .head()
        .starts_with(&format!("CONNECT localhost:{} HTTP/1.1\r\n", origin.port())));
    let saw = crate::support::recv_within(&server, crate::support::STEP, "the server's report");
    assert_eq!(saw.result, Ok(()));
    assert_eq!(saw.sni.as_deref(), Some("localhost"));
    client.shutdown(Duration::from_secs(1));
}

/// An `https://` proxy that wants a header: the CONNECT travels inside TLS to the proxy, and
/// the server's TLS inside that.
fn wss_through_an_https_proxy(kind: BackendKind) {
    let origin_pki = Pki::localhost();
    let proxy_pki = Pki::new(&["proxy.test", "127.0.0.1"]);
    let (origin, server) = wss_echo_server(origin_pki.server_config(false));
    let rules = ProxyRules {
        require: Some("X-Tenant: blue".into()),
        tls: Some(proxy_pki.server_config(false)),
        ..ProxyRules::default()
    };
    let proxy = start_proxy(rules, 1);
    let client = client_runtime(kind);
    let via = Proxy::new(&format!("https://{}", proxy.addr))
        .unwrap()
        .tls(proxy_pki.trusting())
        .header("X-Tenant", "blue")
        .unwrap();
    let options = DialOptions::new().tls(origin_pki.trusting()).proxy(via);
    let url = format!("wss://localhost:{}/", origin.port());
    let seen = exchange(&client, &url, &options, &["one", "two"]);
    assert_eq!(summary(&seen), ECHOED);
    assert!(proxy.head().contains("\r\nX-Tenant: blue\r\n"));
    let saw = crate::support::recv_within(&server, crate::support::STEP, "the server's report");
    assert_eq!(
        (saw.result, saw.sni.as_deref()),
        (Ok(()), Some("localhost"))
    );
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn an_untrusted_https_proxy_is_a_tls_error_naming_the_proxy() {
    let proxy_pki = Pki::new(&["127.0.0.1"]);
    let rules = ProxyRules {
        tls: Some(proxy_pki.server_config(false)),
        ..ProxyRules::default()
    };
    let proxy = start_proxy(rules, 1);
    let client = client_runtime(BackendKind::Epoll);
    let options = DialOptions::new().proxy(Proxy::new(&format!("https://{}", proxy.addr)).unwrap());
    let seen = exchange(&client, "wss://localhost:9/", &options, &["one"]);
    match seen.as_slice() {
        [Seen::Failed(DialError::Tls(e))] => {
            assert_eq!(e.peer(), Some(format!("the proxy {}", proxy.addr).as_str()));
            assert!(e.is_certificate_error(), "{e}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    client.shutdown(Duration::from_secs(1));
}

on_both_backends!(
    ws_through_the_proxy,
    credentials_in_the_proxy_url_are_sent,
    a_407_is_a_typed_proxy_error,
    wss_inside_the_tunnel,
    wss_through_an_https_proxy,
);
