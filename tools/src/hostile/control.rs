//! The control client: an ordinary user of the shard under attack. It sends a small numbered
//! text message every few milliseconds, waits for its echo, checks it byte for byte and times
//! the round trip. Whatever an attack does to the others on the shard shows here: refusals,
//! wrong echoes, closes and slow round trips.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Options, RawClient, ReadEnd, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

/// Time between two messages (from one send to the next).
pub const INTERVAL: Duration = Duration::from_millis(5);

/// The size of each message: small, as a chat line or a game input is.
pub const MESSAGE_LEN: usize = 32;

/// An echo later than this counts as lost, and the client reconnects: it cannot tell a late
/// echo from the next one otherwise.
const ECHO_BOUND: Duration = Duration::from_secs(5);

/// How long connecting and upgrading may take before the attempt counts as refused.
const OPEN_BOUND: Duration = Duration::from_secs(2);

/// How many failures are kept in words (the first ones: later ones tend to repeat them).
const NOTES: usize = 8;

/// What went wrong for the control client. Each field counts events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    /// Connecting or upgrading failed (refused, reset, an HTTP error, no answer in 2 s).
    pub refused: u64,
    /// An echo differed from what was sent.
    pub wrong_echo: u64,
    /// The connection ended under it (close frame, EOF, reset, failed write).
    pub closed: u64,
    /// No echo within 5 s.
    pub lost: u64,
    /// The first failures, in words.
    pub notes: Vec<String>,
}

impl Failures {
    /// Whether nothing went wrong.
    pub fn none(&self) -> bool {
        self.refused + self.wrong_echo + self.closed + self.lost == 0
    }
}

/// Round trips over a window of time, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoundTrips {
    /// Echoes received and checked.
    pub count: u64,
    /// Median round trip.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Longest.
    pub max_us: u64,
}

struct State {
    hist: Histogram<u64>,
    failures: Failures,
}

impl State {
    fn note(&mut self, what: String) {
        if self.failures.notes.len() < NOTES {
            self.failures.notes.push(what);
        }
    }
}

/// A control client running on its own thread.
pub struct ControlClient {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlClient {
    /// Starts a control client against `addr`, running until stopped or for `lifetime` at most.
    pub fn start(addr: std::net::SocketAddr, lifetime: Duration) -> Self {
        let state = Arc::new(Mutex::new(State {
            hist: histogram(),
            failures: Failures::default(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || run(addr, &state, &stop, Instant::now() + lifetime))
        };
        Self {
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// The round trips since the previous call (or the start), and a fresh window after them.
    pub fn take_window(&self) -> RoundTrips {
        let mut state = lock(&self.state);
        let window = summary(&state.hist);
        state.hist.reset();
        window
    }

    /// Everything that went wrong so far.
    pub fn failures(&self) -> Failures {
        lock(&self.state).failures.clone()
    }

    /// Stops the client; returns the round trips of the last window and every failure.
    pub fn stop(mut self) -> (RoundTrips, Failures) {
        self.halt();
        (self.take_window(), self.failures())
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlClient {
    fn drop(&mut self) {
        self.halt();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn summary(hist: &Histogram<u64>) -> RoundTrips {
    RoundTrips {
        count: hist.len(),
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
    }
}

/// The client's loop: one message in flight at a time, one every [`INTERVAL`].
fn run(addr: std::net::SocketAddr, state: &Mutex<State>, stop: &AtomicBool, end: Instant) {
    let mut conn: Option<RawClient> = None;
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let tick = Instant::now();
        let client = match conn.as_mut() {
            Some(c) => c,
            None => match RawClient::open(addr, &Options::default(), OPEN_BOUND) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    let mut s = lock(state);
                    s.failures.refused += 1;
                    s.note(format!("refused: {e}"));
                    drop(s);
                    // Not a hot loop against a server that refuses.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        seq += 1;
        let message = format!("control {seq:>24}");
        debug_assert_eq!(message.len(), MESSAGE_LEN);
        if echo(client, message.as_bytes(), state).is_err() {
            conn = None;
        }
        let next = tick + INTERVAL;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}

/// Sends `message` and waits for its echo; records the round trip or the failure. `Err` when
/// the connection cannot go on.
fn echo(client: &mut RawClient, message: &[u8], state: &Mutex<State>) -> Result<(), ()> {
    let sent = Instant::now();
    if let Err(e) = client.write_frame(OP_TEXT, true, message) {
        let mut s = lock(state);
        s.failures.closed += 1;
        s.note(format!("write failed: {e}"));
        return Err(());
    }
    let deadline = sent + ECHO_BOUND;
    // Bounded by the deadline: every pass reads a frame or ends.
    loop {
        match client.read_frame(deadline) {
            Ok(f) if f.opcode == OP_TEXT && f.fin => {
                let rtt = sent.elapsed();
                let mut s = lock(state);
                if f.payload == message {
                    s.hist.saturating_record((rtt.as_micros() as u64).max(1));
                    return Ok(());
                }
                s.failures.wrong_echo += 1;
                s.note(format!(
                    "wrong echo: sent {:?}, got {:?}",
                    String::from_utf8_lossy(message),
                    String::from_utf8_lossy(&f.payload)
                ));
                return Err(());
            }
            Ok(f) if f.opcode == OP_PING => {
                // A server that pings its clients is owed a pong; then keep waiting.
                if client.write_frame(OP_PONG, true, &f.payload).is_err() {
                    lock(state).failures.closed += 1;
                    return Err(());
                }
            }
            Ok(f) if f.opcode == OP_PONG => {}
            Ok(f) if f.opcode == OP_CLOSE => {
                let mut s = lock(state);
                s.failures.closed += 1;
                s.note(format!("closed by the server with {:?}", f.close_code()));
                return Err(());
            }
            Ok(f) => {
                let mut s = lock(state);
                s.failures.wrong_echo += 1;
                s.note(format!(
                    "unexpected frame: opcode {} fin {}",
                    f.opcode, f.fin
                ));
                return Err(());
            }
            Err(ReadEnd::TimedOut) => {
                let mut s = lock(state);
                s.failures.lost += 1;
                s.note(format!("no echo within {ECHO_BOUND:?}"));
                return Err(());
            }
            Err(end) => {
                let mut s = lock(state);
                s.failures.closed += 1;
                s.note(format!("connection {end}"));
                return Err(());
            }
        }
    }
}
