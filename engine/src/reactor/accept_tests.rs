//! Accepting at the fd limit, on both backends, with a real EMFILE: the listener rests instead
//! of spinning, and accepting resumes as soon as a `close` frees a descriptor, or after
//! [`ACCEPT_RETRY`] when one frees up behind the backend's back.
//!
//! Filling the descriptor table would starve every other test running in the same process, so
//! each case re-runs itself in a child process (this test binary, that one test alone) and
//! lowers the fd limit only there.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::{create, Backend, BackendKind, Completion, PoolConfig, Token, ACCEPT_RETRY};

/// Set in the child's environment: run the case itself rather than a child for it.
const CHILD: &str = "RINGSOCK_ACCEPT_TEST_CHILD";

/// Longest any wait in a child may take (the child itself may run three times as long).
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `case` in a child process of this test binary (the test named `name` in this module,
/// alone) and fails if the child fails; in the child, runs it.
fn in_child(name: &str, case: fn()) {
    if std::env::var_os(CHILD).is_some() {
        case();
        return;
    }
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let test = format!("{module}::{name}");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([&test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT * 3 {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        status.success(),
        "child for {test} failed ({status}):\n{text}"
    );
    // A filter that matched nothing would pass without running the case.
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
}

/// This thread's CPU time so far: spinning shows here whether it happens inside `wait` (a loop
/// re-entering the kernel) or around it (waits that return at once).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Lowers the soft fd limit to just above the descriptors in use, then takes every free one
/// (duplicates of /dev/null): from here on any new descriptor fails with EMFILE.
fn exhaust_fds() -> Vec<OwnedFd> {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write an rlimit we own. Only the soft limit is
    // lowered (the hard one is kept), which needs no privilege.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        assert!(lim.rlim_cur > highest + 16, "the fd limit is low already");
        lim.rlim_cur = highest + 16;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let mut taken = Vec::new();
    loop {
        assert!(
            (taken.len() as u64) < lim.rlim_cur,
            "the fd limit did not hold"
        );
        // SAFETY: duplicates a descriptor we own; the new one is owned by the OwnedFd alone.
        let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
            break;
        }
        // SAFETY: `fd` was just made and nothing else owns it.
        taken.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    taken.push(null);
    taken
}

fn is_emfile(c: &Completion) -> bool {
    matches!(c, Completion::AcceptFailed(e) if e.raw_os_error() == Some(libc::EMFILE))
}

/// As [`wait_for`], returning the instant the wanted completion was seen.
fn wait_for_at(
    be: &mut dyn Backend,
    limit: Duration,
    want: impl Fn(&Completion) -> bool,
) -> (Vec<Completion>, Instant) {
    let (seen, _) = wait_for(be, limit, want);
    (seen, Instant::now())
}

/// Waits until a completion `want` accepts, at most `limit`; returns every completion seen and
/// how long it took.
fn wait_for(
    be: &mut dyn Backend,
    limit: Duration,
    want: impl Fn(&Completion) -> bool,
) -> (Vec<Completion>, Duration) {
    let began = Instant::now();
    let mut seen = Vec::new();
    while !seen.iter().any(&want) {
        let left = limit.saturating_sub(began.elapsed());
        assert!(!left.is_zero(), "nothing wanted within {limit:?}: {seen:?}");
        be.wait(Some(left), &mut seen).unwrap();
    }
    (seen, began.elapsed())
}

/// How many times the test frees a descriptor with `close` to see accepting resume at once: the
/// first accept that beats the retry instant proves it (a backend that kept resting cannot), and
/// a loaded machine may make one try too slow to tell.
const CLOSE_TRIES: usize = 5;

/// The case, run in the child: clients wait in the accept queue of a process at its fd limit.
fn rests_at_the_fd_limit_and_resumes(kind: BackendKind) {
    let (mut be, fell_back) = create(
        kind,
        PoolConfig {
            buffers: 8,
            buffer_size: 4096,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    assert!(fell_back.is_none());
    let be = &mut *be;
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(16).unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut clients: Vec<TcpStream> = (0..CLOSE_TRIES + 2)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for c in &mut clients {
        c.write_all(b"hi").unwrap();
    }
    // Descriptors the backend will be asked to close, as the shard closes a connection.
    let mut spares: Vec<_> = (0..CLOSE_TRIES)
        .map(|_| std::os::unix::net::UnixStream::pair().unwrap())
        .collect();
    let mut taken = exhaust_fds();
    be.listen(l.as_raw_fd()).unwrap();

    // The first attempt fails and is reported.
    let (seen, _) = wait_for(be, LIMIT, is_emfile);
    assert!(seen.iter().all(is_emfile), "{seen:?}");

    // Resting: the next three failures, each wait given far longer than a rest, so that only
    // the backend's own retry instant can end it. Spinning, it returned thousands of times in
    // microseconds and burned its time in CPU.
    let (began, cpu) = (Instant::now(), thread_cpu());
    let (mut waits, mut failures) = (0, 0);
    let mut out = Vec::new();
    while failures < 3 {
        let before = Instant::now();
        be.wait(Some(LIMIT), &mut out).unwrap();
        waits += 1;
        assert!(
            before.elapsed() < LIMIT / 2,
            "a wait blocked {:?}: the listener's retry instant did not end it",
            before.elapsed()
        );
        for c in out.drain(..) {
            assert!(is_emfile(&c), "{c:?}");
            failures += 1;
        }
    }
    let (took, cpu) = (began.elapsed(), thread_cpu() - cpu);
    // Three failures need at least two whole rests between them (the first may end a rest
    // already under way).
    assert!(
        took >= ACCEPT_RETRY * 2,
        "{failures} failures in {took:?}: not resting {ACCEPT_RETRY:?} between tries"
    );
    assert!(
        waits <= failures + 3,
        "{waits} waits for {failures} failures"
    );
    assert!(
        cpu < Duration::from_millis(60),
        "{cpu:?} of CPU while resting"
    );

    // Right after a failure the listener rests for a whole ACCEPT_RETRY; a close ends the rest
    // at once. Only a close can produce an accept sooner than ACCEPT_RETRY after the failure,
    // so one such try proves it; a try the machine made slower proves nothing, and is repeated.
    let mut accepted: Vec<OwnedFd> = Vec::new();
    let mut fastest = None;
    // The spares' peers stay open (and the untried spares too): only `close` frees a descriptor.
    let mut peers = Vec::new();
    for n in 0..CLOSE_TRIES {
        let (spare, peer) = spares.pop().expect("a spare per try");
        peers.push(peer);
        let (_, failed) = wait_for_at(be, LIMIT, is_emfile);
        be.close(Token::new(7, n as u32 + 1), spare.into());
        let (seen, at) = wait_for_at(be, LIMIT, |c| matches!(c, Completion::Accepted { .. }));
        let before = accepted.len();
        for c in seen {
            match c {
                Completion::Accepted { fd } => accepted.push(fd),
                Completion::Closed { token } => assert_eq!(token, Token::new(7, n as u32 + 1)),
                c => assert!(is_emfile(&c), "{c:?}"),
            }
        }
        assert_eq!(accepted.len(), before + 1, "one descriptor was freed");
        let after_failure = at - failed;
        fastest = Some(fastest.map_or(after_failure, |f: Duration| f.min(after_failure)));
        if after_failure < ACCEPT_RETRY {
            break;
        }
    }
    let fastest = fastest.unwrap();
    assert!(
        fastest < ACCEPT_RETRY,
        "accepted {fastest:?} after a failure at best, in {CLOSE_TRIES} tries: the close did \
         not end the rest"
    );

    // A descriptor freed behind the backend's back (no `close`): taken after the back-off, not
    // never.
    wait_for(be, LIMIT, is_emfile);
    drop(taken.pop());
    let (seen, _) = wait_for(be, LIMIT, |c| matches!(c, Completion::Accepted { .. }));
    let before = accepted.len();
    for c in seen {
        match c {
            Completion::Accepted { fd } => accepted.push(fd),
            c => assert!(is_emfile(&c), "{c:?}"),
        }
    }
    assert_eq!(accepted.len(), before + 1);

    be.stop_accepting();
    drop((accepted, taken, spares, peers));
}

#[test]
fn io_uring_rests_at_the_fd_limit_and_resumes() {
    in_child("io_uring_rests_at_the_fd_limit_and_resumes", || {
        rests_at_the_fd_limit_and_resumes(BackendKind::IoUring)
    });
}

#[test]
fn epoll_rests_at_the_fd_limit_and_resumes() {
    in_child("epoll_rests_at_the_fd_limit_and_resumes", || {
        rests_at_the_fd_limit_and_resumes(BackendKind::Epoll)
    });
}
