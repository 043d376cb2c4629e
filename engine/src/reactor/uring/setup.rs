//! Ring setup and feature probing: the ring a backend runs on, and the proof, before any
//! connection depends on it, that the kernel does what the backend needs.
//!
//! `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` (6.1+), else `COOP_TASKRUN | SUBMIT_ALL`, else
//! no flags, each fallback on `EINVAL`. [`open`] then registers the buffer ring and runs one
//! real multishot recv over a socketpair, so it fails (and `reactor::create(Auto)` falls back to
//! epoll) wherever any part is missing: io_uring disabled or filtered (ENOSYS/EPERM), no buffer
//! rings (< 5.19), no multishot recv (< 6.0), no EXT_ARG waits (< 5.11). A second socketpair
//! run tells whether a multishot recv can be capped in bytes (the read budget, 6.17+).
//!
//! The ring fd is not registered (`IORING_REGISTER_RING_FDS`): io-uring 0.7 keeps the registered
//! index inside the `Submitter`, which `IoUring::submitter()` rebuilds on every call, so the
//! registration would occupy a slot and never be used. It would save one fd lookup per enter.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::buf_pool::{BufPool, BGID};
use super::user_data::{plain_ud, Op};

/// Submission queue entries. A shard submits once per loop turn; 4096 covers a burst of that
/// many new connections or sends in one turn, and a fuller queue is submitted early (see the
/// backend's `push`).
const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries: multishot ops post many CQEs per SQE, so give them room. Overflow
/// is still handled (the kernel parks CQEs, the backend flushes them), it is just slower.
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

/// The name of the preferred ring setup, under which the kernel fills receive buffers only
/// while the shard waits.
pub(super) const DEFER_SETUP: &str = "single_issuer+defer_taskrun";

/// A ring ready for the backend, and what the kernel turned out to allow.
pub(super) struct Opened {
    /// The ring, with the pool's buffer ring registered.
    pub(super) ring: IoUring,
    /// Which setup the kernel accepted ([`DEFER_SETUP`], `"coop_taskrun"` or `"plain"`).
    pub(super) setup: &'static str,
    /// Whether a multishot recv can be capped in total bytes ([`with_recv_limit`]).
    pub(super) recv_limit: bool,
}

/// Sets up a ring with the best setup the kernel accepts, registers `pool` as its provided
/// buffer ring and proves multishot receive on it. The pool must outlive the ring: its owner
/// drops the ring first (on an error here, the ring is dropped before returning).
pub(super) fn open(pool: &mut BufPool) -> io::Result<Opened> {
    let (mut ring, setup) = build_ring()?;
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks EXT_ARG or NODROP (kernel < 5.11)",
        ));
    }
    // SAFETY: the ring memory (`pool`'s ring, `entries` slots, page-aligned) lives in the pool,
    // which outlives the ring: the caller drops the ring before the pool, and on the early
    // returns below the ring, local here, is dropped first.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(pool.ring_addr(), pool.entries(), BGID, 0)?;
    }
    pool.publish();
    probe_multishot_recv(&mut ring, pool)?;
    let recv_limit = probe_recv_limit(&mut ring, pool);
    Ok(Opened {
        ring,
        setup,
        recv_limit,
    })
}

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
            pool.leak();
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
                pool.leak();
                return Err(e);
            }
        }
        let mut finished = false;
        for cqe in ring.completion() {
            let flags = cqe.flags();
            if let Some(b) = cqueue::buffer_select(flags).filter(|&b| b < pool.entries()) {
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
pub(super) fn with_recv_limit(mut sqe: squeue::Entry, limit: u32) -> squeue::Entry {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_uses_defer_taskrun_here() {
        // Kernel 6.18 in CI: the first choice must stick (a fallback would be a regression).
        let (_ring, setup) = build_ring().expect("io_uring");
        assert_eq!(setup, DEFER_SETUP);
    }
}
