//! The epoll fallback: readiness through mio, turned into the same completions io_uring gives.
//!
//! Used where io_uring is missing or blocked (old kernels, seccomp-filtered containers). The shard
//! above cannot tell the two backends apart, so every rule of [`Backend`] is emulated here:
//!
//! - **Receive.** One allocation of `buffers × buffer_size` bytes and a free list stand in for
//!   io_uring's provided buffer ring. A readable socket is read once per [`Backend::wait`] into a
//!   free buffer, which is lent out with [`Completion::Received`]; an idle connection holds no
//!   buffer. With no buffer free the socket is skipped, not failed (io_uring's ENOBUFS is never
//!   reported either), and read again once buffers come back. Until then such sockets do not
//!   count as work, so a `wait` with every buffer lent blocks instead of spinning (the shard
//!   recycles before its next `wait`, so this is a safety net, not a steady state).
//! - **Edge-triggered readiness.** mio always registers with `EPOLLET`; there is no level-triggered
//!   mode. So the backend remembers, in the `ready` queue, every socket that may still hold data:
//!   one with a fresh edge, one whose last read filled the whole buffer, one skipped for lack of
//!   buffers. A read shorter than the buffer means the stream socket's receive queue was empty at
//!   that moment, so the next byte to arrive raises a new edge and the socket can leave the queue
//!   without an extra read just to see EAGAIN (nginx relies on the same rule). The queue is served
//!   round-robin, at most one read per socket per `wait`, so one fast sender cannot starve others.
//! - **Pause.** `pause` only marks the connection: it is left out of the `ready` queue (its
//!   bytes stay in the kernel, whose window then pushes back on the peer), and `resume` puts it
//!   back, since an edge that came meanwhile is not repeated.
//! - **Skip.** `skip` only notes how many bytes to drop. The next time the socket is served, a
//!   `recv` with `MSG_TRUNC | MSG_DONTWAIT` drops up to that many first (TCP copies nothing) and
//!   reports them as [`Completion::Skipped`]; no byte is read into a buffer while some are still
//!   to be dropped, so `Received` never overtakes a skip. The read after a skip takes at most
//!   [`PROBE_LEN`] bytes (in the same turn if the socket may hold more), so the next frame's
//!   header arrives without its payload.
//! - **Send.** `send` tries one gathered `sendmsg` at once. Bytes written (or a real error) make a
//!   [`Completion::Sent`] for the next `wait`; EAGAIN parks the chunks on the connection until the
//!   socket reports writable. Sockets are registered for both directions once, so parking costs no
//!   `epoll_ctl`; the kernel only raises write edges after a write ran out of room, so the extra
//!   interest does not add wakeups to idle connections.
//! - **Accept.** Up to [`ACCEPT_BATCH`] `accept4` calls per listener per `wait`; a listener cut off
//!   by the cap stays due and the next `wait` does not block. Resource errors (EMFILE, ENFILE,
//!   ENOBUFS, ENOMEM: [`is_resource_error`], the rule io_uring shares) are reported once as
//!   [`Completion::AcceptFailed`] and retried after [`ACCEPT_RETRY`] or as soon as the shard
//!   closes a connection (which frees a descriptor), never in a hot loop. Other errors that
//!   would fail again at once (a broken listener) rest for [`ACCEPT_RETRY`] too; a close does
//!   not end that rest, since it mends nothing.
//!
//! Completions produced outside `wait` (`Sent` from an immediate send, `Sent` and `Closed` from
//! `close`) are queued and handed out first by the next `wait`, which then does not block.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};

use super::{
    is_resource_error, release_runs, Backend, BufId, Completion, PoolConfig, Token, Waker,
    ACCEPT_RETRY, MAX_IOVECS, PROBE_LEN, SKIP_CHUNK,
};

/// Most connections accepted from one listener in one `wait`: bounds the time a connection storm
/// can keep the shard from serving the connections it already has.
pub const ACCEPT_BATCH: usize = 128;

/// Readiness events taken per `epoll_wait`; more stay queued in the kernel for the next call.
const EVENTS_CAPACITY: usize = 1024;

/// mio token of the waker's eventfd. Connection tokens are slab indices (< 2³²), listeners sit at
/// [`LISTENER_BASE`] and above, so the three ranges never meet.
const WAKER: mio::Token = mio::Token(usize::MAX);

/// mio token of the first listener; listener `i` is `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 1 << 40;

/// The receive pool: one allocation cut into equal buffers, and which of them are free.
struct Pool {
    /// All buffers back to back, in a mapping of their own: untouched buffers cost address
    /// space, not memory.
    mem: super::pool_mem::PoolMem,
    /// Bytes per buffer.
    size: usize,
    /// Free buffer ids, used as a stack so the most recently returned (cache-warm) one goes first.
    free: Vec<u16>,
    /// Whether each buffer is lent to the shard: lets `recycle` ignore a double return instead of
    /// corrupting the free list.
    lent: Vec<bool>,
}

impl Pool {
    fn new(cfg: PoolConfig) -> io::Result<Self> {
        if cfg.buffers == 0 || cfg.buffers > 32768 || cfg.buffer_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "receive pool needs 1..=32768 buffers of at least one byte",
            ));
        }
        let size = cfg.buffer_size as usize;
        let total = size
            .checked_mul(usize::from(cfg.buffers))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "receive pool too big"))?;
        Ok(Self {
            mem: super::pool_mem::PoolMem::new(total)?,
            size,
            // Reversed so buffer 0 is handed out first: easier to follow in a trace.
            free: (0..cfg.buffers).rev().collect(),
            lent: vec![false; usize::from(cfg.buffers)],
        })
    }

    /// The whole of buffer `id`, to read into.
    fn slot_mut(&mut self, id: u16) -> &mut [u8] {
        let start = usize::from(id) * self.size;
        &mut self.mem.as_mut_slice()[start..start + self.size]
    }
}

/// A listening socket the backend accepts on (the shard owns the descriptor).
struct Listener {
    fd: RawFd,
    /// Connections may be waiting: an edge was seen and `accept4` has not yet said EAGAIN.
    backlog: bool,
    /// After an accept error: do not accept again before this instant.
    retry_at: Option<Instant>,
    /// The rest is for a resource error, which a `close` may end early (it frees a descriptor).
    short_of_resources: bool,
}

/// What the backend keeps per connection: a few words, no buffer.
struct Conn {
    /// The shard's token, generation included, echoed in every completion.
    token: Token,
    fd: RawFd,
    /// Still receiving: false after EOF or a receive error, so the socket is never read again.
    reading: bool,
    /// Queued in `ready` (avoids queueing a socket twice when several edges arrive).
    in_ready: bool,
    /// The peer's FIN or a socket error has been signalled. That edge comes once and may arrive
    /// while bytes are still queued, so from then on only a read that returns 0, an error or
    /// EAGAIN takes the socket out of `ready`; a short read no longer proves it drained.
    hung_up: bool,
    /// Bytes still to drop unread ([`Backend::skip`]) before any more are read.
    skip: u64,
    /// A skip just ended: the next read takes no more than [`PROBE_LEN`] bytes.
    probe: bool,
    /// The shard paused reading ([`Backend::pause`]): the socket is left out of `ready` until
    /// [`Backend::resume`] puts it back.
    held: bool,
    /// A send that met EAGAIN, waiting for the socket to become writable.
    parked: Option<Vec<Bytes>>,
}

/// Hashes connection keys (slab indices) with one multiply. SipHash's flood resistance buys
/// nothing for keys the shard chooses, and this lookup runs on every readiness event. The multiply
/// by an odd constant keeps distinct low bits distinct (so dense indices land in distinct buckets)
/// and spreads them into the high bits hashbrown uses for its tag bytes.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if the key type ever changes; still a valid (if slower) hash.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Connections by slab index.
type ConnMap = HashMap<usize, Conn, BuildHasherDefault<IndexHasher>>;

/// The epoll backend: mio readiness, emulating io_uring's completion semantics (see the module
/// documentation for how each operation maps). Dropping it closes the epoll instance only: the
/// listeners and connection sockets stay the shard's to close.
pub struct EpollBackend {
    poll: Poll,
    events: Events,
    waker: Waker,
    pool: Pool,
    /// Where truncating receives point (see [`SKIP_CHUNK`]): never read, and on TCP never
    /// written, so it costs address space only.
    sink: super::pool_mem::PoolMem,
    listeners: Vec<Listener>,
    conns: ConnMap,
    /// Sockets that may have bytes to read, in the order they are to be served. Entries of closed
    /// connections are left in place and skipped (their token no longer matches).
    ready: VecDeque<Token>,
    /// Completions made outside `wait`, handed out first by the next `wait`.
    queued: Vec<Completion>,
    /// Sends parked on EAGAIN so far (lets tests prove the writable path ran).
    #[cfg(test)]
    parked_sends: usize,
    /// `epoll_wait` calls so far (lets tests prove `wait` does not spin).
    #[cfg(test)]
    polls: usize,
}

impl std::fmt::Debug for EpollBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollBackend")
            .field("listeners", &self.listeners.len())
            .field("connections", &self.conns.len())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl EpollBackend {
    /// Sets up the backend with its receive pool: an epoll instance (through mio), the pool's
    /// single allocation, and a waker whose eventfd is watched from the start.
    pub fn new(pool: PoolConfig) -> io::Result<Self> {
        let pool = Pool::new(pool)?;
        let poll = Poll::new()?;
        let waker = Waker::new()?;
        poll.registry()
            .register(&mut SourceFd(&waker.fd()), WAKER, Interest::READABLE)?;
        Ok(Self {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            waker,
            pool,
            sink: super::pool_mem::PoolMem::new(SKIP_CHUNK)?,
            listeners: Vec::new(),
            conns: ConnMap::default(),
            ready: VecDeque::new(),
            queued: Vec::new(),
            #[cfg(test)]
            parked_sends: 0,
            #[cfg(test)]
            polls: 0,
        })
    }

    /// Whether a `wait` can make progress without new readiness: a socket to read and a buffer to
    /// read into, or a listener cut off by the accept cap. Queued sockets with no buffer free do
    /// not count, so a shard holding every buffer makes `wait` block instead of spin.
    fn has_work_now(&self, now: Instant) -> bool {
        (!self.ready.is_empty() && !self.pool.free.is_empty())
            || self
                .listeners
                .iter()
                .any(|l| l.backlog && l.retry_at.is_none_or(|at| at <= now))
    }

    /// How long `epoll_wait` may block: until the caller's deadline, shortened to the earliest
    /// accept retry so a listener resting after EMFILE is tried again on time.
    fn block_for(&self, now: Instant, deadline: Option<Instant>) -> Option<Duration> {
        let mut limit = deadline.map(|d| d.saturating_duration_since(now));
        for l in &self.listeners {
            if let (true, Some(at)) = (l.backlog, l.retry_at) {
                let rest = at.saturating_duration_since(now);
                limit = Some(limit.map_or(rest, |t| t.min(rest)));
            }
        }
        limit
    }

    /// Turns the last `epoll_wait`'s events into state: wakes, listeners due, sockets to read,
    /// parked sends to retry (whose `Sent` goes straight to `out`).
    fn dispatch_events(&mut self, out: &mut Vec<Completion>) {
        for ev in self.events.iter() {
            let key = ev.token();
            if key == WAKER {
                // Drain before reporting: a wake after this read raises a new edge, so none is
                // lost; wakes before it are folded into this one `Woken`.
                self.waker.drain();
                out.push(Completion::Woken);
            } else if key.0 >= LISTENER_BASE {
                if let Some(l) = self.listeners.get_mut(key.0 - LISTENER_BASE) {
                    l.backlog = true;
                }
            } else if let Some(conn) = self.conns.get_mut(&key.0) {
                // Errors and hang-ups count as readable: the read that follows reports them as
                // `RecvFailed` or `Eof`. Noted even when the socket is queued already, since no
                // further edge will repeat them.
                if ev.is_read_closed() || ev.is_error() {
                    conn.hung_up = true;
                }
                if conn.reading
                    && !conn.held
                    && !conn.in_ready
                    && (ev.is_readable() || conn.hung_up)
                {
                    conn.in_ready = true;
                    self.ready.push_back(conn.token);
                }
                if conn.parked.is_some()
                    && (ev.is_writable() || ev.is_write_closed() || ev.is_error())
                {
                    let chunks = conn.parked.take().unwrap_or_default();
                    match send_gathered(conn.fd, &chunks) {
                        Some(result) => out.push(Completion::Sent {
                            token: conn.token,
                            result,
                            chunks,
                        }),
                        // A spurious edge: the failed attempt re-armed the write edge.
                        None => conn.parked = Some(chunks),
                    }
                }
            }
        }
    }

    /// Accepts on every listener that is due, up to [`ACCEPT_BATCH`] each.
    fn accept_ready(&mut self, now: Instant, out: &mut Vec<Completion>) {
        for l in &mut self.listeners {
            if !l.backlog || l.retry_at.is_some_and(|at| now < at) {
                continue;
            }
            l.retry_at = None;
            let mut batch = 0;
            while batch < ACCEPT_BATCH {
                batch += 1;
                // SAFETY: null address and length pointers are allowed (we do not want the peer
                // address); `l.fd` is a listener the shard keeps open while it is registered.
                let fd = unsafe {
                    libc::accept4(
                        l.fd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if fd >= 0 {
                    // SAFETY: accept4 just returned this descriptor; nothing else owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    out.push(Completion::Accepted { fd });
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.raw_os_error().unwrap_or(0) {
                    libc::EAGAIN => {
                        l.backlog = false;
                        break;
                    }
                    // That one connection is gone or refused, or a signal landed; the next one
                    // may be fine (accept(2) asks to retry on these network errors).
                    libc::EINTR
                    | libc::ECONNABORTED
                    | libc::EPERM
                    | libc::EPROTO
                    | libc::ENOPROTOOPT
                    | libc::ENETDOWN
                    | libc::ENETUNREACH
                    | libc::EHOSTDOWN
                    | libc::EHOSTUNREACH
                    | libc::ENONET
                    | libc::EOPNOTSUPP => continue,
                    // Out of descriptors or memory, or a broken listener: say so once and rest,
                    // since retrying now would fail the same way.
                    _ => {
                        l.short_of_resources = is_resource_error(&err);
                        out.push(Completion::AcceptFailed(err));
                        l.retry_at = Some(now + ACCEPT_RETRY);
                        break;
                    }
                }
            }
        }
    }

    /// Reads once from each socket queued in `ready` when this call began, while buffers last.
    fn read_ready(&mut self, out: &mut Vec<Completion>) {
        // Sockets put back during this pass are not read again until the next `wait`.
        let rounds = self.ready.len();
        for _ in 0..rounds {
            let Some(&buf) = self.pool.free.last() else {
                // Pool exhausted: the rest stay queued, in order, for when buffers return.
                return;
            };
            let Some(token) = self.ready.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(&token.index()) else {
                continue; // closed since it was queued
            };
            if conn.token != token || !conn.in_ready {
                continue; // a stale entry of the slot's previous occupant
            }
            if !conn.reading || conn.held {
                // (A held socket is queued again by `resume`, which cannot know whether bytes
                // came meanwhile: edges are not repeated.)
                conn.in_ready = false;
                continue;
            }
            if conn.skip > 0 {
                let want = conn.skip.min(SKIP_CHUNK as u64) as usize;
                // SAFETY: `sink` is a live mapping of `SKIP_CHUNK >= want` writable bytes that no
                // Rust reference covers and nothing reads; on TCP, MSG_TRUNC leaves it unwritten.
                let n = unsafe {
                    libc::recv(
                        conn.fd,
                        self.sink.as_ptr().cast(),
                        want,
                        libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    read_ended(conn, n, &mut self.ready, out);
                    continue;
                }
                let len = n as usize;
                conn.skip -= len as u64;
                conn.probe = conn.skip == 0;
                out.push(Completion::Skipped { token, len });
                if len < want && !conn.hung_up {
                    // Drained, by the short-read rule below.
                    conn.in_ready = false;
                    continue;
                }
                if len < want || conn.skip > 0 {
                    self.ready.push_back(token);
                    continue;
                }
                // The skip is done and more may be waiting: read the next header in this turn.
            }
            let slot = self.pool.slot_mut(buf);
            let want = if conn.probe { PROBE_LEN } else { slot.len() };
            // SAFETY: `slot` is a live, exclusively borrowed region of `slot.len() >= want`
            // bytes; the kernel writes at most `want` into it.
            let n = unsafe { libc::read(conn.fd, slot.as_mut_ptr().cast(), want) };
            if n > 0 {
                // Kept until bytes come: a skip that emptied the socket is followed by EAGAIN.
                conn.probe = false;
                let len = n as usize;
                self.pool.free.pop();
                self.pool.lent[usize::from(buf)] = true;
                out.push(Completion::Received {
                    token,
                    buf: BufId(buf),
                    len,
                });
                if len == want || conn.hung_up {
                    // Filled the buffer (more may be waiting), or the FIN/error is still to be
                    // read: either way no new edge would say so.
                    self.ready.push_back(token);
                } else {
                    conn.in_ready = false;
                }
            } else {
                read_ended(conn, n, &mut self.ready, out);
            }
        }
    }
}

/// Acts on a read or truncating receive that returned `n <= 0`: EOF, nothing there (EAGAIN), a
/// signal (read again later), or a failure for good.
fn read_ended(conn: &mut Conn, n: isize, ready: &mut VecDeque<Token>, out: &mut Vec<Completion>) {
    let token = conn.token;
    if n == 0 {
        conn.reading = false;
        conn.in_ready = false;
        out.push(Completion::Eof { token });
        return;
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock => conn.in_ready = false,
        io::ErrorKind::Interrupted => ready.push_back(token),
        _ => {
            conn.reading = false;
            conn.in_ready = false;
            out.push(Completion::RecvFailed { token, error: err });
        }
    }
}

/// One gathered `sendmsg` of the first [`MAX_IOVECS`] chunks. `None` means EAGAIN (nothing
/// written, wait for writable); otherwise the bytes written or the error. `MSG_NOSIGNAL` turns a
/// peer's reset into EPIPE instead of a process-killing SIGPIPE.
fn send_gathered(fd: RawFd, chunks: &[Bytes]) -> Option<io::Result<usize>> {
    let chunks = &chunks[..chunks.len().min(MAX_IOVECS)];
    if chunks.iter().all(|c| c.is_empty()) {
        // Nothing to write is a finished send, not something to wait for.
        return Some(Ok(0));
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOVECS];
    for (v, c) in iov.iter_mut().zip(chunks) {
        v.iov_base = c.as_ptr() as *mut libc::c_void;
        v.iov_len = c.len();
    }
    // SAFETY: an all-zero msghdr is valid (no address, no control data); the fields that matter
    // are set next.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = chunks.len() as _;
    loop {
        // SAFETY: `msg` points at `chunks.len()` iovecs describing live `Bytes` that `chunks`
        // keeps alive for the duration of the call; the kernel only reads them.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Some(Ok(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return None,
            _ => return Some(Err(err)),
        }
    }
}

impl Backend for EpollBackend {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn listen(&mut self, listener: RawFd) -> io::Result<()> {
        let key = mio::Token(LISTENER_BASE + self.listeners.len());
        self.poll
            .registry()
            .register(&mut SourceFd(&listener), key, Interest::READABLE)?;
        // Registration reports a backlog that is already there, so no accept is needed here.
        self.listeners.push(Listener {
            fd: listener,
            backlog: false,
            retry_at: None,
            short_of_resources: false,
        });
        Ok(())
    }

    fn stop_accepting(&mut self) {
        for l in self.listeners.drain(..) {
            // A failure means it is not registered any more, which is the goal.
            let _ = self.poll.registry().deregister(&mut SourceFd(&l.fd));
        }
    }

    fn register(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        if self.conns.contains_key(&token.index()) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "token slot already registered",
            ));
        }
        // Both directions once: parking a send then needs no epoll_ctl (see module docs). Bytes
        // that arrived before this call raise an event at registration.
        self.poll.registry().register(
            &mut SourceFd(&fd),
            mio::Token(token.index()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.conns.insert(
            token.index(),
            Conn {
                token,
                fd,
                reading: true,
                in_ready: false,
                hung_up: false,
                skip: 0,
                probe: false,
                held: false,
                parked: None,
            },
        );
        Ok(())
    }

    fn send(&mut self, token: Token, fd: RawFd, chunks: Vec<Bytes>) {
        let conn = match self.conns.get_mut(&token.index()) {
            Some(conn) if conn.token == token => conn,
            // Without a registration no writable edge would ever come; fail rather than hang.
            _ => {
                self.queued.push(Completion::Sent {
                    token,
                    result: Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "send on an unregistered token",
                    )),
                    chunks,
                });
                return;
            }
        };
        if conn.parked.is_some() {
            // The shard broke the one-send-in-flight rule; keep the parked send intact.
            self.queued.push(Completion::Sent {
                token,
                result: Err(io::Error::other(
                    "a send is already in flight for this token",
                )),
                chunks,
            });
            return;
        }
        match send_gathered(fd, &chunks) {
            Some(result) => self.queued.push(Completion::Sent {
                token,
                result,
                chunks,
            }),
            None => {
                conn.parked = Some(chunks);
                #[cfg(test)]
                {
                    self.parked_sends += 1;
                }
            }
        }
    }

    fn skip(&mut self, token: Token, _fd: RawFd, len: u64) {
        match self.conns.get_mut(&token.index()) {
            // After EOF or an error nothing more is read, so there is nothing to drop either.
            Some(conn) if conn.token == token && conn.reading => {
                conn.skip += len;
                conn.probe |= len == 0;
            }
            _ => {}
        }
    }

    fn pause(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token.index()) {
            if conn.token == token {
                conn.held = true;
            }
        }
    }

    fn resume(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token.index()) else {
            return;
        };
        if conn.token != token || !conn.held {
            return;
        }
        conn.held = false;
        // Edges that came while held are gone: read once to see (EAGAIN if nothing came).
        if conn.reading && !conn.in_ready {
            conn.in_ready = true;
            self.ready.push_back(token);
        }
    }

    fn shutdown_write(&mut self, _token: Token, fd: RawFd) {
        // SAFETY: plain syscall on a descriptor the shard owns. ENOTCONN (the peer already reset)
        // needs no action: the reads will report it.
        unsafe {
            libc::shutdown(fd, libc::SHUT_WR);
        }
    }

    fn close(&mut self, token: Token, fd: OwnedFd) {
        let mine = matches!(self.conns.get(&token.index()), Some(c) if c.token == token);
        if mine {
            if let Some(conn) = self.conns.remove(&token.index()) {
                // Deregister before close: once the number is reused, it would be too late.
                let _ = self.poll.registry().deregister(&mut SourceFd(&conn.fd));
                if let Some(chunks) = conn.parked {
                    self.queued.push(Completion::Sent {
                        token,
                        result: Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "connection closed with the send in flight",
                        )),
                        chunks,
                    });
                }
            }
        }
        // Closed here, after the deregistration (on Linux the descriptor is released even when
        // close reports EINTR).
        drop(fd);
        self.queued.push(Completion::Closed { token });
        // A descriptor was just freed: a listener resting after EMFILE may accept again now.
        for l in self.listeners.iter_mut().filter(|l| l.short_of_resources) {
            l.retry_at = None;
        }
    }

    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        let start = out.len();
        out.append(&mut self.queued);
        // A timeout too large for an Instant is as good as none.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let now = Instant::now();
            let block = if out.len() > start || self.has_work_now(now) {
                Some(Duration::ZERO)
            } else {
                self.block_for(now, deadline)
            };
            #[cfg(test)]
            {
                self.polls += 1;
            }
            let interrupted = match self.poll.poll(&mut self.events, block) {
                Ok(()) => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                Err(e) => return Err(e),
            };
            self.dispatch_events(out);
            let now = Instant::now();
            self.accept_ready(now, out);
            self.read_ready(out);
            // Loop only when nothing came of it and time remains: an edge for a socket that had
            // nothing to read, or the early wake-up for an accept retry that failed again.
            if out.len() > start || interrupted || deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
        }
    }

    fn buffer(&self, buf: BufId, len: usize) -> &[u8] {
        let start = usize::from(buf.0) * self.pool.size;
        self.pool
            .mem
            .as_slice()
            .get(start..start + len.min(self.pool.size))
            .unwrap_or(&[])
    }

    fn trim(&mut self) {
        // Buffers are read into only by `wait` on this thread: every buffer not lent is free.
        let pool = &self.pool;
        release_runs(&pool.lent, pool.size, |start, len| {
            pool.mem.release(start, len)
        });
    }

    fn recycle(&mut self, buf: BufId) {
        let id = usize::from(buf.0);
        match self.pool.lent.get_mut(id) {
            Some(lent) if *lent => {
                *lent = false;
                self.pool.free.push(buf.0);
            }
            _ => debug_assert!(false, "recycle of buffer {id}, which is not lent"),
        }
    }

    fn waker(&self) -> Waker {
        self.waker.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream};
    use std::os::fd::AsRawFd;
    use std::thread;

    /// Longest any test waits for the backend: a bug fails the test instead of hanging it, and
    /// no loaded machine comes near it.
    const LIMIT: Duration = Duration::from_secs(20);

    /// How many connections wait in `listener`'s accept queue (for a listening socket, TCP_INFO's
    /// `tcpi_unacked`).
    fn accept_queue(listener: &Socket) -> usize {
        // SAFETY: tcp_info is plain data; all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
        let rc = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_unacked as usize
    }

    /// A non-blocking listener on an ephemeral loopback port.
    fn listener() -> (Socket, SocketAddr) {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.listen(1024).unwrap();
        s.set_nonblocking(true).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        (s, addr)
    }

    fn backend() -> EpollBackend {
        EpollBackend::new(PoolConfig {
            buffers: 16,
            buffer_size: 16 * 1024,
            ..PoolConfig::default()
        })
        .unwrap()
    }

    /// Waits and feeds every completion to `on` until it returns true (after the rest of that
    /// batch), failing after [`LIMIT`].
    fn drive(be: &mut EpollBackend, mut on: impl FnMut(&mut EpollBackend, Completion) -> bool) {
        let deadline = Instant::now() + LIMIT;
        let mut out = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "backend did not deliver in time");
            be.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
            let mut done = false;
            for c in out.drain(..) {
                done |= on(be, c);
            }
            if done {
                return;
            }
        }
    }

    /// Waits for one accepted socket.
    fn accept(be: &mut EpollBackend) -> OwnedFd {
        let mut fd = None;
        drive(be, |_, c| match c {
            Completion::Accepted { fd: f } => {
                fd = Some(f);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        fd.unwrap()
    }

    /// A connected pair: the client stream and the server socket registered under `token`.
    fn pair(be: &mut EpollBackend, token: Token) -> (Socket, TcpStream, OwnedFd) {
        let (l, addr) = listener();
        be.listen(l.as_raw_fd()).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let fd = accept(be);
        be.register(token, fd.as_raw_fd()).unwrap();
        (l, client, fd)
    }

    /// Pattern byte `i` of a stream, so order and loss both show.
    fn pattern(seed: u8, i: usize) -> u8 {
        (i % 251) as u8 ^ seed
    }

    #[test]
    fn receive_send_eof_close() {
        let mut be = backend();
        let t = Token::new(3, 9);
        let (_l, mut client, fd) = pair(&mut be, t);

        client.write_all(b"hello ringsock").unwrap();
        let mut got = Vec::new();
        drive(&mut be, |be, c| match c {
            Completion::Received { token, buf, len } => {
                assert_eq!(token, t);
                got.extend_from_slice(be.buffer(buf, len));
                be.recycle(buf);
                got.len() >= 14
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, b"hello ringsock");

        let chunks = vec![
            Bytes::from_static(b"one "),
            Bytes::new(),
            Bytes::from_static(b"two "),
            Bytes::from_static(b"three"),
        ];
        be.send(t, fd.as_raw_fd(), chunks.clone());
        drive(&mut be, |_, c| match c {
            Completion::Sent {
                token,
                result,
                chunks: back,
            } => {
                assert_eq!(token, t);
                assert_eq!(result.unwrap(), 13);
                assert_eq!(back, chunks);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let mut buf = [0u8; 13];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"one two three");

        client.shutdown(Shutdown::Write).unwrap();
        drive(&mut be, |_, c| match c {
            Completion::Eof { token } => {
                assert_eq!(token, t);
                true
            }
            other => panic!("unexpected {other:?}"),
        });

        // Half-closed: sending still works.
        be.send(t, fd.as_raw_fd(), vec![Bytes::from_static(b"bye")]);
        drive(&mut be, |_, c| {
            matches!(c, Completion::Sent { result: Ok(3), .. })
        });
        let mut buf = [0u8; 3];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"bye");

        be.close(t, fd);
        drive(&mut be, |_, c| match c {
            Completion::Closed { token } => {
                assert_eq!(token, t);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let mut out = Vec::new();
        be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "after Closed: {out:?}");
        // The server side is really closed.
        assert_eq!(client.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn big_send_parks_on_eagain_and_counts_add_up() {
        const TOTAL: usize = 8 << 20;
        const CHUNK: usize = 64 << 10;
        let mut be = backend();
        let t = Token::new(0, 1);
        let (_l, mut client, fd) = pair(&mut be, t);

        let data = Bytes::from((0..TOTAL).map(|i| pattern(0x5a, i)).collect::<Vec<u8>>());
        let reader = thread::spawn(move || {
            // Let the socket fill up first, then read in modest steps with pauses.
            thread::sleep(Duration::from_millis(50));
            let mut seen = 0usize;
            let mut buf = vec![0u8; 32 << 10];
            let mut reads = 0;
            while seen < TOTAL {
                let n = client.read(&mut buf).unwrap();
                assert!(n > 0, "eof after {seen} bytes");
                for (k, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(b, pattern(0x5a, seen + k), "byte {}", seen + k);
                }
                seen += n;
                reads += 1;
                if reads % 32 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            seen
        });

        // The shard's side: a queue of chunks, one gathered send at a time, the written prefix
        // dropped after each Sent.
        let mut queue: VecDeque<Bytes> = (0..TOTAL / CHUNK)
            .map(|i| data.slice(i * CHUNK..(i + 1) * CHUNK))
            .collect();
        let mut sent = 0usize;
        let mut partial = 0;
        while sent < TOTAL {
            let batch: Vec<Bytes> = queue.drain(..queue.len().min(MAX_IOVECS)).collect();
            let offered: usize = batch.iter().map(Bytes::len).sum();
            be.send(t, fd.as_raw_fd(), batch);
            drive(&mut be, |_, c| match c {
                Completion::Sent {
                    token,
                    result,
                    chunks,
                } => {
                    assert_eq!(token, t);
                    let mut n = result.unwrap();
                    assert!(n > 0 && n <= offered);
                    if n < offered {
                        partial += 1;
                    }
                    sent += n;
                    // Put back what was not written, in order.
                    for c in chunks.into_iter().rev() {
                        queue.push_front(c);
                    }
                    while n > 0 {
                        let front = queue.front_mut().unwrap();
                        if n >= front.len() {
                            n -= front.len();
                            queue.pop_front();
                        } else {
                            *front = front.slice(n..);
                            n = 0;
                        }
                    }
                    true
                }
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(sent, TOTAL);
        assert!(queue.is_empty());
        assert!(
            partial > 0,
            "8 MiB never needed more than one send per batch"
        );
        assert!(be.parked_sends > 0, "no send ever met EAGAIN");
        assert_eq!(reader.join().unwrap(), TOTAL);
        be.close(t, fd);
        drive(&mut be, |_, c| matches!(c, Completion::Closed { .. }));
    }

    #[test]
    fn close_with_parked_send_reports_sent_then_closed_once() {
        let mut be = backend();
        let t = Token::new(5, 2);
        let (_l, client, fd) = pair(&mut be, t);

        // The client never reads: keep sending until one send parks on EAGAIN.
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        let deadline = Instant::now() + LIMIT;
        let mut out = Vec::new();
        be.send(t, fd.as_raw_fd(), vec![chunk.clone()]);
        loop {
            assert!(Instant::now() < deadline, "the socket never filled up");
            out.clear();
            be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
            match out.as_slice() {
                [] if be.conns[&5].parked.is_some() => break,
                [] => {}
                [Completion::Sent { result: Ok(_), .. }] => {
                    be.send(t, fd.as_raw_fd(), vec![chunk.clone()])
                }
                other => panic!("unexpected {other:?}"),
            }
        }

        be.close(t, fd);
        let mut seen = Vec::new();
        let mut closed = 0;
        drive(&mut be, |_, c| {
            let done = matches!(c, Completion::Closed { .. });
            if done {
                closed += 1;
            }
            seen.push(c);
            done
        });
        match seen.as_slice() {
            [Completion::Sent {
                token: t1,
                result: Err(e),
                chunks,
            }, Completion::Closed { token: t2 }] => {
                assert_eq!((*t1, *t2), (t, t));
                assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
                assert_eq!(chunks.len(), 1);
                assert_eq!(chunks[0].as_ptr(), chunk.as_ptr());
            }
            other => panic!("expected Sent(error) then Closed, got {other:?}"),
        }
        assert_eq!(closed, 1);
        out.clear();
        be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "after Closed: {out:?}");
        drop(client);
    }

    #[test]
    fn pool_exhaustion_delays_but_loses_nothing() {
        const CLIENTS: usize = 16;
        const BYTES: usize = 64 << 10;
        let mut be = EpollBackend::new(PoolConfig {
            buffers: 4,
            buffer_size: 4096,
            ..PoolConfig::default()
        })
        .unwrap();
        let (l, addr) = listener();
        be.listen(l.as_raw_fd()).unwrap();

        // Each client sends its id, then a stream patterned by that id, then closes.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let mut msg = vec![k as u8];
                    msg.extend((0..BYTES).map(|i| pattern(k as u8, i)));
                    s.write_all(&msg).unwrap();
                })
            })
            .collect();

        let mut data: Vec<Vec<u8>> = Vec::new();
        let mut fds = Vec::new();
        let mut held = Vec::new();
        let mut eofs = 0;
        drive(&mut be, |be, c| {
            match c {
                Completion::Accepted { fd } => {
                    be.register(Token::new(data.len(), 1), fd.as_raw_fd())
                        .unwrap();
                    data.push(Vec::new());
                    fds.push(fd);
                }
                Completion::Received { token, buf, len } => {
                    data[token.index()].extend_from_slice(be.buffer(buf, len));
                    held.push(buf);
                }
                Completion::Eof { .. } => eofs += 1,
                other => panic!("unexpected {other:?}"),
            }
            // Give buffers back only in bunches, so waits run with the pool short.
            if held.len() >= 3 {
                for b in held.drain(..) {
                    be.recycle(b);
                }
            }
            eofs == CLIENTS
        });
        for c in clients {
            c.join().unwrap();
        }
        let mut ids: Vec<u8> = data
            .iter()
            .map(|d| {
                assert_eq!(d.len(), BYTES + 1);
                let k = d[0];
                assert!(d[1..].iter().enumerate().all(|(i, &b)| b == pattern(k, i)));
                k
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..CLIENTS as u8).collect::<Vec<_>>());
        for (i, fd) in fds.into_iter().enumerate() {
            be.close(Token::new(i, 1), fd);
        }
    }

    #[test]
    fn exhausted_pool_blocks_instead_of_spinning() {
        let mut be = EpollBackend::new(PoolConfig {
            buffers: 1,
            buffer_size: 1024,
            ..PoolConfig::default()
        })
        .unwrap();
        let t = Token::new(0, 1);
        let (_l, mut client, fd) = pair(&mut be, t);
        client.write_all(&[1u8; 10 * 1024]).unwrap();

        let mut first = None;
        drive(&mut be, |_, c| match c {
            Completion::Received { buf, len, .. } => {
                first = Some((buf, len));
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        // Holding the only buffer: the socket is still readable, yet wait must sleep out its
        // timeout in a handful of polls, not spin.
        let polls = be.polls;
        let mut out = Vec::new();
        let began = Instant::now();
        be.wait(Some(Duration::from_millis(30)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        assert!(began.elapsed() >= Duration::from_millis(25));
        assert!(be.polls - polls <= 3, "{} polls", be.polls - polls);

        let (buf, mut total) = first.unwrap();
        be.recycle(buf);
        drive(&mut be, |be, c| match c {
            Completion::Received { buf, len, .. } => {
                total += len;
                be.recycle(buf);
                total == 10 * 1024
            }
            other => panic!("unexpected {other:?}"),
        });
        be.close(t, fd);
    }

    #[test]
    fn accept_burst_beyond_the_batch_cap() {
        const N: usize = 200;
        let mut be = backend();
        let (l, addr) = listener();
        be.listen(l.as_raw_fd()).unwrap();
        let clients: Vec<_> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Every handshake lands in the accept queue.
        let deadline = Instant::now() + LIMIT;
        while accept_queue(&l) < N {
            assert!(Instant::now() < deadline, "{} queued", accept_queue(&l));
            thread::sleep(Duration::from_millis(1));
        }
        // Every handshake is done, so the whole burst is queued: the first wait takes one batch.
        let mut out = Vec::new();
        be.wait(Some(LIMIT), &mut out).unwrap();
        assert_eq!(out.len(), ACCEPT_BATCH);
        let mut fds: Vec<OwnedFd> = out
            .into_iter()
            .map(|c| match c {
                Completion::Accepted { fd } => fd,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // The rest come without a new edge: the listener stayed due.
        drive(&mut be, |_, c| match c {
            Completion::Accepted { fd } => {
                fds.push(fd);
                fds.len() == N
            }
            other => panic!("unexpected {other:?}"),
        });
        drop(fds);
        drop(clients);
    }

    #[test]
    fn accept_errors_rest_instead_of_spinning() {
        let mut be = backend();
        // Never bound or listening: epoll reports it hung up, and accept4 says EINVAL, which
        // would fail again at once, as EMFILE would (that one in `accept_tests`).
        let broken = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        broken.set_nonblocking(true).unwrap();
        be.listen(broken.as_raw_fd()).unwrap();
        let mut out = Vec::new();
        be.wait(Some(LIMIT), &mut out).unwrap();
        assert!(
            matches!(out.as_slice(), [Completion::AcceptFailed(_)]),
            "{out:?}"
        );

        // Resting: a short wait sees nothing and polls only a few times.
        let polls = be.polls;
        out.clear();
        be.wait(Some(Duration::from_millis(30)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        assert!(be.polls - polls <= 3, "{} polls", be.polls - polls);

        // Retried after ACCEPT_RETRY even with no new edge, and reported again.
        let began = Instant::now();
        out.clear();
        be.wait(Some(LIMIT), &mut out).unwrap();
        assert!(
            matches!(out.as_slice(), [Completion::AcceptFailed(_)]),
            "{out:?}"
        );
        // By the backend's own retry instant, not at the end of the wait's timeout.
        assert!(began.elapsed() < LIMIT / 2, "{:?}", began.elapsed());

        // A close frees a descriptor, which mends nothing here: the rest goes on (a close ends
        // only rests for resource errors, `accept_tests`).
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        be.close(Token::new(9, 9), OwnedFd::from(a));
        out.clear();
        be.wait(Some(LIMIT), &mut out).unwrap();
        assert!(
            matches!(out.as_slice(), [Completion::Closed { .. }]),
            "{out:?}"
        );
        out.clear();
        be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        be.stop_accepting();
        drop(b);
    }

    #[test]
    fn stop_accepting_leaves_the_listener_open() {
        let mut be = backend();
        let (l, addr) = listener();
        be.listen(l.as_raw_fd()).unwrap();
        be.stop_accepting();
        let _client = TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        be.wait(Some(Duration::from_millis(30)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        // Still the shard's and still listening: the pending connection is there to take.
        let deadline = Instant::now() + LIMIT;
        while l.accept().is_err() {
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn waker_wakes_a_wait_without_timeout() {
        let mut be = backend();
        let w = be.waker();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = thread::spawn(move || {
            let mut out = Vec::new();
            be.wait(None, &mut out).unwrap();
            tx.send(out).unwrap();
            be
        });
        thread::sleep(Duration::from_millis(20));
        w.wake();
        let out = rx.recv_timeout(LIMIT).expect("wait(None) was not woken");
        assert!(matches!(out.as_slice(), [Completion::Woken]), "{out:?}");
        let mut be = waiter.join().unwrap();

        // A wake before the wait is not lost, and several coalesce into one.
        w.wake();
        w.wake();
        let mut out = Vec::new();
        be.wait(Some(LIMIT), &mut out).unwrap();
        assert!(matches!(out.as_slice(), [Completion::Woken]), "{out:?}");
        out.clear();
        be.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn idle_wait_times_out_empty() {
        let mut be = backend();
        let mut out = Vec::new();
        let began = Instant::now();
        be.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        let took = began.elapsed();
        assert!(out.is_empty(), "{out:?}");
        assert!(
            took >= Duration::from_millis(10) && took < LIMIT,
            "{took:?}"
        );
        out.clear();
        be.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn send_on_unknown_token_fails_instead_of_hanging() {
        let mut be = backend();
        let t = Token::new(1, 1);
        be.send(t, -1, vec![Bytes::from_static(b"x")]);
        let mut out = Vec::new();
        be.wait(Some(LIMIT), &mut out).unwrap();
        match out.as_slice() {
            [Completion::Sent {
                token,
                result: Err(e),
                ..
            }] => {
                assert_eq!(*token, t);
                assert_eq!(e.kind(), io::ErrorKind::NotConnected);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_pool_config_is_an_error() {
        assert!(EpollBackend::new(PoolConfig {
            buffers: 0,
            buffer_size: 4096,
            ..PoolConfig::default()
        })
        .is_err());
        assert!(EpollBackend::new(PoolConfig {
            buffers: 4,
            buffer_size: 0,
            ..PoolConfig::default()
        })
        .is_err());
    }
}
