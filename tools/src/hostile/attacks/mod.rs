//! The attacks of issue 13, one function each, every one bounded in count and in time and
//! ending by itself, each reporting what the attacker saw.
//!
//! - [`floods`]: one connection sending what the server must not let it grow: 64 KiB messages
//!   it never reads back, pings it never reads, endless one-byte fragments, a control-frame
//!   flood, and messages as fast as it can with every echo read (a share of the shard's time).
//! - [`connections`]: many connections: slowloris heads, resets in the middle of a message,
//!   connect-and-reset cycles.
//! - [`fd`]: a server out of file descriptors, and the clients waiting in its accept queue.

pub mod connections;
pub mod fd;
pub mod floods;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{ReadEnd, Reader, OP_CLOSE, OP_PONG};

/// The server under attack.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process, for CPU time.
    pub pid: u32,
}

/// What the clients waiting in the accept queue of a server out of descriptors saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Clients that tried.
    pub clients: usize,
    /// Got an HTTP answer (a 503, or any other status).
    pub answered: usize,
    /// Were refused: connection refused, closed or reset.
    pub refused: usize,
    /// Saw nothing at all within the bound (connect timed out, or no answer).
    pub hanging: usize,
    /// The statuses of the answers, each once.
    pub statuses: Vec<u16>,
}

/// Slowloris connections the server ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClosedByServer {
    /// Connections the attacker opened.
    pub opened: usize,
    /// Of those, ended by the server (EOF, reset, or an answer then EOF) within the bound.
    pub closed: usize,
    /// The shortest and longest time from connect to the end, in seconds.
    pub first_s: f64,
    /// See `first_s`.
    pub last_s: f64,
    /// Statuses the server answered before closing, each once (e.g. 408).
    pub statuses: Vec<u16>,
}

/// What an attack did and what the attacker saw. Fields an attack does not use stay `None`
/// (or zero).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// In words: "closed with 1008 after 1,234 pings", "server stopped reading after 3.2 MB".
    pub seen: String,
    /// What the attacker got across: frames for floods, connections or cycles for the others.
    pub units: u64,
    /// Bytes the kernel took from the attacker.
    pub bytes: u64,
    /// The server stopped reading: what it was sent stayed unread for the stall bound.
    pub stalled: bool,
    /// Bytes the attacker wrote that the server had not read when the attacker left (`None`
    /// where not measured).
    pub unread: Option<u64>,
    /// The close code the server sent, if the attacker read one.
    pub close_code: Option<u16>,
    /// Frames read back (pongs, for the control-frame flood).
    pub replies: Option<u64>,
    /// Connections the attacker could not open.
    pub open_failures: u64,
    /// fd exhaustion: the server's CPU seconds over the idle window.
    pub idle_cpu_seconds: Option<f64>,
    /// fd exhaustion: the length of that window in seconds.
    pub idle_window_s: Option<f64>,
    /// fd exhaustion: what the waiting clients saw.
    pub waiting: Option<Waiting>,
    /// fd exhaustion: how long after the attacker left a new client was served (`Err`: not
    /// within the bound, and why).
    pub recovery: Option<Result<Duration, String>>,
    /// Slowloris: what the server did with the slow connections.
    pub closed_by_server: Option<ClosedByServer>,
}

/// The attacks, as the suite and the figures tool name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// a. 64 KiB binary messages, up to 1 GiB, echoes never read.
    NonReader,
    /// b. Up to 1,000,000 pings (125-byte payloads), pongs never read, against a server
    /// without its control-frame rate limit.
    PingFlood,
    /// c. A text message that never ends: one-byte continuation frames.
    FragmentFlood,
    /// d. Pings as fast as possible, pongs read: the server should close with 1008.
    ControlFlood,
    /// e. A server at a low `RLIMIT_NOFILE`, its accept queue full of waiting clients.
    FdExhaustion,
    /// f. 200 request heads sent a byte at a time.
    Slowloris,
    /// g. Half of a 1 MiB message, then a reset; 200 times.
    ResetMidMessage,
    /// h. 10,000 connect, upgrade, reset cycles.
    ConnectReset,
    /// i. 64 KiB messages as fast as it can for 5 s, every echo read.
    ReadingFlood,
}

impl Case {
    /// Every case, in the order.
    pub const ALL: [Case; 9] = [
        Case::NonReader,
        Case::PingFlood,
        Case::FragmentFlood,
        Case::ControlFlood,
        Case::FdExhaustion,
        Case::Slowloris,
        Case::ResetMidMessage,
        Case::ConnectReset,
        Case::ReadingFlood,
    ];

    /// The case's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::NonReader => "non-reader",
            Self::PingFlood => "ping-flood",
            Self::FragmentFlood => "fragment-flood",
            Self::ControlFlood => "control-flood",
            Self::FdExhaustion => "fd-exhaustion",
            Self::Slowloris => "slowloris",
            Self::ResetMidMessage => "reset-mid-message",
            Self::ConnectReset => "connect-reset",
            Self::ReadingFlood => "reading-flood",
        }
    }

    /// The case named `name`.
    pub fn from_name(name: &str) -> Option<Case> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What the attack does, in a few words (the table's first column).
    pub fn title(self) -> &'static str {
        match self {
            Self::NonReader => "non-reading sender, 1 GiB of 64 KiB messages",
            Self::PingFlood => "1 M pings of 125 B, pongs never read (no control rate limit)",
            Self::FragmentFlood => "4 M one-byte continuation frames",
            Self::ControlFlood => "ping flood, pongs read",
            Self::FdExhaustion => "fd exhaustion (RLIMIT_NOFILE 128), 50 waiting",
            Self::Slowloris => "slowloris, 200 heads a byte at a time",
            Self::ResetMidMessage => "reset mid-message, 200 x 512 KiB of 1 MiB",
            Self::ConnectReset => "10,000 connect-upgrade-reset cycles",
            Self::ReadingFlood => "64 KiB messages for 5 s, echoes read",
        }
    }

    /// Extra `ringsock-echo` arguments the case needs.
    pub fn server_args(self) -> Vec<String> {
        match self {
            Self::Slowloris => vec![
                "--handshake-timeout".into(),
                connections::SLOWLORIS_HANDSHAKE_TIMEOUT.into(),
            ],
            // Without the control-frame rate, which would close it within a second: what bounds
            // memory is then the pongs' coalescing and the output levels.
            Self::PingFlood => vec!["--control-rate".into(), "0".into()],
            _ => Vec::new(),
        }
    }

    /// The server's `RLIMIT_NOFILE`, when the case sets one.
    pub fn nofile(self) -> Option<u64> {
        (self == Self::FdExhaustion).then_some(fd::NOFILE)
    }

    /// Runs the attack against `target`; returns when it has ended and its connections are
    /// gone.
    pub fn run(self, target: &Target) -> Outcome {
        match self {
            Self::NonReader => floods::non_reading_sender(target.addr),
            Self::PingFlood => floods::ping_flood(target.addr),
            Self::FragmentFlood => floods::fragment_flood(target.addr),
            Self::ControlFlood => floods::control_flood(target.addr),
            Self::FdExhaustion => fd::fd_exhaustion(target),
            Self::Slowloris => connections::slowloris(target.addr),
            Self::ResetMidMessage => connections::reset_mid_message(target.addr),
            Self::ConnectReset => connections::connect_reset(target.addr),
            Self::ReadingFlood => floods::reading_flood(target.addr),
        }
    }
}

/// What a [`Watcher`] saw on the attacker's connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    /// Pongs read.
    pub pongs: u64,
    /// Other frames read (echoes).
    pub others: u64,
    /// The close code, if a close frame came.
    pub close_code: Option<u16>,
    /// Whether a close frame came (with or without a code).
    pub closed: bool,
    /// How the connection ended, if it did (EOF, reset).
    pub end: Option<ReadEnd>,
}

/// Reads an attacker's connection on another thread: counts pongs, catches the close.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    thread: JoinHandle<Watched>,
}

impl Watcher {
    /// Starts reading from `reader` until the connection ends, a close frame comes, or
    /// [`finish`](Self::finish) is called; for `lifetime` at most.
    pub fn start(mut reader: Reader, lifetime: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, ended) = (Arc::clone(&stop), Arc::clone(&ended));
            std::thread::spawn(move || {
                let end = Instant::now() + lifetime;
                let mut seen = Watched::default();
                while Instant::now() < end {
                    // Short reads, so a stop request is seen quickly once the line is quiet.
                    match reader.read_frame(Instant::now() + Duration::from_millis(200)) {
                        Ok(f) if f.opcode == OP_PONG => seen.pongs += 1,
                        Ok(f) if f.opcode == OP_CLOSE => {
                            seen.closed = true;
                            seen.close_code = f.close_code();
                            break;
                        }
                        Ok(_) => seen.others += 1,
                        Err(ReadEnd::TimedOut) if stop.load(Ordering::Relaxed) => break,
                        Err(ReadEnd::TimedOut) => {}
                        Err(e) => {
                            seen.end = Some(e);
                            break;
                        }
                    }
                }
                ended.store(true, Ordering::Relaxed);
                seen
            })
        };
        Self {
            stop,
            ended,
            thread,
        }
    }

    /// Whether it has stopped reading: a close came or the connection ended.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Lets it read what is still coming until the line has been quiet for a moment (or its
    /// lifetime ends), and returns what it saw.
    pub fn finish(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
