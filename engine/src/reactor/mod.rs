//! The reactor: one per shard, it owns the kernel side of I/O and reports completions.
//!
//! Two backends implement [`Backend`]: [`uring`] (io_uring: multishot accept, multishot recv into
//! a provided buffer ring, one gathered `sendmsg` per socket) and [`epoll`] (readiness through
//! mio, with the same completion semantics emulated). The shard above them is written once
//! against this interface, in completion style:
//!
//! - the shard asks for work (`listen`, `register`, `send`, `close`), each naming a [`Token`];
//! - [`Backend::wait`] blocks until something finished and appends [`Completion`]s;
//! - received bytes live in the backend's buffer pool: the shard reads them with
//!   [`Backend::buffer`] and gives the buffer back with [`Backend::recycle`] before the next wait,
//!   so a connection holds no receive buffer between reads;
//! - reading a socket can be paused and resumed ([`Backend::pause`], [`Backend::resume`]), so
//!   a peer that does not read what it is sent cannot make the shard read more from it;
//! - bytes the shard knows it does not want (the rest of a payload its connection discards) can
//!   be dropped in the kernel instead, unread: [`Backend::skip`], reported as
//!   [`Completion::Skipped`].
//!
//! Ownership rules that keep it memory-safe without `unsafe` above this layer: `send` takes the
//! chunks by value and [`Completion::Sent`] gives them back, so the kernel never reads memory the
//! shard could free; after `close`, [`Completion::Closed`] comes exactly once, after every other
//! completion for that token, and only then may the token be reused.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

#[cfg(test)]
mod accept_tests;
pub mod epoll;
mod pool_mem;
#[cfg(test)]
mod receive_tests;
pub mod uring;

/// Names a connection in its shard: the slab index in the low 32 bits and a generation in the
/// high 32, so a completion for a closed connection can never reach the slot's next occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

impl Token {
    /// A token for slab slot `index` in its `generation`.
    pub fn new(index: usize, generation: u32) -> Self {
        Token(((generation as u64) << 32) | index as u64)
    }

    /// The slab slot.
    pub fn index(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    /// The slot's generation when the token was made.
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A buffer of the backend's receive pool, lent to the shard until [`Backend::recycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufId(pub u16);

/// Something the kernel finished.
#[derive(Debug)]
pub enum Completion {
    /// A listener accepted a connection; the socket is non-blocking and owned by the shard.
    Accepted {
        /// The new socket.
        fd: OwnedFd,
    },
    /// Accepting failed (e.g. EMFILE). The backend keeps (or re-arms) the accept itself; after a
    /// resource error ([`is_resource_error`]) it first rests the listener for [`ACCEPT_RETRY`]
    /// or until a `close`, so this comes at most once per rest, never in a hot loop.
    AcceptFailed(io::Error),
    /// Bytes arrived for `token`: `len` bytes at the start of buffer `buf`.
    Received {
        /// The connection.
        token: Token,
        /// Where the bytes are; read with [`Backend::buffer`], return with [`Backend::recycle`].
        buf: BufId,
        /// How many bytes.
        len: usize,
    },
    /// After [`Backend::skip`]: `len` bytes of `token`'s input were dropped unread. A skip may
    /// be reported in several parts, in order with the token's other completions.
    Skipped {
        /// The connection.
        token: Token,
        /// How many bytes.
        len: usize,
    },
    /// The peer shut its side (read returned 0).
    Eof {
        /// The connection.
        token: Token,
    },
    /// Receiving failed for good (e.g. ECONNRESET). Pool exhaustion (ENOBUFS) is never
    /// reported: the backend re-arms once buffers return.
    RecvFailed {
        /// The connection.
        token: Token,
        /// Why.
        error: io::Error,
    },
    /// The send in flight for `token` ended.
    Sent {
        /// The connection.
        token: Token,
        /// Bytes written from the front of `chunks` (possibly fewer than all), or the error.
        result: io::Result<usize>,
        /// The chunks given to [`Backend::send`], returned whole; the shard drops what was
        /// written and sends the rest again.
        chunks: Vec<Bytes>,
    },
    /// After [`Backend::close`]: the socket is closed and nothing more will come for `token`.
    Closed {
        /// The connection.
        token: Token,
    },
    /// Another thread called [`Waker::wake`].
    Woken,
}

/// Wakes a shard's [`Backend::wait`] from any thread (an eventfd underneath).
#[derive(Clone, Debug)]
pub struct Waker(pub(crate) Arc<std::os::fd::OwnedFd>);

impl Waker {
    /// Makes the shard's current or next `wait` return with [`Completion::Woken`].
    pub fn wake(&self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; a full counter (EAGAIN)
        // means a wake is already pending, which is all we want.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// A new eventfd-backed waker (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd has no pointer arguments; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Waker(Arc::new(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        })))
    }

    /// The eventfd, for the backend to watch.
    pub fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Clears pending wakes (the backend calls this when it sees the eventfd readable).
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd we own.
        unsafe {
            libc::read(
                self.fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Sizes of a shard's receive pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Number of receive buffers (a power of two for io_uring's buffer ring; at most 32768).
    pub buffers: u16,
    /// Bytes per buffer: also the most one receive can take from one socket.
    pub buffer_size: u32,
    /// The most bytes a shard reads from one socket per loop turn, so a peer that floods cannot
    /// take the turn from the others: io_uring ends a socket's multishot receive after this
    /// many bytes (Linux 6.17+; on older kernels the pool's size is the only bound) and
    /// re-arms it at the next wait; epoll reads one buffer per socket per turn, at most this.
    pub read_budget: u32,
}

impl Default for PoolConfig {
    /// 512 × 64 KiB (32 MiB per shard). Large buffers matter for large messages: each receive
    /// costs the kernel a window update, and 16 KiB buffers held a 1 MiB echo to 1.6 GB/s where
    /// 64 KiB ones reach 2.4–2.9 GB/s (`benches/run-load.sh`, scenario C). 512 of them still let
    /// 512 sockets deliver in one loop turn before a receive waits for a buffer. A read budget
    /// of 256 KiB per socket and turn: four buffers, a fraction of a millisecond of echo work.
    fn default() -> Self {
        Self {
            buffers: 512,
            buffer_size: 64 * 1024,
            read_budget: 256 * 1024,
        }
    }
}

/// The kernel interface of one shard. Not `Send`: it lives and dies on its shard's thread.
pub trait Backend {
    /// `"io_uring"` or `"epoll"`, for the log line at start.
    fn name(&self) -> &'static str;

    /// Starts accepting on a bound, listening, non-blocking socket (the shard keeps ownership of
    /// the listener fd). Accepted sockets arrive as [`Completion::Accepted`].
    fn listen(&mut self, listener: RawFd) -> io::Result<()>;

    /// Stops accepting on every listener (graceful shutdown). Accepts already completed may
    /// still be reported.
    fn stop_accepting(&mut self);

    /// Takes an accepted socket under `token` and starts receiving on it.
    fn register(&mut self, token: Token, fd: RawFd) -> io::Result<()>;

    /// Writes `chunks` in order with one gathered send. At most one send per token is in flight:
    /// the shard calls again only after [`Completion::Sent`]. At most [`MAX_IOVECS`] chunks.
    fn send(&mut self, token: Token, fd: RawFd, chunks: Vec<Bytes>);

    /// Drops the next `len` bytes of `token`'s input unread, counted from the first byte not yet
    /// reported in a completion: the kernel discards them (`recv` with `MSG_TRUNC`, which on a
    /// TCP socket copies nothing). Each drop is reported as [`Completion::Skipped`]; bytes
    /// reported as [`Completion::Received`] after this call count against `len` too, so no more
    /// than `len` bytes are ever dropped. Calls add up. EOF, a receive error or `close` end a
    /// skip as they end receiving.
    ///
    /// The first read after a skip takes at most [`PROBE_LEN`] bytes, so the shard can ask
    /// for the next skip before the following payload is copied. A skip of 0 bytes asks for
    /// that short read alone: the shard stands between frames and expects the next payload to
    /// be one it drops too.
    ///
    /// The shard must know what the bytes are: call it only with every completion so far
    /// handled, and never on a connection whose bytes are not its own to parse (TLS records).
    fn skip(&mut self, token: Token, fd: RawFd, len: u64);

    /// Stops reading `token`'s socket until [`Backend::resume`]: its bytes stay in the kernel,
    /// whose receive window then fills and pushes back on the peer (read backpressure). A read
    /// already under way may still be reported; a skip the shard asks for meanwhile still
    /// drops its bytes. EOF and errors are noticed when reading resumes (or through a send).
    fn pause(&mut self, token: Token);

    /// Reads `token`'s socket again after [`Backend::pause`], including bytes that arrived
    /// meanwhile.
    fn resume(&mut self, token: Token);

    /// Shuts the write side (after the last bytes of a close handshake), keeps receiving.
    fn shutdown_write(&mut self, token: Token, fd: RawFd);

    /// Stops all I/O on `token` and closes `fd`, which the caller hands over (the socket it
    /// registered under `token`, or any it owns). [`Completion::Closed`] follows, after every
    /// other completion for the token (an in-flight send's `Sent` included).
    fn close(&mut self, token: Token, fd: OwnedFd);

    /// Blocks until at least one completion is ready or `timeout` passes (`None`: no limit),
    /// then appends every ready completion to `out`.
    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()>;

    /// The bytes of a buffer lent by [`Completion::Received`].
    fn buffer(&self, buf: BufId, len: usize) -> &[u8];

    /// Gives a lent buffer back to the pool.
    fn recycle(&mut self, buf: BufId);

    /// Returns the memory of receive buffers the shard does not hold to the kernel (the pages
    /// fault in again, zeroed, when next written). For a shard that has been idle a while:
    /// the first messages of a burst touch many buffers, and without this an idle server would
    /// keep them resident for good. Call right after a `wait` that completed nothing.
    fn trim(&mut self);

    /// A handle that wakes this backend's `wait` from other threads.
    fn waker(&self) -> Waker;
}

/// The most bytes one truncating receive ([`Backend::skip`]) drops: the length of the memory it
/// is pointed at. On TCP the kernel never writes there (`MSG_TRUNC` skips the copy), so that
/// memory is a mapping of its own that stays unbacked; it only has to be valid, writable memory
/// of this length, whatever the socket.
const SKIP_CHUNK: usize = 4 << 20;

/// The most bytes the first read after a skip takes: the longest WebSocket frame header (2 + 8
/// length + 4 mask). The bytes after a dropped payload are most often the next frame's header,
/// and if that frame is to be dropped too, reading no further than its header saves copying
/// its payload: the shard sees the length and asks for the next skip before anything more is
/// read.
pub const PROBE_LEN: usize = 14;

/// Calls `release(start, len)` for each run of consecutive buffers (of `size` bytes) that are
/// not lent, so a mostly idle pool goes back in one or a few calls.
fn release_runs(lent: &[bool], size: usize, mut release: impl FnMut(usize, usize)) {
    let mut run_start = None;
    for (i, &held) in lent.iter().chain([&true]).enumerate() {
        match (held, run_start) {
            (false, None) => run_start = Some(i),
            (true, Some(first)) => {
                release(first * size, (i - first) * size);
                run_start = None;
            }
            _ => {}
        }
    }
}

/// How long a listener rests after an accept failed for lack of a resource
/// ([`is_resource_error`]) before either backend tries again, unless a `close` frees a
/// descriptor sooner. Long enough that a process at its fd limit sleeps (ten failed accepts a
/// second, not a hot loop), short enough that a backlog is served promptly once descriptors
/// are available.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Whether an accept failed because the process or the system ran out of something (file
/// descriptors: EMFILE, ENFILE; kernel memory: ENOBUFS, ENOMEM) rather than because of one
/// connection or a broken listener. Retrying at once would fail the same way, so both backends
/// report it once ([`Completion::AcceptFailed`]) and rest the listener for [`ACCEPT_RETRY`], or
/// until a `close` frees a descriptor.
pub fn is_resource_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The most chunks one gathered send takes (Linux's IOV_MAX is 1024; fewer keeps the msghdr
/// small and one send's latency bounded).
pub const MAX_IOVECS: usize = 64;

/// Which backend a shard should run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring when the kernel allows it, else epoll (the choice is logged once).
    #[default]
    Auto,
    /// io_uring, or fail.
    IoUring,
    /// epoll.
    Epoll,
}

impl BackendKind {
    /// Reads `RINGSOCK_BACKEND` (`io_uring`, `uring`, `epoll` or `auto`), if set.
    pub fn from_env() -> Option<Self> {
        match std::env::var("RINGSOCK_BACKEND")
            .ok()?
            .to_ascii_lowercase()
            .as_str()
        {
            "io_uring" | "uring" | "io-uring" => Some(Self::IoUring),
            "epoll" => Some(Self::Epoll),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// Creates the backend for one shard: io_uring if asked or possible, else epoll. Returns which
/// was chosen and, when `Auto` fell back, why.
pub fn create(
    kind: BackendKind,
    pool: PoolConfig,
) -> io::Result<(Box<dyn Backend>, Option<io::Error>)> {
    match kind {
        BackendKind::Epoll => Ok((Box::new(epoll::EpollBackend::new(pool)?), None)),
        BackendKind::IoUring => Ok((Box::new(uring::UringBackend::new(pool)?), None)),
        BackendKind::Auto => match uring::UringBackend::new(pool) {
            Ok(b) => Ok((Box::new(b), None)),
            Err(e) => Ok((Box::new(epoll::EpollBackend::new(pool)?), Some(e))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::release_runs;

    #[test]
    fn release_runs_covers_each_run_of_free_buffers_once() {
        let lent = [false, false, true, false, true, true, false];
        let mut got = Vec::new();
        release_runs(&lent, 10, |start, len| got.push((start, len)));
        assert_eq!(got, [(0, 20), (30, 10), (60, 10)]);
        let mut none = Vec::new();
        release_runs(&[true, true], 10, |start, len| none.push((start, len)));
        assert!(none.is_empty());
    }
}
