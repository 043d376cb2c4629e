//! One connection flooding the server with what it must not let grow without bound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Outcome, Watcher};
use crate::hostile::client::{
    encode_frame, repeat_frame, Options, RawClient, WriteEnd, OP_BINARY, OP_CONTINUATION, OP_PING,
    OP_TEXT,
};
use crate::hostile::tcp::Drain;
use crate::hostile::units::{mb, thousands};

/// How long the attacker may take to connect and upgrade.
pub(super) const OPEN_BOUND: Duration = Duration::from_secs(2);

/// A write that makes no progress for this long means the server stopped reading.
const STALL: Duration = Duration::from_secs(2);

/// How long a non-reading attacker stays connected once the server has read what it will: what
/// the server holds for it is at its highest then, and the RSS sampler gets to see it.
const HOLD: Duration = Duration::from_millis(500);

/// How long the server may take to read what sits in the socket buffers once the attacker has
/// written everything.
const DRAIN_BOUND: Duration = Duration::from_secs(20);

/// The non-reading sender's volume: 1 GiB of payload…
pub const NON_READER_TOTAL: u64 = 1 << 30;
/// …in binary messages of 64 KiB…
pub const NON_READER_MESSAGE: usize = 64 << 10;
/// …within 30 s.
const NON_READER_BOUND: Duration = Duration::from_secs(30);

/// Pings the non-reading ping flood sends at most, and its time bound.
pub const PING_FLOOD_COUNT: u64 = 1_000_000;

/// The ping flood's payload: 125 bytes, the most a control frame carries, so each ping owes
/// the most pong. With a few bytes the owed pongs (6 MB for 1 M) mostly fit in the kernel's
/// socket buffers and the attack shows little; with 125 they are 127 MB, which is what the
/// issue measured (+157-200 MB) and what coalescing pongs must bound.
pub const PING_FLOOD_PAYLOAD: [u8; 125] = [b'p'; 125];
const PING_FLOOD_BOUND: Duration = Duration::from_secs(30);

/// One ping per write: the server then reads them a few at a time and queues a pong per read,
/// the costliest way for it (a batch of pings read at once is answered with one chunk).
const PINGS_PER_WRITE: usize = 1;

/// One-byte continuation frames the fragment flood sends at most, and its time bound.
pub const FRAGMENTS: u64 = 4_000_000;
const FRAGMENT_BOUND: Duration = Duration::from_secs(20);

/// Pings the control-frame flood sends at most, and its time bound.
pub const CONTROL_FLOOD_MAX: u64 = 1_000_000;
const CONTROL_FLOOD_BOUND: Duration = Duration::from_secs(10);

/// The reading flood: 64 KiB messages for 5 s at most, 8 GiB at most.
pub const READING_FLOOD_MESSAGE: usize = 64 << 10;
const READING_FLOOD_TOTAL: u64 = 8 << 30;
const READING_FLOOD_BOUND: Duration = Duration::from_secs(5);

/// How a flood's writing went.
struct Pushed {
    /// Bytes the kernel took.
    bytes: u64,
    /// Why it stopped.
    end: WriteEnd,
}

/// Writes `batch` over and over until `total` bytes are written, the server stops reading, the
/// connection fails, `bound` passes or `stop` says so.
fn push(
    client: &mut RawClient,
    batch: &[u8],
    total: u64,
    bound: Duration,
    stop: &dyn Fn() -> bool,
) -> Pushed {
    let deadline = Instant::now() + bound;
    let mut bytes = 0u64;
    // Bounded by `total` (every pass writes a whole batch or ends) and by `deadline`.
    let end = loop {
        if bytes >= total || stop() {
            break WriteEnd::Done;
        }
        let want = batch.len().min((total - bytes) as usize);
        let (n, end) = client.write_bounded(&batch[..want], STALL, deadline);
        bytes += n as u64;
        if end != WriteEnd::Done {
            break end;
        }
    };
    Pushed { bytes, end }
}

/// A flood written, then waited on until the server had read it (or stopped reading).
struct Flood {
    pushed: Pushed,
    drain: Drain,
    /// From the first write to the end of the wait.
    took: Duration,
}

impl Flood {
    /// Floods `client` with `batch` (see [`push`]), then waits for the server to read what
    /// sits in the socket buffers, unless the connection failed or `stop` says it is over.
    fn run(
        client: &mut RawClient,
        batch: &[u8],
        total: u64,
        bound: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Self {
        let start = Instant::now();
        let pushed = push(client, batch, total, bound, stop);
        let drain = match pushed.end {
            WriteEnd::Failed(_) => Drain::Unknown,
            _ if stop() => Drain::Unknown,
            _ => client.wait_until_read(STALL, DRAIN_BOUND),
        };
        Self {
            pushed,
            drain,
            took: start.elapsed(),
        }
    }

    /// Bytes left unread when the wait ended.
    fn unread(&self) -> Option<u64> {
        match self.drain {
            Drain::Read => Some(0),
            Drain::Stopped(n) | Drain::TimeUp(n) => Some(n),
            Drain::Unknown => None,
        }
    }

    /// Bytes the server read.
    fn read(&self) -> u64 {
        self.pushed.bytes - self.unread().unwrap_or(0).min(self.pushed.bytes)
    }

    /// What the attacker saw, counting in `unit`s of `unit_len` bytes.
    fn story(&self, unit: &str, unit_len: u64) -> String {
        let (read, left) = (self.read(), self.unread().unwrap_or(0));
        let n = thousands(read / unit_len);
        match (&self.drain, &self.pushed.end) {
            (Drain::Read, _) => format!(
                "the server read all {n} {unit} ({}) in {:.1} s",
                mb(read),
                self.took.as_secs_f64()
            ),
            (Drain::Stopped(_), _) => format!(
                "the server stopped reading after {n} {unit} ({}; {} left unread)",
                mb(read),
                mb(left)
            ),
            (Drain::TimeUp(_), _) => format!(
                "the server had read {n} {unit} ({}) after {:.0} s, {} still unread",
                mb(read),
                self.took.as_secs_f64(),
                mb(left)
            ),
            (Drain::Unknown, WriteEnd::Failed(e)) => format!(
                "connection failed after {} {unit} written: {e}",
                thousands(self.pushed.bytes / unit_len)
            ),
            (Drain::Unknown, _) => format!(
                "{} {unit} written ({})",
                thousands(self.pushed.bytes / unit_len),
                mb(self.pushed.bytes)
            ),
        }
    }
}

/// The attacker could not even connect.
fn not_opened(what: impl std::fmt::Display) -> Outcome {
    Outcome {
        seen: format!("could not open: {what}"),
        open_failures: 1,
        ..Outcome::default()
    }
}

/// a. Sends up to 1 GiB of 64 KiB binary messages and never reads the echoes (small
/// `SO_RCVBUF`); notes how much the server took before it stopped reading.
pub fn non_reading_sender(addr: SocketAddr) -> Outcome {
    let mut client = match RawClient::open(addr, &Options::small_recv_buffer(), OPEN_BOUND) {
        Ok(c) => c,
        Err(e) => return not_opened(e),
    };
    let frame = encode_frame(OP_BINARY, true, &vec![0x5a; NON_READER_MESSAGE]);
    // 16 messages per write: fewer system calls, the same bytes.
    let batch = frame.repeat(16);
    let total = NON_READER_TOTAL / NON_READER_MESSAGE as u64 * frame.len() as u64;
    let flood = Flood::run(&mut client, &batch, total, NON_READER_BOUND, &|| false);
    let messages = flood.read() / frame.len() as u64;
    let seen = flood.story("messages", frame.len() as u64);
    std::thread::sleep(HOLD);
    client.reset();
    Outcome {
        seen,
        units: messages,
        bytes: flood.pushed.bytes,
        stalled: matches!(flood.drain, Drain::Stopped(_)),
        unread: flood.unread(),
        ..Outcome::default()
    }
}

/// b. Sends up to 1,000,000 pings of 125 bytes and never reads the pongs.
pub fn ping_flood(addr: SocketAddr) -> Outcome {
    let mut client = match RawClient::open(addr, &Options::small_recv_buffer(), OPEN_BOUND) {
        Ok(c) => c,
        Err(e) => return not_opened(e),
    };
    let frame_len = encode_frame(OP_PING, true, &PING_FLOOD_PAYLOAD).len() as u64;
    let batch = repeat_frame(OP_PING, true, &PING_FLOOD_PAYLOAD, PINGS_PER_WRITE);
    let flood = Flood::run(
        &mut client,
        &batch,
        PING_FLOOD_COUNT * frame_len,
        PING_FLOOD_BOUND,
        &|| false,
    );
    let seen = format!(
        "{}, never reading the pongs",
        flood.story("pings", frame_len)
    );
    std::thread::sleep(HOLD);
    client.reset();
    Outcome {
        seen,
        units: flood.read() / frame_len,
        bytes: flood.pushed.bytes,
        stalled: matches!(flood.drain, Drain::Stopped(_)),
        unread: flood.unread(),
        ..Outcome::default()
    }
}

/// c. Opens a text message with a one-byte frame (fin clear) and continues it with one-byte
/// continuation frames, up to [`FRAGMENTS`]; watches for the server's close.
pub fn fragment_flood(addr: SocketAddr) -> Outcome {
    let mut client = match RawClient::open(addr, &Options::small_recv_buffer(), OPEN_BOUND) {
        Ok(c) => c,
        Err(e) => return not_opened(e),
    };
    let watcher = match client.split_reader() {
        Ok(reader) => Watcher::start(reader, FRAGMENT_BOUND + HOLD + Duration::from_secs(5)),
        Err(e) => return not_opened(e),
    };
    let first = encode_frame(OP_TEXT, false, b"a");
    let frame_len = encode_frame(OP_CONTINUATION, false, b"a").len() as u64;
    let batch = repeat_frame(OP_CONTINUATION, false, b"a", 10_000);
    let (n, end) = client.write_bounded(&first, STALL, Instant::now() + STALL);
    if end != WriteEnd::Done {
        let _ = watcher.finish();
        return Outcome {
            seen: format!("the first frame could not be written: {end:?}"),
            ..Outcome::default()
        };
    }
    let flood = Flood::run(
        &mut client,
        &batch,
        FRAGMENTS * frame_len,
        FRAGMENT_BOUND,
        &|| watcher.ended(),
    );
    // The message is still open: what the server keeps for it is at its highest now.
    std::thread::sleep(HOLD);
    let watched = watcher.finish();
    client.reset();
    let fragments = flood.read() / frame_len;
    let seen = if watched.closed {
        format!(
            "closed with {} after {} fragments",
            code(watched.close_code),
            thousands(flood.pushed.bytes / frame_len)
        )
    } else if let Some(end) = &watched.end {
        format!(
            "connection {end} after {} fragments",
            thousands(flood.pushed.bytes / frame_len)
        )
    } else {
        format!("{}, no close", flood.story("fragments", frame_len))
    };
    Outcome {
        seen,
        units: fragments,
        bytes: flood.pushed.bytes + n as u64,
        stalled: matches!(flood.drain, Drain::Stopped(_)),
        unread: flood.unread(),
        close_code: watched.close_code,
        ..Outcome::default()
    }
}

/// d. Pings as fast as it can while reading what comes back, until the server closes (it
/// should, with 1008, past its control-frame rate) or the bounds pass.
pub fn control_flood(addr: SocketAddr) -> Outcome {
    let mut client = match RawClient::open(addr, &Options::default(), OPEN_BOUND) {
        Ok(c) => c,
        Err(e) => return not_opened(e),
    };
    let watcher = match client.split_reader() {
        Ok(reader) => Watcher::start(reader, CONTROL_FLOOD_BOUND + Duration::from_secs(5)),
        Err(e) => return not_opened(e),
    };
    let payload = b"flood!!!";
    let frame_len = encode_frame(OP_PING, true, payload).len() as u64;
    let batch = repeat_frame(OP_PING, true, payload, 100);
    let flood = Flood::run(
        &mut client,
        &batch,
        CONTROL_FLOOD_MAX * frame_len,
        CONTROL_FLOOD_BOUND,
        &|| watcher.ended(),
    );
    let watched = watcher.finish();
    client.reset();
    let pings = flood.pushed.bytes / frame_len;
    let seen = if watched.closed {
        format!(
            "closed with {} after {} pings ({} pongs back)",
            code(watched.close_code),
            thousands(pings),
            thousands(watched.pongs)
        )
    } else if let Some(end) = &watched.end {
        format!(
            "connection {end} after {} pings ({} pongs back), no close frame",
            thousands(pings),
            thousands(watched.pongs)
        )
    } else {
        format!(
            "{}, no close ({} pongs back)",
            flood.story("pings", frame_len),
            thousands(watched.pongs)
        )
    };
    Outcome {
        seen,
        units: pings,
        bytes: flood.pushed.bytes,
        stalled: matches!(flood.drain, Drain::Stopped(_)),
        unread: flood.unread(),
        close_code: watched.close_code,
        replies: Some(watched.pongs),
        ..Outcome::default()
    }
}

/// i. Sends 64 KiB binary messages as fast as it can for 5 s and reads every echo back: no
/// abuse of the protocol, only of the shard's time, which the read budget shares out; the
/// control client beside it measures that share.
pub fn reading_flood(addr: SocketAddr) -> Outcome {
    let mut client = match RawClient::open(addr, &Options::default(), OPEN_BOUND) {
        Ok(c) => c,
        Err(e) => return not_opened(e),
    };
    let watcher = match client.split_reader() {
        Ok(reader) => Watcher::start(reader, READING_FLOOD_BOUND + DRAIN_BOUND),
        Err(e) => return not_opened(e),
    };
    let frame = encode_frame(OP_BINARY, true, &vec![0x5a; READING_FLOOD_MESSAGE]);
    let batch = frame.repeat(16);
    let flood = Flood::run(
        &mut client,
        &batch,
        READING_FLOOD_TOTAL,
        READING_FLOOD_BOUND,
        &|| watcher.ended(),
    );
    let watched = watcher.finish();
    client.reset();
    let sent = flood.pushed.bytes / frame.len() as u64;
    let secs = flood.took.as_secs_f64();
    let seen = match (&watched.end, watched.closed) {
        (None, false) => format!(
            "{} messages echoed of {} sent in {secs:.1} s ({}/s)",
            thousands(watched.others),
            thousands(sent),
            mb((watched.others as f64 * frame.len() as f64 / secs) as u64)
        ),
        (Some(end), _) => format!("connection {end} after {} messages", thousands(sent)),
        (None, true) => format!(
            "closed with {} after {} messages",
            code(watched.close_code),
            thousands(sent)
        ),
    };
    Outcome {
        seen,
        units: sent,
        bytes: flood.pushed.bytes,
        stalled: matches!(flood.drain, Drain::Stopped(_)),
        unread: flood.unread(),
        close_code: watched.close_code,
        replies: Some(watched.others),
        ..Outcome::default()
    }
}

/// A close code in words ("1008", or "no code").
fn code(code: Option<u16>) -> String {
    code.map_or("no code".into(), |c| c.to_string())
}
