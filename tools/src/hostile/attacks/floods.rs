//! One connection flooding the server with what it must not let grow without bound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Outcome, Watcher};
use crate::hostile::client::{
    encode_frame, repeat_frame, Options, RawClient, WriteEnd, OP_BINARY, OP_CONTINUATION, OP_PING,
    OP_TEXT,
};
use crate::hostile::units::{mb, thousands};

/// How long the attacker may take to connect and upgrade.
pub(super) const OPEN_BOUND: Duration = Duration::from_secs(2);

/// A write that makes no progress for this long means the server stopped reading.
const STALL: Duration = Duration::from_secs(2);

/// How long a non-reading attacker stays connected after its last write: what the server
/// holds for it is at its highest then, and the RSS sampler gets to see it.
const HOLD: Duration = Duration::from_secs(1);

/// The non-reading sender's volume: 1 GiB of payload…
pub const NON_READER_TOTAL: u64 = 1 << 30;
/// …in binary messages of 64 KiB…
pub const NON_READER_MESSAGE: usize = 64 << 10;
/// …within 30 s.
const NON_READER_BOUND: Duration = Duration::from_secs(30);

/// Pings the non-reading ping flood sends at most, and its time bound.
pub const PING_FLOOD_COUNT: u64 = 1_000_000;
const PING_FLOOD_BOUND: Duration = Duration::from_secs(30);

/// One-byte continuation frames the fragment flood sends at most, and its time bound.
pub const FRAGMENTS: u64 = 1_000_000;
const FRAGMENT_BOUND: Duration = Duration::from_secs(20);

/// Pings the control-frame flood sends at most, and its time bound.
pub const CONTROL_FLOOD_MAX: u64 = 1_000_000;
const CONTROL_FLOOD_BOUND: Duration = Duration::from_secs(10);

/// How a flood's writing went.
struct Pushed {
    /// Bytes the kernel took.
    bytes: u64,
    /// Why it stopped.
    end: WriteEnd,
    /// How long it wrote.
    took: Duration,
}

/// Writes `batch` over and over until `total` bytes are written, the server stops reading, the
/// connection fails, `bound` passes or `stop` says so.
fn push(
    client: &mut RawClient,
    batch: &[u8],
    total: u64,
    bound: Duration,
    stop: impl Fn() -> bool,
) -> Pushed {
    let start = Instant::now();
    let deadline = start + bound;
    let mut bytes = 0u64;
    // Bounded by `total` (every pass writes a whole batch or ends) and by `deadline`.
    let end = loop {
        if bytes >= total {
            break WriteEnd::Done;
        }
        if stop() {
            break WriteEnd::Done;
        }
        let want = batch.len().min((total - bytes) as usize);
        let (n, end) = client.write_bounded(&batch[..want], STALL, deadline);
        bytes += n as u64;
        if end != WriteEnd::Done {
            break end;
        }
    };
    Pushed {
        bytes,
        end,
        took: start.elapsed(),
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
    let pushed = push(&mut client, &batch, total, NON_READER_BOUND, || false);
    let messages = pushed.bytes / frame.len() as u64;
    let seen = match &pushed.end {
        WriteEnd::Done => format!(
            "wrote all {} ({} messages) in {:.1} s: the server read everything",
            mb(pushed.bytes),
            thousands(messages),
            pushed.took.as_secs_f64()
        ),
        WriteEnd::Stalled => format!(
            "server stopped reading after {} ({} messages)",
            mb(pushed.bytes),
            thousands(messages)
        ),
        WriteEnd::TimeUp => format!(
            "{} written in {} s, still taken",
            mb(pushed.bytes),
            NON_READER_BOUND.as_secs()
        ),
        WriteEnd::Failed(e) => format!("connection failed after {}: {e}", mb(pushed.bytes)),
    };
    std::thread::sleep(HOLD);
    client.reset();
    Outcome {
        seen,
        units: messages,
        bytes: pushed.bytes,
        stalled: pushed.end == WriteEnd::Stalled,
        ..Outcome::default()
    }
}

/// b. Sends up to 1,000,000 small pings and never reads the pongs.
pub fn ping_flood(addr: SocketAddr) -> Outcome {
    let mut client = match RawClient::open(addr, &Options::small_recv_buffer(), OPEN_BOUND) {
        Ok(c) => c,
        Err(e) => return not_opened(e),
    };
    let frame_len = encode_frame(OP_PING, true, b"ping").len() as u64;
    let batch = repeat_frame(OP_PING, true, b"ping", 1000);
    let pushed = push(
        &mut client,
        &batch,
        PING_FLOOD_COUNT * frame_len,
        PING_FLOOD_BOUND,
        || false,
    );
    let pings = pushed.bytes / frame_len;
    let seen = match &pushed.end {
        WriteEnd::Done => format!(
            "all {} pings written ({}) in {:.1} s, nothing read",
            thousands(pings),
            mb(pushed.bytes),
            pushed.took.as_secs_f64()
        ),
        WriteEnd::Stalled => format!("server stopped reading after {} pings", thousands(pings)),
        WriteEnd::TimeUp => format!(
            "{} pings written in {} s",
            thousands(pings),
            PING_FLOOD_BOUND.as_secs()
        ),
        WriteEnd::Failed(e) => {
            format!("connection failed after {} pings: {e}", thousands(pings))
        }
    };
    std::thread::sleep(HOLD);
    client.reset();
    Outcome {
        seen,
        units: pings,
        bytes: pushed.bytes,
        stalled: pushed.end == WriteEnd::Stalled,
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
    let pushed = if end == WriteEnd::Done {
        push(
            &mut client,
            &batch,
            FRAGMENTS * frame_len,
            FRAGMENT_BOUND,
            || watcher.ended(),
        )
    } else {
        Pushed {
            bytes: 0,
            end,
            took: Duration::ZERO,
        }
    };
    // The message is still open: what the server keeps for it is at its highest now.
    std::thread::sleep(HOLD);
    let watched = watcher.finish();
    client.reset();
    let fragments = pushed.bytes / frame_len;
    let seen = if watched.closed {
        format!(
            "closed with {} after {} fragments",
            code(watched.close_code),
            thousands(fragments)
        )
    } else {
        match (&pushed.end, &watched.end) {
            (_, Some(end)) => format!("connection {end} after {} fragments", thousands(fragments)),
            (WriteEnd::Done, None) => format!(
                "all {} fragments written ({} of payload) in {:.1} s, no close",
                thousands(fragments),
                mb(fragments + 1),
                pushed.took.as_secs_f64()
            ),
            (WriteEnd::Stalled, None) => format!(
                "server stopped reading after {} fragments",
                thousands(fragments)
            ),
            (WriteEnd::TimeUp, None) => format!(
                "{} fragments written in {} s, no close",
                thousands(fragments),
                FRAGMENT_BOUND.as_secs()
            ),
            (WriteEnd::Failed(e), None) => {
                format!(
                    "connection failed after {} fragments: {e}",
                    thousands(fragments)
                )
            }
        }
    };
    Outcome {
        seen,
        units: fragments,
        bytes: pushed.bytes + n as u64,
        stalled: pushed.end == WriteEnd::Stalled,
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
    let pushed = push(
        &mut client,
        &batch,
        CONTROL_FLOOD_MAX * frame_len,
        CONTROL_FLOOD_BOUND,
        || watcher.ended(),
    );
    let watched = watcher.finish();
    client.reset();
    let pings = pushed.bytes / frame_len;
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
            "no close after {} pings in {:.1} s ({} pongs back)",
            thousands(pings),
            pushed.took.as_secs_f64(),
            thousands(watched.pongs)
        )
    };
    Outcome {
        seen,
        units: pings,
        bytes: pushed.bytes,
        stalled: pushed.end == WriteEnd::Stalled,
        close_code: watched.close_code,
        replies: Some(watched.pongs),
        ..Outcome::default()
    }
}

/// A close code in words ("1008", or "no code").
fn code(code: Option<u16>) -> String {
    code.map_or("no code".into(), |c| c.to_string())
}
