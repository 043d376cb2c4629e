//! A mirror of Autobahn|Testsuite groups 1–7 and 10, run on the sans-io core without a network.
//!
//! Each row is one Autobahn case: the bytes its fuzzing client sends, with the points where the
//! suite pauses ("steps"), and the outcome the case requires: the exact events the connection
//! reports and the exact frames it writes. Echo is not in the core, so the runner plays the echo
//! server: every `Text`/`Binary` event is sent straight back. A case the connection passes ends,
//! as in the suite, with the client closing with 1000 and expecting 1000 back.
//!
//! Every case is also fed in other splits (fixed piece sizes; for every case up to
//! [`EXHAUSTIVE_LIMIT`] bytes, every piece size and every two-piece cut) and must give the same
//! outcome, with the close reported while the piece holding the byte that decides it is fed. For
//! invalid UTF-8 that byte is the first one after which the message can no longer be valid, so
//! the UTF-8 cases check fail-fast to the byte (and Autobahn's 6.4.x fail-fast to the fragment).
//!
//! The whole table runs twice: against a server-role connection fed masked frames, and against
//! a client-role connection fed unmasked ones; the role rules themselves have their own tests.

use std::time::Instant;

use crate::common::{close_payload, connection, opcode};
use ringsock_proto::ws::close::ClosePayloadError;
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::frame::{FrameError, OpCode};
use ringsock_proto::ws::{Config, Connection, Event, ProtocolError, Role, State};
use ringsock_testkit::frame::{frame as raw_frame, parse_frames};

/// Cases with at most this many input bytes are fed at every piece size and cut at every byte.
const EXHAUSTIVE_LIMIT: usize = 2048;

/// Piece sizes every case is fed in, whatever its length.
const PIECE_SIZES: [usize; 9] = [1, 2, 3, 7, 13, 125, 997, 1300, 4096];

const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
const HELLO: &[u8] = b"Hello, world!";
const HELLO_UTF8: &str = "Hello-µ@ßöäüàá-UTF-8!!";

// ------------------------------------------------------------------------------------------------
// What the peer sends
// ------------------------------------------------------------------------------------------------

/// Where one frame sits in the stream.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// Offset of the frame's last header byte: a frame refused on its header fails here.
    header_last: usize,
    /// Offset of the frame's last byte: a frame refused on its payload fails here at the latest.
    last: usize,
}

/// The byte stream a case's peer sends, with the suite's pause points.
struct Wire {
    /// Who sends: a client masks its frames, a server does not.
    peer: Role,
    bytes: Vec<u8>,
    /// End offsets of the steps the suite sends between pauses, ascending.
    steps: Vec<usize>,
    /// Stream offset of every data-frame payload byte, in order.
    data: Vec<usize>,
    frames_sent: u8,
}

impl Wire {
    fn new(peer: Role) -> Self {
        Self {
            peer,
            bytes: Vec::new(),
            steps: Vec::new(),
            data: Vec::new(),
            frames_sent: 0,
        }
    }

    /// Appends a frame (`rsv` is Autobahn's 3-bit value, `opcode` any 4-bit one) to the
    /// current step.
    fn frame(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Span {
        let key = match self.peer {
            // A different key per frame, so unmasking must restart for each.
            Role::Client => Some([0x37 ^ self.frames_sent, 0xfa, 0x21, 0x3d]),
            Role::Server => None,
        };
        self.frames_sent = self.frames_sent.wrapping_add(1);
        let frame = raw_frame(fin, rsv << 4, opcode, key, payload);
        let start = self.bytes.len();
        let header_len = frame.len() - payload.len();
        if opcode <= 2 {
            self.data
                .extend((0..payload.len()).map(|i| start + header_len + i));
        }
        self.bytes.extend_from_slice(&frame);
        Span {
            header_last: start + header_len - 1,
            last: self.bytes.len() - 1,
        }
    }

    /// Ends the current step: the suite pauses here.
    fn pause(&mut self) {
        if self.steps.last() != Some(&self.bytes.len()) && !self.bytes.is_empty() {
            self.steps.push(self.bytes.len());
        }
    }

    /// Sends a frame as its own step.
    fn send(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Span {
        let span = self.frame(fin, rsv, opcode, payload);
        self.pause();
        span
    }

    /// Sends one frame whose payload goes out in chops cut at these payload offsets.
    fn send_chopped(&mut self, opcode: u8, payload: &[u8], cuts: &[usize]) -> Span {
        let start = self.bytes.len();
        let span = self.frame(true, 0, opcode, payload);
        let header_len = span.last + 1 - start - payload.len();
        for &cut in cuts {
            self.steps.push(start + header_len + cut);
        }
        self.pause();
        span
    }

    /// Autobahn's "octets sent in chops of n": the steps become fixed-size pieces.
    fn in_chops(mut self, n: usize) -> Self {
        self.steps = (n..self.bytes.len()).step_by(n).collect();
        self.pause();
        self
    }
}

// ------------------------------------------------------------------------------------------------
// What the connection must do
// ------------------------------------------------------------------------------------------------

/// An event in comparable form.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Error(ProtocolError),
    Close(u16, String),
}

/// A frame the connection wrote: (opcode, unmasked payload). FIN, RSV and masking are checked
/// for every frame by the runner.
type Out = (OpCode, Vec<u8>);

struct Case {
    id: String,
    wire: Wire,
    events: Vec<Ev>,
    frames: Vec<Out>,
    /// Offset of the byte on whose arrival the connection reports `Event::Close`.
    close_at: Option<usize>,
}

impl Case {
    fn new(id: impl Into<String>, wire: Wire) -> Self {
        Self {
            id: id.into(),
            wire,
            events: Vec::new(),
            frames: Vec::new(),
            close_at: None,
        }
    }

    /// A text message arrives and is echoed.
    fn echo_text(mut self, payload: &[u8]) -> Self {
        self.events.push(Ev::Text(payload.to_vec()));
        self.frames.push((OpCode::Text, payload.to_vec()));
        self
    }

    /// A binary message arrives and is echoed.
    fn echo_binary(mut self, payload: &[u8]) -> Self {
        self.events.push(Ev::Binary(payload.to_vec()));
        self.frames.push((OpCode::Binary, payload.to_vec()));
        self
    }

    /// A ping arrives and the connection answers it with a pong.
    fn pong(mut self, payload: &[u8]) -> Self {
        self.events.push(Ev::Ping(payload.to_vec()));
        self.frames.push((OpCode::Pong, payload.to_vec()));
        self
    }

    /// An unsolicited pong arrives: reported, not answered.
    fn unsolicited_pong(mut self, payload: &[u8]) -> Self {
        self.events.push(Ev::Pong(payload.to_vec()));
        self
    }

    /// The connection fails with `error` when byte `at` arrives: it reports the error, sends a
    /// close frame with the error's code and reason, and reports the close.
    fn fails(mut self, error: ProtocolError, at: usize) -> Self {
        let code = error.close_code().0;
        let reason = error.to_string();
        self.events.push(Ev::Error(error));
        self.events.push(Ev::Close(code, reason.clone()));
        self.frames
            .push((OpCode::Close, close_payload(code, reason.as_bytes())));
        self.close_at = Some(at);
        self
    }

    /// The peer's close frame (its last byte at `at`) is reported as `code`/`reason` and
    /// answered with a close frame carrying `echo`.
    fn closed_by_peer(mut self, code: u16, reason: &str, echo: &[u8], at: usize) -> Self {
        self.events.push(Ev::Close(code, reason.to_owned()));
        self.frames.push((OpCode::Close, echo.to_vec()));
        self.close_at = Some(at);
        self
    }

    /// The suite's clean ending for a passed case: close 1000, expect 1000 back.
    fn then_clean_close(mut self) -> Self {
        let span = self.wire.send(true, 0, 8, &1000u16.to_be_bytes());
        self.closed_by_peer(1000, "", &1000u16.to_be_bytes(), span.last)
    }

    /// Cases that do not end in a close get the suite's clean close.
    fn finish(self) -> Self {
        if self.close_at.is_some() {
            self
        } else {
            self.then_clean_close()
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The runner
// ------------------------------------------------------------------------------------------------

/// How the stream is cut into pieces for `recv`.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// At the suite's pause points.
    Steps,
    /// Into pieces of this many bytes.
    Pieces(usize),
    /// Into two pieces at this offset.
    At(usize),
}

struct Outcome {
    events: Vec<Ev>,
    frames: Vec<Out>,
    /// Byte range of the piece being fed when `Event::Close` came.
    close_piece: Option<(usize, usize)>,
    state: State,
}

fn piece_ends(case: &Case, split: Split) -> Vec<usize> {
    let len = case.wire.bytes.len();
    match split {
        Split::Steps => case.wire.steps.clone(),
        Split::Pieces(n) => (n..len).step_by(n).chain([len]).collect(),
        Split::At(i) => [i, len].into_iter().filter(|&e| e > 0).collect(),
    }
}

fn comparable(event: Event) -> Ev {
    match event {
        Event::Text(t) => Ev::Text(t.as_bytes().to_vec()),
        Event::Binary(b) => Ev::Binary(b.to_vec()),
        Event::Ping(p) => Ev::Ping(p.to_vec()),
        Event::Pong { payload, id } => {
            assert_eq!(id, None, "nothing pinged, so no pong matches a ping");
            Ev::Pong(payload.to_vec())
        }
        Event::Error(e) => Ev::Error(e),
        Event::Close(c) => Ev::Close(c.code.0, c.reason),
        other => panic!("an event this mirror does not know: {other:?}"),
    }
}

/// Reads what a connection of `role` wrote (by hand: the testkit's parser, not ringsock's),
/// checking every frame is FIN, without RSV bits and masked exactly when the role is the client.
fn written_frames(role: Role, bytes: &[u8]) -> Vec<Out> {
    parse_frames(bytes)
        .into_iter()
        .map(|f| {
            assert!(f.fin, "every frame sent is a whole message");
            assert_eq!(f.rsv, 0, "no extension, no RSV bits");
            assert_eq!(
                f.mask.is_some(),
                role == Role::Client,
                "masking follows the role"
            );
            (opcode(f.opcode), f.payload)
        })
        .collect()
}

fn run(case: &Case, role: Role, split: Split) -> Outcome {
    let mut conn = connection(role, Config::default(), Extensions::default());
    let now = Instant::now();
    let mut events = Vec::new();
    let mut close_piece = None;
    let mut start = 0;
    for end in piece_ends(case, split) {
        let mut piece = &case.wire.bytes[start..end];
        while let Some(event) = conn.recv(&mut piece, now) {
            match &event {
                Event::Text(t) => conn.send_text(t).expect("echo while open"),
                Event::Binary(b) => conn.send_binary(b).expect("echo while open"),
                Event::Close(_) => {
                    assert_eq!(close_piece, None, "{}: a second close", case.id);
                    close_piece = Some((start, end));
                }
                _ => {}
            }
            events.push(comparable(event));
        }
        assert!(
            piece.is_empty(),
            "recv returned None before taking all input"
        );
        start = end;
    }
    assert_eq!(start, case.wire.bytes.len(), "the pieces cover the stream");
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    let state = conn.state();

    // Nothing more: a closed connection ignores whatever else arrives and writes nothing.
    if state == State::Closed {
        let mut more = Wire::new(match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        });
        more.frame(true, 0, 1, b"late");
        more.frame(true, 0, 9, b"late ping");
        let mut input = &more.bytes[..];
        assert_eq!(conn.recv(&mut input, now), None);
        assert_eq!(conn.poll_event(), None);
        assert_eq!(
            conn.poll_transmit(),
            None,
            "{}: output after the close",
            case.id
        );
    }

    Outcome {
        events,
        frames: written_frames(role, &out),
        close_piece,
        state,
    }
}

fn check(case: &Case, role: Role, split: Split) {
    let got = run(case, role, split);
    let ctx = format!("case {} ({role:?} role, split {split:?})", case.id);
    assert_eq!(got.events, case.events, "{ctx}: events");
    assert_eq!(got.frames, case.frames, "{ctx}: frames written");
    assert_eq!(got.state, State::Closed, "{ctx}: every case ends closed");
    let at = case.close_at.expect("every case ends in a close");
    let (start, end) = got.close_piece.expect("close reported");
    assert!(
        (start..end).contains(&at),
        "{ctx}: the close must come with byte {at}, but came with piece {start}..{end}"
    );
}

/// Runs a case in every split this suite uses.
fn check_all_splits(case: &Case, role: Role) {
    let len = case.wire.bytes.len();
    check(case, role, Split::Steps);
    check(case, role, Split::Pieces(len));
    for n in PIECE_SIZES {
        if n < len {
            check(case, role, Split::Pieces(n));
        }
    }
    if len <= EXHAUSTIVE_LIMIT {
        for n in 1..len {
            check(case, role, Split::Pieces(n));
        }
        for i in 1..len {
            check(case, role, Split::At(i));
        }
    }
}

fn check_group(cases: impl Fn(Role) -> Vec<Case>) {
    for (role, peer) in [(Role::Server, Role::Client), (Role::Client, Role::Server)] {
        let cases = cases(peer);
        assert!(!cases.is_empty());
        for case in cases {
            check_all_splits(&case, role);
        }
    }
}

fn opcode_of(n: u8) -> FrameError {
    FrameError::ReservedOpcode(n)
}

// ------------------------------------------------------------------------------------------------
// 1. Framing: text and binary messages of the length-encoding boundary sizes
// ------------------------------------------------------------------------------------------------

const LENGTHS_1X: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];

fn group1(peer: Role) -> Vec<Case> {
    let mut cases = Vec::new();
    for (minor, opcode, byte) in [(1, 1u8, b'*'), (2, 2u8, 0xfe)] {
        let echo = |case: Case, p: &[u8]| match opcode {
            1 => case.echo_text(p),
            _ => case.echo_binary(p),
        };
        for (i, len) in LENGTHS_1X.into_iter().enumerate() {
            let payload = vec![byte; len];
            let mut w = Wire::new(peer);
            w.send(true, 0, opcode, &payload);
            cases.push(echo(Case::new(format!("1.{minor}.{}", i + 1), w), &payload));
        }
        // 1.x.8: 65536 bytes, the octets sent in chops of 997.
        let payload = vec![byte; 65536];
        let mut w = Wire::new(peer);
        w.frame(true, 0, opcode, &payload);
        let w = w.in_chops(997);
        cases.push(echo(Case::new(format!("1.{minor}.8"), w), &payload));
    }
    cases.into_iter().map(Case::finish).collect()
}

#[test]
fn autobahn_1_text_and_binary_at_every_length_encoding_are_echoed() {
    check_group(group1);
}

// ------------------------------------------------------------------------------------------------
// 2. Pings and pongs
// ------------------------------------------------------------------------------------------------

fn group2(peer: Role) -> Vec<Case> {
    let binary = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff";
    let max = [0xfe; 125];
    let mut cases = Vec::new();

    for (id, payload) in [
        ("2.1", &b""[..]),
        ("2.2", HELLO),
        ("2.3", binary),
        ("2.4", &max),
    ] {
        let mut w = Wire::new(peer);
        w.send(true, 0, 9, payload);
        cases.push(Case::new(id, w).pong(payload));
    }

    let mut w = Wire::new(peer);
    let ping = w.send(true, 0, 9, &[0xfe; 126]);
    cases.push(Case::new("2.5", w).fails(
        ProtocolError::Frame(FrameError::ControlTooLong(126)),
        ping.header_last,
    ));

    let mut w = Wire::new(peer);
    w.frame(true, 0, 9, &max);
    cases.push(Case::new("2.6", w.in_chops(1)).pong(&max));

    let mut w = Wire::new(peer);
    w.send(true, 0, 10, b"");
    cases.push(Case::new("2.7", w).unsolicited_pong(b""));

    let mut w = Wire::new(peer);
    w.send(true, 0, 10, b"unsolicited pong payload");
    cases.push(Case::new("2.8", w).unsolicited_pong(b"unsolicited pong payload"));

    let mut w = Wire::new(peer);
    w.send(true, 0, 10, b"unsolicited pong payload");
    w.send(true, 0, 9, b"ping payload");
    cases.push(
        Case::new("2.9", w)
            .unsolicited_pong(b"unsolicited pong payload")
            .pong(b"ping payload"),
    );

    for (id, chops) in [("2.10", Chops::Frames), ("2.11", Chops::Octets)] {
        let mut w = Wire::new(peer);
        for i in 0..10 {
            w.send(true, 0, 9, format!("payload-{i}").as_bytes());
        }
        let mut case = Case::new(id, chops.apply(w));
        for i in 0..10 {
            case = case.pong(format!("payload-{i}").as_bytes());
        }
        cases.push(case);
    }
    cases.into_iter().map(Case::finish).collect()
}

#[test]
fn autobahn_2_pings_are_answered_with_their_payload_and_pongs_are_not() {
    check_group(group2);
}

// ------------------------------------------------------------------------------------------------
// 3. Reserved bits
// ------------------------------------------------------------------------------------------------

fn group3(peer: Role) -> Vec<Case> {
    let mut cases = Vec::new();

    let mut w = Wire::new(peer);
    let bad = w.send(true, 1, 1, HELLO);
    cases.push(Case::new("3.1", w).fails(ProtocolError::ReservedBits(0x10), bad.header_last));

    // A good message, then the same with RSV set, then a ping that must go unanswered.
    for (id, rsv, chops) in [
        ("3.2", 2u8, Chops::One),
        ("3.3", 3, Chops::Frames),
        ("3.4", 4, Chops::Octets),
    ] {
        let mut w = Wire::new(peer);
        w.send(true, 0, 1, HELLO);
        let bad = w.send(true, rsv, 1, HELLO);
        w.send(true, 0, 9, b"");
        cases.push(
            Case::new(id, chops.apply(w))
                .echo_text(HELLO)
                .fails(ProtocolError::ReservedBits(rsv << 4), bad.header_last),
        );
    }

    let mut w = Wire::new(peer);
    let bad = w.send(true, 5, 2, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff");
    cases.push(Case::new("3.5", w).fails(ProtocolError::ReservedBits(0x50), bad.header_last));

    let mut w = Wire::new(peer);
    let bad = w.send(true, 6, 9, HELLO);
    cases.push(Case::new("3.6", w).fails(ProtocolError::ReservedBits(0x60), bad.header_last));

    let mut w = Wire::new(peer);
    let bad = w.send(true, 7, 8, b"");
    cases.push(Case::new("3.7", w).fails(ProtocolError::ReservedBits(0x70), bad.header_last));

    cases
}

#[test]
fn autobahn_3_reserved_bits_fail_with_1002_keeping_earlier_messages() {
    check_group(group3);
}

// ------------------------------------------------------------------------------------------------
// 4. Reserved opcodes
// ------------------------------------------------------------------------------------------------

fn group4(peer: Role) -> Vec<Case> {
    let mut cases = Vec::new();
    for (minor, opcodes) in [(1, [3u8, 4, 5, 6, 7]), (2, [11, 12, 13, 14, 15])] {
        for (i, op) in opcodes.into_iter().enumerate() {
            let id = format!("4.{minor}.{}", i + 1);
            let payload: &[u8] = if i % 3 == 0 { b"" } else { HELLO };
            let mut w = Wire::new(peer);
            if i < 2 {
                // x.1 and x.2: the reserved frame alone, without and with payload.
                let bad = w.send(true, 0, op, payload);
                cases.push(
                    Case::new(id, w).fails(ProtocolError::Frame(opcode_of(op)), bad.header_last),
                );
            } else {
                // x.3 to x.5: after a good message, then a ping that must go unanswered.
                w.send(true, 0, 1, HELLO);
                let bad = w.send(true, 0, op, payload);
                w.send(true, 0, 9, b"");
                cases.push(
                    Case::new(id, w)
                        .echo_text(HELLO)
                        .fails(ProtocolError::Frame(opcode_of(op)), bad.header_last),
                );
            }
        }
    }
    cases
}

#[test]
fn autobahn_4_reserved_opcodes_fail_with_1002_keeping_earlier_messages() {
    check_group(group4);
}

// ------------------------------------------------------------------------------------------------
// 5. Fragmentation
// ------------------------------------------------------------------------------------------------

/// How the suite sends a case's octets: in one chop, frame by frame, or octet by octet.
#[derive(Clone, Copy)]
enum Chops {
    One,
    Frames,
    Octets,
}

impl Chops {
    const ALL: [Chops; 3] = [Chops::One, Chops::Frames, Chops::Octets];

    /// Re-cuts a wire built frame by frame.
    fn apply(self, mut w: Wire) -> Wire {
        match self {
            Chops::One => {
                w.steps = vec![w.bytes.len()];
                w
            }
            Chops::Frames => w,
            Chops::Octets => w.in_chops(1),
        }
    }
}

fn group5(peer: Role) -> Vec<Case> {
    let mut cases = Vec::new();

    for (id, op) in [("5.1", 9u8), ("5.2", 10)] {
        let mut w = Wire::new(peer);
        let bad = w.send(false, 0, op, b"fragment1");
        w.send(true, 0, 0, b"fragment2");
        cases.push(Case::new(id, w).fails(
            ProtocolError::Frame(FrameError::FragmentedControl),
            bad.header_last,
        ));
    }

    // 5.3–5.5: a text message in two fragments.
    for (k, chops) in Chops::ALL.into_iter().enumerate() {
        let mut w = Wire::new(peer);
        w.send(false, 0, 1, b"fragment1");
        w.send(true, 0, 0, b"fragment2");
        cases.push(
            Case::new(format!("5.{}", 3 + k), chops.apply(w)).echo_text(b"fragment1fragment2"),
        );
    }

    // 5.6–5.8: a ping between the fragments is answered at once, the message echoed after.
    for (k, chops) in Chops::ALL.into_iter().enumerate() {
        let mut w = Wire::new(peer);
        w.send(false, 0, 1, b"fragment1");
        w.send(true, 0, 9, b"ping payload");
        w.send(true, 0, 0, b"fragment2");
        cases.push(
            Case::new(format!("5.{}", 6 + k), chops.apply(w))
                .pong(b"ping payload")
                .echo_text(b"fragment1fragment2"),
        );
    }

    // A continuation with nothing to continue, FIN set (5.9–5.11) or not (5.12–5.14).
    for (first, fin) in [(9, true), (12, false)] {
        for (k, chops) in Chops::ALL.into_iter().enumerate() {
            let mut w = Wire::new(peer);
            let bad = w.send(fin, 0, 0, b"non-continuation payload");
            w.send(true, 0, 1, HELLO);
            cases.push(
                Case::new(format!("5.{}", first + k), chops.apply(w))
                    .fails(ProtocolError::UnexpectedContinuation, bad.header_last),
            );
        }
    }

    // 5.15: a whole fragmented message, then a continuation that starts nothing.
    let mut w = Wire::new(peer);
    w.send(false, 0, 1, b"fragment1");
    w.send(true, 0, 0, b"fragment2");
    let bad = w.send(false, 0, 0, b"fragment3");
    w.send(true, 0, 1, b"fragment4");
    cases.push(
        Case::new("5.15", w)
            .echo_text(b"fragment1fragment2")
            .fails(ProtocolError::UnexpectedContinuation, bad.header_last),
    );

    // 5.16, 5.17: repeated twice, a stray continuation (FIN clear, then set), then a message.
    for (id, first_fin) in [("5.16", false), ("5.17", true)] {
        let mut w = Wire::new(peer);
        let mut first = None;
        for _ in 0..2 {
            let s = w.send(first_fin, 0, 0, b"fragment1");
            first.get_or_insert(s);
            w.send(false, 0, 1, b"fragment2");
            w.send(true, 0, 0, b"fragment3");
        }
        cases.push(Case::new(id, w).fails(
            ProtocolError::UnexpectedContinuation,
            first.expect("sent").header_last,
        ));
    }

    // 5.18: a new text frame inside a fragmented message.
    let mut w = Wire::new(peer);
    w.send(false, 0, 1, b"fragment1");
    let bad = w.send(true, 0, 1, b"fragment2");
    cases.push(Case::new("5.18", w).fails(ProtocolError::ExpectedContinuation, bad.header_last));

    // 5.19, 5.20: two pings inside a five-fragment message, answered before it completes.
    for (id, chops) in [("5.19", Chops::Frames), ("5.20", Chops::Octets)] {
        let mut w = Wire::new(peer);
        w.frame(false, 0, 1, b"fragment1");
        w.frame(false, 0, 0, b"fragment2");
        w.frame(true, 0, 9, b"pongme 1!");
        w.pause();
        w.frame(false, 0, 0, b"fragment3");
        w.frame(false, 0, 0, b"fragment4");
        w.frame(true, 0, 9, b"pongme 2!");
        w.frame(true, 0, 0, b"fragment5");
        w.pause();
        cases.push(
            Case::new(id, chops.apply(w))
                .pong(b"pongme 1!")
                .pong(b"pongme 2!")
                .echo_text(b"fragment1fragment2fragment3fragment4fragment5"),
        );
    }
    cases.into_iter().map(Case::finish).collect()
}

#[test]
fn autobahn_5_fragments_reassemble_and_misordered_fragments_fail_with_1002() {
    check_group(group5);
}

// ------------------------------------------------------------------------------------------------
// 6. UTF-8
// ------------------------------------------------------------------------------------------------

/// How a text message is put on the wire.
#[derive(Clone, Copy)]
enum Framing {
    /// Each part is one frame (the first a text frame, the rest continuations), each a step.
    Frames,
    /// One frame, sent in chops at the part boundaries.
    Chops,
}

/// The offset of the first byte after which `s` can no longer begin valid UTF-8, if any.
fn utf8_fail_index(s: &[u8]) -> Option<usize> {
    (1..=s.len())
        .find(|&n| matches!(std::str::from_utf8(&s[..n]), Err(e) if e.error_len().is_some()))
        .map(|n| n - 1)
}

/// A text message in `parts`: echoed if it is UTF-8, else the connection fails with 1007 on
/// the byte that makes it invalid (or at its end, when it stops inside a code point).
fn utf8_case(id: impl Into<String>, peer: Role, parts: &[&[u8]], framing: Framing) -> Case {
    let message = parts.concat();
    let mut w = Wire::new(peer);
    let last = match framing {
        Framing::Frames => {
            let mut last = None;
            for (i, part) in parts.iter().enumerate() {
                let opcode = if i == 0 { 1 } else { 0 };
                last = Some(w.send(i + 1 == parts.len(), 0, opcode, part));
            }
            last.expect("at least one part")
        }
        Framing::Chops => {
            let cuts: Vec<usize> = parts
                .iter()
                .scan(0, |at, p| {
                    *at += p.len();
                    Some(*at)
                })
                .collect();
            w.send_chopped(1, &message, &cuts[..cuts.len() - 1])
        }
    };
    let case = Case::new(id, w);
    if std::str::from_utf8(&message).is_ok() {
        return case.echo_text(&message).finish();
    }
    let at = match utf8_fail_index(&message) {
        Some(i) => case.wire.data[i],
        None => last.last,
    };
    case.fails(ProtocolError::InvalidUtf8, at)
}

/// One Autobahn 6.5–6.23 sequence: is it UTF-8, and its bytes.
type Seq = (bool, Vec<u8>);

fn seqs(valid: bool, items: &[&[u8]]) -> Vec<Seq> {
    items.iter().map(|s| (valid, s.to_vec())).collect()
}

/// The 6.5–6.23 corpus: the sequences of Markus Kuhn's UTF-8 decoder stress test that Autobahn
/// sends, one subgroup per entry, numbered from 6.5.
fn utf8_corpus() -> Vec<Vec<Seq>> {
    // 6.5 Some valid UTF-8.
    let mut groups = vec![seqs(
        true,
        &[
            b"hello$world",
            b"hello\xc2\xa2world",
            b"hello\xe2\x82\xacworld",
            b"hello\xf0\xa4\xad\xa2world",
            KOSME,
        ],
    )];
    // 6.6 Every prefix of a valid string with multi-byte code points: valid only when whole.
    groups.push(
        (1..=KOSME.len())
            .map(|n| (matches!(n, 2 | 5 | 7 | 9 | 11), KOSME[..n].to_vec()))
            .collect(),
    );
    // 6.7 First sequence of each length.
    groups.push(seqs(
        true,
        &[b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"],
    ));
    // 6.8 First 5- and 6-byte sequences (beyond U+10FFFF).
    groups.push(seqs(
        false,
        &[b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"],
    ));
    // 6.9 Last sequence of each length.
    groups.push(seqs(
        true,
        &[b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"],
    ));
    // 6.10 Last 4-, 5- and 6-byte sequences (beyond U+10FFFF).
    groups.push(seqs(
        false,
        &[
            b"\xf7\xbf\xbf\xbf",
            b"\xfb\xbf\xbf\xbf\xbf",
            b"\xfd\xbf\xbf\xbf\xbf\xbf",
        ],
    ));
    // 6.11 Other boundaries.
    let mut g = seqs(
        true,
        &[
            b"\xed\x9f\xbf",
            b"\xee\x80\x80",
            b"\xef\xbf\xbd",
            b"\xf4\x8f\xbf\xbf",
        ],
    );
    g.push((false, b"\xf4\x90\x80\x80".to_vec()));
    groups.push(g);
    // 6.12 Unexpected continuation bytes.
    let mut g = seqs(
        false,
        &[
            b"\x80",
            b"\xbf",
            b"\x80\xbf",
            b"\x80\xbf\x80",
            b"\x80\xbf\x80\xbf",
            b"\x80\xbf\x80\xbf\x80",
            b"\x80\xbf\x80\xbf\x80\xbf",
        ],
    );
    g.push((false, (0x80..0xbf).collect()));
    groups.push(g);
    // 6.13 Lonely start bytes, each followed by a space.
    groups.push(
        [
            (0xc0u8, 0xdfu8),
            (0xe0, 0xef),
            (0xf0, 0xf7),
            (0xf8, 0xfb),
            (0xfc, 0xfd),
        ]
        .into_iter()
        .map(|(lo, hi)| (false, (lo..hi).flat_map(|b| [b, b' ']).collect()))
        .collect(),
    );
    // 6.14 Sequences missing their last continuation byte.
    let truncated: [&[u8]; 10] = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    groups.push(seqs(false, &truncated));
    // 6.15 All of them concatenated.
    groups.push(vec![(false, truncated.concat())]);
    // 6.16 Impossible bytes.
    groups.push(seqs(false, &[b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"]));
    // 6.17 Overlong '/'.
    groups.push(seqs(
        false,
        &[
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf8\x80\x80\x80\xaf",
            b"\xfc\x80\x80\x80\x80\xaf",
        ],
    ));
    // 6.18 Maximum overlong sequences.
    groups.push(seqs(
        false,
        &[
            b"\xc1\xbf",
            b"\xe0\x9f\xbf",
            b"\xf0\x8f\xbf\xbf",
            b"\xf8\x87\xbf\xbf\xbf",
            b"\xfc\x83\xbf\xbf\xbf\xbf",
        ],
    ));
    // 6.19 Overlong NUL.
    groups.push(seqs(
        false,
        &[
            b"\xc0\x80",
            b"\xe0\x80\x80",
            b"\xf0\x80\x80\x80",
            b"\xf8\x80\x80\x80\x80",
            b"\xfc\x80\x80\x80\x80\x80",
        ],
    ));
    // 6.20 Single UTF-16 surrogates.
    groups.push(seqs(
        false,
        &[
            b"\xed\xa0\x80",
            b"\xed\xad\xbf",
            b"\xed\xae\x80",
            b"\xed\xaf\xbf",
            b"\xed\xb0\x80",
            b"\xed\xbe\x80",
            b"\xed\xbf\xbf",
        ],
    ));
    // 6.21 Paired UTF-16 surrogates.
    let high: [&[u8]; 4] = [
        b"\xed\xa0\x80",
        b"\xed\xad\xbf",
        b"\xed\xae\x80",
        b"\xed\xaf\xbf",
    ];
    let low: [&[u8]; 2] = [b"\xed\xb0\x80", b"\xed\xbf\xbf"];
    groups.push(
        high.iter()
            .flat_map(|h| low.iter().map(move |l| (false, [*h, *l].concat())))
            .collect(),
    );
    // 6.22 Non-characters: valid UTF-8.
    let mut g = seqs(true, &[b"\xef\xbf\xbe", b"\xef\xbf\xbf"]);
    for z1 in 0xf0u8..=0xf4 {
        for z2 in [0x8fu8, 0x9f, 0xaf, 0xbf] {
            if z1 == 0xf4 && z2 != 0x8f {
                continue; // beyond U+10FFFF
            }
            for z3 in [0xbeu8, 0xbf] {
                if z1 == 0xf0 && z2 == 0x8f {
                    continue; // overlong
                }
                g.push((true, vec![z1, z2, 0xbf, z3]));
            }
        }
    }
    groups.push(g);
    // 6.23 Specials, the replacement character among them.
    groups.push(
        (0xb9u8..=0xbf)
            .map(|b| (true, vec![0xef, 0xbf, b]))
            .collect(),
    );
    groups
}

fn group6(peer: Role) -> Vec<Case> {
    use Framing::{Chops, Frames};
    let mut cases = Vec::new();

    // 6.1 Empty messages.
    cases.push(utf8_case("6.1.1", peer, &[b""], Frames));
    cases.push(utf8_case("6.1.2", peer, &[b"", b"", b""], Frames));
    cases.push(utf8_case(
        "6.1.3",
        peer,
        &[b"", b"middle frame payload", b""],
        Frames,
    ));

    // 6.2 Valid UTF-8, whole, in two fragments on a code point boundary, and byte by byte.
    let hello = HELLO_UTF8.as_bytes();
    let (a, b) = HELLO_UTF8.split_at("Hello-µ@ßöä".len());
    let bytes = |s: &[u8]| s.chunks(1).map(|c| c.to_vec()).collect::<Vec<_>>();
    let hello_bytes = bytes(hello);
    let kosme_bytes = bytes(KOSME);
    cases.push(utf8_case("6.2.1", peer, &[hello], Frames));
    cases.push(utf8_case(
        "6.2.2",
        peer,
        &[a.as_bytes(), b.as_bytes()],
        Frames,
    ));
    let parts: Vec<&[u8]> = hello_bytes.iter().map(Vec::as_slice).collect();
    cases.push(utf8_case("6.2.3", peer, &parts, Frames));
    let parts: Vec<&[u8]> = kosme_bytes.iter().map(Vec::as_slice).collect();
    cases.push(utf8_case("6.2.4", peer, &parts, Frames));

    // 6.3 Invalid UTF-8 (a surrogate), whole and byte by byte.
    let invalid = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    cases.push(utf8_case("6.3.1", peer, &[&invalid], Frames));
    let invalid_bytes = bytes(&invalid);
    let parts: Vec<&[u8]> = invalid_bytes.iter().map(Vec::as_slice).collect();
    cases.push(utf8_case("6.3.2", peer, &parts, Frames));

    // 6.4 Fail fast: the connection fails in the fragment (6.4.1–2) or chop (6.4.3–4) that
    // carries the invalid byte, before the rest is sent.
    let payload = [KOSME, b"\xf4\x90\x80\x80", b"edited"].concat();
    let thirds: [&[u8]; 3] = [KOSME, b"\xf4\x90\x80\x80", b"edited"];
    let at_byte: [&[u8]; 3] = [&payload[..12], &payload[12..13], &payload[13..]];
    cases.push(utf8_case("6.4.1", peer, &thirds, Frames));
    cases.push(utf8_case("6.4.2", peer, &at_byte, Frames));
    cases.push(utf8_case("6.4.3", peer, &thirds, Chops));
    cases.push(utf8_case("6.4.4", peer, &at_byte, Chops));

    // 6.5–6.23: the corpus, each sequence as one text message.
    for (g, group) in utf8_corpus().into_iter().enumerate() {
        for (j, (valid, seq)) in group.iter().enumerate() {
            let id = format!("6.{}.{}", g + 5, j + 1);
            assert_eq!(
                std::str::from_utf8(seq).is_ok(),
                *valid,
                "{id}: the table's verdict"
            );
            cases.push(utf8_case(id, peer, &[seq], Frames));
        }
    }
    cases
}

#[test]
fn autobahn_6_utf8_is_validated_and_invalid_text_fails_fast_with_1007() {
    check_group(group6);
}

#[test]
fn autobahn_6_corpus_has_the_suites_case_counts() {
    let counts: Vec<usize> = utf8_corpus().iter().map(Vec::len).collect();
    assert_eq!(
        counts,
        [5, 11, 4, 2, 4, 3, 5, 8, 5, 10, 1, 3, 5, 5, 5, 7, 8, 34, 7]
    );
}

#[test]
fn autobahn_6_4_fail_fast_closes_before_the_rest_of_the_message_is_sent() {
    // Fed step by step as the suite sends them: the close must come with step 1 of 3.
    for case in group6(Role::Client)
        .iter()
        .filter(|c| c.id.starts_with("6.4."))
    {
        assert_eq!(case.wire.steps.len(), 3, "{}", case.id);
        let mut conn = Connection::server(Config::default(), Extensions::default());
        let now = Instant::now();
        let mut start = 0;
        let mut closed_in = None;
        for (i, &end) in case.wire.steps.iter().enumerate() {
            let mut piece = &case.wire.bytes[start..end];
            while let Some(e) = conn.recv(&mut piece, now) {
                if let Event::Close(c) = e {
                    assert_eq!(c.code.0, 1007, "{}", case.id);
                    closed_in = Some(i);
                }
            }
            start = end;
            if closed_in.is_some() {
                break;
            }
        }
        assert_eq!(closed_in, Some(1), "{}", case.id);
    }
}

// ------------------------------------------------------------------------------------------------
// 7. Closing
// ------------------------------------------------------------------------------------------------

const VALID_CODES_7_7: [u16; 13] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
];
const INVALID_CODES_7_9: [u16; 9] = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999];

fn group7(peer: Role) -> Vec<Case> {
    let code = |c: u16| c.to_be_bytes();
    let mut cases = Vec::new();

    // 7.1.1 A message, then close: echoed, then the close answered.
    let mut w = Wire::new(peer);
    w.send(true, 0, 1, b"Hello World!");
    cases.push(
        Case::new("7.1.1", w)
            .echo_text(b"Hello World!")
            .then_clean_close(),
    );

    // 7.1.2 Close, then close again: the second is ignored.
    let mut w = Wire::new(peer);
    let close = w.send(true, 0, 8, &code(1000));
    w.send(true, 0, 8, &code(1000));
    cases.push(Case::new("7.1.2", w).closed_by_peer(1000, "", &code(1000), close.last));

    // 7.1.3 Close, then ping: not answered.
    let mut w = Wire::new(peer);
    let close = w.send(true, 0, 8, &code(1000));
    w.send(true, 0, 9, b"Hello World!");
    cases.push(Case::new("7.1.3", w).closed_by_peer(1000, "", &code(1000), close.last));

    // 7.1.4 Close, then a message: not echoed.
    let mut w = Wire::new(peer);
    let close = w.send(true, 0, 8, &code(1000));
    w.send(true, 0, 1, b"Hello World!");
    cases.push(Case::new("7.1.4", w).closed_by_peer(1000, "", &code(1000), close.last));

    // 7.1.5 A first fragment, close, the last fragment: the message never completes.
    let mut w = Wire::new(peer);
    w.send(false, 0, 1, b"fragment1");
    let close = w.send(true, 0, 8, &code(1000));
    w.send(true, 0, 0, b"fragment2");
    cases.push(Case::new("7.1.5", w).closed_by_peer(1000, "", &code(1000), close.last));

    // 7.1.6 A 256 KiB message, a small one, close, ping: both echoed, close answered, no pong.
    let big: Vec<u8> = b"BAsd7&jh23"
        .iter()
        .copied()
        .cycle()
        .take(256 << 10)
        .collect();
    let mut w = Wire::new(peer);
    w.frame(true, 0, 1, &big);
    w.frame(true, 0, 1, b"Hello World!");
    let close = w.frame(true, 0, 8, &code(1000));
    w.frame(true, 0, 9, b"");
    w.pause();
    cases.push(
        Case::new("7.1.6", w)
            .echo_text(&big)
            .echo_text(b"Hello World!")
            .closed_by_peer(1000, "", &code(1000), close.last),
    );

    // 7.3.1 Empty close payload: reported as 1000, answered with an empty close.
    let mut w = Wire::new(peer);
    let close = w.send(true, 0, 8, b"");
    cases.push(Case::new("7.3.1", w).closed_by_peer(1000, "", b"", close.last));

    // 7.3.2 A one-byte close payload.
    let mut w = Wire::new(peer);
    let close = w.send(true, 0, 8, b"a");
    cases.push(Case::new("7.3.2", w).fails(
        ProtocolError::InvalidClosePayload(ClosePayloadError::OneByte),
        close.last,
    ));

    // 7.3.3 Code only; 7.3.4 code and reason; 7.3.5 a 123-byte reason (125-byte payload).
    let reason_123 = "*".repeat(123);
    for (id, reason) in [
        ("7.3.3", ""),
        ("7.3.4", "Hello World!"),
        ("7.3.5", &reason_123),
    ] {
        let mut w = Wire::new(peer);
        let close = w.send(true, 0, 8, &close_payload(1000, reason.as_bytes()));
        cases.push(Case::new(id, w).closed_by_peer(1000, reason, &code(1000), close.last));
    }

    // 7.3.6 A 124-byte reason: the 126-byte control frame is refused from its header.
    let mut w = Wire::new(peer);
    let close = w.send(true, 0, 8, &close_payload(1000, "*".repeat(124).as_bytes()));
    cases.push(Case::new("7.3.6", w).fails(
        ProtocolError::Frame(FrameError::ControlTooLong(126)),
        close.header_last,
    ));

    // 7.5.1 A reason that is not UTF-8.
    let mut w = Wire::new(peer);
    let reason = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    let close = w.send(true, 0, 8, &close_payload(1000, &reason));
    cases.push(Case::new("7.5.1", w).fails(
        ProtocolError::InvalidClosePayload(ClosePayloadError::InvalidUtf8),
        close.last,
    ));

    // 7.7.x Valid codes are echoed.
    for (i, c) in VALID_CODES_7_7.into_iter().enumerate() {
        let mut w = Wire::new(peer);
        let close = w.send(true, 0, 8, &code(c));
        cases.push(Case::new(format!("7.7.{}", i + 1), w).closed_by_peer(
            c,
            "",
            &code(c),
            close.last,
        ));
    }

    // 7.9.x Invalid codes fail with 1002; so do 7.13.1 (5000) and 7.13.2 (65535), which the
    // suite leaves to the implementation.
    let invalid = INVALID_CODES_7_9
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("7.9.{}", i + 1), c))
        .chain([("7.13.1".to_owned(), 5000), ("7.13.2".to_owned(), 65535)]);
    for (id, c) in invalid {
        let mut w = Wire::new(peer);
        let close = w.send(true, 0, 8, &code(c));
        cases.push(Case::new(id, w).fails(
            ProtocolError::InvalidClosePayload(ClosePayloadError::InvalidCode(c)),
            close.last,
        ));
    }
    cases
}

#[test]
fn autobahn_7_close_handshake_codes_and_payloads() {
    check_group(group7);
}

// ------------------------------------------------------------------------------------------------
// 10. Miscellaneous
// ------------------------------------------------------------------------------------------------

fn group10(peer: Role) -> Vec<Case> {
    // 10.1.1 A 65536-byte text message in frames of 1300 bytes, echoed whole.
    let payload = vec![b'*'; 65536];
    let chunks: Vec<&[u8]> = payload.chunks(1300).collect();
    let mut w = Wire::new(peer);
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { 1 } else { 0 };
        w.send(i + 1 == chunks.len(), 0, opcode, chunk);
    }
    vec![Case::new("10.1.1", w).echo_text(&payload).finish()]
}

#[test]
fn autobahn_10_1_1_message_in_1300_byte_fragments_is_echoed_whole() {
    let cases = group10(Role::Client);
    assert_eq!(
        cases[0].wire.steps.len(),
        51 + 1,
        "51 fragments, then the close"
    );
    check_group(group10);
}

// ------------------------------------------------------------------------------------------------
// Role rules: masking
// ------------------------------------------------------------------------------------------------

#[test]
fn server_role_fails_an_unmasked_frame_with_1002() {
    // Alone: a ping framed as a server would (unmasked), fed to a server.
    let mut w = Wire::new(Role::Server);
    let span = w.send(true, 0, 9, b"");
    let case =
        Case::new("unmasked ping", w).fails(ProtocolError::UnmaskedClientFrame, span.header_last);
    check_all_splits(&case, Role::Server);

    // After a good masked message: the message is kept, the unmasked one fails.
    let mut w = Wire::new(Role::Client);
    w.send(true, 0, 1, HELLO);
    let mut case = Case::new("masked then unmasked", w).echo_text(HELLO);
    let unmasked = raw_frame(true, 0, 1, None, HELLO);
    let header_last = case.wire.bytes.len() + 1;
    case.wire.bytes.extend_from_slice(&unmasked);
    case.wire.pause();
    let case = case.fails(ProtocolError::UnmaskedClientFrame, header_last);
    check_all_splits(&case, Role::Server);
}

#[test]
fn client_role_fails_a_masked_frame_with_1002() {
    let mut w = Wire::new(Role::Server);
    w.send(true, 0, 1, HELLO);
    let mut case = Case::new("unmasked then masked", w).echo_text(HELLO);
    let masked = raw_frame(true, 0, 1, Some([1, 2, 3, 4]), HELLO);
    let header_last = case.wire.bytes.len() + 5;
    case.wire.bytes.extend_from_slice(&masked);
    case.wire.pause();
    let case = case.fails(ProtocolError::MaskedServerFrame, header_last);
    check_all_splits(&case, Role::Client);
}

// ------------------------------------------------------------------------------------------------
// faye's other failure codes: 1009 from the header, 1002 for a 64-bit length with the top bit
// ------------------------------------------------------------------------------------------------

#[test]
fn message_over_max_length_fails_with_1009_from_the_header() {
    let config = Config {
        max_length: 100,
        ..Config::default()
    };
    // Whole: the header alone decides. Fragmented: the fragment whose header crosses the limit.
    let mut whole = Wire::new(Role::Client);
    let w1 = whole.send(true, 0, 2, &[0; 101]);
    let mut frags = Wire::new(Role::Client);
    frags.send(false, 0, 1, &[b'a'; 60]);
    let w2 = frags.send(true, 0, 0, &[b'b'; 41]);
    for (wire, span, length) in [(whole, w1, 101), (frags, w2, 101)] {
        let case = Case::new("1009", wire).fails(
            ProtocolError::MessageTooBig {
                length,
                max: config.max_length,
            },
            span.header_last,
        );
        for n in [1, 2, 5, case.wire.bytes.len()] {
            let mut conn = Connection::server(config.clone(), Extensions::default());
            let mut events = Vec::new();
            let mut close_piece = None;
            for (i, piece) in case.wire.bytes.chunks(n).enumerate() {
                let mut piece = piece;
                while let Some(e) = conn.recv(&mut piece, Instant::now()) {
                    if matches!(e, Event::Close(_)) {
                        close_piece = Some(i);
                    }
                    events.push(comparable(e));
                }
            }
            assert_eq!(events, case.events, "piece {n}");
            assert_eq!(close_piece, Some(span.header_last / n), "piece {n}");
            let mut out = Vec::new();
            while let Some(c) = conn.poll_transmit() {
                out.extend_from_slice(&c);
            }
            assert_eq!(written_frames(Role::Server, &out), case.frames);
        }
    }
}

#[test]
fn sixty_four_bit_length_with_the_top_bit_fails_with_1002() {
    let mut w = Wire::new(Role::Client);
    // A binary frame header claiming 2^63 bytes: FIN|binary, MASK|127, length, key.
    w.bytes
        .extend_from_slice(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    w.pause();
    let case = Case::new("2^63", w).fails(ProtocolError::Frame(FrameError::LengthOverflow), 13);
    check_all_splits(&case, Role::Server);
}
