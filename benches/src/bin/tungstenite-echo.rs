//! `tungstenite-echo`: the tokio-tungstenite peer of the load scenarios.
//!
//! One thread (tokio's current-thread runtime), one task per connection. Text and binary messages
//! are echoed; tungstenite itself answers pings and the close handshake (it queues the pong or
//! close reply and sends it on the next flush or read).

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let addr = ringsock_benches::addr_from_args("tungstenite-echo", "127.0.0.1:9102");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        eprintln!("tungstenite-echo: listening on {addr}");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream));
                }
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(e) => eprintln!("tungstenite-echo: accept: {e}"),
            }
        }
    });
}

async fn serve(stream: TcpStream) {
    // ringsock sets TCP_NODELAY on every connection; without it here Nagle would hold back the
    // small echoes of scenario A and the comparison would measure Nagle, not tungstenite.
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    loop {
        // Take every message that is already readable before flushing, so a burst of pipelined
        // messages goes back in one write (what `StreamExt::forward` does); flushing after each
        // message would cost tungstenite a syscall per echo that the other servers do not pay.
        let next = match ws.next().now_or_never() {
            Some(next) => next,
            None => {
                if ws.flush().await.is_err() {
                    return;
                }
                ws.next().await
            }
        };
        match next {
            Some(Ok(msg)) if msg.is_text() || msg.is_binary() => {
                if ws.feed(msg).await.is_err() {
                    return;
                }
            }
            // Ping, pong, close: tungstenite has already queued whatever reply is due.
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}
