//! The receive pool: the buffers multishot receives fill, lent to the kernel through a provided
//! buffer ring, and the ring's adaptive depth.
//!
//! - **Ring depth**: the ring holds only as many buffers as the load needs (at least
//!   [`MIN_DEPTH`]), the rest wait in a stack and go back into the ring most recently used
//!   first; the depth doubles on ENOBUFS and halves after a second of little use, when the spare
//!   buffers' memory is given back. The kernel takes ring buffers in order, so a ring of all 512
//!   had any steady stream touch the whole pool (a flood of one socket left 32 MiB resident).
//! - **Recycling**: [`BufPool::give_back`] (the shard's `recycle`) returns a buffer to the spare
//!   stack at once, but the ring tail is published (one release store) only by
//!   [`BufPool::publish`], at the start of each wait. With `DEFER_TASKRUN` the kernel runs
//!   receives only inside the backend's `io_uring_enter`, so a tail published right before
//!   entering is never late, and one store per loop turn replaces one per buffer.

use std::alloc::{self, Layout};
use std::io;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types;

use crate::reactor::pool_mem::PoolMem;
use crate::reactor::{release_runs, PoolConfig, SKIP_CHUNK};

/// The buffer group of the pool (each backend has its own ring, so one group suffices).
pub(super) const BGID: u16 = 0;

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
pub(super) struct BufPool {
    /// The ring (`entries` slots), page-aligned as the kernel requires.
    ring: *mut RingSlot,
    ring_layout: Layout,
    /// The buffers, back to back, in a mapping of their own (never freed while the kernel may
    /// still write into it: see `leak`).
    data: ManuallyDrop<PoolMem>,
    /// Where truncating receives point ([`SKIP_CHUNK`] bytes): never read, and on TCP never
    /// written, so it costs address space only. Kept (or leaked) with the buffers, for the same
    /// reason.
    sink: ManuallyDrop<PoolMem>,
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
    /// Maps a pool of `cfg.buffers` × `cfg.buffer_size` bytes (and the skip sink) and fills the
    /// ring to its first depth; nothing is registered with a ring yet.
    pub(super) fn new(cfg: PoolConfig) -> io::Result<Self> {
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
        // Zero-filled by the kernel, so every byte `lent_bytes()` can expose is initialised,
        // whatever `len` the shard passes.
        let mapped = PoolMem::new(total).and_then(|data| {
            let sink = PoolMem::new(SKIP_CHUNK)?;
            Ok((data, sink))
        });
        let (data, sink) = match mapped {
            Ok((data, sink)) => (ManuallyDrop::new(data), ManuallyDrop::new(sink)),
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

    /// The ring's address, for registering it with the kernel.
    pub(super) fn ring_addr(&self) -> u64 {
        self.ring as u64
    }

    /// How many buffers (and ring slots) the pool has; buffer ids are below this.
    pub(super) fn entries(&self) -> u16 {
        self.entries
    }

    /// Buffers the kernel can still pick: the most receives that can be armed without one of
    /// them running dry at once.
    pub(super) fn in_ring(&self) -> u32 {
        self.in_ring
    }

    /// Where a truncating receive points: [`SKIP_CHUNK`] bytes the kernel may be asked to fill
    /// (on TCP it never writes there).
    pub(super) fn sink(&self) -> *mut u8 {
        self.sink.as_ptr()
    }

    /// Returns buffer `bid` to the pool: to the spare stack, from where [`BufPool::refill`]
    /// puts it back in the ring.
    pub(super) fn put_back(&mut self, bid: u16) {
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
    pub(super) fn grow(&mut self) {
        self.depth = (self.depth * 2).min(u32::from(self.entries));
    }

    /// Once a second: halves the depth if at most a quarter of it was used, and gives the
    /// memory of the spare buffers (the surplus, once the ring is refilled) back to the kernel.
    pub(super) fn decay(&mut self, now: Instant) {
        if now < self.next_decay {
            return;
        }
        self.next_decay = now + DEPTH_DECAY;
        if self.peak_used * 4 <= self.depth && self.depth > MIN_DEPTH {
            self.depth = (self.depth / 2).max(MIN_DEPTH);
        }
        self.peak_used = 0;
        self.release_spare();
    }

    /// Refills the ring and makes every slot written so far visible to the kernel.
    pub(super) fn publish(&mut self) {
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

    /// The kernel picked a buffer for a completion.
    pub(super) fn taken(&mut self) {
        self.in_ring = self.in_ring.saturating_sub(1);
    }

    /// Buffer `bid` goes to the shard with a `Received`, until [`BufPool::give_back`].
    pub(super) fn lend(&mut self, bid: u16) {
        self.lent[usize::from(bid)] = true;
    }

    /// The shard returns buffer `bid`. Only a lent buffer goes back: returning one twice would
    /// put one buffer in two ring slots, so anything else is ignored.
    pub(super) fn give_back(&mut self, bid: u16) {
        if let Some(lent) = self.lent.get_mut(usize::from(bid)) {
            if *lent {
                *lent = false;
                self.put_back(bid);
            }
        }
    }

    /// The first `len` bytes (at most a buffer) of buffer `bid` if it is lent, else nothing.
    pub(super) fn lent_bytes(&self, bid: u16, len: usize) -> &[u8] {
        let index = usize::from(bid);
        if !self.lent.get(index).copied().unwrap_or(false) {
            return &[];
        }
        let len = len.min(self.size);
        // SAFETY: `index < entries`, so the buffer lies inside the pool allocation; it is lent,
        // so the kernel will not write to it before `give_back`, which takes `&mut self` and so
        // cannot run while this borrow lives; the allocation is zero-initialised, so all bytes
        // are initialised.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().add(index * self.size), len) }
    }

    /// Gives the memory of the spare buffers back to the kernel (the pages fault in again,
    /// zeroed). Always safe: the kernel fills a buffer only once it is back in the ring.
    pub(super) fn release_spare(&self) {
        for &bid in &self.spare {
            self.data.release(usize::from(bid) * self.size, self.size);
        }
    }

    /// Gives the memory of every buffer the shard does not hold back to the kernel, those in
    /// the ring included: only when the kernel cannot be filling ring buffers meanwhile
    /// (`DEFER_TASKRUN`, outside a wait, with no completion left unreaped), or the bytes of a
    /// receive not yet reaped would be lost.
    pub(super) fn release_unlent(&self) {
        release_runs(&self.lent, self.size, |start, len| {
            self.data.release(start, len)
        });
    }

    /// Never frees the memory: the kernel may still write into it (a `Drop` or a start-up
    /// probe that timed out).
    pub(super) fn leak(&mut self) {
        self.leak = true;
    }

    /// The whole of buffer `bid`, lent or not, for tests that check what a release did.
    #[cfg(test)]
    pub(super) fn raw(&self, bid: u16) -> &[u8] {
        let at = usize::from(bid) * self.size;
        &self.data.as_slice()[at..at + self.size]
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
            ManuallyDrop::drop(&mut self.data);
            ManuallyDrop::drop(&mut self.sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bad_pool_is_rejected() {
        for (buffers, buffer_size) in [(0, 4096), (3, 4096), (8, 0)] {
            assert!(BufPool::new(PoolConfig {
                buffers,
                buffer_size,
                ..PoolConfig::default()
            })
            .is_err());
        }
    }
}
