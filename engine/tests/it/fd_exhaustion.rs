//! A server out of file descriptors, end to end on both backends: it stays idle (no CPU) while
//! clients wait in its accept queue, and every waiting client is answered with a 503 instead of
//! being left hanging.
//!
//! Only the server may run at the low fd limit, so each test runs it in a child process (this
//! test binary again, that test alone, which lowers its own limit) and plays the clients from
//! the parent. Every wait is bounded; the child is killed at the end whatever happens.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringsock_engine::reactor::BackendKind;
use ringsock_engine::server::Echo;

use crate::support::{raise_fd_limit, start, upgrade_request, wait_until, Setup, STEP};

/// In the child's environment: the backend its server runs on.
const CHILD: &str = "RINGSOCK_FD_EXHAUSTION_CHILD";

/// Descriptors the child's server may open beyond those in use when its limit is set (its
/// ring, eventfd, listener and reserve included).
const HEADROOM: u64 = 24;

/// Clients the parent opens: more than the headroom, so some wait in the accept queue.
const CLIENTS: usize = 60;

/// How long the server's CPU time is watched while clients wait.
const IDLE: Duration = Duration::from_secs(1);

/// The child's part: a server at a low fd limit, until the parent kills it.
fn serve(kind: BackendKind) {
    // Before the server starts: io_uring's multishot accept reads the limit when it is armed.
    // (And `start` would raise it again, once, unless this has happened already.)
    raise_fd_limit();
    // The limit bounds descriptor numbers, not counts, and inherited descriptors may sit high
    // (a build's jobserver pipes): find the limit that leaves exactly HEADROOM numbers free.
    let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let limit = (0..)
        .find(|&l| l - open.iter().filter(|&&fd| fd < l).count() as u64 == HEADROOM)
        .unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write an rlimit we own; only the soft limit is
    // lowered, which needs no privilege.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let server = start(kind, Setup::default(), Echo);
    println!("PORT {}", server.local_addrs()[0].port());
    std::io::stdout().flush().unwrap();
    // The parent kills us; if it died first, its end of stdin closes and we leave.
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// Kills the child however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's CPU time (user + system) so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no pointer arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Whether the server has answered `client` (101 or 503): bytes wait to be read.
fn answered(client: &TcpStream) -> bool {
    client.set_nonblocking(true).unwrap();
    let peeked = client.peek(&mut [0u8; 1]);
    client.set_nonblocking(false).unwrap();
    matches!(peeked, Ok(1..))
}

/// What a client has read by the time its head is complete, the server closed, or [`STEP`]
/// passed.
fn answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + STEP;
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while Instant::now() < deadline && !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Runs the case: in the child (this test binary running test `name` of this module alone),
/// the server; here, the clients.
fn server_out_of_fds_idles_and_refuses(kind: BackendKind, name: &str) {
    if std::env::var_os(CHILD).is_some() {
        serve(kind);
        return;
    }
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let test = format!("{module}::{name}");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([&test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let pid = child.0.id();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness's own "test … " may come first on the line.
            if let Some((_, port)) = line.split_once("PORT ") {
                let _ = tx.send(port.trim().parse::<u16>().unwrap());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the child's server did not start");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            c.write_all(upgrade_request("/").as_bytes()).unwrap();
            c
        })
        .collect();
    // The server upgrades as many clients as it has descriptors for and answers the rest 503,
    // then rests: wait until every client has its answer, then watch the server's CPU while the
    // clients stay connected and nothing more happens.
    wait_until(STEP, "an answer for every client", || {
        clients.iter().all(answered)
    });

    let before = cpu_time(pid);
    std::thread::sleep(IDLE);
    let used = cpu_time(pid) - before;
    assert!(
        used < IDLE / 10,
        "the server used {used:?} of CPU in {IDLE:?} with clients waiting"
    );

    let (mut upgraded, mut refused) = (0, 0);
    for c in &mut clients {
        let text = answer(c);
        if text.starts_with("HTTP/1.1 101 ") {
            upgraded += 1;
        } else if text.starts_with("HTTP/1.1 503 Service Unavailable\r\n") {
            refused += 1;
        } else {
            panic!("a waiting client got {text:?}");
        }
    }
    assert!(
        upgraded > 0 && refused > 0,
        "{upgraded} upgraded, {refused} refused"
    );
    assert_eq!(upgraded + refused, CLIENTS);
}

#[test]
fn server_out_of_fds_idles_and_refuses_io_uring() {
    server_out_of_fds_idles_and_refuses(
        BackendKind::IoUring,
        "server_out_of_fds_idles_and_refuses_io_uring",
    );
}

#[test]
fn server_out_of_fds_idles_and_refuses_epoll() {
    server_out_of_fds_idles_and_refuses(
        BackendKind::Epoll,
        "server_out_of_fds_idles_and_refuses_epoll",
    );
}
