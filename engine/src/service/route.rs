//! What a complete request head gets: a WebSocket (the 101 and the service's session), or an
//! HTTP answer (a refusal, a 426 for a WebSocket-only path, a 404, the service's responder).
//!
//! The policy alone, as a function of the request, the server's settings and the service: the
//! shard's loop only carries out the [`Route`] (queue the answer and close, or open the
//! WebSocket).

use std::net::SocketAddr;

use super::{HttpResponse, Service, ShardSettings, Upgrade};
use crate::http::RequestHead;
use crate::ws::{is_websocket_upgrade, Decision, Negotiated, Refusal, UpgradeError};

/// What the shard does with a request.
pub(crate) enum Route<T> {
    /// Write these bytes (a whole HTTP response), then close.
    Answer(Vec<u8>),
    /// Open a WebSocket: write the 101 in `accepted`, then run the connection with `session`.
    WebSocket {
        /// The handshake's outcome: the 101, the subprotocol and the extension sessions.
        accepted: Negotiated,
        /// What [`Service::upgrade`] made for the connection.
        session: T,
    },
}

/// Decides what `request` gets. `peer` and `shard` are passed on to the service's upgrade
/// decision.
pub(crate) fn route<S: Service>(
    service: &S,
    local: &mut S::Local,
    settings: &ShardSettings,
    request: &RequestHead,
    peer: Option<SocketAddr>,
    shard: usize,
) -> Route<S::Session> {
    // A request naming `Upgrade: websocket` goes to the handshake even when it is not a valid
    // upgrade (POST, HTTP/1.0, no `Connection: upgrade`): its 400 says what is wrong, where the
    // HTTP responder would only say 404.
    let wants_websocket =
        is_websocket_upgrade(request) || request.headers().has_token("upgrade", "websocket");
    if !wants_websocket {
        if request.method() == "GET" && settings.is_registered_websocket_path(request.path()) {
            let refusal = Refusal::new(
                426,
                "This path speaks WebSocket only: send an Upgrade request",
            )
            .with_header("Upgrade", "websocket");
            return Route::Answer(refusal.to_response());
        }
        return Route::Answer(http_bytes(&service.on_http(request)));
    }
    if !settings.is_websocket_path(request.path()) {
        return Route::Answer(http_bytes(&HttpResponse::not_found()));
    }
    let mut session = None;
    let accepted = settings.handshake.accept_with(request, |protocols| {
        let upgrade = Upgrade {
            request,
            protocols,
            peer,
            shard,
        };
        service.upgrade(local, &upgrade).map(|accept| {
            session = Some(accept.session);
            Decision {
                protocol: accept.protocol,
                headers: accept.headers,
            }
        })
    });
    match (accepted, session) {
        (Err(UpgradeError::Refused(refusal)), _) => Route::Answer(refusal.to_response()),
        (Err(UpgradeError::Decided(response)), _) => Route::Answer(http_bytes(&response)),
        (Ok(accepted), Some(session)) => Route::WebSocket { accepted, session },
        (Ok(_), None) => Route::Answer(
            Refusal::new(500, "the upgrade was accepted without a session").to_response(),
        ),
    }
}

/// The bytes of `response`, closing the connection after it; a header the responder made
/// invalid turns it into a 500 that says so.
fn http_bytes(response: &HttpResponse) -> Vec<u8> {
    let mut writer = crate::http::HeadWriter::response(response.status);
    for (name, value) in &response.headers {
        if writer.header(name, value).is_err() {
            let refusal = Refusal::new(
                500,
                format!("the HTTP responder produced an invalid header {name:?}"),
            );
            return refusal.to_response();
        }
    }
    let _ = writer.header("Connection", "close");
    writer.finish_with_body(&response.body)
}
