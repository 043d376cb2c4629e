//! Attacks by many connections, each cheap to the attacker: slow heads, resets in the middle
//! of a message, connect-and-reset cycles.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::floods::OPEN_BOUND;
use super::{ClosedByServer, Outcome};
use crate::hostile::client::{
    frame_header, mask_in_place, Answer, Options, RawClient, WriteEnd, OP_BINARY,
};
use crate::hostile::tcp::Drain;
use crate::hostile::units::{mb, thousands};

/// The handshake timeout the slowloris case gives the server (`--handshake-timeout`).
pub const SLOWLORIS_HANDSHAKE_TIMEOUT: &str = "2";

/// Slowloris connections.
pub const SLOWLORIS_CONNECTIONS: usize = 200;

/// Each slowloris connection sends one byte of its head this often.
const SLOWLORIS_TICK: Duration = Duration::from_millis(100);

/// How long the slowloris attacker keeps going: the handshake timeout and plenty more.
const SLOWLORIS_BOUND: Duration = Duration::from_secs(10);

/// Resets in the middle of a message, and the size of that message (half of it is sent).
pub const RESETS: u64 = 200;
/// See [`RESETS`].
pub const RESET_MESSAGE: usize = 1 << 20;
const RESET_BOUND: Duration = Duration::from_secs(30);

/// Connect-and-reset cycles, and their time bound.
pub const CYCLES: u64 = 10_000;
const CYCLE_BOUND: Duration = Duration::from_secs(60);

/// Consecutive failures to open after which a many-connection attack gives up: the server is
/// refusing everyone, which is for the control client to notice.
const GIVE_UP_AFTER: u64 = 20;

/// A request head that never ends: a request line, a host, then header lines without the
/// empty line, well under the 8 KiB head limit for the time it takes to send.
fn endless_head() -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    for i in 0..200 {
        head.extend_from_slice(format!("X-Slow-{i:03}: waiting\r\n").as_bytes());
    }
    head
}

/// f. [`SLOWLORIS_CONNECTIONS`] connections each send a request head one byte every 100 ms;
/// the server should end each at its handshake timeout.
pub fn slowloris(addr: SocketAddr) -> Outcome {
    let head = endless_head();
    let start = Instant::now();
    let mut open: Vec<(RawClient, Instant, usize)> = Vec::new();
    let mut failures = 0;
    for _ in 0..SLOWLORIS_CONNECTIONS {
        match RawClient::connect(addr, &Options::default()) {
            Ok(c) => open.push((c, Instant::now(), 0)),
            Err(_) => failures += 1,
        }
    }
    let opened = open.len();
    let mut lifetimes: Vec<f64> = Vec::new();
    let mut statuses: Vec<u16> = Vec::new();
    // Bounded by SLOWLORIS_BOUND; every connection leaves `open` once, when it ends.
    while !open.is_empty() && start.elapsed() < SLOWLORIS_BOUND {
        let tick = Instant::now();
        open.retain_mut(|(client, since, sent)| {
            let wrote = *sent < head.len() && client.write_all(&head[*sent..*sent + 1]).is_ok();
            if wrote {
                *sent += 1;
            }
            let ended = client.poll_end();
            if ended.is_none() && (wrote || *sent >= head.len()) {
                return true;
            }
            // Ended (EOF, reset, or a write the server no longer takes): what did it say?
            if let Answer::Status { code, .. } = client.read_answer(Instant::now()) {
                if !statuses.contains(&code) {
                    statuses.push(code);
                }
            }
            lifetimes.push(since.elapsed().as_secs_f64());
            false
        });
        let next = tick + SLOWLORIS_TICK;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let still_open = open.len();
    drop(open);
    let closed = lifetimes.len();
    let first = lifetimes.iter().copied().fold(f64::INFINITY, f64::min);
    let last = lifetimes.iter().copied().fold(0.0, f64::max);
    let answered = if statuses.is_empty() {
        "no answer".to_owned()
    } else {
        format!(
            "answered {}",
            statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/")
        )
    };
    let seen =
        if closed == 0 {
            format!(
                "none of {opened} closed by the server in {} s",
                SLOWLORIS_BOUND.as_secs()
            )
        } else {
            format!(
            "{closed} of {opened} closed by the server after {first:.1}-{last:.1} s ({answered}){}",
            if still_open > 0 {
                format!(", {still_open} still open at {} s", SLOWLORIS_BOUND.as_secs())
            } else {
                String::new()
            }
        )
        };
    Outcome {
        seen,
        units: opened as u64,
        open_failures: failures,
        closed_by_server: Some(ClosedByServer {
            opened,
            closed,
            first_s: if closed > 0 { first } else { 0.0 },
            last_s: last,
            statuses,
        }),
        ..Outcome::default()
    }
}

/// g. [`RESETS`] times: upgrade, send the header of a 1 MiB binary message and half its
/// payload, then reset the connection.
pub fn reset_mid_message(addr: SocketAddr) -> Outcome {
    let mut half = frame_header(OP_BINARY, true, RESET_MESSAGE as u64);
    let at = half.len();
    half.resize(at + RESET_MESSAGE / 2, 0x5a);
    mask_in_place(&mut half[at..], 0);
    let start = Instant::now();
    let deadline = start + RESET_BOUND;
    let (mut done, mut bytes, mut failures, mut in_a_row) = (0u64, 0u64, 0u64, 0u64);
    let mut unread_at_reset = 0u64;
    let mut note = String::new();
    // Bounded by RESETS, by the deadline, and by GIVE_UP_AFTER failures in a row.
    while done < RESETS && Instant::now() < deadline && in_a_row < GIVE_UP_AFTER {
        let mut client = match RawClient::open(addr, &Options::default(), OPEN_BOUND) {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                in_a_row += 1;
                note = format!(", last failure: {e}");
                continue;
            }
        };
        in_a_row = 0;
        let (n, end) = client.write_bounded(&half, Duration::from_secs(2), deadline);
        bytes += n as u64;
        if end != WriteEnd::Done {
            note = format!(", a write ended {end:?}");
        }
        // Reset only once the server has read the half message: before, the reset would
        // discard it in the kernel and the server would never hold it.
        if client.wait_until_read(Duration::from_secs(1), Duration::from_secs(2)) != Drain::Read {
            unread_at_reset += 1;
        }
        client.reset();
        done += 1;
    }
    if unread_at_reset > 0 {
        note =
            format!(", {unread_at_reset} reset before the server had read the half message{note}");
    }
    let seen = format!(
        "{} connections reset after {} KiB of a {} KiB message ({} sent and read) in {:.1} s, {} failed to open{note}",
        thousands(done),
        RESET_MESSAGE / 2 / 1024,
        RESET_MESSAGE / 1024,
        mb(bytes),
        start.elapsed().as_secs_f64(),
        failures
    );
    Outcome {
        seen,
        units: done,
        bytes,
        open_failures: failures,
        ..Outcome::default()
    }
}

/// h. [`CYCLES`] times: connect, upgrade, reset.
pub fn connect_reset(addr: SocketAddr) -> Outcome {
    let start = Instant::now();
    let (mut done, mut failures, mut in_a_row) = (0u64, 0u64, 0u64);
    let mut note = String::new();
    // Bounded by CYCLES, by CYCLE_BOUND, and by GIVE_UP_AFTER failures in a row.
    while done < CYCLES && start.elapsed() < CYCLE_BOUND && in_a_row < GIVE_UP_AFTER {
        match RawClient::open(addr, &Options::default(), OPEN_BOUND) {
            Ok(client) => {
                client.reset();
                done += 1;
                in_a_row = 0;
            }
            Err(e) => {
                failures += 1;
                in_a_row += 1;
                note = format!(", last failure: {e}");
            }
        }
    }
    let seen = format!(
        "{} cycles in {:.1} s, {} failed to open{note}",
        thousands(done),
        start.elapsed().as_secs_f64(),
        failures
    );
    Outcome {
        seen,
        units: done,
        open_failures: failures,
        ..Outcome::default()
    }
}
