//! How connections end, as handlers and clients see it: a handler's own close, a message over
//! the limit (1009, `on_error` then `on_close`), a graceful shutdown (1001 to every client, every
//! handler's `on_close`), and plain HTTP beside the WebSocket routes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::SinkExt;
use ringsock_actors::{
    Accept, BackendKind, CloseCode, Closed, Ctx, CtxError, Handler, HttpResponse, Message,
    SendStatus,
};
use ringsock_testkit::on_both_backends;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// What a handler heard, in order.
#[derive(Debug, PartialEq)]
enum Heard {
    /// What `Ctx::close` returned, for a close the client cannot read about.
    CloseResults(String),
    Error(String),
    Close(u16),
}

struct Ending {
    heard: mpsc::Sender<Heard>,
}

impl Handler for Ending {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.send_text("open");
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if message.as_text() == Some("close") {
            let reserved = ctx.close(CloseCode::GOING_AWAY, "not mine to send");
            let long = ctx.close(CloseCode(4000), &"x".repeat(124));
            ctx.send_text(&format!("{reserved:?} {long:?}"));
            let ok = ctx.close(CloseCode(4000), "bye");
            let again = ctx.close(CloseCode(4001), "twice");
            let after = ctx.send_text("after close");
            // Reported on the channel: no message goes out after the close.
            let _ = self
                .heard
                .send(Heard::CloseResults(format!("{ok:?} {again:?} {after:?}")));
        }
    }
    fn on_error(&mut self, _: &mut Ctx<'_, Self>, error: ringsock_actors::ProtocolError) {
        let _ = self.heard.send(Heard::Error(error.to_string()));
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        let _ = self.heard.send(Heard::Close(closed.code.0));
    }
}

fn ending_server(
    kind: BackendKind,
    shards: usize,
) -> (ringsock_actors::ServerHandle, mpsc::Receiver<Heard>) {
    let (tx, rx) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, shards)
            .max_length(1024)
            .route("/end", move |_| {
                Ok(Accept::new(Ending { heard: tx.clone() }))
            })
            .http(|req| HttpResponse::text(200, format!("plain {}", req.path()))),
    );
    (server, rx)
}

fn a_handlers_close_reaches_the_client_with_its_code_and_reason(kind: BackendKind) {
    let (server, heard) = ending_server(kind, 1);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let mut ws = connect(addr, "/end").await;
        assert_eq!(next_text(&mut ws).await, "open");
        ws.send(WsMessage::text("close")).await.unwrap();
        assert_eq!(
            next_text(&mut ws).await,
            format!(
                "{:?} {:?}",
                Err::<(), _>(CtxError::InvalidCloseCode(1001)),
                Err::<(), _>(CtxError::TooLong(124))
            )
        );
        let close = next_message(&mut ws).await;
        match &close {
            WsMessage::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4000);
                assert_eq!(frame.reason.as_str(), "bye");
            }
            other => panic!("expected the handler's close, got {}", describe(other)),
        }
        assert_eq!(
            recv_async(&heard, STEP, "the close results").await,
            Heard::CloseResults(format!(
                "{:?} {:?} {:?}",
                Ok::<(), CtxError>(()),
                Err::<(), _>(CtxError::Closing),
                SendStatus::Dropped
            ))
        );
        // Reading on lets tungstenite answer the close; the handler hears the echo of its code.
        while let Some(Ok(_)) = next_raw(&mut ws).await {}
        assert_eq!(
            recv_async(&heard, STEP, "on_close").await,
            Heard::Close(4000)
        );
    });
    server.shutdown(Duration::from_secs(2));
}

fn a_message_over_the_limit_closes_with_1009_after_on_error(kind: BackendKind) {
    let (server, heard) = ending_server(kind, 1);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let mut ws = connect(addr, "/end").await;
        assert_eq!(next_text(&mut ws).await, "open");
        ws.send(WsMessage::binary(vec![7u8; 1025])).await.unwrap();
        let close = next_message(&mut ws).await;
        assert_eq!(close_code(&close), Some(1009), "got {}", describe(&close));
        match recv_async(&heard, STEP, "on_error").await {
            Heard::Error(e) => assert!(!e.is_empty()),
            other => panic!("expected on_error first, got {other:?}"),
        }
        assert_eq!(
            recv_async(&heard, STEP, "on_close").await,
            Heard::Close(1009)
        );
    });
    server.shutdown(Duration::from_secs(2));
}

fn shutdown_closes_every_client_with_1001_and_every_handler_hears_it(kind: BackendKind) {
    const CLIENTS: usize = 20;
    let (server, heard) = ending_server(kind, 2);
    let addr = server.local_addrs()[0];
    let (report, codes) = run(Duration::from_secs(30), async move {
        let mut clients = JoinSet::new();
        for _ in 0..CLIENTS {
            let mut ws = connect(addr, "/end").await;
            assert_eq!(next_text(&mut ws).await, "open");
            // Each client reads until its close: tungstenite answers it while being read.
            clients.spawn(async move {
                let close = next_message(&mut ws).await;
                while let Some(Ok(_)) = next_raw(&mut ws).await {}
                close_code(&close)
            });
        }
        let report = tokio::task::spawn_blocking(move || server.shutdown(Duration::from_secs(5)))
            .await
            .unwrap();
        let mut codes = Vec::new();
        while let Some(code) = clients.join_next().await {
            codes.push(code.expect("a client task"));
        }
        (report, codes)
    });
    assert_eq!(codes, vec![Some(1001); CLIENTS]);
    assert_eq!(report.closing, CLIENTS, "{report:?}");
    assert_eq!(report.closed_cleanly, CLIENTS, "{report:?}");
    assert_eq!(report.cut, 0, "{report:?}");
    let heard: Vec<Heard> = heard.try_iter().collect();
    assert_eq!(
        heard,
        (0..CLIENTS).map(|_| Heard::Close(1001)).collect::<Vec<_>>()
    );
}

fn plain_http_gets_the_responder_and_a_route_gets_426(kind: BackendKind) {
    let (server, _heard) = ending_server(kind, 1);
    let addr = server.local_addrs()[0];
    let get = |path: &str| {
        let mut s = TcpStream::connect_timeout(&addr, STEP).unwrap();
        s.set_read_timeout(Some(STEP)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let status = get("/status");
    assert!(status.starts_with("HTTP/1.1 200 "), "{status:?}");
    assert!(status.ends_with("\r\n\r\nplain /status"), "{status:?}");
    let route = get("/end");
    assert!(route.starts_with("HTTP/1.1 426 "), "{route:?}");
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(
    a_handlers_close_reaches_the_client_with_its_code_and_reason,
    a_message_over_the_limit_closes_with_1009_after_on_error,
    shutdown_closes_every_client_with_1001_and_every_handler_hears_it,
    plain_http_gets_the_responder_and_a_route_gets_426,
);
