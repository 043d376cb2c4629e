//! Backpressure on direct sends: `Ctx::send_*` says `Buffered` once the unwritten output passes
//! the high-water mark, `on_drain` fires once (and only once) the client has read it down to the
//! low-water mark, and past the hard limit a send is `Dropped` and the connection closed with 1008.

use std::sync::mpsc;
use std::time::Duration;

use futures_util::SinkExt;
use ringsock_actors::{Accept, BackendKind, Ctx, Handler, Message, SendStatus};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

const SIZE: usize = 16 * 1024;
/// A frame of `SIZE` bytes of payload: 2 header bytes and a 16-bit length.
const FRAME: usize = SIZE + 4;
const HIGH_WATER: usize = 64 * 1024;
const LOW_WATER: usize = 16 * 1024;

/// Messages in a flood: 8 MiB, or more if need be to pass twice what the kernel buffers for a
/// client with a 16 KiB receive buffer (the server's send buffer can grow to `tcp_wmem`'s
/// maximum, 4 MiB by default), so that the rest waits in the server until the client reads.
fn flood_len() -> u32 {
    (tcp_send_buffer_max() * 2 / SIZE).max(512) as u32
}

/// What the flooding handler reports to the test.
#[derive(Debug, PartialEq)]
enum Report {
    /// Statuses of the flood's sends, then of one text send after it, and the buffered amount.
    Flooded {
        binary: Vec<SendStatus>,
        text: SendStatus,
        buffered: usize,
    },
    /// `on_drain` ran: the buffered amount then, and the status of a send made in it.
    Drained { buffered: usize, send: SendStatus },
}

/// On "flood", sends `flood` binary messages of `SIZE` bytes and a text "after".
struct Flooder {
    flood: u32,
    report: mpsc::Sender<Report>,
}

fn payload(seq: u32) -> Vec<u8> {
    let mut m = vec![(seq % 251) as u8; SIZE];
    m[..4].copy_from_slice(&seq.to_be_bytes());
    m
}

impl Handler for Flooder {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if message.as_text() != Some("flood") {
            return;
        }
        let binary = (0..self.flood)
            .map(|seq| ctx.send_binary(payload(seq)))
            .collect();
        let text = ctx.send_text("after");
        let buffered = ctx.buffered_amount();
        let _ = self.report.send(Report::Flooded {
            binary,
            text,
            buffered,
        });
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_, Self>) {
        let buffered = ctx.buffered_amount();
        let send = ctx.send_text("drained");
        let _ = self.report.send(Report::Drained { buffered, send });
    }
}

fn sends_are_buffered_past_high_water_and_drain_fires_once_the_client_reads(kind: BackendKind) {
    let flood = flood_len();
    let (tx, rx) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .high_water(HIGH_WATER, LOW_WATER)
            .route("/flood", move |_| {
                Ok(Accept::new(Flooder {
                    flood,
                    report: tx.clone(),
                }))
            }),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        let mut ws = connect_slow_reader(addr, "/flood").await;
        ws.send(WsMessage::text("flood")).await.unwrap();

        let Report::Flooded {
            binary,
            text,
            buffered,
        } = recv_async(&rx, STEP, "the flood report").await
        else {
            panic!("on_drain before the flood report")
        };
        // Nothing is written during the callback, so the mark is passed exactly at the send
        // that brings the unwritten output to 64 KiB: the 4th (4 × 16,388 bytes).
        let first_buffered = HIGH_WATER.div_ceil(FRAME) - 1;
        assert_eq!(first_buffered, 3);
        for (i, status) in binary.iter().enumerate() {
            let expected = if i < first_buffered {
                SendStatus::Queued
            } else {
                SendStatus::Buffered
            };
            assert_eq!(*status, expected, "status of send {i}");
        }
        assert_eq!(text, SendStatus::Buffered, "a text send past the mark");
        assert_eq!(buffered, flood as usize * FRAME + 2 + "after".len());

        // The client reads nothing yet: the output cannot fall to the low-water mark.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            rx.try_recv().is_err(),
            "on_drain fired while the client read nothing"
        );

        for seq in 0..flood {
            assert!(
                next_binary(&mut ws).await == payload(seq),
                "message {seq} is wrong"
            );
        }
        assert_eq!(next_text(&mut ws).await, "after");
        let Report::Drained { buffered, send } =
            recv_async(&rx, STEP, "on_drain after the client read").await
        else {
            panic!("a second flood report")
        };
        assert!(
            buffered <= LOW_WATER,
            "on_drain with {buffered} bytes still buffered"
        );
        assert_eq!(send, SendStatus::Queued, "a send in on_drain");
        assert_eq!(next_text(&mut ws).await, "drained");
        // Once: the sends after the drain stay under the mark and ask for nothing.
        expect_silence(&mut ws, Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "on_drain fired twice");
    });
    server.shutdown(Duration::from_secs(2));
}

/// On open, sends `SIZE`-byte messages until one is not queued, and reports the statuses.
struct Overflow {
    report: mpsc::Sender<Vec<SendStatus>>,
}

impl Handler for Overflow {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let mut statuses = Vec::new();
        for seq in 0..1_000 {
            let status = ctx.send_binary(payload(seq));
            statuses.push(status);
            if status == SendStatus::Dropped {
                // Once closing, sends stay dropped.
                statuses.push(ctx.send_text("too late"));
                break;
            }
        }
        let _ = self.report.send(statuses);
    }
}

fn a_send_past_the_hard_limit_is_dropped_and_closes_with_1008(kind: BackendKind) {
    const LIMIT: usize = 256 * 1024;
    let (tx, rx) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .high_water(HIGH_WATER, LOW_WATER)
            .max_buffered(LIMIT)
            .route("/overflow", move |_| {
                Ok(Accept::new(Overflow { report: tx.clone() }))
            }),
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(30), async {
        let mut ws = connect(addr, "/overflow").await;
        let statuses = recv_async(&rx, STEP, "the statuses").await;
        // 15 frames fit under 256 KiB (15 × 16,388); the 16th would pass it.
        let fit = LIMIT / FRAME;
        assert_eq!(statuses.len(), fit + 2, "{statuses:?}");
        assert!(statuses[..3].iter().all(|s| *s == SendStatus::Queued));
        assert!(statuses[3..fit].iter().all(|s| *s == SendStatus::Buffered));
        assert_eq!(statuses[fit..], [SendStatus::Dropped, SendStatus::Dropped]);
        for seq in 0..fit as u32 {
            assert!(next_binary(&mut ws).await == payload(seq), "message {seq}");
        }
        let close = next_message(&mut ws).await;
        assert_eq!(close_code(&close), Some(1008), "got {}", describe(&close));
    });
    server.shutdown(Duration::from_secs(2));
}

on_both_backends!(
    sends_are_buffered_past_high_water_and_drain_fires_once_the_client_reads,
    a_send_past_the_hard_limit_is_dropped_and_closes_with_1008,
);
