//! `ringsock-echo` as a separate process: its memory and CPU time then come from
//! `/proc/<pid>` alone, and an open-file limit can be set for it and nothing else.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{process_cpu_seconds, process_rss_kib};

/// How long the server may take to say where it listens.
const START_BOUND: Duration = Duration::from_secs(20);

/// How long a SIGTERM'd server may take to exit before it gets SIGKILL. Its graceful shutdown
/// waits up to 5 s for close handshakes; by then no client of ours is left to answer one.
const STOP_BOUND: Duration = Duration::from_secs(3);

/// Lines of the server's stderr kept for diagnostics (the latest ones).
const LOG_LINES: usize = 200;

/// The reactor backend a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring.
    IoUring,
    /// epoll (through mio).
    Epoll,
}

impl Backend {
    /// Both backends, io_uring first.
    pub const BOTH: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

    /// The name `ringsock-echo --backend` takes and its "listening" line shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

/// The `ringsock-echo` that sits next to the running executable (both are built into the same
/// target directory), for the figures tool.
pub fn echo_beside_current_exe() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("ringsock-echo");
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no ringsock-echo beside {}", exe.display()),
        ))
    }
}

/// A running `ringsock-echo --shards 1` on an ephemeral loopback port; SIGTERM then SIGKILL
/// when dropped.
#[derive(Debug)]
pub struct EchoServer {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl EchoServer {
    /// Starts `bin` on `127.0.0.1:0` with one shard, `backend`, the extra `args`, and, if
    /// given, `RLIMIT_NOFILE` set to `nofile` for it alone; returns once it has said where it
    /// listens (and that it runs the backend asked for).
    pub fn start(
        bin: &Path,
        backend: Backend,
        args: &[String],
        nofile: Option<u64>,
    ) -> io::Result<Self> {
        let mut command = Command::new(bin);
        command
            .args(["--addr", "127.0.0.1:0", "--shards", "1", "--backend"])
            .arg(backend.name())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(limit) = nofile {
            let hard = nofile_hard_limit();
            // SAFETY: the closure runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed: it calls setrlimit on a value built on the
            // stack and allocates nothing (last_os_error only reads errno).
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        // Ends at EOF, when the server exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(found) = parse_listening(&line) {
                    let _ = tx.send(found);
                }
                let mut log = lines.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let mut server = Self {
            child,
            // Replaced below; a server dropped before saying where it listens is killed all
            // the same.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match rx.recv_timeout(START_BOUND) {
            Ok((addr, seen)) if seen == backend.name() => {
                server.addr = addr;
                Ok(server)
            }
            Ok((_, seen)) => Err(io::Error::other(format!(
                "asked for the {} backend, the server runs {seen}",
                backend.name()
            ))),
            Err(_) => Err(io::Error::other(format!(
                "{} did not say where it listens: {:?}",
                bin.display(),
                server.log()
            ))),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        process_rss_kib(self.pid())
    }

    /// The CPU time it has used, user and system, in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.pid())
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The latest lines of its stderr.
    pub fn log(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: kill only sends a signal, to our own child, which has not been reaped yet
        // (try_wait above saw it running), so the pid is still its.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_BOUND;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Address and backend from "ringsock-echo: listening on ADDR (BACKEND backend)".
fn parse_listening(line: &str) -> Option<(SocketAddr, String)> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest.split([' ', ',']).next()?.parse().ok()?;
    let backend = rest.split('(').nth(1)?.split(' ').next()?.to_owned();
    Some((addr, backend))
}

/// This process's hard open-file limit, which the child keeps (only its soft limit drops).
fn nofile_hard_limit() -> libc::rlim_t {
    // SAFETY: getrlimit writes into an rlimit we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return libc::RLIM_INFINITY;
        }
        lim.rlim_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_address_and_backend() {
        let (addr, backend) =
            parse_listening("ringsock-echo: listening on 127.0.0.1:39617 (io_uring backend)")
                .unwrap();
        assert_eq!(addr, "127.0.0.1:39617".parse().unwrap());
        assert_eq!(backend, "io_uring");
        assert!(parse_listening("ringsock: using the epoll backend").is_none());
    }
}
