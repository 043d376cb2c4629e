//! The upgrade hook decides before the 101: it refuses with any response (401 with a
//! `WWW-Authenticate` challenge here), and what it learns (a user from a `?token=` query or a
//! session cookie, a subprotocol it picks) reaches the handler, which tells its client.

use std::net::SocketAddr;
use std::time::Duration;

use ringsock_actors::{
    Accept, BackendKind, Ctx, Handler, HttpResponse, ServerHandle, UpgradeRequest,
};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Request};
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::*;

const CHALLENGE: &str = "Bearer realm=\"ringsock\"";

/// The user a token names.
fn user_of(token: &str) -> Option<&'static str> {
    match token {
        "t-ada" => Some("ada"),
        "t-bob" => Some("bob"),
        _ => None,
    }
}

/// Greets its user on open, naming the subprotocol, the request target and the peer.
struct Session {
    user: String,
}

impl Handler for Session {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let protocol = ctx.protocol().unwrap_or("none").to_owned();
        let url = ctx.url().to_owned();
        let peer = ctx.peer_addr().map_or("?".to_owned(), |p| p.to_string());
        ctx.send_text(&format!(
            "hello {} via {protocol} at {url} from {peer}",
            self.user
        ));
    }
}

fn authenticate(req: &UpgradeRequest<'_>) -> Result<Accept<Session>, HttpResponse> {
    let token = req
        .query_param("token")
        .map(|t| t.into_owned())
        .or_else(|| req.cookie("session").map(str::to_owned));
    let Some(user) = token.as_deref().and_then(user_of) else {
        return Err(
            HttpResponse::text(401, "who are you?").with_header("WWW-Authenticate", CHALLENGE)
        );
    };
    let mut accepted = Accept::new(Session {
        user: user.to_owned(),
    })
    .header("X-User", user);
    // Prefer v1 whatever the client's order.
    if req.protocols().contains(&"chat.v1") {
        accepted = accepted.protocol("chat.v1");
    }
    Ok(accepted)
}

fn server(kind: BackendKind) -> ServerHandle {
    start(kind, builder(kind, 1).route("/secure", authenticate))
}

/// Connects with `request`; the 101's `X-User` and the client's local address, or the error.
async fn try_connect(
    request: Request<()>,
) -> Result<(Ws, Option<String>, Option<String>, SocketAddr), WsError> {
    let (ws, response) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake timed out")?;
    assert_eq!(response.status(), 101);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let local = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
        _ => unreachable!("plain TCP"),
    };
    Ok((
        ws,
        header("x-user"),
        header("sec-websocket-protocol"),
        local,
    ))
}

fn request(addr: SocketAddr, target: &str) -> Request<()> {
    format!("ws://{addr}{target}")
        .into_client_request()
        .unwrap()
}

/// A refused handshake's response: status, `WWW-Authenticate`, body.
async fn refusal(request: Request<()>) -> (u16, Option<String>, String) {
    match try_connect(request).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(WsError::Http(response)) => (
            response.status().as_u16(),
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
            String::from_utf8(response.body().clone().unwrap_or_default()).unwrap(),
        ),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

fn no_or_bad_credentials_get_401_with_a_challenge(kind: BackendKind) {
    let server = server(kind);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        for target in ["/secure", "/secure?token=t-eve", "/secure?other=t-ada"] {
            assert_eq!(
                refusal(request(addr, target)).await,
                (401, Some(CHALLENGE.to_owned()), "who are you?".to_owned()),
                "{target}"
            );
        }
        let mut bad_cookie = request(addr, "/secure");
        bad_cookie
            .headers_mut()
            .insert("Cookie", HeaderValue::from_static("session=t-eve"));
        assert_eq!(refusal(bad_cookie).await.0, 401);
        // A path without a route is not found, whatever the credentials.
        assert_eq!(
            refusal(request(addr, "/elsewhere?token=t-ada")).await.0,
            404
        );
    });
    server.shutdown(Duration::from_secs(2));
}

fn the_user_from_a_query_token_reaches_the_handler(kind: BackendKind) {
    let server = server(kind);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        // Percent-encoded: the hook sees it decoded.
        let target = "/secure?room=1&token=t%2Dada";
        let (mut ws, user, protocol, local) =
            try_connect(request(addr, target)).await.expect("accepted");
        assert_eq!(user.as_deref(), Some("ada"));
        assert_eq!(protocol, None);
        assert_eq!(
            next_text(&mut ws).await,
            format!("hello ada via none at {target} from {local}")
        );
    });
    server.shutdown(Duration::from_secs(2));
}

fn the_user_from_a_cookie_and_the_hooks_subprotocol_reach_the_handler(kind: BackendKind) {
    let server = server(kind);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let mut req = request(addr, "/secure");
        let headers = req.headers_mut();
        headers.insert(
            "Cookie",
            HeaderValue::from_static("theme=dark; session=t-bob; lang=en"),
        );
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("chat.v2, chat.v1"),
        );
        let (mut ws, user, protocol, local) = try_connect(req).await.expect("accepted");
        assert_eq!(user.as_deref(), Some("bob"));
        assert_eq!(protocol.as_deref(), Some("chat.v1"));
        assert_eq!(
            next_text(&mut ws).await,
            format!("hello bob via chat.v1 at /secure from {local}")
        );
    });
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(
    no_or_bad_credentials_get_401_with_a_challenge,
    the_user_from_a_query_token_reaches_the_handler,
    the_user_from_a_cookie_and_the_hooks_subprotocol_reach_the_handler,
);
