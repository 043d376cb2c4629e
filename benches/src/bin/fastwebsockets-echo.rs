//! `fastwebsockets-echo`: the fastwebsockets peer of the load scenarios.
//!
//! One thread (tokio's current-thread runtime). hyper's HTTP/1 server takes the upgrade request
//! and `fastwebsockets::upgrade` answers it, as fastwebsockets' README shows; each WebSocket then
//! runs in its own task with auto-close and auto-pong on, echoing text and binary messages.

use fastwebsockets::upgrade::{upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() {
    let addr = ringsock_benches::addr_from_args("fastwebsockets-echo", "127.0.0.1:9103");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        eprintln!("fastwebsockets-echo: listening on {addr}");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    eprintln!("fastwebsockets-echo: accept: {e}");
                    continue;
                }
            };
            // As for every server in the comparison: small echoes must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(on_request))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    });
}

/// Answers the HTTP request with the 101 and starts the WebSocket task once hyper hands over
/// the connection.
async fn on_request(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade(&mut req)?;
    // `unconstrained`, as the README does: a busy socket should not be made to yield by tokio's
    // cooperative budget in the middle of a pipelined burst.
    tokio::spawn(tokio::task::unconstrained(async move {
        let _ = echo(fut).await;
    }));
    Ok(response)
}

async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    // The collector joins fragmented messages; unfragmented frames (all the load generator
    // sends) pass straight through it.
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // auto-close has already answered it.
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
