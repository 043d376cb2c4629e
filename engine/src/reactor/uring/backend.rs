//! The backend itself: the ring, the connections' op accounting, and the [`Backend`] calls.
//!
//! It owns the ring and the memory the kernel uses, decodes each CQE and hands it to the part it
//! belongs to. The parts decide; the backend builds and submits the SQEs they ask for:
//!
//! - **Receive**: a connection's receive side is a value with a transition function
//!   ([`super::recv`]); [`UringBackend::execute`] carries out its actions (SQEs, completions,
//!   the `starved` and `paused` lists) and counts every op submitted for the connection.
//! - **Accept**: [`super::listener`] says when to arm a listener and what its CQEs report.
//! - **Close**: cancels the connection's recv and in-flight send by user_data, then closes the
//!   fd with `IORING_OP_CLOSE`. Every op of a connection is counted; `Closed` is emitted when the
//!   count reaches zero, i.e. after the recv's final CQE, the send's CQE (still reported as
//!   `Sent`, so the shard gets its chunks back) and the close's CQE. Once `close` has been called,
//!   received data, EOF and receive errors for that token are no longer reported (buffers go
//!   straight back to the ring): the shard has said it is done with the connection.
//! - **Wake**: a multishot `POLLIN` poll on the [`Waker`]'s eventfd.
//! - **Wait**: re-arms what waits for a new loop turn (accepts, the waker, parked receives),
//!   publishes recycled buffers, submits and enters the kernel once, then turns every CQE into
//!   completions.
//! - **Drop**: cancels everything and waits (briefly) for the last CQE before the pool and the
//!   send buffers are freed; if the kernel does not let go in time, that memory is leaked
//!   instead.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, EnterFlags, IoUring};

use super::buf_pool::{BufPool, BGID};
use super::listener::{Due, Listener};
use super::recv::{Action, Actions, Failure, Input, List, RecvSide};
use super::send_op::SendOp;
use super::setup::{self, with_recv_limit, DEFER_SETUP};
use super::user_data::{conn_ud, decode_ud, plain_ud, Op, GEN_MASK};
use crate::reactor::{Backend, BufId, Completion, PoolConfig, Token, Waker, PROBE_LEN};

/// Recycled `SendOp` boxes kept for reuse; more than this are freed.
const SEND_POOL_MAX: usize = 256;
/// How long `Drop` waits for cancelled ops before leaking the memory they may still touch.
const DROP_GRACE: Duration = Duration::from_secs(1);
/// The longest single kernel wait; longer timeouts are waited in slices of this.
const MAX_SLICE: Duration = Duration::from_secs(3600);
/// CQEs copied out of the ring per batch while draining.
const DRAIN_BATCH: usize = 256;

/// The backend's view of one registered connection.
struct Conn {
    token: Token,
    fd: RawFd,
    /// Ops submitted whose final CQE has not arrived (the multishot recv counts once).
    inflight: u32,
    /// The receive side, which also knows whether `close` was called: report `Closed` when
    /// `inflight` reaches zero after that.
    rx: RecvSide,
    /// The send in flight, if any.
    send: Option<Box<SendOp>>,
}

/// The io_uring backend: a ring, a provided-buffer receive pool and per-connection op tracking.
///
/// Field order matters for `Drop`: the ring is dropped (closed) before the pool and the send
/// buffers it may reference.
pub struct UringBackend {
    ring: IoUring,
    /// Per-connection state, indexed by the token's slab index.
    conns: Vec<Option<Conn>>,
    listeners: Vec<Listener>,
    /// Connections whose recv hit ENOBUFS, oldest first (entries may be stale; checked on pop).
    starved: VecDeque<u32>,
    /// Connections whose probe delivered (entries may be stale; checked when re-armed).
    paused: Vec<u32>,
    /// SQEs that did not fit in the SQ even after submitting; pushed first at the next chance.
    backlog: VecDeque<squeue::Entry>,
    /// Completions decided outside the kernel (refused sends, closes of unknown tokens).
    ready: Vec<Completion>,
    /// Spare send boxes. Boxed on purpose: a box moves into `Conn::send` and back without its
    /// contents moving, and the kernel holds pointers into it while a send is in flight.
    #[allow(clippy::vec_box)]
    send_pool: Vec<Box<SendOp>>,
    pool: BufPool,
    waker: Waker,
    /// The eventfd poll is in flight.
    waker_armed: bool,
    /// Ops submitted (or queued) whose final CQE has not arrived, across the whole ring.
    in_flight: usize,
    /// In `Drop`: re-arm nothing.
    dropping: bool,
    /// Which ring setup the kernel accepted.
    setup: &'static str,
    /// How many times a recv ran out of buffers (for tests and diagnostics).
    enobufs: u64,
    /// Each multishot recv ends after this many bytes and is re-armed at the next wait
    /// ([`PoolConfig::read_budget`]); `None` where the kernel cannot cap it.
    read_budget: Option<u32>,
}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend")
            .field("setup", &self.setup)
            .field("connections", &self.conns.iter().flatten().count())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl UringBackend {
    /// Sets up the ring, registers a receive pool of `pool.buffers` × `pool.buffer_size` bytes
    /// as a provided buffer ring, and checks that multishot receive works. Fails when io_uring is
    /// unavailable, filtered or too old, so the caller can fall back to epoll.
    pub fn new(pool: PoolConfig) -> io::Result<Self> {
        // Declared before the ring so that, on an early return, the ring is dropped first.
        let mut bufs = BufPool::new(pool)?;
        let opened = setup::open(&mut bufs)?;
        let read_budget = opened.recv_limit.then_some(pool.read_budget);
        let waker = Waker::new()?;
        let mut this = UringBackend {
            ring: opened.ring,
            conns: Vec::new(),
            listeners: Vec::new(),
            starved: VecDeque::new(),
            paused: Vec::new(),
            backlog: VecDeque::new(),
            ready: Vec::new(),
            send_pool: Vec::new(),
            pool: bufs,
            waker,
            waker_armed: false,
            in_flight: 0,
            dropping: false,
            setup: opened.setup,
            enobufs: 0,
            read_budget: read_budget.filter(|&b| b > 0),
        };
        this.arm_waker();
        Ok(this)
    }

    /// The ring setup the kernel accepted: `"single_issuer+defer_taskrun"`, `"coop_taskrun"`
    /// or `"plain"` (for the start-up log line).
    pub fn setup(&self) -> &'static str {
        self.setup
    }

    /// Queues an SQE. If the SQ is full, submits what is queued and retries; if the kernel cannot
    /// take more right now, keeps it in `backlog` (in order) for the next wait.
    fn push(&mut self, sqe: squeue::Entry) {
        self.in_flight += 1;
        if self.backlog.is_empty() {
            // SAFETY: every SQE the backend builds points only at memory that outlives its CQE:
            // the pool's buffers and skip sink (freed after the ring), boxed `SendOp`s (kept in
            // `Conn::send` until the CQE) or nothing at all.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            // The SQ is full: hand it to the kernel. Errors (EBUSY under CQ overflow) just mean
            // the entry waits in the backlog.
            let _ = self.ring.submit();
            // SAFETY: as above.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
        }
        self.backlog.push_back(sqe);
    }

    /// Moves backlogged SQEs into the SQ, submitting as it fills.
    fn flush_backlog(&mut self) {
        while let Some(sqe) = self.backlog.front() {
            // SAFETY: backlogged entries obey the same rule as in `push`.
            if unsafe { self.ring.submission().push(sqe) }.is_err() {
                if self.ring.submit().is_err() {
                    return;
                }
                // SAFETY: as above.
                if unsafe { self.ring.submission().push(sqe) }.is_err() {
                    return;
                }
            }
            self.backlog.pop_front();
        }
    }

    /// Submits the multishot poll that turns a [`Waker::wake`] into a CQE.
    fn arm_waker(&mut self) {
        self.waker_armed = true;
        let sqe = opcode::PollAdd::new(types::Fd(self.waker.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(plain_ud(Op::Wake, 0));
        self.push(sqe);
    }

    /// Submits the multishot accept of listener `index`.
    fn arm_accept(&mut self, index: usize) {
        let listener = &mut self.listeners[index];
        listener.armed();
        let sqe = opcode::AcceptMulti::new(types::Fd(listener.fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(plain_ud(Op::Accept, index));
        self.push(sqe);
    }

    /// Arms the accept of every listener that wants one and is not resting (a rest that has
    /// passed ends here). Returns when the first listener still resting is due, so `wait` wakes
    /// for it.
    fn arm_due_accepts(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for index in 0..self.listeners.len() {
            match self.listeners[index].due(now) {
                Due::Now => self.arm_accept(index),
                Due::At(at) => next = Some(next.map_or(at, |n| n.min(at))),
                Due::Never => {}
            }
        }
        next
    }

    /// A descriptor was just freed: listeners resting after a resource error may try now (at
    /// the next wait, whose submission carries the close before the accept).
    fn end_accept_rests(&mut self) {
        for listener in &mut self.listeners {
            listener.end_rest();
        }
    }

    /// Moves the receive side of the connection in slot `index` on by `input` and carries out
    /// what it decides. `bid` is the buffer the input's CQE carries: lent to the shard if the
    /// step reports it received, else given back to the pool. Reports go to `out`.
    fn step(&mut self, index: usize, input: Input, bid: Option<u16>, out: &mut Vec<Completion>) {
        let actions = match self.conns[index].as_mut() {
            Some(conn) => conn.rx.step(input),
            None => Actions::default(),
        };
        self.execute(index, actions, bid, out);
    }

    /// Carries out what a step of the receive side of the connection in slot `index` decided;
    /// `bid` as for [`UringBackend::step`].
    fn execute(
        &mut self,
        index: usize,
        actions: Actions,
        bid: Option<u16>,
        out: &mut Vec<Completion>,
    ) {
        let Some(conn) = self.conns[index].as_ref() else {
            if let Some(b) = bid {
                self.pool.put_back(b);
            }
            return;
        };
        let (token, fd) = (conn.token, types::Fd(conn.fd));
        let mut lent = false;
        for action in actions {
            match action {
                Action::ArmRecv => {
                    let sqe = opcode::RecvMulti::new(fd, BGID)
                        .build()
                        .user_data(conn_ud(Op::Recv, token));
                    let sqe = match self.read_budget {
                        Some(limit) => with_recv_limit(sqe, limit),
                        None => sqe,
                    };
                    self.submit(index, sqe);
                }
                Action::ArmProbe => {
                    // With a selected buffer the length caps the read below the buffer's size.
                    let sqe = opcode::Recv::new(fd, ptr::null_mut(), PROBE_LEN as u32)
                        .buf_group(BGID)
                        .build()
                        .flags(squeue::Flags::BUFFER_SELECT)
                        .user_data(conn_ud(Op::Recv, token));
                    self.submit(index, sqe);
                }
                Action::SubmitSkip(len) => {
                    // Not MSG_WAITALL, which would save a CQE per piece the bytes arrive in:
                    // io_uring's retry counts progress by the destination iterator, which
                    // MSG_TRUNC never advances, so it dropped more than asked (kernel 6.18).
                    let sqe = opcode::Recv::new(fd, self.pool.sink(), len)
                        .flags(libc::MSG_TRUNC)
                        .build()
                        .user_data(conn_ud(Op::Skip, token));
                    self.submit(index, sqe);
                }
                Action::CancelRecv => self.submit(index, cancel(Op::Recv, token)),
                Action::CancelSkip => self.submit(index, cancel(Op::Skip, token)),
                Action::Received(len) => match bid {
                    Some(b) if !lent => {
                        lent = true;
                        self.pool.lend(b);
                        out.push(Completion::Received {
                            token,
                            buf: BufId(b),
                            len,
                        });
                    }
                    // The step reports a receive only for a CQE with a buffer, once.
                    _ => out.push(recv_failed(token, Failure::NoBuffer)),
                },
                Action::Skipped(len) => out.push(Completion::Skipped { token, len }),
                Action::Eof => out.push(Completion::Eof { token }),
                Action::Failed(why) => out.push(recv_failed(token, why)),
                Action::Park(List::Starved) => self.starved.push_back(index as u32),
                Action::Park(List::Paused) => self.paused.push(index as u32),
                Action::RingEmpty => {
                    self.enobufs += 1;
                    self.pool.grow();
                }
            }
        }
        if let (Some(b), false) = (bid, lent) {
            self.pool.put_back(b);
        }
    }

    /// [`UringBackend::step`] for an input of the shard's (a call) or of the wait's start,
    /// which comes with no CQE.
    fn step_quietly(&mut self, index: usize, input: Input) {
        let actions = match self.conns[index].as_mut() {
            Some(conn) => conn.rx.step(input),
            None => Actions::default(),
        };
        self.execute_quietly(index, actions);
    }

    /// [`UringBackend::execute`] for actions decided outside a CQE. They report nothing (only
    /// CQEs bring news); should they, the report waits in `ready` for the next wait.
    fn execute_quietly(&mut self, index: usize, actions: Actions) {
        let mut ready = std::mem::take(&mut self.ready);
        self.execute(index, actions, None, &mut ready);
        self.ready = ready;
    }

    /// Submits an op of the connection in slot `index`, counting it in flight.
    fn submit(&mut self, index: usize, sqe: squeue::Entry) {
        if let Some(conn) = self.conns[index].as_mut() {
            conn.inflight += 1;
        }
        self.push(sqe);
    }

    /// Reads again on the connections whose probe delivered and that the shard did not ask to
    /// skip since.
    fn rearm_paused(&mut self) {
        let mut paused = std::mem::take(&mut self.paused);
        for index in paused.drain(..) {
            let index = index as usize;
            if index < self.conns.len() {
                self.step_quietly(index, Input::Rearm(List::Paused));
            }
        }
        // Keep the allocation for the next turn.
        self.paused = paused;
    }

    /// The slot holding exactly `token`, if any.
    fn slot_of(&self, token: Token) -> Option<usize> {
        let index = token.index();
        match self.conns.get(index) {
            Some(Some(conn)) if conn.token == token => Some(index),
            _ => None,
        }
    }

    /// The slot a connection CQE belongs to: its index, if the occupant's generation matches.
    fn slot_of_cqe(&self, gen: u64, index: usize) -> Option<usize> {
        match self.conns.get(index) {
            Some(Some(conn)) if u64::from(conn.token.generation()) & GEN_MASK == gen => Some(index),
            _ => None,
        }
    }

    /// Emits `Closed` and frees the slot once a closing connection has nothing in flight.
    fn maybe_closed(&mut self, index: usize, out: &mut Vec<Completion>) {
        if let Some(conn) = &self.conns[index] {
            if conn.rx.closing() && conn.inflight == 0 {
                out.push(Completion::Closed { token: conn.token });
                self.conns[index] = None;
            }
        }
    }

    /// Re-arms parked (ENOBUFS) receives, oldest first, at most one per free buffer.
    fn rearm_starved(&mut self) {
        let mut budget = self.pool.in_ring();
        while budget > 0 {
            let Some(index) = self.starved.pop_front() else {
                return;
            };
            let index = index as usize;
            let waiting = matches!(
                self.conns.get(index),
                Some(Some(conn)) if conn.rx.waits_in(List::Starved)
            );
            if waiting {
                self.step_quietly(index, Input::Rearm(List::Starved));
                budget -= 1;
            }
        }
    }

    /// Submits what is queued and, if `block`, waits for a CQE (until `timeout`, if any);
    /// otherwise only runs the kernel's deferred completion work. ETIME/EINTR are normal returns.
    fn enter(&mut self, block: bool, timeout: Option<Duration>) -> io::Result<()> {
        let result = if !block {
            let pending = self.ring.submission().len() as u32;
            // SAFETY: no argument pointer is passed; GETEVENTS with min_complete 0 submits the
            // queued SQEs (all valid, see `push`), runs deferred task work and returns.
            unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    pending,
                    0,
                    EnterFlags::GETEVENTS.bits(),
                    None,
                )
            }
            .map(drop)
        } else if let Some(timeout) = timeout {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args).map(drop)
        } else {
            self.ring.submitter().submit_and_wait(1).map(drop)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // Timed out, interrupted, or the kernel wants the CQ drained first (EBUSY) or is
                // short of memory for a moment (EAGAIN): all mean "look at the CQ and go on".
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                // Anything else is fatal for this ring, notably EBADR (the kernel dropped CQEs,
                // so the per-token op counts behind `Closed` can no longer be trusted).
                _ => Err(e),
            },
        }
    }

    /// Takes every CQE (flushing kernel-side overflow too) and turns them into completions.
    fn drain(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        let mut batch = [(0u64, 0i32, 0u32); DRAIN_BATCH];
        // Bounded so that a kernel which keeps the overflow flag set cannot spin us; each round
        // moves up to a whole CQ.
        let mut overflow_rounds = 0;
        loop {
            let n = {
                let mut cq = self.ring.completion();
                let mut n = 0;
                while n < DRAIN_BATCH {
                    let Some(cqe) = cq.next() else { break };
                    batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                    n += 1;
                }
                n
            };
            for &(ud, res, flags) in &batch[..n] {
                self.complete(ud, res, flags, out);
            }
            if n == DRAIN_BATCH {
                continue;
            }
            // CQEs parked by the kernel while the CQ was full come back only through an enter.
            if self.ring.submission().cq_overflow() && overflow_rounds < 16 {
                overflow_rounds += 1;
                self.enter(false, None)?;
                continue;
            }
            return Ok(());
        }
    }

    /// Handles one CQE.
    fn complete(&mut self, ud: u64, res: i32, flags: u32, out: &mut Vec<Completion>) {
        let more = cqueue::more(flags);
        if !more {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let bid = cqueue::buffer_select(flags).filter(|&b| b < self.pool.entries());
        if bid.is_some() {
            self.pool.taken();
        }
        let (op, gen, index) = decode_ud(ud);
        match op {
            Some(Op::Recv) => {
                self.on_recv(gen, index, res, more, bid, out);
                return;
            }
            Some(Op::Skip) => self.on_skip(gen, index, res, out),
            Some(Op::Wake) => {
                if res > 0 {
                    self.waker.drain();
                    out.push(Completion::Woken);
                }
                if !more {
                    self.waker_armed = false;
                    // Ended by a CQ overflow: re-arm before this wait can block again. Ended by
                    // an error: retry at the next wait only, so an error cannot spin us here.
                    if res > 0 && !self.dropping {
                        self.arm_waker();
                    }
                }
            }
            Some(Op::Accept) => self.on_accept(index, res, more, out),
            Some(Op::Send) => self.on_send(gen, index, res, out),
            Some(Op::Shutdown | Op::Cancel | Op::Close) => {
                if let Some(slot) = self.slot_of_cqe(gen, index) {
                    if let Some(conn) = self.conns[slot].as_mut() {
                        conn.inflight = conn.inflight.saturating_sub(1);
                    }
                    self.maybe_closed(slot, out);
                }
            }
            Some(Op::AcceptCancel | Op::Internal) | None => {}
        }
        // Only receives select buffers; anything else must not leak one.
        if let Some(b) = bid {
            self.pool.put_back(b);
        }
    }

    /// A CQE of listener `index`'s accept.
    fn on_accept(&mut self, index: usize, res: i32, more: bool, out: &mut Vec<Completion>) {
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        out.extend(listener.on_cqe(res, more, Instant::now()));
    }

    /// The CQE of a connection's send: the chunks go back to the shard, the box to the pool.
    fn on_send(&mut self, gen: u64, index: usize, res: i32, out: &mut Vec<Completion>) {
        let Some(slot) = self.slot_of_cqe(gen, index) else {
            return;
        };
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        conn.inflight = conn.inflight.saturating_sub(1);
        let token = conn.token;
        if let Some(mut op) = conn.send.take() {
            let chunks = op.take_chunks();
            let result = if res >= 0 {
                Ok(res as usize)
            } else {
                Err(io::Error::from_raw_os_error(-res))
            };
            out.push(Completion::Sent {
                token,
                result,
                chunks,
            });
            if self.send_pool.len() < SEND_POOL_MAX {
                self.send_pool.push(op);
            }
        }
        self.maybe_closed(slot, out);
    }

    /// A CQE of a connection's recv (multishot or probe), carrying buffer `bid` if any.
    fn on_recv(
        &mut self,
        gen: u64,
        index: usize,
        res: i32,
        more: bool,
        bid: Option<u16>,
        out: &mut Vec<Completion>,
    ) {
        let Some(slot) = self.slot_of_cqe(gen, index) else {
            if let Some(b) = bid {
                self.pool.put_back(b);
            }
            return;
        };
        if let Some(conn) = self.conns[slot].as_mut() {
            if !more {
                conn.inflight = conn.inflight.saturating_sub(1);
            }
        }
        if self.dropping {
            // Quiescing: nothing is reported or re-armed any more.
            if let Some(b) = bid {
                self.pool.put_back(b);
            }
        } else {
            let buffer = bid.is_some();
            self.step(slot, Input::RecvCqe { res, more, buffer }, bid, out);
        }
        self.maybe_closed(slot, out);
    }

    /// The end of a truncating recv.
    fn on_skip(&mut self, gen: u64, index: usize, res: i32, out: &mut Vec<Completion>) {
        let Some(slot) = self.slot_of_cqe(gen, index) else {
            return;
        };
        if let Some(conn) = self.conns[slot].as_mut() {
            conn.inflight = conn.inflight.saturating_sub(1);
        }
        if !self.dropping {
            self.step(slot, Input::SkipCqe { res }, None, out);
        }
        self.maybe_closed(slot, out);
    }
}

/// An SQE cancelling the op `op` of `token` (by its user_data), itself counted as the
/// connection's.
fn cancel(op: Op, token: Token) -> squeue::Entry {
    opcode::AsyncCancel::new(conn_ud(op, token))
        .build()
        .user_data(conn_ud(Op::Cancel, token))
}

/// The `RecvFailed` completion for `why`.
fn recv_failed(token: Token, why: Failure) -> Completion {
    let error = match why {
        Failure::Errno(errno) => io::Error::from_raw_os_error(errno),
        Failure::NoBuffer => io::Error::other("io_uring recv completed without a buffer"),
    };
    Completion::RecvFailed { token, error }
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn listen(&mut self, listener: RawFd) -> io::Result<()> {
        if listener < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        self.listeners.push(Listener::new(listener));
        self.arm_accept(self.listeners.len() - 1);
        Ok(())
    }

    fn stop_accepting(&mut self) {
        for index in 0..self.listeners.len() {
            if self.listeners[index].stop() {
                let sqe = opcode::AsyncCancel::new(plain_ud(Op::Accept, index))
                    .build()
                    .user_data(plain_ud(Op::AcceptCancel, index));
                self.push(sqe);
            }
        }
    }

    fn register(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        let index = token.index();
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        if self.conns[index].is_some() {
            // The slot's previous occupant has not been `Closed` yet: a shard bug.
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "token slot still in use",
            ));
        }
        let (rx, start) = RecvSide::start();
        self.conns[index] = Some(Conn {
            token,
            fd,
            inflight: 0,
            rx,
            send: None,
        });
        self.execute_quietly(index, start);
        Ok(())
    }

    fn send(&mut self, token: Token, _fd: RawFd, chunks: Vec<Bytes>) {
        let refuse = |error: i32, chunks| Completion::Sent {
            token,
            result: Err(io::Error::from_raw_os_error(error)),
            chunks,
        };
        let Some(index) = self.slot_of(token) else {
            self.ready.push(refuse(libc::ENOTCONN, chunks));
            return;
        };
        let mut op = match &self.conns[index] {
            // The fd may already be closed (and its number reused): never send on it.
            Some(conn) if conn.rx.closing() => {
                self.ready.push(refuse(libc::ENOTCONN, chunks));
                return;
            }
            // One send per token at a time is the contract; refusing keeps the first one safe.
            Some(conn) if conn.send.is_some() => {
                self.ready.push(refuse(libc::EBUSY, chunks));
                return;
            }
            Some(_) => self.send_pool.pop().unwrap_or_else(SendOp::new),
            None => return,
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        op.load(chunks);
        let sqe = opcode::SendMsg::new(types::Fd(conn.fd), &op.hdr)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
            .build()
            .user_data(conn_ud(Op::Send, token));
        conn.send = Some(op);
        conn.inflight += 1;
        self.push(sqe);
    }

    fn skip(&mut self, token: Token, _fd: RawFd, len: u64) {
        if let Some(index) = self.slot_of(token) {
            self.step_quietly(index, Input::Skip(len));
        }
    }

    fn pause(&mut self, token: Token) {
        if let Some(index) = self.slot_of(token) {
            self.step_quietly(index, Input::Pause);
        }
    }

    fn resume(&mut self, token: Token) {
        if let Some(index) = self.slot_of(token) {
            self.step_quietly(index, Input::Resume);
        }
    }

    fn shutdown_write(&mut self, token: Token, _fd: RawFd) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let Some(conn) = self.conns[index].as_ref() else {
            return;
        };
        if conn.rx.closing() {
            return;
        }
        let sqe = opcode::Shutdown::new(types::Fd(conn.fd), libc::SHUT_WR)
            .build()
            .user_data(conn_ud(Op::Shutdown, token));
        self.submit(index, sqe);
    }

    fn close(&mut self, token: Token, fd: OwnedFd) {
        let Some(index) = self.slot_of(token) else {
            // Never registered (or a stale token): nothing of ours is in flight on it, so it
            // closes here, as it drops.
            drop(fd);
            self.ready.push(Completion::Closed { token });
            self.end_accept_rests();
            return;
        };
        let Some(conn) = self.conns[index].as_ref() else {
            return;
        };
        if conn.rx.closing() {
            return;
        }
        let sending = conn.send.is_some();
        // Cancels go first (the receive side's, if it has an op in flight, then the send's);
        // the close needs no ordering with them (in-flight ops hold their own file reference,
        // and cancelling by user_data does not use the fd).
        self.step_quietly(index, Input::Close);
        if sending {
            // A send stuck on a peer that does not read would otherwise hold the socket (and
            // `Closed`) forever; the CQE still reports how much went out.
            self.submit(index, cancel(Op::Send, token));
        }
        // The ring's close op takes the descriptor over.
        let sqe = opcode::Close::new(types::Fd(fd.into_raw_fd()))
            .build()
            .user_data(conn_ud(Op::Close, token));
        self.submit(index, sqe);
        self.end_accept_rests();
    }

    fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) -> io::Result<()> {
        let before = out.len();
        out.append(&mut self.ready);
        // Re-arms that wait for a new loop turn, so that a persistent error costs one failed op
        // per turn rather than a spin inside this wait.
        if !self.waker_armed {
            self.arm_waker();
        }
        // `None` when there is no timeout or it is too far to represent: wait without limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let now = Instant::now();
            // Every ending of an accept is reported, and a report ends this wait, so inside it
            // only a rest that has run out re-arms anything here: one attempt per rest.
            let retry = self.arm_due_accepts(now);
            self.pool.publish();
            self.pool.decay(now);
            self.rearm_paused();
            self.rearm_starved();
            self.flush_backlog();
            let now = Instant::now();
            let expired = deadline.is_some_and(|d| d <= now);
            // The kernel wait ends at the caller's deadline or a listener's retry, whichever
            // is first; capped so the timespec stays representable (the loop carries on).
            let wake = match (deadline, retry) {
                (Some(d), Some(r)) => Some(d.min(r)),
                (d, r) => d.or(r),
            };
            let remaining = wake.map(|w| w.saturating_duration_since(now).min(MAX_SLICE));
            let block = !expired
                && out.len() == before
                && self.backlog.is_empty()
                && self.ring.completion().is_empty();
            self.enter(block, remaining)?;
            self.drain(out)?;
            // Internal CQEs alone (a shutdown, an ENOBUFS) are no reason to return.
            if out.len() > before || expired {
                return Ok(());
            }
        }
    }

    fn buffer(&self, buf: BufId, len: usize) -> &[u8] {
        self.pool.lent_bytes(buf.0, len)
    }

    fn trim(&mut self) {
        // Spare buffers are the kernel's to fill only once back in the ring: always safe.
        self.pool.release_spare();
        // Those in the ring only with DEFER_TASKRUN: the kernel then fills buffers only inside
        // `wait`, so once `wait` left the completion queue empty, every buffer the shard does
        // not hold sits untouched. Otherwise a receive may have filled one whose completion is
        // not reaped yet, and releasing it would lose those bytes.
        if self.setup != DEFER_SETUP || !self.ring.completion().is_empty() {
            return;
        }
        self.pool.release_unlent();
    }

    fn recycle(&mut self, buf: BufId) {
        self.pool.give_back(buf.0);
    }

    fn waker(&self) -> Waker {
        self.waker.clone()
    }
}

impl UringBackend {
    /// Cancels everything in flight and waits (at most [`DROP_GRACE`]) for the last CQE, so the
    /// kernel has let go of the pool and the send buffers. Returns whether it did.
    fn quiesce(&mut self) -> bool {
        self.dropping = true;
        self.in_flight = self.in_flight.saturating_sub(self.backlog.len());
        self.backlog.clear();
        if self.in_flight > 0 {
            let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(plain_ud(Op::Internal, 0));
            self.push(sqe);
        }
        let deadline = Instant::now() + DROP_GRACE;
        let mut scratch = Vec::new();
        while self.in_flight > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.flush_backlog();
            let slice = (deadline - now).min(Duration::from_millis(50));
            if self.enter(true, Some(slice)).is_err() || self.drain(&mut scratch).is_err() {
                return false;
            }
            for completion in scratch.drain(..) {
                // A socket accepted while we were shutting down closes as it drops.
                drop(completion);
            }
        }
        true
    }
}

impl Drop for UringBackend {
    /// Quiesces the ring before its memory goes; if the kernel does not let go in time, leaks
    /// the pool and the in-flight sends instead of freeing memory it may still touch.
    fn drop(&mut self) {
        if !self.quiesce() {
            self.pool.leak();
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

#[cfg(test)]
mod tests;
