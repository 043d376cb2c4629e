//! A WebSocket conversation entirely in memory: the client's handshake request, the server's
//! answer, then text, binary, a ping and the close handshake, each side's bytes fed to the other.
//! It shows the sans-io core doing everything a socket would carry, with no socket at all.
//!
//! Run: `cargo run -p ringsock-engine --example roundtrip`

use std::time::Instant;

use ringsock_proto::http::{parse_request, HeadLimits};
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::{
    ClientHandshake, ClientOptions, CloseCode, Config, Connection, Event, ServerOptions,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Instant::now();

    // Opening handshake.
    let handshake = ClientHandshake::new(
        "ws://alice:secret@chat.example:8080/rooms/lobby?nick=alice",
        &ClientOptions::new().protocol("chat.v2").protocol("chat.v1"),
        // RFC 6455's sample nonce: the key is `dGhlIHNhbXBsZSBub25jZQ==`. A real client draws
        // it from a strong random source for every handshake.
        *b"the sample nonce",
    )?;
    println!(
        "client → server\n{}",
        String::from_utf8_lossy(handshake.request_bytes())
    );

    let (request, _) = parse_request(handshake.request_bytes(), &HeadLimits::default())?
        .ok_or("the request head is complete")?;
    let accepted = ServerOptions::new()
        .protocol("chat.v1")
        .accept(&request)
        .map_err(|refusal| format!("refused: {refusal}"))?;
    println!(
        "server → client\n{}",
        String::from_utf8_lossy(&accepted.response)
    );

    let (client_side, _) = handshake
        .read_response(&accepted.response)?
        .ok_or("the response head is complete")?;
    println!(
        "handshake done: path {:?}, query {:?}, protocol {:?}\n",
        request.path(),
        request.query(),
        client_side.protocol
    );

    let mut server = Connection::server(Config::default(), Extensions::new(accepted.extensions));
    // The client's masking keys come from a generator seeded here (pinned, so this example
    // prints the same bytes every run; a real client seeds it from a strong random source).
    let mut client = Connection::client(
        Config::default(),
        Extensions::new(client_side.extensions),
        [42; 32],
    );

    // Messages both ways.
    client.send_text("hello, ringsock")?;
    client.send_binary(&[0xde, 0xad, 0xbe, 0xef])?;
    let ping = client.ping(b"are you there?")?;
    deliver("client", &mut client, "server", &mut server, now);

    server.send_text("hello, client")?;
    server.close(CloseCode::NORMAL, "goodbye", now)?;
    deliver("server", &mut server, "client", &mut client, now);
    deliver("client", &mut client, "server", &mut server, now);

    println!("\nping {ping:?} was sent by the client");
    println!(
        "client state {:?}, server state {:?}",
        client.state(),
        server.state()
    );
    Ok(())
}

/// Moves everything `from` has queued into `to`, printing the bytes and the events they make.
fn deliver(
    from_name: &str,
    from: &mut Connection,
    to_name: &str,
    to: &mut Connection,
    now: Instant,
) {
    let mut wire = Vec::new();
    while let Some(chunk) = from.poll_transmit() {
        wire.extend_from_slice(&chunk);
    }
    if wire.is_empty() {
        return;
    }
    println!(
        "{from_name} → {to_name}: {} bytes {}",
        wire.len(),
        hex(&wire)
    );
    let mut input = &wire[..];
    while let Some(event) = to.recv(&mut input, now) {
        match event {
            Event::Text(t) => println!("  {to_name} got text {:?}", t.as_str()),
            Event::Binary(b) => println!("  {to_name} got binary {}", hex(&b)),
            Event::Ping(p) => println!(
                "  {to_name} got ping {:?} (pong queued)",
                String::from_utf8_lossy(&p)
            ),
            Event::Pong { payload, id } => println!(
                "  {to_name} got pong {:?} answering {id:?}",
                String::from_utf8_lossy(&payload)
            ),
            Event::Error(e) => println!("  {to_name} error: {e}"),
            Event::Close(c) => println!("  {to_name} closed: {} {:?}", c.code, c.reason),
            other => println!("  {to_name} got {other:?}"),
        }
    }
    // Answers (pongs, the close reply) go straight back.
    if to.pending_output() > 0 {
        deliver(to_name, to, from_name, from, now);
    }
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 24 { " …" } else { "" };
    format!("{}{more}", shown.join(" "))
}
