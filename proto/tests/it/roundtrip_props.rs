//! Property: whatever one role encodes, the other decodes whole, in order and unchanged, however
//! the transport cuts the bytes; pings are answered, and a close ends both sides with one code.

use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::frame::OpCode;
use ringsock_proto::ws::{CloseCode, Config, Connection, DataKind, Event, PingId, Role, State};
use ringsock_testkit::frame::parse_frames;

/// One thing the sending side does before closing.
#[derive(Clone, Debug)]
enum Msg {
    Text(String),
    /// Binary data; `shared` sends it with `send_shared` (zero-copy for large server payloads).
    Binary {
        data: Vec<u8>,
        shared: bool,
    },
    Ping(Vec<u8>),
}

/// `len` bytes from a seed: large payloads without a strategy per byte.
fn bytes_from_seed(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn binary(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=max, any::<u64>()).prop_map(|(len, seed)| bytes_from_seed(len, seed))
}

/// A long text of `chars` code points from a seed, mixing 1- to 4-byte UTF-8 sequences.
fn text_from_seed(chars: usize, seed: u64) -> String {
    bytes_from_seed(chars * 3, seed)
        .chunks(3)
        .map(|b| {
            let v = u32::from_le_bytes([b[0], b[1], b[2], 0]);
            let c = match b[0] % 4 {
                0 => v % 0x80,
                1 => 0x80 + v % (0x800 - 0x80),
                2 => 0x800 + v % (0x1_0000 - 0x800),
                _ => 0x1_0000 + v % (0x11_0000 - 0x1_0000),
            };
            // Surrogates are not chars; shift them into the private use area.
            char::from_u32(c).unwrap_or('\u{e000}')
        })
        .collect()
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        // Arbitrary strings: every char class, multi-byte code points included.
        4 => any::<String>().prop_map(Msg::Text),
        1 => (0..20_000usize, any::<u64>()).prop_map(|(n, seed)| Msg::Text(text_from_seed(n, seed))),
        3 => (binary(300), any::<bool>()).prop_map(|(data, shared)| Msg::Binary { data, shared }),
        1 => (binary(70 * 1024), any::<bool>())
            .prop_map(|(data, shared)| Msg::Binary { data, shared }),
        2 => binary(125).prop_map(Msg::Ping),
    ]
}

/// How the transport cuts the stream: piece sizes, used in turn.
fn splits() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![3 => 1..16usize, 2 => 1..2048usize, 1 => 1..80_000usize],
        1..8,
    )
}

fn close_code() -> impl Strategy<Value = u16> {
    prop_oneof![Just(1000u16), 3000..=4999u16]
}

fn connection(role: Role) -> Connection {
    match role {
        Role::Server => Connection::server(Config::default(), Extensions::default()),
        Role::Client => Connection::client(Config::default(), Extensions::default(), [7; 32]),
    }
}

/// Everything the connection has queued, checking `pending_output` agrees with it.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let pending = conn.pending_output();
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    assert_eq!(out.len(), pending);
    assert_eq!(conn.pending_output(), 0);
    out
}

/// Feeds `input` cut by `sizes` (cycled) and collects the events.
fn feed(conn: &mut Connection, input: &[u8], sizes: &[usize]) -> Vec<Event> {
    let now = Instant::now();
    let mut events = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at == input.len() {
            break;
        }
        let end = (at + size).min(input.len());
        let mut piece = &input[at..end];
        while let Some(e) = conn.recv(&mut piece, now) {
            events.push(e);
        }
        assert!(piece.is_empty());
        at = end;
    }
    events
}

/// The opcodes and unmasked payloads of `bytes`, masked exactly when `sender` is the client,
/// read by hand (the testkit's parser, not ringsock's).
fn frames(sender: Role, bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    parse_frames(bytes)
        .into_iter()
        .map(|f| {
            assert!(f.fin && f.rsv == 0);
            assert_eq!(f.mask.is_some(), sender == Role::Client);
            let opcode = match f.opcode {
                0x1 => OpCode::Text,
                0x2 => OpCode::Binary,
                0x8 => OpCode::Close,
                0x9 => OpCode::Ping,
                0xA => OpCode::Pong,
                other => panic!("unexpected opcode {other:#x}"),
            };
            (opcode, f.payload)
        })
        .collect()
}

/// `sender` encodes `msgs` and a close; the other role decodes them, answers the pings and the
/// close; the sender decodes the answers. Both must end closed with `code`.
fn roundtrip(
    sender: Role,
    msgs: &[Msg],
    code: u16,
    reason: &str,
    there: &[usize],
    back: &[usize],
) -> Result<(), TestCaseError> {
    let receiver = match sender {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let now = Instant::now();
    let mut tx = connection(sender);
    let mut rx = connection(receiver);

    let mut pings: Vec<(PingId, Vec<u8>)> = Vec::new();
    for m in msgs {
        match m {
            Msg::Text(s) => tx.send_text(s).unwrap(),
            Msg::Binary {
                data,
                shared: false,
            } => tx.send_binary(data).unwrap(),
            Msg::Binary { data, shared: true } => tx
                .send_shared(DataKind::Binary, Bytes::from(data.clone()))
                .unwrap(),
            Msg::Ping(p) => pings.push((tx.ping(p).unwrap(), p.clone())),
        }
    }
    tx.close(CloseCode(code), reason, now).unwrap();
    prop_assert_eq!(tx.state(), State::Closing);
    let wire = drain(&mut tx);

    // There: every message whole and in order, then the close.
    let events = feed(&mut rx, &wire, there);
    prop_assert_eq!(events.len(), msgs.len() + 1);
    for (event, m) in events.iter().zip(msgs) {
        match (event, m) {
            (Event::Text(got), Msg::Text(sent)) => prop_assert_eq!(got.as_str(), sent.as_str()),
            (Event::Binary(got), Msg::Binary { data, .. }) => prop_assert_eq!(&got[..], &data[..]),
            (Event::Ping(got), Msg::Ping(sent)) => prop_assert_eq!(&got[..], &sent[..]),
            (got, sent) => prop_assert!(false, "got {:?} for {:?}", got, sent),
        }
    }
    match events.last() {
        Some(Event::Close(c)) => {
            prop_assert_eq!(c.code, CloseCode(code));
            prop_assert_eq!(&c.reason, reason);
        }
        other => prop_assert!(false, "expected the close, got {:?}", other),
    }
    prop_assert_eq!(rx.state(), State::Closed);

    // Back: a pong per ping, in order, then the close with the sender's code.
    let answer = drain(&mut rx);
    let mut expected: Vec<(OpCode, Vec<u8>)> = pings
        .iter()
        .map(|(_, p)| (OpCode::Pong, p.clone()))
        .collect();
    expected.push((OpCode::Close, code.to_be_bytes().to_vec()));
    prop_assert_eq!(frames(receiver, &answer), expected);

    let events = feed(&mut tx, &answer, back);
    prop_assert_eq!(events.len(), pings.len() + 1);
    for (event, (id, payload)) in events.iter().zip(&pings) {
        match event {
            Event::Pong {
                payload: got,
                id: got_id,
            } => {
                prop_assert_eq!(&got[..], &payload[..]);
                prop_assert_eq!(*got_id, Some(*id));
            }
            other => prop_assert!(false, "expected a pong, got {:?}", other),
        }
    }
    match events.last() {
        Some(Event::Close(c)) => prop_assert_eq!(c.code, CloseCode(code)),
        other => prop_assert!(false, "expected the close, got {:?}", other),
    }
    prop_assert_eq!(tx.state(), State::Closed);
    prop_assert_eq!(tx.poll_timeout(), None, "the close timer is disarmed");
    prop_assert!(
        drain(&mut tx).is_empty(),
        "nothing after the close handshake"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn client_encodes_server_decodes_whole_in_order_under_any_split(
        msgs in prop::collection::vec(msg(), 0..12),
        code in close_code(),
        reason in "\\PC{0,30}",
        there in splits(),
        back in splits(),
    ) {
        roundtrip(Role::Client, &msgs, code, &reason, &there, &back)?;
    }

    #[test]
    fn server_encodes_client_decodes_whole_in_order_under_any_split(
        msgs in prop::collection::vec(msg(), 0..12),
        code in close_code(),
        reason in "\\PC{0,30}",
        there in splits(),
        back in splits(),
    ) {
        roundtrip(Role::Server, &msgs, code, &reason, &there, &back)?;
    }
}
