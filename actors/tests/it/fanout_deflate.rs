//! Topic fan-out with permessage-deflate, seen from raw sockets that inflate what arrives with
//! their own zlib (flate2 here, not ringsock's code): subscribers without compression get
//! plain frames, subscribers without context takeover get one shared compressed copy (counted:
//! the publishing handler reads how many compressions its publish ran), and a subscriber with
//! context takeover gets its own stream, which only decodes in order with one context kept
//! across messages.

use std::sync::mpsc;
use std::time::Duration;

use flate2::{Decompress, FlushDecompress};
use ringsock_actors::{Accept, BackendKind, Ctx, DeflateOptions, Handler, Message};
use ringsock_engine::ws::deflate::compressions_on_this_thread;
use ringsock_testkit::on_both_backends;

use crate::support::*;

const TOPIC: &str = "prices";

/// Subscribes on open; a text message from it is published to the topic as it is, and how many
/// compressions the publish ran is reported. (The shard delivers to its own subscribers inside
/// `publish`, on this thread, so the thread's count tells.)
struct Subscriber {
    compressions: mpsc::Sender<u64>,
}

impl Handler for Subscriber {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(TOPIC);
        ctx.send_text("ready");
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(text) = message.as_text() {
            let before = compressions_on_this_thread();
            ctx.publish(TOPIC, text.to_owned());
            let _ = self
                .compressions
                .send(compressions_on_this_thread() - before);
        }
    }
}

/// One raw subscriber and how it inflates: `None` without compression, else its context.
struct Sub {
    raw: Raw,
    inflate: Option<Decompress>,
    takeover: bool,
    wire_bytes: usize,
    compressed: usize,
}

impl Sub {
    fn open(addr: std::net::SocketAddr, extensions: Option<&str>) -> (Sub, String) {
        let header = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let (raw, head) = Raw::upgraded_with(addr, "/", &header);
        let lower = head.to_ascii_lowercase();
        let negotiated = lower.contains("permessage-deflate");
        let sub = Sub {
            raw,
            inflate: negotiated.then(|| Decompress::new(false)),
            takeover: negotiated && !lower.contains("server_no_context_takeover"),
            wire_bytes: 0,
            compressed: 0,
        };
        (sub, head)
    }

    /// The next text message, inflated if it came compressed.
    fn next_text(&mut self) -> String {
        let frame = self.raw.read_frame().expect("a frame");
        assert!(frame.fin && frame.opcode == 1, "{frame:?}");
        self.wire_bytes += frame.payload.len();
        if frame.rsv & 0x40 == 0 {
            return String::from_utf8(frame.payload).unwrap();
        }
        self.compressed += 1;
        let d = self
            .inflate
            .as_mut()
            .expect("RSV1 only after negotiating deflate");
        if !self.takeover {
            d.reset(false);
        }
        let mut input = frame.payload;
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(64 * 1024);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("valid deflate data");
        String::from_utf8(out).unwrap()
    }
}

fn fan_out_compresses_per_encoding(kind: BackendKind) {
    let (tx, compressions) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .deflate(DeflateOptions::new().context_takeover(true))
            .route("/", move |_| {
                Ok(Accept::new(Subscriber {
                    compressions: tx.clone(),
                }))
            }),
    );
    let addr = server.local_addrs()[0];
    let (plain, _) = Sub::open(addr, None);
    let (shared_a, head) = Sub::open(addr, Some("permessage-deflate; server_no_context_takeover"));
    assert!(head.contains("server_no_context_takeover"), "{head}");
    let (shared_b, _) = Sub::open(addr, Some("permessage-deflate; server_no_context_takeover"));
    let (own, head) = Sub::open(addr, Some("permessage-deflate"));
    assert!(!head.contains("server_no_context_takeover"), "{head}");
    let mut subs = [plain, shared_a, shared_b, own];
    for s in &mut subs {
        assert_eq!(s.next_text(), "ready");
        s.wire_bytes = 0;
    }
    let messages: Vec<String> = (0..50)
        .map(|i| {
            format!(
                "{{\"seq\":{i},\"symbol\":\"ACME\",\"bid\":{}.25,\"ask\":{}.5,\"venue\":\"XNYS\",\
                 \"note\":\"quotes repeat their keys, which is what compression is for\"}}",
                100 + i % 7,
                100 + i % 7
            )
        })
        .collect();
    for (i, m) in messages.iter().enumerate() {
        subs[0].raw.send_frame(1, m.as_bytes());
        for s in &mut subs {
            assert_eq!(&s.next_text(), m);
        }
        // One compression shared by the two subscribers without context takeover, one for the
        // subscriber with its own context, none for the plain one.
        assert_eq!(
            recv_within(&compressions, STEP, "the publish's compressions"),
            2,
            "message {i}: compressions for one plain, two stateless and one takeover subscriber"
        );
    }
    let [plain, a, b, own] = &subs;
    assert_eq!(
        a.wire_bytes, b.wire_bytes,
        "the stateless subscribers get the same bytes"
    );
    assert_eq!(
        (plain.compressed, a.compressed, own.compressed),
        (0, 50, 50)
    );
    assert!(
        a.wire_bytes < plain.wire_bytes,
        "compressed without context: {} vs {} plain",
        a.wire_bytes,
        plain.wire_bytes
    );
    assert!(
        own.wire_bytes * 2 < a.wire_bytes,
        "context takeover pays on repeated keys: {} vs {}",
        own.wire_bytes,
        a.wire_bytes
    );
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(fan_out_compresses_per_encoding,);
