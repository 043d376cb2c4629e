//! Helpers for the interop tests, which run ringsock against independent implementations:
//! Python's `websockets` (peers in `peers/`, installed into `.venv-interop` by
//! `scripts/interop-setup.sh`) and Chromium.
//!
//! - [`Peer`]: a child process speaking JSON lines on stdout, every read bounded, killed when
//!   dropped.
//! - [`Capture`]: a TCP relay that records both directions, and [`wire_frames`] to read the
//!   recorded frames' headers: what actually crossed the wire, RSV1 and sizes.
//! - [`text_message`], [`binary_message`]: the contents ringsock sends, compressible the way
//!   real traffic is, with matches at every distance up to 32 KiB.
//!
//! A missing peer fails the test with what to run: CI installs them, so a skip would hide a
//! broken setup.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("actors/ has a parent")
        .to_path_buf()
}

/// This folder: the peers' scripts and the test page live here.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The `websockets` version pinned in `peers/requirements.txt`.
pub fn pinned_websockets() -> String {
    let path = interop_dir().join("peers/requirements.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("websockets=="))
        .expect("requirements.txt pins websockets")
        .to_owned()
}

/// The interop venv's Python, or a failure that says how to make it.
pub fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv-interop/bin/python");
    assert!(
        python.exists(),
        "{} is missing: the interop tests need Python's websockets; run `bash scripts/setup.sh` \
         (or scripts/interop-setup.sh) to create the venv",
        python.display()
    );
    python
}

/// A child process that reports one JSON document per stdout line.
pub struct Peer {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// Starts `command`, reading its stdout lines and keeping its stderr for failure messages.
    pub fn spawn(what: &str, mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({command:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let keep = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Peer {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    /// Runs a script of `peers/` with the venv's Python, and checks its first line: it is
    /// ready and runs the pinned `websockets`.
    pub fn python(script: &str) -> (Peer, Value) {
        let mut command = Command::new(venv_python());
        // Unbuffered output (each line arrives when written); no __pycache__ in the sources.
        command
            .args(["-u", "-B"])
            .arg(interop_dir().join("peers").join(script))
            .current_dir(interop_dir().join("peers"));
        let peer = Peer::spawn(script, command);
        let hello = peer.next_json(Duration::from_secs(20), "the peer's ready line");
        assert_eq!(hello["ready"], true, "{hello}");
        assert_eq!(
            hello["websockets"].as_str(),
            Some(pinned_websockets().as_str()),
            "the venv runs another websockets than requirements.txt pins: run \
             scripts/interop-setup.sh"
        );
        (peer, hello)
    }

    /// Writes to the child's stdin.
    pub fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to {}: {e}{}", self.what, self.stderr_tail()));
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line as JSON, within `limit`; a timeout, an exit or a line that is not
    /// JSON fails the test with the child's stderr.
    pub fn next_json(&self, limit: Duration, what: &str) -> Value {
        let line = match self.lines.recv_timeout(limit) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{}: {what}: nothing within {limit:?}{}",
                self.what,
                self.stderr_tail()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "{}: {what}: the process ended{}",
                self.what,
                self.stderr_tail()
            ),
        };
        serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{}: {what}: not JSON ({e}): {line}{}",
                self.what,
                self.stderr_tail()
            )
        })
    }

    /// The last 4 KB of the child's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let err = self.stderr.lock().unwrap();
        let tail = &err[err.len().saturating_sub(4000)..];
        if tail.trim().is_empty() {
            String::new()
        } else {
            format!("\n--- stderr ---\n{tail}")
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stdin = None;
        // Our own child, by its pid; it may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// Capture
// ------------------------------------------------------------------------------------------

/// Both directions of one relayed connection.
#[derive(Clone, Debug, Default)]
pub struct Streams {
    /// What the client sent: the upgrade request, then masked frames.
    pub to_server: Vec<u8>,
    /// What the server sent: the 101 answer, then frames.
    pub to_client: Vec<u8>,
}

/// One recorded connection: its streams, and how many directions have ended.
type Recorded = Arc<Mutex<(Streams, u8)>>;

/// A loopback TCP relay to a server that records every byte of the connections it relays.
pub struct Capture {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Recorded>>>,
}

impl Capture {
    /// Listens on an ephemeral loopback port and relays up to `max_conns` connections arriving
    /// within 60 s to `target`.
    pub fn start(target: SocketAddr, max_conns: usize) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the capture relay");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let conns: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let list = conns.clone();
        thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            let mut accepted = 0;
            while accepted < max_conns && Instant::now() < until {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => break,
                };
                accepted += 1;
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let rec: Recorded = Arc::default();
                list.lock().unwrap().push(rec.clone());
                for (from, to, upstream) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let rec = rec.clone();
                    thread::spawn(move || pump(from, to, &rec, upstream));
                }
            }
        });
        Capture { addr, conns }
    }

    /// The address to connect to instead of the server's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The streams of the `index`th connection once both directions have ended, within
    /// `limit`.
    pub fn finished(&self, index: usize, limit: Duration) -> Streams {
        let until = Instant::now() + limit;
        loop {
            if let Some(rec) = self.conns.lock().unwrap().get(index) {
                let rec = rec.lock().unwrap();
                if rec.1 == 2 {
                    return rec.0.clone();
                }
            }
            assert!(
                Instant::now() < until,
                "captured connection {index} did not end within {limit:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Copies one direction until it ends (EOF, an error, or 60 s of silence), recording it, then
/// passes the end on.
fn pump(mut from: TcpStream, mut to: TcpStream, rec: &Recorded, upstream: bool) {
    from.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    to.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut rec = rec.lock().unwrap();
            let stream = if upstream {
                &mut rec.0.to_server
            } else {
                &mut rec.0.to_client
            };
            stream.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    rec.lock().unwrap().1 += 1;
}

/// The header of one frame seen on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireFrame {
    /// FIN.
    pub fin: bool,
    /// RSV1: the message is compressed (on its first frame).
    pub rsv1: bool,
    /// The opcode.
    pub opcode: u8,
    /// The payload's length on the wire.
    pub len: usize,
}

/// The frames of one captured direction, after its HTTP head. A frame cut off at the end (the
/// capture ended mid-frame) is left out.
pub fn wire_frames(stream: &[u8]) -> Vec<WireFrame> {
    let start = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head in the capture")
        + 4;
    let mut at = start;
    let mut frames = Vec::new();
    while at + 2 <= stream.len() {
        let (b0, b1) = (stream[at], stream[at + 1]);
        let mut head = 2;
        let len = match b1 & 0x7f {
            126 if at + 4 <= stream.len() => {
                head = 4;
                u16::from_be_bytes([stream[at + 2], stream[at + 3]]) as usize
            }
            127 if at + 10 <= stream.len() => {
                head = 10;
                let mut b = [0u8; 8];
                b.copy_from_slice(&stream[at + 2..at + 10]);
                u64::from_be_bytes(b) as usize
            }
            126 | 127 => break,
            n => n as usize,
        };
        if b1 & 0x80 != 0 {
            head += 4;
        }
        if at + head + len > stream.len() {
            break;
        }
        frames.push(WireFrame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            len,
        });
        at += head + len;
    }
    frames
}

/// The data messages among `frames`: (opcode, RSV1 of the first frame, wire bytes in all).
pub fn wire_messages(frames: &[WireFrame]) -> Vec<(u8, bool, usize)> {
    let mut out: Vec<(u8, bool, usize)> = Vec::new();
    let mut open = false;
    for f in frames {
        match f.opcode {
            0x1 | 0x2 => out.push((f.opcode, f.rsv1, f.len)),
            0x0 if open => out.last_mut().unwrap().2 += f.len,
            _ => continue,
        }
        open = !f.fin;
    }
    out
}

// ------------------------------------------------------------------------------------------
// Contents
// ------------------------------------------------------------------------------------------

/// A small deterministic generator (SplitMix64): the same contents on every run.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "alpha", "beta", "gamma", "delta", "price", "symbol", "quote", "bid", "ask", "volume", "user",
    "room", "message", "hello", "there", "update", "state", "tick", "player", "score", "level",
];

/// JSON-like text of exactly `size` bytes (ASCII): records from a small vocabulary.
pub fn text_message(size: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed ^ ((size as u64) << 20));
    let mut s = String::with_capacity(size + 128);
    let mut i = 0;
    while s.len() < size {
        let words: Vec<&str> = (0..1 + rng.below(5))
            .map(|_| WORDS[rng.below(WORDS.len())])
            .collect();
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"{}{}\",\"text\":\"{}\",\"n\":{}}},",
            WORDS[rng.below(WORDS.len())],
            rng.below(50),
            words.join(" "),
            rng.below(100_000)
        ));
        i += 1;
    }
    s.truncate(size);
    s
}

/// Binary of exactly `size` bytes: random literals, near repeats (which compress at any
/// window) and slices of a 16 KiB random pool (matches up to 16 KiB back and beyond).
pub fn binary_message(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(!seed ^ ((size as u64) << 20));
    let pool: Vec<u8> = (0..16384).map(|_| rng.next() as u8).collect();
    let mut out = Vec::with_capacity(size + 64);
    while out.len() < size {
        let r = rng.below(10);
        if r == 0 || out.len() < 16 {
            let n = 1 + rng.below(7);
            out.extend((0..n).map(|_| rng.next() as u8));
        } else if r < 6 {
            let back = 8 + rng.below(out.len().min(255) - 7);
            let start = out.len() - back;
            let n = 4 + rng.below(back - 4);
            out.extend_from_within(start..start + n);
        } else {
            let start = rng.below(pool.len() - 64);
            out.extend_from_slice(&pool[start..start + 4 + rng.below(60)]);
        }
    }
    out.truncate(size);
    out
}
