//! The hostile-peer suite of issue 13: every attack against `ringsock-echo --shards 1`, on
//! both backends, with a control client echoing beside the attacker.
//!
//! Each case asserts that the control client was never refused, never got a wrong echo, was
//! never cut off, and saw every round trip under [`CONTROL_MAX_US`]; that the server's RSS was
//! within [`AFTER_MB`] of its baseline 5 s after the attacker left; and the case's own target
//! from the issue. The figures (`ringsock-hostile`) are the same measurements on a release
//! build, against the 2 ms p99 target; the round-trip bound here is generous, as the
//! suite runs in debug builds on shared CI machines. Memory and CPU come from `/proc/<pid>` of
//! the server process, never from wall time alone.
//!
//! Cases run one at a time (the binary's `ONE_AT_A_TIME` lock, which the load smoke tests take
//! too): each starts its own server, and two attacks at once would measure each other. Every
//! attack is bounded in count and time.

use ringsock_testkit::on_both_backends;
use ringsock_tools::hostile::attacks::{connections, fd, floods};
use ringsock_tools::hostile::units::{kib_to_mb, thousands, MB};
use ringsock_tools::hostile::{report, run_case, Backend, Case, CaseResult, RunConfig};

/// The backend type by the name `on_both_backends!` expects.
use Backend as BackendKind;

/// The longest control round trip allowed during any attack, in microseconds (CI's bound; the
/// figures' target is a 2 ms p99).
const CONTROL_MAX_US: u64 = 500_000;

/// Server RSS above its baseline allowed 5 s after the attacker left, in MB (every case).
const AFTER_MB: f64 = 16.0;

/// Peak RSS growth allowed under the non-reading 1 GiB sender (default 64 MiB max message).
const NON_READER_PEAK_MB: f64 = 80.0;

/// Peak RSS growth allowed under the ping flood.
const PING_FLOOD_PEAK_MB: f64 = 8.0;

/// Peak RSS growth allowed under the one-byte-fragment flood: the ping flood's allowance plus a
/// small constant factor of the payload received.
const FRAGMENT_PEAK_MB: f64 = 8.0;
const FRAGMENT_FACTOR: f64 = 4.0;

/// Server CPU allowed over the 5 idle seconds of a server out of descriptors ("near zero").
const FD_IDLE_CPU_S: f64 = 0.25;

/// How long past its handshake timeout a slowloris connection may live (timer granularity
/// and a loaded machine).
const SLOWLORIS_SLACK_S: f64 = 3.0;

/// Runs `case` on `backend` (waiting for the lock), checks what every case must hold, then
/// `own`, and fails with every broken target at once, and the case's figures.
fn check(case: Case, backend: Backend, own: impl FnOnce(&CaseResult) -> Vec<String>) {
    let result = {
        let _one = crate::one_at_a_time();
        let config = RunConfig::new(env!("CARGO_BIN_EXE_ringsock-echo").into());
        run_case(case, backend, &config)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", case.name(), backend.name()))
    };
    println!("{}", report::table_row(&result));
    let mut broken = own(&result);
    broken.extend(common(&result));
    if !broken.is_empty() {
        panic!(
            "{} on {}:\n  - {}\n{}\n{}\ncontrol: {:?}\nserver log (last lines): {:?}",
            case.name(),
            backend.name(),
            broken.join("\n  - "),
            report::table_head(),
            report::table_row(&result),
            result.control_failures,
            result.server_log.iter().rev().take(10).collect::<Vec<_>>(),
        );
    }
}

/// What every case must hold.
fn common(r: &CaseResult) -> Vec<String> {
    let mut broken = Vec::new();
    if let Some(exit) = &r.server_exit {
        broken.push(format!("the server exited: {exit}"));
    }
    let f = &r.control_failures;
    if f.refused > 0 {
        broken.push(format!(
            "the control client was refused {} times",
            f.refused
        ));
    }
    if f.wrong_echo > 0 {
        broken.push(format!(
            "the control client got {} wrong echoes",
            f.wrong_echo
        ));
    }
    if f.closed + f.lost > 0 {
        broken.push(format!(
            "the control client's connection ended {} times, echoes lost {} times",
            f.closed, f.lost
        ));
    }
    // (An attack the server ends within a few of the control client's intervals, such as a
    // control-frame flood closed with 1008, leaves no time for an echo.)
    if r.control.count == 0 && r.attack_seconds > 0.1 {
        broken.push("the control client got no echo during the attack".into());
    }
    if r.control.max_us >= CONTROL_MAX_US {
        broken.push(format!(
            "a control round trip took {:.0} ms during the attack (p99 {:.1} ms; bound {} ms)",
            r.control.max_us as f64 / 1000.0,
            r.control.p99_us as f64 / 1000.0,
            CONTROL_MAX_US / 1000
        ));
    }
    let after = kib_to_mb(r.after_growth_kib());
    if after > AFTER_MB {
        broken.push(format!(
            "the server held {after:+.1} MB above its baseline 5 s after the attacker left (bound {AFTER_MB} MB)"
        ));
    }
    broken
}

/// Peak growth in MB.
fn peak_mb(r: &CaseResult) -> f64 {
    kib_to_mb(r.peak_growth_kib())
}

fn non_reader(backend: Backend) {
    check(Case::NonReader, backend, |r| {
        let mut broken = Vec::new();
        if peak_mb(r) > NON_READER_PEAK_MB {
            broken.push(format!(
                "a peer that never reads grew the server by {:+.1} MB at the peak (bound {NON_READER_PEAK_MB} MB): {}",
                peak_mb(r),
                r.outcome.seen
            ));
        }
        // The attack must have been one: at least the bound's worth offered to the server.
        if r.outcome.bytes < (2.0 * NON_READER_PEAK_MB * MB) as u64 && !r.outcome.stalled {
            broken.push(format!(
                "the attacker neither sent {} MB nor saw the server stop reading: {}",
                2.0 * NON_READER_PEAK_MB,
                r.outcome.seen
            ));
        }
        broken
    });
}

fn ping_flood(backend: Backend) {
    check(Case::PingFlood, backend, |r| {
        let mut broken = Vec::new();
        if peak_mb(r) > PING_FLOOD_PEAK_MB {
            broken.push(format!(
                "{} pings never read back grew the server by {:+.1} MB at the peak (bound {PING_FLOOD_PEAK_MB} MB): {}",
                thousands(r.outcome.units),
                peak_mb(r),
                r.outcome.seen
            ));
        }
        if r.outcome.units < floods::PING_FLOOD_COUNT && !r.outcome.stalled {
            broken.push(format!(
                "the flood neither finished nor saw the server stop reading: {}",
                r.outcome.seen
            ));
        }
        broken
    });
}

fn fragment_flood(backend: Backend) {
    check(Case::FragmentFlood, backend, |r| {
        let mut broken = Vec::new();
        // One payload byte per fragment the server read.
        let payload_mb = r.outcome.units as f64 / MB;
        let bound = FRAGMENT_PEAK_MB + FRAGMENT_FACTOR * payload_mb;
        if peak_mb(r) > bound {
            broken.push(format!(
                "{:.1} MB of one-byte fragments grew the server by {:+.1} MB at the peak (bound {bound:.1} MB): {}",
                payload_mb,
                peak_mb(r),
                r.outcome.seen
            ));
        }
        broken
    });
}

fn control_flood(backend: Backend) {
    check(Case::ControlFlood, backend, |r| {
        let mut broken = Vec::new();
        if r.outcome.close_code != Some(1008) {
            broken.push(format!(
                "a control-frame flood was not closed with 1008: {}",
                r.outcome.seen
            ));
        }
        broken
    });
}

fn fd_exhaustion(backend: Backend) {
    check(Case::FdExhaustion, backend, |r| {
        let mut broken = Vec::new();
        let o = &r.outcome;
        // The server cannot hold more connections than descriptors: if it served that many,
        // the attack never reached exhaustion and proves nothing.
        if o.units >= fd::NOFILE {
            broken.push(format!(
                "the server at RLIMIT_NOFILE {} never stopped serving: {}",
                fd::NOFILE,
                o.seen
            ));
        }
        match o.idle_cpu_seconds {
            Some(cpu) if cpu < FD_IDLE_CPU_S => {}
            Some(cpu) => broken.push(format!(
                "out of descriptors, the server used {cpu:.2} s of CPU over {:.0} idle seconds (bound {FD_IDLE_CPU_S} s)",
                o.idle_window_s.unwrap_or(f64::NAN)
            )),
            None => broken.push("the server's CPU time could not be read".into()),
        }
        match &o.waiting {
            Some(w) if w.hanging == 0 && w.answered + w.refused == w.clients => {}
            Some(w) => broken.push(format!(
                "of {} clients waiting in the accept queue, {} were left hanging ({} answered, {} refused)",
                w.clients, w.hanging, w.answered, w.refused
            )),
            None => broken.push("no waiting clients were tried".into()),
        }
        if let Some(Err(e)) = &o.recovery {
            broken.push(format!(
                "once the attacker let go, new clients were not served: {e}"
            ));
        }
        broken
    });
}

fn slowloris(backend: Backend) {
    check(Case::Slowloris, backend, |r| {
        let mut broken = Vec::new();
        let timeout: f64 = connections::SLOWLORIS_HANDSHAKE_TIMEOUT
            .parse()
            .expect("a number of seconds");
        match &r.outcome.closed_by_server {
            Some(c)
                if c.opened == connections::SLOWLORIS_CONNECTIONS
                    && c.closed == c.opened
                    && c.last_s <= timeout + SLOWLORIS_SLACK_S => {}
            Some(_) => broken.push(format!(
                "slow heads were not all closed by the {timeout} s handshake timeout: {}",
                r.outcome.seen
            )),
            None => broken.push("no slowloris connections".into()),
        }
        broken
    });
}

fn reset_mid_message(backend: Backend) {
    check(Case::ResetMidMessage, backend, |r| {
        let mut broken = Vec::new();
        if r.outcome.units != connections::RESETS || r.outcome.open_failures > 0 {
            broken.push(format!("not every reset cycle ran: {}", r.outcome.seen));
        }
        broken
    });
}

fn connect_reset(backend: Backend) {
    check(Case::ConnectReset, backend, |r| {
        let mut broken = Vec::new();
        if r.outcome.units != connections::CYCLES || r.outcome.open_failures > 0 {
            broken.push(format!(
                "not every connect-and-reset cycle ran: {}",
                r.outcome.seen
            ));
        }
        broken
    });
}

/// Peak RSS growth allowed while a peer floods with messages and reads its echoes: the high
/// output level and a read budget's worth of messages, with room to spare.
const READING_FLOOD_PEAK_MB: f64 = 16.0;

fn reading_flood(backend: Backend) {
    check(Case::ReadingFlood, backend, |r| {
        let mut broken = Vec::new();
        if peak_mb(r) > READING_FLOOD_PEAK_MB {
            broken.push(format!(
                "a flood that reads its echoes grew the server by {:+.1} MB at the peak (bound {READING_FLOOD_PEAK_MB} MB): {}",
                peak_mb(r),
                r.outcome.seen
            ));
        }
        // Every message echoed: the flood is served, only not before everyone else.
        if r.outcome.replies != Some(r.outcome.units) || r.outcome.units == 0 {
            broken.push(format!("not every message was echoed: {}", r.outcome.seen));
        }
        broken
    });
}

// Every case as a test on each backend: `hostile::ping_flood::io_uring`, `…::epoll`…
on_both_backends!(
    non_reader,
    ping_flood,
    fragment_flood,
    control_flood,
    fd_exhaustion,
    slowloris,
    reset_mid_message,
    connect_reset,
    reading_flood,
);
