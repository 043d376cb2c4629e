//! e. A server out of file descriptors: connections until it stops accepting, then clients
//! left waiting in its accept queue. What does the server spend meanwhile (it should rest, not
//! spin), what do the waiting clients see (an answer or a refusal, not silence), and is it
//! serving again once the attacker lets go?

use std::io;
use std::time::{Duration, Instant};

use super::{Outcome, Target, Waiting};
use crate::hostile::client::{Answer, OpenError, Options, RawClient, ReadEnd, UPGRADE_REQUEST};
use crate::hostile::client::{OP_CLOSE, OP_TEXT};
use crate::process_cpu_seconds;

/// The server's `RLIMIT_NOFILE` in this case.
pub const NOFILE: u64 = 128;

/// Connections the attacker opens at most while filling the server's table, and how long it
/// may take.
const FILL_MAX: usize = 2 * NOFILE as usize;
const FILL_BOUND: Duration = Duration::from_secs(20);

/// A connection not upgraded within this long means the server stopped accepting.
const UPGRADE_BOUND: Duration = Duration::from_secs(1);

/// Clients left waiting in the accept queue once the server is full.
pub const WAITING: usize = 50;

/// The window over which the server's CPU time is measured while it is full and the waiting
/// clients wait.
pub const IDLE_WINDOW: Duration = Duration::from_secs(5);

/// Past the idle window, how much longer the waiting clients' answers may take.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// How long after the attacker lets go a new client must be served within.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);

/// Fills the server's descriptor table, leaves [`WAITING`] clients in its accept queue,
/// measures its CPU over [`IDLE_WINDOW`], sees what the waiting clients got, lets go of
/// everything and times how soon a new client is served.
pub fn fd_exhaustion(target: &Target) -> Outcome {
    let quick = Options {
        connect_timeout: UPGRADE_BOUND,
        ..Options::default()
    };
    let start = Instant::now();
    let mut held = Vec::new();
    // Bounded by FILL_MAX and FILL_BOUND; ends at the first connection not served.
    let stopped = loop {
        if held.len() >= FILL_MAX || start.elapsed() >= FILL_BOUND {
            break format!("still accepting after {} connections", held.len());
        }
        match RawClient::open(target.addr, &quick, UPGRADE_BOUND) {
            Ok(c) => held.push(c),
            Err(e) => break format!("stopped serving after {} connections ({e})", held.len()),
        }
    };

    let mut waiting = Vec::new();
    let mut tally = Waiting {
        clients: WAITING,
        ..Waiting::default()
    };
    for _ in 0..WAITING {
        match RawClient::connect(target.addr, &quick) {
            Ok(mut c) => match c.write_all(UPGRADE_REQUEST.as_bytes()) {
                Ok(()) => waiting.push(c),
                Err(_) => tally.refused += 1,
            },
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => tally.refused += 1,
            // A full accept queue drops the SYN: the connect times out, the client hangs.
            Err(_) => tally.hanging += 1,
        }
    }

    let cpu_before = process_cpu_seconds(target.pid);
    let window_start = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let idle_cpu = process_cpu_seconds(target.pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let window = window_start.elapsed();

    let deadline = Instant::now() + ANSWER_GRACE;
    for client in &mut waiting {
        match client.read_answer(deadline) {
            Answer::Status { code, .. } => {
                tally.answered += 1;
                if !tally.statuses.contains(&code) {
                    tally.statuses.push(code);
                }
            }
            Answer::Ended(ReadEnd::TimedOut) => tally.hanging += 1,
            Answer::Ended(_) => tally.refused += 1,
        }
    }

    let filled = held.len();
    drop(waiting);
    drop(held);
    let recovery = recover(target, &quick);

    let cpu = idle_cpu.map_or("unknown".into(), |c| format!("{c:.2} s"));
    let statuses = if tally.statuses.is_empty() {
        String::new()
    } else {
        format!(
            " (status {})",
            tally
                .statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/")
        )
    };
    let recovered = match &recovery {
        Ok(after) => format!("served again {:.1} s after release", after.as_secs_f64()),
        Err(e) => format!(
            "not served again within {} s: {e}",
            RECOVERY_BOUND.as_secs()
        ),
    };
    let seen = format!(
        "{stopped}; {WAITING} waiting: {} answered{statuses}, {} refused, {} hanging; server CPU {cpu} over {:.0} s; {recovered}",
        tally.answered,
        tally.refused,
        tally.hanging,
        window.as_secs_f64()
    );
    Outcome {
        seen,
        units: filled as u64,
        idle_cpu_seconds: idle_cpu,
        idle_window_s: Some(window.as_secs_f64()),
        waiting: Some(tally),
        recovery: Some(recovery),
        ..Outcome::default()
    }
}

/// How soon after the attacker let go a new client is upgraded and echoed.
fn recover(target: &Target, options: &Options) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::from("no attempt");
    // Bounded by RECOVERY_BOUND: each attempt takes at most a few seconds and the loop stops
    // once the bound has passed.
    while start.elapsed() < RECOVERY_BOUND {
        match try_echo(target, options) {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// One client: upgrade, one text message, its echo.
fn try_echo(target: &Target, options: &Options) -> Result<(), String> {
    let mut client = RawClient::open(target.addr, options, UPGRADE_BOUND)
        .map_err(|e: OpenError| e.to_string())?;
    client
        .write_frame(OP_TEXT, true, b"are you back?")
        .map_err(|e| e.to_string())?;
    match client.read_frame(Instant::now() + UPGRADE_BOUND) {
        Ok(f) if f.opcode == OP_TEXT && f.payload == b"are you back?" => {
            let _ = client.write_frame(OP_CLOSE, true, &1000u16.to_be_bytes());
            Ok(())
        }
        Ok(f) => Err(format!("unexpected frame, opcode {}", f.opcode)),
        Err(e) => Err(format!("echo: {e}")),
    }
}
