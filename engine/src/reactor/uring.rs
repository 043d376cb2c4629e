//! The io_uring backend: one ring per shard, completion-driven end to end.
//!
//! - **Accept**: one multishot accept per listener. A CQE without `MORE` (an error, a CQ
//!   overflow) ends it. After a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM:
//!   [`is_resource_error`], the rule epoll shares) the listener rests: reported once as
//!   [`Completion::AcceptFailed`], re-armed only after [`ACCEPT_RETRY`] or as soon as the shard
//!   closes a connection (which frees a descriptor). This matters because io_uring's accept
//!   takes a descriptor *before* looking at the backlog: at the fd limit a re-armed accept fails
//!   at once even with nobody waiting, and re-arming it every wait kept a shard at 100% of a core
//!   for as long as the limit lasted. `wait` wakes by itself at the retry instant, never later.
//!   Any other ending is re-armed at the start of the next [`Backend::wait`]: once per loop turn
//!   at most, never inside one wait.
//! - **Receive**: one multishot recv per connection, selecting buffers from a provided buffer
//!   ring (one contiguous, page-aligned pool per backend). An idle connection holds no buffer.
//!   `-ENOBUFS` (pool empty) ends the multishot: the connection is parked and its recv re-armed,
//!   never reported, once the shard has recycled buffers (at most as many re-arms per wait as
//!   there are free buffers, oldest first). Data the kernel could not deliver stays in the
//!   socket, so nothing is lost or reordered. Each completion carries at most one buffer
//!   (`buffer_size` bytes); the shard recycles every buffer within the loop turn that received
//!   it, so one socket can hold the pool for one turn at most, and the sockets it starved are
//!   re-armed in FIFO order.
//! - **Ring depth**: the ring holds only as many buffers as the load needs (at least 16), the
//!   rest wait in a stack and go back into the ring most recently used first; the depth doubles
//!   on ENOBUFS and halves after a second of little use, when the spare buffers' memory is given
//!   back. The kernel takes ring buffers in order, so a ring of all 512 had any steady stream
//!   touch the whole pool (a flood of one socket left 32 MiB resident).
//! - **Read budget**: where the kernel allows it (6.17+, probed at start), each multishot recv
//!   is capped at [`PoolConfig::read_budget`] bytes in all (the SQE's `optlen`; checked after
//!   each receive, so one buffer more at most); it then ends without `MORE` and is re-armed for
//!   the next wait. So one socket that floods gets at most
//!   that much of a loop turn, however much it has queued, instead of everything one
//!   `io_uring_enter` can receive for it.
//! - **Skip**: a multishot recv cannot be told to drop bytes, so [`Backend::skip`] cancels it
//!   (`AsyncCancel` by user_data). CQEs it posts before it ends still deliver their bytes as
//!   `Received`, and those count against the skip. Once its last CQE is in, a one-shot
//!   `IORING_OP_RECV` with `MSG_TRUNC` (no buffer selected, pointed at an unbacked sink: TCP
//!   copies nothing) drops what is left to drop, each completion reported as `Skipped`, repeated
//!   while bytes remain to be dropped. A connection starved of buffers starts skipping at once
//!   (no buffer is needed to drop bytes). EOF and errors end a skip as they end a recv, and
//!   `close` cancels whatever is in flight.
//! - **After a skip, a header-sized probe**: a multishot recv takes everything the socket holds
//!   (one buffer after another, in the same task-work run) before the shard has seen the next
//!   frame's header, so re-armed after a skip it would copy the very payloads the next skip
//!   was for: measured on loopback with 1 MiB messages, 78% of the bytes were still copied. So
//!   a finished skip is followed by a one-shot buffer-selected recv of at most [`PROBE_LEN`]
//!   bytes (a probe), and the connection then pauses: if the shard asks for the next skip in
//!   that loop turn, it starts at once with nothing to cancel; if not, the multishot recv is
//!   re-armed at the next wait.
//! - **Pause**: [`Backend::pause`] cancels the multishot recv (anything else in flight ends by
//!   itself) and marks the connection held; every re-arm goes through one function that then
//!   leaves it idle (`Held`) until [`Backend::resume`] arms it again.
//! - **Send**: one `sendmsg` per call gathering up to [`MAX_IOVECS`] chunks, with
//!   `MSG_NOSIGNAL | MSG_WAITALL`: on a stream socket io_uring keeps sending until every byte is
//!   written (or an error), so the shard normally gets one `Sent` per batch instead of a chain of
//!   short writes. The msghdr, the iovecs and the chunks live in one boxed [`SendOp`] (stable
//!   address) until the CQE hands the chunks back.
//! - **Close**: cancels the connection's recv and in-flight send by user_data, then closes the
//!   fd with `IORING_OP_CLOSE`. Every op of a connection is counted; `Closed` is emitted when the
//!   count reaches zero, i.e. after the recv's final CQE, the send's CQE (still reported as
//!   `Sent`, so the shard gets its chunks back) and the close's CQE. Once `close` has been called,
//!   received data, EOF and receive errors for that token are no longer reported (buffers go
//!   straight back to the ring): the shard has said it is done with the connection.
//! - **Wake**: a multishot `POLLIN` poll on the [`Waker`]'s eventfd.
//!
//! ## user_data
//!
//! `op kind (8 bits) << 56 | generation (low 24 bits) << 32 | slab index (32 bits)`. The full
//! [`Token`] lives in the per-connection side table (a `Vec` indexed by the slab index, mirroring
//! the shard's slab), so generations need no restriction: the 24 bits only let us drop a CQE that
//! could not belong to the slot's current occupant (which cannot happen while the shard keeps the
//! `Closed` rule, but costs nothing to check). Listener ops carry the listener's index instead.
//!
//! ## Buffer recycling
//!
//! [`Backend::recycle`] writes the ring entry at once but publishes the ring tail (one release
//! store) only at the start of each wait. With `DEFER_TASKRUN` the kernel runs receives only
//! inside our `io_uring_enter`, so a tail published right before entering is never late, and one
//! store per loop turn replaces one per buffer.
//!
//! ## Setup
//!
//! `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` (6.1+), else `COOP_TASKRUN | SUBMIT_ALL`, else no
//! flags, each fallback on `EINVAL`. `new` then registers the buffer ring and runs one real
//! multishot recv over a socketpair, so it fails (and `reactor::create(Auto)` falls back to epoll)
//! wherever any part is missing: io_uring disabled or filtered (ENOSYS/EPERM), no buffer rings
//! (< 5.19), no multishot recv (< 6.0), no EXT_ARG waits (< 5.11).
//!
//! The ring fd is not registered (`IORING_REGISTER_RING_FDS`): io-uring 0.7 keeps the registered
//! index inside the `Submitter`, which `IoUring::submitter()` rebuilds on every call, so the
//! registration would occupy a slot and never be used. It would save one fd lookup per enter.

use std::alloc::{self, Layout};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, EnterFlags, IoUring};

use super::{
    is_resource_error, release_runs, Backend, BufId, Completion, PoolConfig, Token, Waker,
    ACCEPT_RETRY, MAX_IOVECS, PROBE_LEN, SKIP_CHUNK,
};

/// Submission queue entries. A shard submits once per loop turn; 4096 covers a burst of that many
/// new connections or sends in one turn, and a fuller queue is submitted early (see `push`).
const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries: multishot ops post many CQEs per SQE, so give them room. Overflow is
/// still handled (the kernel parks CQEs, we flush them), it is just slower.
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;
/// The buffer group of the pool (each backend has its own ring, so one group suffices).
const BGID: u16 = 0;
/// Recycled `SendOp` boxes kept for reuse; more than this are freed.
const SEND_POOL_MAX: usize = 256;
/// How long `Drop` waits for cancelled ops before leaking the memory they may still touch.
const DROP_GRACE: Duration = Duration::from_secs(1);
/// The longest single kernel wait; longer timeouts are waited in slices of this.
const MAX_SLICE: Duration = Duration::from_secs(3600);
/// CQEs copied out of the ring per batch while draining.
const DRAIN_BATCH: usize = 256;

/// What an SQE was for, in the top byte of its user_data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    /// The waker's eventfd poll.
    Wake = 1,
    /// A listener's multishot accept (payload: listener index).
    Accept = 2,
    /// Cancelling a listener's accept (payload: listener index).
    AcceptCancel = 3,
    /// A connection's multishot recv.
    Recv = 4,
    /// A connection's gathered send.
    Send = 5,
    /// A connection's `shutdown(SHUT_WR)`.
    Shutdown = 6,
    /// Cancelling a connection's recv or send (part of `close`).
    Cancel = 7,
    /// Closing a connection's fd.
    Close = 8,
    /// Backend-internal ops (the start-up probe, the cancel-all in `Drop`).
    Internal = 9,
    /// A connection's one-shot truncating recv ([`Backend::skip`]).
    Skip = 10,
}

impl Op {
    fn from_bits(bits: u8) -> Option<Op> {
        Some(match bits {
            1 => Op::Wake,
            2 => Op::Accept,
            3 => Op::AcceptCancel,
            4 => Op::Recv,
            5 => Op::Send,
            6 => Op::Shutdown,
            7 => Op::Cancel,
            8 => Op::Close,
            9 => Op::Internal,
            10 => Op::Skip,
            _ => return None,
        })
    }
}

/// The generation bits that fit in user_data next to the op kind and the index.
const GEN_MASK: u64 = 0xFF_FFFF;

/// user_data for an op of a connection.
fn conn_ud(op: Op, token: Token) -> u64 {
    ((op as u64) << 56)
        | ((u64::from(token.generation()) & GEN_MASK) << 32)
        | (token.0 & 0xFFFF_FFFF)
}

/// user_data for an op that is not a connection's (listeners, waker, internal).
fn plain_ud(op: Op, index: usize) -> u64 {
    ((op as u64) << 56) | (index as u64 & 0xFFFF_FFFF)
}

/// Splits user_data into (op, generation bits, index).
fn decode_ud(ud: u64) -> (Option<Op>, u64, usize) {
    (
        Op::from_bits((ud >> 56) as u8),
        (ud >> 32) & GEN_MASK,
        (ud & 0xFFFF_FFFF) as usize,
    )
}

/// One slot of the provided buffer ring, laid out as the kernel's `struct io_uring_buf`. The
/// crate's `BufRingEntry` has the same layout but only `&mut self` setters, and writing entry 0
/// through `&mut` would cover its `resv` field, which is the ring tail the kernel reads
/// concurrently; raw field writes avoid that.
#[repr(C)]
struct RingSlot {
    addr: u64,
    len: u32,
    bid: u16,
    /// In slot 0: the ring tail.
    resv: u16,
}

const _: () =
    assert!(std::mem::size_of::<RingSlot>() == std::mem::size_of::<types::BufRingEntry>());

/// Buffers kept in the ring at least (see [`BufPool::depth`]).
const MIN_DEPTH: u32 = 16;
/// How often the ring's depth may halve, and surplus buffers go back to the kernel.
const DEPTH_DECAY: Duration = Duration::from_secs(1);

/// The receive pool: `entries` buffers of `size` bytes in one allocation, and the ring through
/// which they are lent to the kernel.
///
/// The kernel takes buffers from the ring in order, so a ring holding every buffer would cycle
/// through all of them under any steady load, and a flood of a single socket would leave the
/// whole pool resident. So only `depth` buffers are in the ring; the rest wait in `spare`, a
/// stack, and refill the ring most recently used first. The depth doubles whenever a receive
/// finds the ring empty (ENOBUFS) and halves after a second in which at most a quarter of it was
/// used, when the spare buffers' memory goes back to the kernel: the memory follows the load.
struct BufPool {
    /// The ring (`entries` slots), page-aligned as the kernel requires.
    ring: *mut RingSlot,
    ring_layout: Layout,
    /// The buffers, back to back, in a mapping of their own (never freed while the kernel may
    /// still write into it: see `leak`).
    data: std::mem::ManuallyDrop<super::pool_mem::PoolMem>,
    /// Where truncating receives point ([`SKIP_CHUNK`] bytes): never read, and on TCP never
    /// written, so it costs address space only. Kept (or leaked) with the buffers, for the same
    /// reason.
    sink: std::mem::ManuallyDrop<super::pool_mem::PoolMem>,
    entries: u16,
    size: usize,
    /// Slots written so far (wrapping); the kernel sees them once published.
    tail: u16,
    /// Buffers in the ring (published or about to be): what the kernel can still pick.
    in_ring: u32,
    /// How many buffers the ring is kept filled to.
    depth: u32,
    /// Buffers neither lent nor in the ring, the most recently returned last.
    spare: Vec<u16>,
    /// The most buffers the kernel took between two refills since the last decay.
    peak_used: u32,
    /// When the depth may next halve.
    next_decay: Instant,
    /// Buffers the shard holds (between `Received` and `recycle`).
    lent: Vec<bool>,
    /// Set when the kernel may still touch the memory (a `Drop` that timed out): never free it.
    leak: bool,
}

impl BufPool {
    fn new(cfg: PoolConfig) -> io::Result<Self> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let entries = cfg.buffers;
        if entries == 0 || !entries.is_power_of_two() || entries > 32768 {
            return Err(invalid("pool buffers must be a power of two in 1..=32768"));
        }
        if cfg.buffer_size == 0 {
            return Err(invalid("pool buffer_size must be positive"));
        }
        let size = cfg.buffer_size as usize;
        // SAFETY: sysconf takes no pointers.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let total = (entries as usize)
            .checked_mul(size)
            .ok_or_else(|| invalid("pool too large"))?;
        let ring_layout =
            Layout::from_size_align(entries as usize * std::mem::size_of::<RingSlot>(), page)
                .map_err(|_| invalid("pool ring layout"))?;
        // SAFETY: the layout has a non-zero size (entries >= 1).
        let ring = unsafe { alloc::alloc_zeroed(ring_layout) }.cast::<RingSlot>();
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // Zero-filled by the kernel, so every byte `buffer()` can expose is initialised,
        // whatever `len` the shard passes.
        let mapped = super::pool_mem::PoolMem::new(total).and_then(|data| {
            let sink = super::pool_mem::PoolMem::new(SKIP_CHUNK)?;
            Ok((data, sink))
        });
        let (data, sink) = match mapped {
            Ok((data, sink)) => (
                std::mem::ManuallyDrop::new(data),
                std::mem::ManuallyDrop::new(sink),
            ),
            Err(e) => {
                // SAFETY: `ring` was allocated just above with `ring_layout` and is not shared.
                unsafe { alloc::dealloc(ring.cast(), ring_layout) };
                return Err(e);
            }
        };
        let mut pool = BufPool {
            ring,
            ring_layout,
            data,
            sink,
            entries,
            size,
            tail: 0,
            in_ring: 0,
            depth: MIN_DEPTH.min(u32::from(entries)),
            // Reversed, so buffer 0 goes into the ring first: easier to follow in a trace.
            spare: (0..entries).rev().collect(),
            peak_used: 0,
            next_decay: Instant::now() + DEPTH_DECAY,
            lent: vec![false; entries as usize],
            leak: false,
        };
        pool.refill();
        Ok(pool)
    }

    fn ring_addr(&self) -> u64 {
        self.ring as u64
    }

    /// Returns buffer `bid` to the pool: to the spare stack, from where [`BufPool::refill`]
    /// puts it back in the ring.
    fn put_back(&mut self, bid: u16) {
        self.spare.push(bid);
    }

    /// Tops the ring up to `depth` from the spare stack, most recently returned first.
    fn refill(&mut self) {
        self.peak_used = self.peak_used.max(self.depth.saturating_sub(self.in_ring));
        while self.in_ring < self.depth {
            let Some(bid) = self.spare.pop() else { break };
            self.push_slot(bid);
        }
    }

    /// Writes buffer `bid` into the next ring slot (visible to the kernel after `publish`).
    fn push_slot(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let addr = self.data.as_ptr() as u64 + bid as u64 * self.size as u64;
        // SAFETY: `tail & mask < entries`, so the slot is inside the ring allocation. The kernel
        // only reads slots between its head and the published tail; every buffer is either lent,
        // spare, or in exactly one such slot, so at most `entries - 1` slots are live here and
        // the one at our local tail is not among them. The fields are written through raw
        // pointers so that slot 0's `resv` (the tail, read by the kernel) is never covered by a
        // reference.
        unsafe {
            let slot = self.ring.add((self.tail & mask) as usize);
            ptr::addr_of_mut!((*slot).addr).write(addr);
            ptr::addr_of_mut!((*slot).len).write(self.size as u32);
            ptr::addr_of_mut!((*slot).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.in_ring += 1;
    }

    /// A receive found the ring empty: keep more buffers in it.
    fn grow(&mut self) {
        self.depth = (self.depth * 2).min(u32::from(self.entries));
    }

    /// Once a second: halves the depth if at most a quarter of it was used, and gives the
    /// memory of the spare buffers (the surplus, once the ring is refilled) back to the kernel.
    fn decay(&mut self, now: Instant) {
        if now < self.next_decay {
            return;
        }
        self.next_decay = now + DEPTH_DECAY;
        if self.peak_used * 4 <= self.depth && self.depth > MIN_DEPTH {
            self.depth = (self.depth / 2).max(MIN_DEPTH);
        }
        self.peak_used = 0;
        for &bid in &self.spare {
            self.data.release(usize::from(bid) * self.size, self.size);
        }
    }

    /// Refills the ring and makes every slot written so far visible to the kernel.
    fn publish(&mut self) {
        self.refill();
        // SAFETY: slot 0's `resv` is the ring tail: inside the ring allocation, 2-byte aligned
        // (the ring is page-aligned, the field at offset 14), and only ever accessed atomically
        // (by us here, by the kernel with acquire loads). The release store orders the slot
        // writes of `put_back` before the kernel can see the new tail.
        unsafe {
            AtomicU16::from_ptr(ptr::addr_of_mut!((*self.ring).resv))
                .store(self.tail, Ordering::Release);
        }
    }

    /// The kernel picked buffer `bid` for a completion.
    fn taken(&mut self) {
        self.in_ring = self.in_ring.saturating_sub(1);
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: the ring was allocated in `new` with this layout and the data mapped there;
        // the owner drops the pool only after the ring is gone and no op can still write into
        // either (else `leak` is set and both stay).
        unsafe {
            alloc::dealloc(self.ring.cast(), self.ring_layout);
            std::mem::ManuallyDrop::drop(&mut self.data);
            std::mem::ManuallyDrop::drop(&mut self.sink);
        }
    }
}

/// One gathered send in flight: everything the kernel reads lives here, boxed, until the CQE.
struct SendOp {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOVECS],
    chunks: Vec<Bytes>,
}

impl SendOp {
    fn new() -> Box<Self> {
        Box::new(SendOp {
            // SAFETY: msghdr is a C struct of integers and raw pointers (plus padding on some
            // targets); all zeroes is a valid, empty header.
            hdr: unsafe { std::mem::zeroed() },
            iov: [libc::iovec {
                iov_base: ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS],
            chunks: Vec::new(),
        })
    }
}

/// Where a connection's multishot recv stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    /// A multishot recv is in flight (or queued to be submitted).
    Armed,
    /// The pool ran dry (ENOBUFS); waiting in `starved` to be re-armed.
    Starved,
    /// A one-shot recv of one buffer is in flight (after a skip).
    Probing,
    /// The probe delivered; waiting in `paused` for the next wait to re-arm the multishot recv,
    /// unless a skip comes first.
    Paused,
    /// The multishot recv is being cancelled to make way for a skip; its last CQE is due.
    Cancelling,
    /// A one-shot truncating recv is in flight ([`Backend::skip`]).
    Skipping,
    /// The shard paused reading ([`Backend::pause`]): nothing in flight until
    /// [`Backend::resume`].
    Held,
    /// Ended for good: EOF, error, or cancelled by `close`.
    Ended,
}

/// The backend's view of one registered connection.
struct Conn {
    token: Token,
    fd: RawFd,
    /// Ops submitted whose final CQE has not arrived (the multishot recv counts once).
    inflight: u32,
    recv: RecvState,
    /// Bytes still to drop unread ([`Backend::skip`]).
    skip: u64,
    /// The next read is a probe ([`PROBE_LEN`] bytes): a skip just ended, or the last probe
    /// came back short (it may have ended inside a frame header).
    probe: bool,
    /// The shard paused reading ([`Backend::pause`]): whatever is in flight ends, and nothing is
    /// re-armed until [`Backend::resume`].
    held: bool,
    /// The send in flight, if any.
    send: Option<Box<SendOp>>,
    /// `close` was called: report `Closed` when `inflight` reaches zero.
    closing: bool,
}

/// A listener and its multishot accept.
struct Listener {
    fd: RawFd,
    /// The multishot accept is in flight.
    armed: bool,
    /// Accepting is wanted (cleared by `stop_accepting`).
    active: bool,
    /// After a resource error: not re-armed before this instant, unless a `close` ends the rest.
    retry_at: Option<Instant>,
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

impl UringBackend {
    /// Sets up the ring, registers a receive pool of `pool.buffers` × `pool.buffer_size` bytes
    /// as a provided buffer ring, and checks that multishot receive works. Fails when io_uring is
    /// unavailable, filtered or too old, so the caller can fall back to epoll.
    pub fn new(pool: PoolConfig) -> io::Result<Self> {
        // Declared before the ring so that, on an early return, the ring is dropped first.
        let mut bufs = BufPool::new(pool)?;
        let (mut ring, setup) = build_ring()?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks EXT_ARG or NODROP (kernel < 5.11)",
            ));
        }
        // SAFETY: the ring memory (`bufs.ring`, `entries` slots, page-aligned) lives in the pool,
        // which outlives the ring: the backend drops `ring` before `pool`, and on the early
        // returns below the ring (declared later) is dropped first.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.ring_addr(),
                bufs.entries,
                BGID,
                0,
            )?;
        }
        bufs.publish();
        probe_multishot_recv(&mut ring, &mut bufs)?;
        let read_budget = probe_recv_limit(&mut ring, &mut bufs).then_some(pool.read_budget);
        let waker = Waker::new()?;
        let mut this = UringBackend {
            ring,
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
            setup,
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
            // SAFETY: every SQE built in this module points only at memory that outlives its CQE:
            // pool buffers (freed after the ring), boxed `SendOp`s (kept in `Conn::send` until
            // the CQE) or nothing at all.
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

    fn arm_waker(&mut self) {
        self.waker_armed = true;
        let sqe = opcode::PollAdd::new(types::Fd(self.waker.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(plain_ud(Op::Wake, 0));
        self.push(sqe);
    }

    fn arm_accept(&mut self, index: usize) {
        let listener = &mut self.listeners[index];
        listener.armed = true;
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
            let listener = &mut self.listeners[index];
            if !listener.active || listener.armed {
                continue;
            }
            match listener.retry_at {
                Some(at) if now < at => next = Some(next.map_or(at, |n| n.min(at))),
                _ => {
                    listener.retry_at = None;
                    self.arm_accept(index);
                }
            }
        }
        next
    }

    /// A descriptor was just freed: listeners resting after a resource error may try now (at
    /// the next wait, whose submission carries the close before the accept).
    fn end_accept_rests(&mut self) {
        for listener in &mut self.listeners {
            listener.retry_at = None;
        }
    }

    /// Moves the receive side of the connection in slot `index` to `state` and submits the op
    /// `build` makes for it (given the socket and the connection's token).
    fn submit_recv_op(
        &mut self,
        index: usize,
        state: RecvState,
        build: impl FnOnce(types::Fd, Token) -> squeue::Entry,
    ) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        conn.recv = state;
        conn.inflight += 1;
        let sqe = build(types::Fd(conn.fd), conn.token);
        self.push(sqe);
    }

    /// Starts (or restarts) the multishot recv of the connection in slot `index`.
    fn arm_recv(&mut self, index: usize) {
        let budget = self.read_budget;
        self.submit_recv_op(index, RecvState::Armed, |fd, token| {
            let sqe = opcode::RecvMulti::new(fd, BGID)
                .build()
                .user_data(conn_ud(Op::Recv, token));
            match budget {
                Some(limit) => with_recv_limit(sqe, limit),
                None => sqe,
            }
        });
    }

    /// Cancels the receive in flight on the connection in slot `index` to make way for a skip
    /// or a probe; [`UringBackend::after_cancel`] takes over once its last CQE is in.
    fn cancel_recv(&mut self, index: usize) {
        self.submit_recv_op(index, RecvState::Cancelling, |_, token| {
            opcode::AsyncCancel::new(conn_ud(Op::Recv, token))
                .build()
                .user_data(conn_ud(Op::Cancel, token))
        });
    }

    /// Receives again on the connection in slot `index`: a probe if it is due one, else the
    /// multishot recv; nothing while the shard holds its reading paused. Every re-arm goes
    /// through here, so a pause takes effect wherever the receive side stands when it comes.
    fn arm_read(&mut self, index: usize) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.held {
            conn.recv = RecvState::Held;
        } else if conn.probe {
            self.arm_probe(index);
        } else {
            self.arm_recv(index);
        }
    }

    /// Submits a one-shot recv of at most [`PROBE_LEN`] bytes for the connection in slot
    /// `index`: after a skip, it reads the next frame's header without the payload behind it.
    fn arm_probe(&mut self, index: usize) {
        self.submit_recv_op(index, RecvState::Probing, |fd, token| {
            // With a selected buffer the length caps the read below the buffer's size.
            opcode::Recv::new(fd, ptr::null_mut(), PROBE_LEN as u32)
                .buf_group(BGID)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
                .user_data(conn_ud(Op::Recv, token))
        });
    }

    /// Reads again on the connections whose probe delivered and that the shard did not ask to
    /// skip since.
    fn rearm_paused(&mut self) {
        let mut paused = std::mem::take(&mut self.paused);
        for index in paused.drain(..) {
            let index = index as usize;
            let waiting = matches!(
                self.conns.get(index),
                Some(Some(conn)) if conn.recv == RecvState::Paused && !conn.closing
            );
            if waiting {
                self.arm_read(index);
            }
        }
        // Keep the allocation for the next turn.
        self.paused = paused;
    }

    /// Submits the truncating recv that drops the next bytes a skip wants (at most
    /// [`SKIP_CHUNK`] of them at a time) for the connection in slot `index`.
    fn submit_skip(&mut self, index: usize) {
        let Some(conn) = self.conns[index].as_ref() else {
            return;
        };
        let want = conn.skip.min(SKIP_CHUNK as u64) as u32;
        let sink = self.pool.sink.as_ptr();
        self.submit_recv_op(index, RecvState::Skipping, |fd, token| {
            // Not MSG_WAITALL, which would save a CQE per piece the bytes arrive in: io_uring's
            // retry counts progress by the destination iterator, which MSG_TRUNC never
            // advances, so it dropped more than asked (kernel 6.18).
            opcode::Recv::new(fd, sink, want)
                .flags(libc::MSG_TRUNC)
                .build()
                .user_data(conn_ud(Op::Skip, token))
        });
    }

    /// The multishot recv of slot `index` has ended while cancelled for a skip (`starved`: by
    /// ENOBUFS): drop what is still to be dropped, else pause. The recv delivered all the skip
    /// wanted, and likely the next frame's start with it: the shard, seeing those bytes in this
    /// turn, may ask for a skip of that frame's rest, which then needs no cancel.
    fn after_cancel(&mut self, index: usize, starved: bool) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.skip > 0 {
            self.submit_skip(index);
        } else if starved {
            conn.recv = RecvState::Starved;
            self.starved.push_back(index as u32);
        } else {
            conn.recv = RecvState::Paused;
            self.paused.push(index as u32);
        }
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
            if conn.closing && conn.inflight == 0 {
                out.push(Completion::Closed { token: conn.token });
                self.conns[index] = None;
            }
        }
    }

    /// Re-arms parked (ENOBUFS) receives, oldest first, at most one per free buffer.
    fn rearm_starved(&mut self) {
        let mut budget = self.pool.in_ring;
        while budget > 0 {
            let Some(index) = self.starved.pop_front() else {
                return;
            };
            let index = index as usize;
            let waiting = matches!(
                self.conns.get(index),
                Some(Some(conn)) if conn.recv == RecvState::Starved && !conn.closing
            );
            if waiting {
                self.arm_read(index);
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
        let bid = cqueue::buffer_select(flags).filter(|&b| b < self.pool.entries);
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

    fn on_accept(&mut self, index: usize, res: i32, more: bool, out: &mut Vec<Completion>) {
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        if !more {
            // Re-armed at the start of the next wait (if still active): once per wait at most.
            listener.armed = false;
        }
        if res >= 0 {
            out.push(Completion::Accepted { fd: res });
        } else if res != -libc::ECANCELED || listener.active {
            // (A cancelled accept after `stop_accepting` is expected and not reported.)
            let error = io::Error::from_raw_os_error(-res);
            if is_resource_error(&error) {
                listener.retry_at = Some(Instant::now() + ACCEPT_RETRY);
            }
            out.push(Completion::AcceptFailed(error));
        }
    }

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
            let chunks = std::mem::take(&mut op.chunks);
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
        let dropping = self.dropping;
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let was = conn.recv;
        let cancelling = was == RecvState::Cancelling;
        if !more {
            conn.inflight = conn.inflight.saturating_sub(1);
            conn.recv = RecvState::Ended;
        }
        let token = conn.token;
        if conn.closing || dropping {
            // The shard is done with this connection: nothing more to report but `Closed`.
            if let Some(b) = bid {
                self.pool.put_back(b);
            }
            self.maybe_closed(slot, out);
            return;
        }
        if res > 0 {
            match bid {
                Some(b) => {
                    // Delivered bytes are bytes a skip asked for after them need not drop.
                    conn.skip = conn.skip.saturating_sub(res as u64);
                    self.pool.lent[b as usize] = true;
                    out.push(Completion::Received {
                        token,
                        buf: BufId(b),
                        len: res as usize,
                    });
                    if !more && cancelling {
                        self.after_cancel(slot, false);
                    } else if !more && was == RecvState::Probing {
                        // A short probe may have ended inside a header: probe again. A full
                        // one that no skip follows ends probing (`rearm_paused`).
                        conn.probe = (res as usize) < PROBE_LEN;
                        conn.recv = RecvState::Paused;
                        self.paused.push(slot as u32);
                    } else if !more {
                        // Ended without error: the read budget is spent (or the CQ overflowed).
                        // Re-armed now, it is submitted with the next wait: the next turn's.
                        self.arm_read(slot);
                    }
                }
                None => out.push(Completion::RecvFailed {
                    token,
                    error: io::Error::other("io_uring recv completed without a buffer"),
                }),
            }
            return;
        }
        if let Some(b) = bid {
            self.pool.put_back(b);
        }
        if res == 0 {
            out.push(Completion::Eof { token });
        } else if res == -libc::ENOBUFS {
            self.enobufs += 1;
            self.pool.grow();
            if !more && cancelling {
                self.after_cancel(slot, true);
            } else if !more {
                conn.recv = RecvState::Starved;
                self.starved.push_back(slot as u32);
            }
        } else if res == -libc::ECANCELED && cancelling {
            self.after_cancel(slot, false);
        } else {
            out.push(Completion::RecvFailed {
                token,
                error: io::Error::from_raw_os_error(-res),
            });
        }
    }

    /// The end of a truncating recv: report what it dropped, then drop more or receive again.
    fn on_skip(&mut self, gen: u64, index: usize, res: i32, out: &mut Vec<Completion>) {
        let Some(slot) = self.slot_of_cqe(gen, index) else {
            return;
        };
        let dropping = self.dropping;
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        conn.inflight = conn.inflight.saturating_sub(1);
        conn.recv = RecvState::Ended;
        let token = conn.token;
        if conn.closing || dropping {
            self.maybe_closed(slot, out);
            return;
        }
        if res > 0 {
            conn.skip = conn.skip.saturating_sub(res as u64);
            out.push(Completion::Skipped {
                token,
                len: res as usize,
            });
            if conn.skip > 0 {
                self.submit_skip(slot);
            } else {
                conn.probe = true;
                self.arm_read(slot);
            }
        } else if res == 0 {
            out.push(Completion::Eof { token });
        } else {
            out.push(Completion::RecvFailed {
                token,
                error: io::Error::from_raw_os_error(-res),
            });
        }
    }
}

/// The name of the preferred ring setup, under which the kernel fills receive buffers only
/// while the shard waits.
const DEFER_SETUP: &str = "single_issuer+defer_taskrun";

/// Creates the ring with the best setup the kernel accepts.
fn build_ring() -> io::Result<(IoUring, &'static str)> {
    let mut last = None;
    for attempt in 0..3 {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(CQ_ENTRIES).setup_clamp();
        let name = match attempt {
            0 => {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_submit_all();
                DEFER_SETUP
            }
            1 => {
                builder.setup_coop_taskrun().setup_submit_all();
                "coop_taskrun"
            }
            _ => "plain",
        };
        match builder.build(SQ_ENTRIES) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Runs one multishot recv, capped at `limit` bytes in all if given, over a socketpair holding
/// `bytes` then EOF, and returns its CQEs as (result, `MORE`), the last one without `MORE`.
fn run_recv_probe(
    ring: &mut IoUring,
    pool: &mut BufPool,
    bytes: &[u8],
    limit: Option<u32>,
) -> io::Result<Vec<(i32, bool)>> {
    let unsupported = |why: String| io::Error::new(io::ErrorKind::Unsupported, why);
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two fds into the array, which is live and large enough.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and belong to nothing else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: writes `bytes.len()` bytes from a live slice.
    let written = unsafe { libc::write(theirs.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if written != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    // EOF right after the bytes: the multishot recv then ends by itself.
    drop(theirs);
    let mut sqe = opcode::RecvMulti::new(types::Fd(ours.as_raw_fd()), BGID)
        .build()
        .user_data(plain_ud(Op::Internal, 0));
    if let Some(limit) = limit {
        sqe = with_recv_limit(sqe, limit);
    }
    // SAFETY: the recv writes only into the registered pool, which outlives the ring.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| unsupported("empty SQ is full".into()))?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut cqes = Vec::new();
    loop {
        let now = Instant::now();
        if now >= deadline {
            // The recv may still be in flight: never free the memory it could write into.
            pool.leak = true;
            return Err(unsupported("multishot recv probe timed out".into()));
        }
        let ts = types::Timespec::from(deadline - now);
        match ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
        {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => {
                pool.leak = true;
                return Err(e);
            }
        }
        let mut finished = false;
        for cqe in ring.completion() {
            let flags = cqe.flags();
            if let Some(b) = cqueue::buffer_select(flags).filter(|&b| b < pool.entries) {
                pool.taken();
                pool.put_back(b);
            }
            cqes.push((cqe.result(), cqueue::more(flags)));
            finished |= !cqueue::more(flags);
        }
        pool.publish();
        if finished {
            return Ok(cqes);
        }
    }
}

/// Checks that multishot recv works: over one byte then EOF, the byte comes with `MORE`. Kernels
/// that ignore the multishot flag (< 6.0) answer with a single CQE without `MORE`; those that
/// reject it answer EINVAL. Either way we return an error, before any connection depends on it.
fn probe_multishot_recv(ring: &mut IoUring, pool: &mut BufPool) -> io::Result<()> {
    let cqes = run_recv_probe(ring, pool, b"x", None)?;
    if cqes.first() == Some(&(1, true)) {
        return Ok(());
    }
    let why = match cqes.last() {
        Some(&(res, _)) if res < 0 => format!(
            "multishot recv unsupported: {}",
            io::Error::from_raw_os_error(-res)
        ),
        _ => "multishot recv unsupported (single shot only)".into(),
    };
    Err(io::Error::new(io::ErrorKind::Unsupported, why))
}

/// Whether a multishot recv can be capped in total bytes (`IORING_RECV_MSHOT_LIM`, Linux 6.17):
/// with a cap of one byte, its first delivery ends it (the cap is checked after each receive,
/// so that delivery may hold more), where an uncapped one would go on to report the EOF.
/// Older kernels refuse the field with EINVAL.
fn probe_recv_limit(ring: &mut IoUring, pool: &mut BufPool) -> bool {
    matches!(
        run_recv_probe(ring, pool, b"xy", Some(1)).as_deref(),
        Ok([(n, false)]) if *n > 0
    )
}

/// The byte of an SQE where the kernel reads `optlen` (a `u32` sharing a union with
/// `file_index`), which for a multishot recv is the total it may deliver before ending.
const SQE_OPTLEN: usize = 44;
const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// `sqe`, a multishot recv, capped at `limit` bytes before it ends (without `MORE`). io-uring
/// 0.7's `RecvMulti` has no setter for the field.
fn with_recv_limit(mut sqe: squeue::Entry, limit: u32) -> squeue::Entry {
    // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's 64-byte `io_uring_sqe` (checked
    // above), whose `optlen` is the u32 at byte 44; the write stays inside the entry and is
    // unaligned-safe.
    unsafe {
        (&mut sqe as *mut squeue::Entry)
            .cast::<u8>()
            .add(SQE_OPTLEN)
            .cast::<u32>()
            .write_unaligned(limit);
    }
    sqe
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn listen(&mut self, listener: RawFd) -> io::Result<()> {
        if listener < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        self.listeners.push(Listener {
            fd: listener,
            armed: false,
            active: true,
            retry_at: None,
        });
        self.arm_accept(self.listeners.len() - 1);
        Ok(())
    }

    fn stop_accepting(&mut self) {
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            if !listener.active {
                continue;
            }
            listener.active = false;
            if listener.armed {
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
        self.conns[index] = Some(Conn {
            token,
            fd,
            inflight: 0,
            recv: RecvState::Ended,
            skip: 0,
            probe: false,
            held: false,
            send: None,
            closing: false,
        });
        self.arm_recv(index);
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
            Some(conn) if conn.closing => {
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
        op.chunks = chunks;
        let n = op.chunks.len().min(MAX_IOVECS);
        for (iov, chunk) in op.iov.iter_mut().zip(&op.chunks) {
            iov.iov_base = chunk.as_ptr() as *mut libc::c_void;
            iov.iov_len = chunk.len();
        }
        op.hdr.msg_iov = op.iov.as_mut_ptr();
        op.hdr.msg_iovlen = n as _;
        let sqe = opcode::SendMsg::new(types::Fd(conn.fd), &op.hdr)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
            .build()
            .user_data(conn_ud(Op::Send, token));
        conn.send = Some(op);
        conn.inflight += 1;
        self.push(sqe);
    }

    fn skip(&mut self, token: Token, _fd: RawFd, len: u64) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        if len == 0 {
            // Only the next read is to be short. A probe or paused receive reads that way
            // already; a skip or cancel under way ends in one.
            conn.probe = true;
            if conn.recv == RecvState::Armed {
                self.cancel_recv(index);
            }
            return;
        }
        match conn.recv {
            // After EOF or an error nothing more is read, so there is nothing to drop either.
            RecvState::Ended => {}
            RecvState::Cancelling | RecvState::Skipping => conn.skip += len,
            // Nothing in flight. No buffer is needed to drop bytes; the entry in `starved` or
            // `paused` is passed over when its turn comes. (Held: the shard asked for the drop
            // itself; reading stays paused after it.)
            RecvState::Starved | RecvState::Paused | RecvState::Held => {
                conn.skip += len;
                self.submit_skip(index);
            }
            RecvState::Armed | RecvState::Probing => {
                conn.skip += len;
                self.cancel_recv(index);
            }
        }
    }

    fn pause(&mut self, token: Token) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.held || conn.closing {
            return;
        }
        conn.held = true;
        // A multishot recv would go on filling buffers: cancel it. Anything else in flight
        // (a probe, a skip, a cancel) ends by itself, and its re-arm finds the hold.
        if conn.recv == RecvState::Armed {
            self.cancel_recv(index);
        }
    }

    fn resume(&mut self, token: Token) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if !conn.held {
            return;
        }
        conn.held = false;
        if conn.recv == RecvState::Held && !conn.closing {
            self.arm_read(index);
        }
    }

    fn shutdown_write(&mut self, token: Token, _fd: RawFd) {
        let Some(index) = self.slot_of(token) else {
            return;
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.inflight += 1;
        let sqe = opcode::Shutdown::new(types::Fd(conn.fd), libc::SHUT_WR)
            .build()
            .user_data(conn_ud(Op::Shutdown, token));
        self.push(sqe);
    }

    fn close(&mut self, token: Token, fd: RawFd) {
        let Some(index) = self.slot_of(token) else {
            // Never registered (or a stale token): nothing of ours is in flight on it.
            // SAFETY: the shard hands `fd` over to be closed; no op of this backend uses it.
            unsafe { libc::close(fd) };
            self.ready.push(Completion::Closed { token });
            self.end_accept_rests();
            return;
        };
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        let mut sqes = [None, None];
        match conn.recv {
            RecvState::Armed | RecvState::Probing => {
                conn.inflight += 1;
                sqes[0] = Some(
                    opcode::AsyncCancel::new(conn_ud(Op::Recv, token))
                        .build()
                        .user_data(conn_ud(Op::Cancel, token)),
                );
            }
            RecvState::Skipping => {
                conn.inflight += 1;
                sqes[0] = Some(
                    opcode::AsyncCancel::new(conn_ud(Op::Skip, token))
                        .build()
                        .user_data(conn_ud(Op::Cancel, token)),
                );
            }
            // Its entry in `starved` or `paused` is passed over when its turn comes.
            RecvState::Starved | RecvState::Paused | RecvState::Held => {
                conn.recv = RecvState::Ended
            }
            // Cancelling already: the recv's last CQE is on its way.
            RecvState::Cancelling | RecvState::Ended => {}
        }
        if conn.send.is_some() {
            // A send stuck on a peer that does not read would otherwise hold the socket (and
            // `Closed`) forever; the CQE still reports how much went out.
            conn.inflight += 1;
            sqes[1] = Some(
                opcode::AsyncCancel::new(conn_ud(Op::Send, token))
                    .build()
                    .user_data(conn_ud(Op::Cancel, token)),
            );
        }
        conn.inflight += 1;
        // Cancels go first; the close needs no ordering with them (in-flight ops hold their own
        // file reference, and cancelling by user_data does not use the fd).
        for sqe in sqes.into_iter().flatten() {
            self.push(sqe);
        }
        let sqe = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(conn_ud(Op::Close, token));
        self.push(sqe);
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
        let index = buf.0 as usize;
        if !self.pool.lent.get(index).copied().unwrap_or(false) {
            return &[];
        }
        let len = len.min(self.pool.size);
        // SAFETY: `index < entries`, so the buffer lies inside the pool allocation; it is lent,
        // so the kernel will not write to it before `recycle`, which takes `&mut self` and so
        // cannot run while this borrow lives; the allocation is zero-initialised, so all bytes
        // are initialised.
        unsafe {
            std::slice::from_raw_parts(self.pool.data.as_ptr().add(index * self.pool.size), len)
        }
    }

    fn trim(&mut self) {
        // Spare buffers are the kernel's to fill only once back in the ring: always safe.
        for &bid in &self.pool.spare {
            self.pool
                .data
                .release(usize::from(bid) * self.pool.size, self.pool.size);
        }
        // Those in the ring only with DEFER_TASKRUN: the kernel then fills buffers only inside
        // `wait`, so once `wait` left the completion queue empty, every buffer the shard does
        // not hold sits untouched. Otherwise a receive may have filled one whose completion is
        // not reaped yet, and releasing it would lose those bytes.
        if self.setup != DEFER_SETUP || !self.ring.completion().is_empty() {
            return;
        }
        let pool = &self.pool;
        release_runs(&pool.lent, pool.size, |start, len| {
            pool.data.release(start, len)
        });
    }

    fn recycle(&mut self, buf: BufId) {
        let index = buf.0 as usize;
        // Only a lent buffer goes back: recycling twice would put one buffer in two ring slots.
        if let Some(lent) = self.pool.lent.get_mut(index) {
            if *lent {
                *lent = false;
                self.pool.put_back(buf.0);
            }
        }
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
                if let Completion::Accepted { fd } = completion {
                    // SAFETY: a socket accepted while we were shutting down: nobody else knows
                    // it, so it is ours to close.
                    unsafe { libc::close(fd) };
                }
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
            self.pool.leak = true;
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream};
    use std::sync::mpsc;
    use std::thread;

    /// Upper bound on any wait loop in these tests: a bug fails the test instead of hanging it.
    const LIMIT: Duration = Duration::from_secs(3);

    fn backend(buffers: u16, buffer_size: u32) -> UringBackend {
        UringBackend::new(PoolConfig {
            buffers,
            buffer_size,
            ..PoolConfig::default()
        })
        .expect("io_uring backend")
    }

    fn listener() -> (Socket, SocketAddr) {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.listen(128).unwrap();
        s.set_nonblocking(true).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        (s, addr)
    }

    /// Waits (in short slices), handing every completion to `seen`, until `seen` has returned
    /// true (the rest of that batch is still handed over).
    fn pump(b: &mut UringBackend, mut seen: impl FnMut(&mut UringBackend, Completion) -> bool) {
        let start = Instant::now();
        let mut out = Vec::new();
        let mut done = false;
        while !done {
            assert!(start.elapsed() < LIMIT, "timed out waiting for completions");
            b.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
            for c in out.drain(..) {
                done |= seen(b, c);
            }
        }
    }

    /// Listens, connects one client, registers the accepted socket under `token`.
    fn connected(b: &mut UringBackend, token: Token) -> (Socket, TcpStream, RawFd) {
        let (l, addr) = listener();
        b.listen(l.as_raw_fd()).unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let mut fd = None;
        pump(b, |_, c| match c {
            Completion::Accepted { fd: f } => {
                fd = Some(f);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let fd = fd.unwrap();
        b.register(token, fd).unwrap();
        (l, client, fd)
    }

    /// A steady stream through a pool of 512 buffers cycles through a few of them, not all:
    /// the ring holds only what the load needs, refilled most recently used first.
    #[test]
    fn a_steady_stream_reuses_a_few_buffers() {
        // A read budget of four buffers a turn.
        let mut b = UringBackend::new(PoolConfig {
            buffers: 512,
            buffer_size: 16 << 10,
            read_budget: 64 << 10,
        })
        .unwrap();
        let token = Token::new(0, 1);
        let (_l, mut client, fd) = connected(&mut b, token);
        let writer = thread::spawn(move || {
            let chunk = vec![7u8; 64 << 10];
            for _ in 0..64 {
                client.write_all(&chunk).unwrap();
            }
            client
        });
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        pump(&mut b, |b, c| match c {
            Completion::Received { buf, len, .. } => {
                seen.insert(buf.0);
                total += len;
                b.recycle(buf);
                total == 64 * (64 << 10)
            }
            other => panic!("unexpected {other:?}"),
        });
        assert!(
            seen.len() <= 32,
            "{} of 512 buffers used for one socket",
            seen.len()
        );
        let _client = writer.join().unwrap();
        b.close(token, fd);
        pump(&mut b, |_, c| matches!(c, Completion::Closed { .. }));
    }

    #[test]
    fn the_ring_deepens_on_enobufs_and_shallows_when_idle() {
        let mut pool = BufPool::new(PoolConfig {
            buffers: 64,
            buffer_size: 4096,
            ..PoolConfig::default()
        })
        .unwrap();
        assert_eq!((pool.in_ring, pool.spare.len()), (16, 48));
        // The kernel takes ten; the refill puts back the most recently returned first.
        for _ in 0..10 {
            pool.taken();
        }
        pool.put_back(5);
        pool.refill();
        assert_eq!(pool.in_ring, 16);
        assert!(
            !pool.spare.contains(&5),
            "the hot buffer went back in first"
        );
        pool.grow();
        pool.refill();
        assert_eq!(pool.in_ring, 32);
        pool.grow();
        pool.grow();
        assert_eq!(pool.depth, 64, "never past the pool");
        // A second with little use: the depth halves, down to the floor over time.
        let mut now = Instant::now() + DEPTH_DECAY;
        for expect in [32, 16, 16] {
            pool.decay(now);
            assert_eq!(pool.depth, expect);
            now += DEPTH_DECAY;
        }
        // A second in which most of it was used keeps it.
        pool.grow();
        for _ in 0..20 {
            pool.taken();
        }
        pool.refill();
        pool.decay(now);
        assert_eq!(pool.depth, 32);
    }

    #[test]
    fn idle_wait_times_out_empty() {
        let mut b = backend(8, 4096);
        assert_eq!(b.name(), "io_uring");
        let mut out = Vec::new();
        let start = Instant::now();
        b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        let took = start.elapsed();
        assert!(out.is_empty(), "{out:?}");
        assert!(took >= Duration::from_millis(9), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
        // A zero timeout polls and returns at once.
        b.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn setup_uses_defer_taskrun_here() {
        // Kernel 6.18 in CI: the first choice must stick (a fallback would be a regression).
        let b = backend(8, 4096);
        assert_eq!(b.setup(), "single_issuer+defer_taskrun");
    }

    #[test]
    fn bad_pool_is_rejected() {
        for (buffers, buffer_size) in [(0, 4096), (3, 4096), (8, 0)] {
            assert!(UringBackend::new(PoolConfig {
                buffers,
                buffer_size,
                ..PoolConfig::default()
            })
            .is_err());
        }
    }

    #[test]
    fn pending_wake_returns_at_once() {
        let mut b = backend(8, 4096);
        b.waker().wake();
        let mut out = Vec::new();
        let start = Instant::now();
        b.wait(Some(LIMIT), &mut out).unwrap();
        assert!(matches!(out[..], [Completion::Woken]), "{out:?}");
        assert!(start.elapsed() < Duration::from_secs(1));
        // Drained: the next wait idles.
        out.clear();
        b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn waker_wakes_unbounded_wait_from_another_thread() {
        let mut b = backend(8, 4096);
        let token = Token::new(0, 1);
        let (_l, client, _fd) = connected(&mut b, token);
        let waker = b.waker();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let helper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            waker.wake();
            // If the wake is lost, unblock the wait with data instead so the test fails rather
            // than hangs.
            if stop_rx.recv_timeout(LIMIT).is_err() {
                (&client).write_all(b"fallback").unwrap();
            }
            client
        });
        let mut out = Vec::new();
        let start = Instant::now();
        b.wait(None, &mut out).unwrap();
        let _ = stop_tx.send(());
        let _client = helper.join().unwrap();
        assert!(
            out.iter().any(|c| matches!(c, Completion::Woken)),
            "{out:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn trim_releases_buffers_the_shard_does_not_hold() {
        let mut b = backend(4, 8192);
        let token = Token::new(1, 1);
        let (_l, mut client, _fd) = connected(&mut b, token);
        let mut received = Vec::new();
        for byte in [b'a', b'b'] {
            client.write_all(&[byte; 100]).unwrap();
            pump(&mut b, |_, c| match c {
                Completion::Received { buf, len, .. } => {
                    received.push((buf, len));
                    true
                }
                other => panic!("unexpected {other:?}"),
            });
        }
        let (held, held_len) = received[0];
        let (returned, _) = received[1];
        b.recycle(returned);
        let mut out = Vec::new();
        b.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
        b.trim();
        assert_eq!(
            b.buffer(held, held_len),
            [b'a'; 100],
            "a held buffer keeps its bytes"
        );
        let at = usize::from(returned.0) * b.pool.size;
        assert!(
            b.pool.data.as_slice()[at..at + 100].iter().all(|&x| x == 0),
            "a returned buffer was given back (reads as zeros)"
        );
        // Released buffers take data again.
        b.recycle(held);
        client.write_all(b"after trim").unwrap();
        pump(&mut b, |b, c| match c {
            Completion::Received { buf, len, .. } => {
                assert_eq!(b.buffer(buf, len), b"after trim");
                true
            }
            other => panic!("unexpected {other:?}"),
        });
    }

    #[test]
    fn accept_receive_send_eof_close() {
        let mut b = backend(16, 4096);
        let token = Token::new(3, 7);
        let (_l, mut client, fd) = connected(&mut b, token);

        // Client → server.
        client.write_all(b"hello, ring").unwrap();
        let mut got = Vec::new();
        pump(&mut b, |b, c| match c {
            Completion::Received { token: t, buf, len } => {
                assert_eq!(t, token);
                got.extend_from_slice(b.buffer(buf, len));
                b.recycle(buf);
                // Recycled: no longer readable.
                assert!(b.buffer(buf, len).is_empty());
                got.len() >= 11
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(got, b"hello, ring");

        // Server → client: several chunks, one of them large enough to need several writes.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let chunks = vec![
            Bytes::from_static(b"first "),
            Bytes::from_static(b"second "),
            Bytes::from(big.clone()),
            Bytes::from_static(b"last"),
        ];
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let total = expected.len();
        let reader = {
            let mut client = client.try_clone().unwrap();
            thread::spawn(move || {
                let mut buf = vec![0; total];
                client.set_read_timeout(Some(LIMIT)).unwrap();
                client.read_exact(&mut buf).unwrap();
                buf
            })
        };
        b.send(token, fd, chunks.clone());
        let mut sent = None;
        pump(&mut b, |_, c| match c {
            Completion::Sent {
                token: t,
                result,
                chunks,
            } => {
                assert_eq!(t, token);
                sent = Some((result.unwrap(), chunks));
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let (n, returned) = sent.unwrap();
        assert_eq!(n, total, "MSG_WAITALL: one completion for the whole batch");
        assert_eq!(returned, chunks);
        assert_eq!(reader.join().unwrap(), expected);

        // Client shuts its side → Eof.
        client.shutdown(Shutdown::Write).unwrap();
        let mut eof = false;
        pump(&mut b, |_, c| match c {
            Completion::Eof { token: t } => {
                assert_eq!(t, token);
                eof = true;
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        assert!(eof);

        // Half-close our side too, then close → Closed, exactly once.
        b.shutdown_write(token, fd);
        b.close(token, fd);
        let mut closed = 0;
        pump(&mut b, |_, c| match c {
            Completion::Closed { token: t } => {
                assert_eq!(t, token);
                closed += 1;
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let mut out = Vec::new();
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(closed, 1);
        // The peer sees our FIN.
        let mut rest = Vec::new();
        client.set_read_timeout(Some(LIMIT)).unwrap();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        // The slot is free again: the next generation can register.
        assert!(b.slot_of(token).is_none());
    }

    #[test]
    fn close_reports_inflight_send_before_closed() {
        let mut b = backend(16, 4096);
        let stuck = Token::new(0, 1);
        let quick = Token::new(1, 1);
        let (_l, _client, fd) = connected(&mut b, stuck);
        let (_l2, mut client2, fd2) = connected(&mut b, quick);

        // A send the peer never reads stays in flight (socket buffers fill up); close cancels it.
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        b.send(stuck, fd, vec![chunk; 32]);
        let mut out = Vec::new();
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(
            out.is_empty(),
            "a 32 MiB send to a non-reader cannot finish: {out:?}"
        );
        b.close(stuck, fd);

        // A small send completes normally; a close in the same turn still reports it first.
        b.send(quick, fd2, vec![Bytes::from_static(b"bye")]);
        b.close(quick, fd2);

        let mut events: Vec<(Token, &'static str)> = Vec::new();
        pump(&mut b, |_, c| {
            match c {
                Completion::Sent {
                    token,
                    result,
                    chunks,
                } => {
                    if token == stuck {
                        assert_eq!(chunks.len(), 32);
                        match result {
                            Ok(n) => assert!(n < 32 << 20),
                            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECANCELED)),
                        }
                    } else {
                        assert_eq!(result.unwrap(), 3);
                    }
                    events.push((token, "sent"));
                }
                Completion::Closed { token } => events.push((token, "closed")),
                other => panic!("unexpected {other:?}"),
            }
            events.iter().filter(|e| e.1 == "closed").count() == 2
        });
        for t in [stuck, quick] {
            let mine: Vec<_> = events.iter().filter(|e| e.0 == t).map(|e| e.1).collect();
            assert_eq!(mine, ["sent", "closed"], "{t:?}: {events:?}");
        }
        let mut out = Vec::new();
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "nothing after Closed: {out:?}");
        let mut got = Vec::new();
        client2.set_read_timeout(Some(LIMIT)).unwrap();
        client2.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye");
    }

    #[test]
    fn pool_exhaustion_is_never_reported_and_loses_nothing() {
        const CLIENTS: usize = 16;
        const BYTES: usize = 64 * 1024;
        let pattern = |id: usize, i: usize| ((id * 31 + i) % 251) as u8;
        let mut b = backend(4, 4096);
        let (l, addr) = listener();
        b.listen(l.as_raw_fd()).unwrap();
        let writers: Vec<_> = (0..CLIENTS)
            .map(|id| {
                thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let mut data = vec![id as u8];
                    data.extend((0..BYTES).map(|i| pattern(id, i)));
                    s.write_all(&data).unwrap();
                    s.shutdown(Shutdown::Write).unwrap();
                    s
                })
            })
            .collect();

        let mut next = 0usize;
        let mut fds: HashMap<Token, RawFd> = HashMap::new();
        let mut data: HashMap<Token, Vec<u8>> = HashMap::new();
        let mut eofs = 0;
        let mut held: Vec<BufId> = Vec::new();
        let start = Instant::now();
        let mut out = Vec::new();
        while eofs < CLIENTS {
            assert!(start.elapsed() < LIMIT, "timed out: {eofs} EOFs");
            b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
            let idle = out.is_empty();
            for c in out.drain(..) {
                match c {
                    Completion::Accepted { fd } => {
                        let token = Token::new(next, 1);
                        next += 1;
                        b.register(token, fd).unwrap();
                        fds.insert(token, fd);
                    }
                    Completion::Received { token, buf, len } => {
                        data.entry(token)
                            .or_default()
                            .extend_from_slice(b.buffer(buf, len));
                        held.push(buf);
                    }
                    Completion::Eof { .. } => eofs += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            // Hold buffers across waits so the pool runs dry; give them back in batches.
            if held.len() >= 3 || idle {
                for buf in held.drain(..) {
                    b.recycle(buf);
                }
            }
        }
        assert!(b.enobufs > 0, "the test must exhaust the pool");
        assert_eq!(data.len(), CLIENTS);
        let mut ids = Vec::new();
        for bytes in data.values() {
            let id = bytes[0] as usize;
            ids.push(id);
            assert_eq!(bytes.len(), BYTES + 1, "client {id}");
            assert!(
                bytes[1..]
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| v == pattern(id, i)),
                "client {id}: bytes out of order or corrupted"
            );
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..CLIENTS).collect::<Vec<_>>());
        for buf in held.drain(..) {
            b.recycle(buf);
        }
        for (&token, &fd) in &fds {
            b.close(token, fd);
        }
        let mut closed = 0;
        pump(&mut b, |_, c| match c {
            Completion::Closed { .. } => {
                closed += 1;
                closed == CLIENTS
            }
            other => panic!("unexpected {other:?}"),
        });
        for w in writers {
            w.join().unwrap();
        }
    }

    #[test]
    fn stop_accepting_stops_accepts() {
        let mut b = backend(8, 4096);
        let (l, addr) = listener();
        b.listen(l.as_raw_fd()).unwrap();
        let mut out = Vec::new();
        // Submit the accept, then its cancel, before anyone connects.
        b.wait(Some(Duration::ZERO), &mut out).unwrap();
        b.stop_accepting();
        b.wait(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        // Connects complete in the kernel backlog, but nobody accepts them any more.
        let _c = TcpStream::connect(addr).unwrap();
        b.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn unknown_tokens_are_refused_not_sent() {
        let mut b = backend(8, 4096);
        let token = Token::new(5, 2);
        b.send(token, -1, vec![Bytes::from_static(b"x")]);
        assert!(b.buffer(BufId(0), 10).is_empty(), "buffer 0 is not lent");
        b.recycle(BufId(0)); // not lent: ignored, the pool stays consistent
        let mut out = Vec::new();
        b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        match &out[..] {
            [Completion::Sent {
                token: t,
                result: Err(e),
                chunks,
            }] => {
                assert_eq!(*t, token);
                assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
                assert_eq!(chunks.len(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(b.pool.in_ring, 8);
    }

    #[test]
    fn failing_accept_is_rearmed_once_per_wait() {
        let mut b = backend(8, 4096);
        // Bound but not listening: every accept fails at once with EINVAL. Not a resource
        // error, so no rest: re-armed at the next wait, never inside one. (EMFILE rests:
        // `accept_tests`.)
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.set_nonblocking(true).unwrap();
        b.listen(s.as_raw_fd()).unwrap();
        let mut out = Vec::new();
        for _ in 0..3 {
            b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
            match &out[..] {
                [Completion::AcceptFailed(e)] => assert_eq!(e.raw_os_error(), Some(libc::EINVAL)),
                other => panic!("expected one AcceptFailed per wait, got {other:?}"),
            }
            out.clear();
        }
        b.stop_accepting();
        b.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_connection_starved_of_buffers_skips_without_one() {
        let byte = |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
        let mut b = backend(1, 1024);
        let token = Token::new(0, 1);
        let (_l, mut client, fd) = connected(&mut b, token);
        let data: Vec<u8> = (0..10_000).map(byte).collect();
        client.write_all(&data).unwrap();
        // The only buffer is held, so the recv runs out of buffers and parks.
        let mut held = None;
        pump(&mut b, |_, c| match c {
            Completion::Received { buf, len, .. } => {
                assert_eq!(len, 1024);
                held = Some(buf);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        let start = Instant::now();
        while b.enobufs == 0 {
            assert!(start.elapsed() < LIMIT, "the recv never ran out of buffers");
            let mut out = Vec::new();
            b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
            assert!(out.is_empty(), "{out:?}");
        }
        assert_eq!(b.conns[0].as_ref().unwrap().recv, RecvState::Starved);
        b.skip(token, fd, 5_000);
        let mut skipped = 0;
        pump(&mut b, |_, c| match c {
            Completion::Skipped { len, .. } => {
                skipped += len;
                skipped == 5_000
            }
            other => panic!("unexpected {other:?}"),
        });
        b.recycle(held.unwrap());
        let mut got = Vec::new();
        pump(&mut b, |b, c| match c {
            Completion::Received { buf, len, .. } => {
                got.extend_from_slice(b.buffer(buf, len));
                b.recycle(buf);
                got.len() == 10_000 - 6_024
            }
            other => panic!("unexpected {other:?}"),
        });
        assert!(got == data[6_024..], "the bytes after the skip");
        b.close(token, fd);
        pump(&mut b, |_, c| matches!(c, Completion::Closed { .. }));
    }

    #[test]
    fn after_a_skip_a_header_is_read_and_the_next_skip_needs_no_cancel() {
        let byte = |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
        let mut b = backend(16, 4096);
        let token = Token::new(0, 1);
        let (_l, mut client, fd) = connected(&mut b, token);
        let data: Vec<u8> = (0..100_000).map(byte).collect();
        client.write_all(&data[..1_000]).unwrap();
        let mut got = Vec::new();
        pump(&mut b, |b, c| match c {
            Completion::Received { buf, len, .. } => {
                got.extend_from_slice(b.buffer(buf, len));
                b.recycle(buf);
                got.len() == 1_000
            }
            other => panic!("unexpected {other:?}"),
        });
        b.skip(token, fd, 10_000);
        // Everything the socket will hold for a while: the skip, then far more than a buffer.
        client.write_all(&data[1_000..]).unwrap();
        let mut skipped = 0;
        let mut probe = None;
        pump(&mut b, |b, c| match c {
            Completion::Skipped { len, .. } => {
                skipped += len;
                false
            }
            Completion::Received { buf, len, .. } => {
                assert!(probe.is_none(), "more than the probe was read");
                probe = Some(b.buffer(buf, len).to_vec());
                b.recycle(buf);
                true
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(skipped, 10_000);
        let probe = probe.unwrap();
        assert!(
            probe.len() <= PROBE_LEN,
            "the probe read {} bytes",
            probe.len()
        );
        assert!(probe == data[11_000..11_000 + probe.len()]);
        let conn = b.conns[0].as_ref().unwrap();
        assert_eq!((conn.recv, conn.inflight), (RecvState::Paused, 0));
        // Asked in the turn the probe delivered: straight to dropping, nothing to cancel.
        b.skip(token, fd, 5_000);
        let conn = b.conns[0].as_ref().unwrap();
        assert_eq!((conn.recv, conn.inflight), (RecvState::Skipping, 1));
        let mut at = 11_000 + probe.len() + 5_000;
        let mut skipped = 0;
        pump(&mut b, |b, c| match c {
            Completion::Skipped { len, .. } => {
                skipped += len;
                false
            }
            Completion::Received { buf, len, .. } => {
                assert!(b.buffer(buf, len) == &data[at..at + len], "at {at}");
                at += len;
                b.recycle(buf);
                at == data.len()
            }
            other => panic!("unexpected {other:?}"),
        });
        assert_eq!(skipped, 5_000);
        // Not asked again: the multishot recv took over and read the rest.
        assert_eq!(b.conns[0].as_ref().unwrap().recv, RecvState::Armed);
        b.close(token, fd);
        pump(&mut b, |_, c| matches!(c, Completion::Closed { .. }));
    }

    #[test]
    fn quiesce_reaps_every_op_before_memory_is_freed() {
        let mut b = backend(8, 4096);
        let token = Token::new(0, 1);
        // A listener (multishot accept), a connection (multishot recv) and a send that cannot
        // finish: all in flight when the backend goes away.
        let (_l, _client, fd) = connected(&mut b, token);
        b.send(token, fd, vec![Bytes::from(vec![1u8; 1 << 20]); 32]);
        let mut out = Vec::new();
        b.wait(Some(Duration::from_millis(10)), &mut out).unwrap();
        assert!(
            b.in_flight >= 4,
            "waker, accept, recv, send: {}",
            b.in_flight
        );
        let start = Instant::now();
        assert!(b.quiesce(), "every CQE arrives");
        assert_eq!(b.in_flight, 0);
        assert!(start.elapsed() < Duration::from_millis(500));
        drop(b);
        // SAFETY: the shard's fd, closed by nobody else in this test.
        unsafe { libc::close(fd) };
    }
}
