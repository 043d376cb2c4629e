//! Masking and unmasking payloads (RFC 6455 5.3).
//!
//! Every byte a client sends is XORed with a 4-byte key, so a server touches every payload byte
//! here; this is the hottest loop of the receive path. The design choices follow from that:
//!
//! - The key is rotated by `phase` once per call, so every kernel XORs from a key-aligned start
//!   and the inner loops are plain wide XORs with a constant.
//! - One raw-pointer kernel per instruction set serves both the in-place ([`apply_mask`]) and the
//!   copying ([`unmask_into`], [`extend_masked`]) forms; `dst == src` is allowed, partial overlap
//!   never happens because the public functions take `&mut` and `&` slices.
//! - The last partial vector is handled by loading the final full-width window of the input
//!   *before* the main loop and storing it afterwards. That overlaps bytes already written, but
//!   with the same values (it was loaded before anything was written), so in-place masking stays
//!   correct and no byte-by-byte tail loop is needed.
//! - Inputs under 16 bytes (the common small frame) never reach the dispatcher: two overlapping
//!   word-sized XORs cover them.

use std::mem::MaybeUninit;

/// XORs `buf` in place with the masking `key`, starting at key byte `phase` (0..=3; higher values
/// are taken modulo 4).
///
/// Used to mask outgoing client frames and to unmask a payload that already sits in its final
/// buffer. Pass the returned phase to the next call when a payload arrives in pieces.
///
/// Returns the phase after the last byte: `(phase + buf.len()) & 3`.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let len = buf.len();
    let ptr = buf.as_mut_ptr();
    // SAFETY: `ptr` is valid for reads and writes of `len` bytes (it comes from `buf`); the
    // kernels support `dst == src` exactly, which is the in-place case.
    unsafe { xor_raw(ptr, ptr, len, rotate_key(key, phase)) };
    phase.wrapping_add(len) & 3
}

/// Writes `src` XORed with the masking `key` (starting at key byte `phase`) into `dst`, reading
/// the payload once. Returns the phase after the last byte, for the next piece of the payload.
///
/// This is the fused copy-and-unmask used to move a payload out of the receive buffer. Callers
/// pass `dst.len() == src.len()`; if they differ, only the first `min(dst.len(), src.len())`
/// bytes are written and the returned phase accounts for exactly those bytes (no panic).
#[inline]
pub fn unmask_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], phase: usize) -> usize {
    let len = dst.len().min(src.len());
    // SAFETY: `dst` is valid for `len` writes and `src` for `len` reads; they are distinct
    // borrows, so they cannot overlap. Writing through the `MaybeUninit<u8>` pointer as `u8`
    // is fine (same layout) and initialises those bytes.
    unsafe {
        xor_raw(
            dst.as_mut_ptr().cast::<u8>(),
            src.as_ptr(),
            len,
            rotate_key(key, phase),
        )
    };
    phase.wrapping_add(len) & 3
}

/// Appends `src` XORed with the masking `key` (starting at key byte `phase`) to `dst`, copying
/// each payload byte exactly once. Returns the phase after the last byte.
///
/// This is the receive hot path: a connection unmasks straight from its receive buffer into the
/// message being assembled, with no intermediate copy and no zero-filling of the new space.
#[inline]
pub fn extend_masked(dst: &mut bytes::BytesMut, src: &[u8], key: [u8; 4], phase: usize) -> usize {
    let n = src.len();
    dst.reserve(n);
    let spare = dst.spare_capacity_mut();
    // `reserve` guarantees room for `n` more bytes; the fallback only keeps this panic-free.
    let n = n.min(spare.len());
    let phase = unmask_into(&mut spare[..n], &src[..n], key, phase);
    let new_len = dst.len() + n;
    // SAFETY: `unmask_into` initialised the first `n` bytes of the spare capacity (it writes
    // `min(dst.len(), src.len()) == n` bytes), so `new_len` bytes are initialised and within
    // capacity.
    unsafe { dst.set_len(new_len) };
    phase
}

/// The key as seen from a payload that starts `phase` bytes into it, so kernels can start at
/// key byte 0.
#[inline(always)]
fn rotate_key(key: [u8; 4], phase: usize) -> [u8; 4] {
    // Little-endian on both sides makes the byte rotation independent of the host's endianness.
    u32::from_le_bytes(key)
        .rotate_right(8 * (phase & 3) as u32)
        .to_le_bytes()
}

/// The key word for 8-byte chunks: the rotated key twice, in memory order.
#[inline(always)]
fn key_u64(k: [u8; 4]) -> u64 {
    let w = u64::from(u32::from_ne_bytes(k));
    w | (w << 32)
}

/// A wide kernel: XORs `len` bytes from `src` into `dst` with the repeating key. Same contract
/// as [`xor_raw`], plus the kernel's minimum length (16; 32 for AVX2) and CPU feature.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 dispatches at run time
type Kernel = unsafe fn(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]);

#[cfg(target_arch = "x86_64")]
mod detect {
    use super::{x86, Kernel};
    use std::sync::atomic::{AtomicPtr, Ordering};

    /// The kernel for this CPU, found on first use. A function pointer rather than a level to
    /// match on: the dispatch is then one load and a tail jump, with no registers to save.
    static KERNEL: AtomicPtr<()> = AtomicPtr::new(detect_and_run as Kernel as *mut ());

    /// Runs the best kernel for this CPU.
    ///
    /// # Safety
    /// As [`super::xor_raw`], plus `len >= 32` (the AVX2 kernel's minimum).
    #[inline(always)]
    pub(super) unsafe fn xor_wide(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
        let f = KERNEL.load(Ordering::Relaxed);
        // SAFETY: `KERNEL` only ever holds `Kernel` pointers (its initialiser and the store
        // below), and every kernel stored there is supported by this CPU.
        unsafe { core::mem::transmute::<*mut (), Kernel>(f)(dst, src, len, k) }
    }

    /// Picks the kernel (the `is_x86_feature_detected!` check runs once per process, or a few
    /// times if threads race, which is harmless: they store the same pointer) and runs it.
    ///
    /// # Safety
    /// As [`xor_wide`].
    #[cold]
    unsafe fn detect_and_run(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
        let f: Kernel = if std::is_x86_feature_detected!("avx2") {
            x86::xor_avx2
        } else {
            x86::xor_sse2
        };
        KERNEL.store(f as *mut (), Ordering::Relaxed);
        // SAFETY: forwarded from the caller; AVX2 was just detected if `f` needs it.
        unsafe { f(dst, src, len, k) }
    }
}

#[cfg(target_arch = "x86_64")]
use detect::xor_wide;

/// NEON is part of the aarch64 baseline, so there is nothing to detect.
///
/// # Safety
/// As [`xor_raw`], plus `len >= 16`.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[inline(always)]
unsafe fn xor_wide(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
    // SAFETY: forwarded from the caller.
    unsafe { neon::xor_neon(dst, src, len, k) }
}

/// Everything else uses u64 words.
///
/// # Safety
/// As [`xor_raw`], plus `len >= 16`.
#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
)))]
#[inline(always)]
unsafe fn xor_wide(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
    // SAFETY: forwarded from the caller.
    unsafe { xor_words(dst, src, len, k) }
}

/// XORs `len` bytes from `src` with the repeating key `k` into `dst`, choosing the kernel.
///
/// # Safety
/// `src` must be valid for `len` reads and `dst` for `len` writes; they must either be equal or
/// not overlap at all.
#[inline(always)]
unsafe fn xor_raw(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
    if len < 16 {
        // SAFETY: forwarded from the caller.
        unsafe { xor_small(dst, src, len, k) };
        return;
    }
    // 16..32 bytes is two overlapping SSE2 vectors; not worth a dispatch or a call.
    #[cfg(target_arch = "x86_64")]
    if len < 32 {
        // SAFETY: forwarded from the caller; `16 <= len < 32`; SSE2 is part of x86-64.
        unsafe { x86::xor_sse2_short(dst, src, len, k) };
        return;
    }
    // SAFETY: forwarded from the caller; `len >= 16`, and `len >= 32` on x86-64.
    unsafe { xor_wide(dst, src, len, k) }
}

/// Inputs under 16 bytes: at most two overlapping word XORs, no loop.
///
/// # Safety
/// As [`xor_raw`], plus `len < 16`.
#[inline(always)]
unsafe fn xor_small(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
    // The second window ends at `len`; it starts `len & 3` key bytes later than the first.
    let k_end = rotate_key(k, len);
    if len >= 8 {
        // SAFETY: `8 <= len`, so both 8-byte windows `[0, 8)` and `[len - 8, len)` are in bounds.
        // Both are read before either is written, so `dst == src` works.
        unsafe {
            let a = src.cast::<u64>().read_unaligned();
            let b = src.add(len - 8).cast::<u64>().read_unaligned();
            dst.cast::<u64>().write_unaligned(a ^ key_u64(k));
            dst.add(len - 8)
                .cast::<u64>()
                .write_unaligned(b ^ key_u64(k_end));
        }
    } else if len >= 4 {
        // SAFETY: as above with 4-byte windows, `4 <= len`.
        unsafe {
            let a = src.cast::<u32>().read_unaligned();
            let b = src.add(len - 4).cast::<u32>().read_unaligned();
            dst.cast::<u32>().write_unaligned(a ^ u32::from_ne_bytes(k));
            dst.add(len - 4)
                .cast::<u32>()
                .write_unaligned(b ^ u32::from_ne_bytes(k_end));
        }
    } else {
        for (i, &m) in k.iter().enumerate().take(len) {
            // SAFETY: `i < len`.
            unsafe { *dst.add(i) = *src.add(i) ^ m };
        }
    }
}

/// Portable kernel: u64 words, four at a time, for targets without a vector path.
///
/// # Safety
/// As [`xor_raw`], plus `len >= 8`.
#[cfg_attr(
    any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")),
    allow(dead_code) // only the tests use it where a vector kernel exists
)]
unsafe fn xor_words(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
    let m = key_u64(k);
    let m_end = key_u64(rotate_key(k, len));
    // SAFETY: `len >= 8`, so the last 8-byte window is in bounds; loaded before any write.
    let tail = unsafe { src.add(len - 8).cast::<u64>().read_unaligned() };
    let mut i = 0;
    while i + 32 <= len {
        // SAFETY: `i + 32 <= len`; each chunk is read before it is written.
        unsafe {
            let s = src.add(i).cast::<u64>();
            let d = dst.add(i).cast::<u64>();
            let (a, b, c, e) = (
                s.read_unaligned(),
                s.add(1).read_unaligned(),
                s.add(2).read_unaligned(),
                s.add(3).read_unaligned(),
            );
            d.write_unaligned(a ^ m);
            d.add(1).write_unaligned(b ^ m);
            d.add(2).write_unaligned(c ^ m);
            d.add(3).write_unaligned(e ^ m);
        }
        i += 32;
    }
    while i + 8 <= len {
        // SAFETY: `i + 8 <= len`.
        unsafe {
            let v = src.add(i).cast::<u64>().read_unaligned();
            dst.add(i).cast::<u64>().write_unaligned(v ^ m);
        }
        i += 8;
    }
    // SAFETY: the last window is in bounds (`len >= 8`).
    unsafe { dst.add(len - 8).cast::<u64>().write_unaligned(tail ^ m_end) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    #[inline(always)]
    fn key_i32(k: [u8; 4]) -> i32 {
        i32::from_ne_bytes(k)
    }

    /// 16 to 32 bytes: two overlapping SSE2 vectors, both loaded before either is stored.
    ///
    /// # Safety
    /// As `xor_raw`, plus `16 <= len <= 32`.
    #[inline(always)]
    pub(super) unsafe fn xor_sse2_short(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
        let m = _mm_set1_epi32(key_i32(k));
        let m_end = _mm_set1_epi32(key_i32(super::rotate_key(k, len)));
        // SAFETY: `16 <= len <= 32`: `[0, 16)` and `[len - 16, len)` are in bounds and cover
        // every byte; both loads precede both stores, so `dst == src` works.
        unsafe {
            let a = _mm_loadu_si128(src.cast());
            let b = _mm_loadu_si128(src.add(len - 16).cast());
            _mm_storeu_si128(dst.cast(), _mm_xor_si128(a, m));
            _mm_storeu_si128(dst.add(len - 16).cast(), _mm_xor_si128(b, m_end));
        }
    }

    /// SSE2 kernel, for x86-64 CPUs without AVX2: 16-byte vectors, four per iteration.
    ///
    /// # Safety
    /// As `xor_raw`, plus `len >= 16`. (SSE2 is always present on x86-64.)
    pub(super) unsafe fn xor_sse2(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
        let m = _mm_set1_epi32(key_i32(k));
        let m_end = _mm_set1_epi32(key_i32(super::rotate_key(k, len)));
        // SAFETY: `len >= 16`, so the last 16-byte window is in bounds; it is loaded before any
        // store so the in-place case sees original bytes.
        let tail = unsafe { _mm_loadu_si128(src.add(len - 16).cast()) };
        let mut i = 0;
        while i + 64 <= len {
            // SAFETY: `i + 64 <= len`; loads precede the stores of the same bytes.
            unsafe {
                let s = src.add(i).cast::<__m128i>();
                let d = dst.add(i).cast::<__m128i>();
                let a = _mm_loadu_si128(s);
                let b = _mm_loadu_si128(s.add(1));
                let c = _mm_loadu_si128(s.add(2));
                let e = _mm_loadu_si128(s.add(3));
                _mm_storeu_si128(d, _mm_xor_si128(a, m));
                _mm_storeu_si128(d.add(1), _mm_xor_si128(b, m));
                _mm_storeu_si128(d.add(2), _mm_xor_si128(c, m));
                _mm_storeu_si128(d.add(3), _mm_xor_si128(e, m));
            }
            i += 64;
        }
        while i + 16 <= len {
            // SAFETY: `i + 16 <= len`.
            unsafe {
                let v = _mm_loadu_si128(src.add(i).cast());
                _mm_storeu_si128(dst.add(i).cast(), _mm_xor_si128(v, m));
            }
            i += 16;
        }
        // SAFETY: the last window is in bounds (`len >= 16`).
        unsafe { _mm_storeu_si128(dst.add(len - 16).cast(), _mm_xor_si128(tail, m_end)) };
    }

    /// AVX2 kernel: 32-byte vectors, four per iteration, with aligned stores.
    ///
    /// # Safety
    /// As `xor_raw`, plus `len >= 32` and the CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn xor_avx2(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
        let m_head = _mm256_set1_epi32(key_i32(k));
        let m_end = _mm256_set1_epi32(key_i32(super::rotate_key(k, len)));
        if len <= 128 {
            // Up to four windows, two from each end, all loaded before any store: no loop and
            // no alignment work, which would dominate at these sizes.
            let far = if len > 64 { 32 } else { 0 };
            // SAFETY: `32 <= len <= 128`: `[0, 32)`, `[far, far + 32)`, `[len - 32, len)` and
            // `[len - 32 - far, len - far)` are in bounds (`far` is 32 only when `len > 64`).
            // Everything is loaded before the first store, so `dst == src` works; overlapping
            // stores write equal values.
            unsafe {
                let a = _mm256_loadu_si256(src.cast());
                let b = _mm256_loadu_si256(src.add(far).cast());
                let c = _mm256_loadu_si256(src.add(len - 32 - far).cast());
                let d = _mm256_loadu_si256(src.add(len - 32).cast());
                _mm256_storeu_si256(dst.cast(), _mm256_xor_si256(a, m_head));
                _mm256_storeu_si256(dst.add(far).cast(), _mm256_xor_si256(b, m_head));
                _mm256_storeu_si256(dst.add(len - 32 - far).cast(), _mm256_xor_si256(c, m_end));
                _mm256_storeu_si256(dst.add(len - 32).cast(), _mm256_xor_si256(d, m_end));
            }
            return;
        }
        // Half of all unaligned 32-byte stores would straddle a cache line, and split stores are
        // what makes a copy slower than memcpy. So the loop starts at the first 32-byte aligned
        // destination address; the first and last windows cover the ragged ends. Both are
        // loaded before any store, so the overlap rewrites the same values (in place too).
        // `storeu` on an aligned address is as fast as `store`, and keeps a wrong guess harmless.
        let start = (32 - (dst.addr() & 31)) & 31;
        let m = _mm256_set1_epi32(key_i32(super::rotate_key(k, start)));
        // SAFETY: `len >= 32`, so both windows are in bounds.
        let (head, tail) = unsafe {
            (
                _mm256_loadu_si256(src.cast()),
                _mm256_loadu_si256(src.add(len - 32).cast()),
            )
        };
        let mut i = start;
        while i + 128 <= len {
            // SAFETY: `i + 128 <= len`; loads precede the stores of the same bytes.
            unsafe {
                let s = src.add(i).cast::<__m256i>();
                let d = dst.add(i).cast::<__m256i>();
                let a = _mm256_loadu_si256(s);
                let b = _mm256_loadu_si256(s.add(1));
                let c = _mm256_loadu_si256(s.add(2));
                let e = _mm256_loadu_si256(s.add(3));
                _mm256_storeu_si256(d, _mm256_xor_si256(a, m));
                _mm256_storeu_si256(d.add(1), _mm256_xor_si256(b, m));
                _mm256_storeu_si256(d.add(2), _mm256_xor_si256(c, m));
                _mm256_storeu_si256(d.add(3), _mm256_xor_si256(e, m));
            }
            i += 128;
        }
        while i + 32 <= len {
            // SAFETY: `i + 32 <= len`.
            unsafe {
                let v = _mm256_loadu_si256(src.add(i).cast());
                _mm256_storeu_si256(dst.add(i).cast(), _mm256_xor_si256(v, m));
            }
            i += 32;
        }
        // SAFETY: both windows are in bounds (`len >= 32`). The loop covered `[start, i)` with
        // `start < 32` and `len - i < 32`, so together they cover everything.
        unsafe {
            _mm256_storeu_si256(dst.cast(), _mm256_xor_si256(head, m_head));
            _mm256_storeu_si256(dst.add(len - 32).cast(), _mm256_xor_si256(tail, m_end));
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use core::arch::aarch64::*;

    /// NEON kernel: 16-byte vectors, four per iteration.
    ///
    /// # Safety
    /// As `xor_raw`, plus `len >= 16`. (NEON is enabled for this target at compile time.)
    #[inline(always)]
    pub(super) unsafe fn xor_neon(dst: *mut u8, src: *const u8, len: usize, k: [u8; 4]) {
        // NEON is on for the whole target, so the value-only intrinsics need no `unsafe`.
        let m = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(k)));
        let m_end =
            vreinterpretq_u8_u32(vdupq_n_u32(u32::from_ne_bytes(super::rotate_key(k, len))));
        // SAFETY: `len >= 16`, so the last 16-byte window is in bounds; loaded before any store.
        let tail = unsafe { vld1q_u8(src.add(len - 16)) };
        let mut i = 0;
        while i + 64 <= len {
            // SAFETY: `i + 64 <= len`; loads precede the stores of the same bytes.
            unsafe {
                let a = vld1q_u8(src.add(i));
                let b = vld1q_u8(src.add(i + 16));
                let c = vld1q_u8(src.add(i + 32));
                let e = vld1q_u8(src.add(i + 48));
                vst1q_u8(dst.add(i), veorq_u8(a, m));
                vst1q_u8(dst.add(i + 16), veorq_u8(b, m));
                vst1q_u8(dst.add(i + 32), veorq_u8(c, m));
                vst1q_u8(dst.add(i + 48), veorq_u8(e, m));
            }
            i += 64;
        }
        while i + 16 <= len {
            // SAFETY: `i + 16 <= len`.
            unsafe { vst1q_u8(dst.add(i), veorq_u8(vld1q_u8(src.add(i)), m)) };
            i += 16;
        }
        // SAFETY: the last window is in bounds (`len >= 16`).
        unsafe { vst1q_u8(dst.add(len - 16), veorq_u8(tail, m_end)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    const KEYS: [[u8; 4]; 3] = [
        [0x37, 0xfa, 0x21, 0x3d],
        [0xff, 0x00, 0x80, 0x01],
        [0, 0, 0, 0],
    ];

    fn reference(data: &[u8], key: [u8; 4], phase: usize) -> Vec<u8> {
        data.iter()
            .enumerate()
            .map(|(i, b)| b ^ key[(phase + i) % 4])
            .collect()
    }

    /// Deterministic, non-repeating-with-period-4 bytes so a wrong key offset shows up.
    fn payload(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x9e37_79b9;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn lengths() -> impl Iterator<Item = usize> {
        (0..=300).chain([1024, 4096 + 7, 65536 + 3])
    }

    /// Every kernel this CPU can run, to test each one whatever the dispatcher would pick.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut v: Vec<(&'static str, Kernel)> = vec![("portable", xor_words)];
        #[cfg(target_arch = "x86_64")]
        {
            v.push(("sse2", x86::xor_sse2));
            if std::is_x86_feature_detected!("avx2") {
                v.push(("avx2", x86::xor_avx2));
            }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        v.push(("neon", neon::xor_neon));
        v
    }

    #[test]
    fn apply_mask_matches_reference() {
        for len in lengths() {
            for offset in 0..=7 {
                let backing = payload(len + 8);
                for phase in 0..4 {
                    let key = KEYS[(len + offset + phase) % KEYS.len()];
                    let mut buf = backing.clone();
                    let slice = &mut buf[offset..offset + len];
                    let want = reference(slice, key, phase);
                    assert_eq!(apply_mask(slice, key, phase), (phase + len) & 3);
                    assert_eq!(slice, &want[..], "len {len} offset {offset} phase {phase}");
                    // Bytes around the slice are untouched.
                    assert_eq!(buf[..offset], backing[..offset]);
                    assert_eq!(buf[offset + len..], backing[offset + len..]);
                }
            }
        }
    }

    #[test]
    fn unmask_into_matches_reference() {
        for len in lengths() {
            for offset in 0..=7 {
                let backing = payload(len + 8);
                let src = &backing[offset..offset + len];
                for phase in 0..4 {
                    let key = KEYS[(len + phase) % KEYS.len()];
                    let mut dst = vec![MaybeUninit::new(0xAA_u8); len + 8];
                    let out = &mut dst[7 - offset..7 - offset + len];
                    assert_eq!(unmask_into(out, src, key, phase), (phase + len) & 3);
                    let got: Vec<u8> = dst
                        .iter()
                        // SAFETY: every element was initialised by `vec!` or `unmask_into`.
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    assert_eq!(
                        got[7 - offset..7 - offset + len],
                        reference(src, key, phase)[..],
                        "len {len} offset {offset} phase {phase}"
                    );
                    assert!(got[..7 - offset].iter().all(|&b| b == 0xAA));
                    assert!(got[7 - offset + len..].iter().all(|&b| b == 0xAA));
                }
            }
        }
    }

    #[test]
    fn extend_masked_matches_reference() {
        for len in lengths() {
            for offset in 0..=7 {
                let backing = payload(len + 8);
                let src = &backing[offset..offset + len];
                for phase in 0..4 {
                    let key = KEYS[(offset + phase) % KEYS.len()];
                    let mut dst = BytesMut::from(&b"head"[..]);
                    assert_eq!(extend_masked(&mut dst, src, key, phase), (phase + len) & 3);
                    assert_eq!(&dst[..4], b"head");
                    assert_eq!(dst[4..], reference(src, key, phase)[..]);
                }
            }
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        for len in lengths() {
            let data = payload(len);
            for phase in 0..4 {
                let mut buf = data.clone();
                apply_mask(&mut buf, KEYS[0], phase);
                if len > 0 {
                    assert_ne!(buf, data);
                }
                apply_mask(&mut buf, KEYS[0], phase);
                assert_eq!(buf, data);
            }
        }
    }

    #[test]
    fn every_kernel_matches_reference() {
        for (name, kernel) in kernels() {
            // The AVX2 kernel needs 32 bytes; the dispatcher never gives it less.
            let min = if name == "avx2" { 32 } else { 16 };
            for len in (min..=300).chain([4096 + 7, 65536 + 3]) {
                for offset in 0..=7 {
                    let backing = payload(len + 8);
                    let src = &backing[offset..offset + len];
                    for phase in 0..4 {
                        let key = KEYS[phase % 2];
                        let want = reference(src, key, phase);
                        // Copying form into a differently aligned destination.
                        let mut dst = vec![0u8; len + 8];
                        let d = &mut dst[7 - offset..7 - offset + len];
                        // SAFETY: valid, non-overlapping ranges of `len >= min` bytes;
                        // `kernels()` only lists kernels the CPU supports.
                        unsafe {
                            kernel(d.as_mut_ptr(), src.as_ptr(), len, rotate_key(key, phase))
                        };
                        assert_eq!(d, &want[..], "{name} len {len} offset {offset}");
                        // In-place form.
                        let mut buf = backing.clone();
                        let s = &mut buf[offset..offset + len];
                        let p = s.as_mut_ptr();
                        // SAFETY: as above, with `dst == src`.
                        unsafe { kernel(p, p, len, rotate_key(key, phase)) };
                        assert_eq!(s, &want[..], "{name} in place len {len} offset {offset}");
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_lengths_write_the_common_prefix() {
        let src = payload(40);
        let mut dst = [MaybeUninit::new(0u8); 20];
        assert_eq!(unmask_into(&mut dst, &src, KEYS[0], 1), (1 + 20) & 3);
        // SAFETY: all initialised.
        let got: Vec<u8> = dst.iter().map(|b| unsafe { b.assume_init() }).collect();
        assert_eq!(got, reference(&src[..20], KEYS[0], 1));
        let mut dst = [MaybeUninit::new(0u8); 40];
        assert_eq!(unmask_into(&mut dst, &src[..3], KEYS[0], 3), (3 + 3) & 3);
    }

    #[test]
    fn phase_above_three_wraps() {
        let data = payload(50);
        let mut a = data.clone();
        let mut b = data.clone();
        assert_eq!(
            apply_mask(&mut a, KEYS[0], 6),
            apply_mask(&mut b, KEYS[0], 2)
        );
        assert_eq!(a, b);
    }

    proptest! {
        #[test]
        fn extend_masked_in_two_pieces_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            key in any::<[u8; 4]>(),
            phase in 0usize..4,
            split in any::<proptest::sample::Index>(),
        ) {
            let want = reference(&data, key, phase);
            let mut whole = BytesMut::new();
            let end = extend_masked(&mut whole, &data, key, phase);
            prop_assert_eq!(&whole[..], &want[..]);
            prop_assert_eq!(end, (phase + data.len()) & 3);

            let at = split.index(data.len() + 1);
            let mut pieces = BytesMut::with_capacity(3);
            let mid = extend_masked(&mut pieces, &data[..at], key, phase);
            let end2 = extend_masked(&mut pieces, &data[at..], key, mid);
            prop_assert_eq!(&pieces[..], &want[..]);
            prop_assert_eq!(end2, end);
        }
    }
}
