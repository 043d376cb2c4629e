//! The memory behind a receive pool: its own anonymous mapping, kept out of huge pages.
//!
//! A pool is megabytes of address space of which an idle server touches little: a request head
//! lands in the first page of a buffer. From the global allocator, that memory can sit in
//! transparent huge pages (mimalloc asks for them), and then the first byte the kernel writes
//! into a buffer makes a whole 2 MiB resident: 10,000 idle connections measured 5 KB each instead
//! of under 1 KB. A mapping of its own, advised `MADV_NOHUGEPAGE`, keeps residency at what is
//! touched, whatever allocator the application links.

use std::io;
use std::ptr::NonNull;

/// Zero-filled, page-aligned memory from `mmap`, unmapped on drop.
pub(crate) struct PoolMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `PoolMem` owns its mapping exclusively, like a `Box<[u8]>`; access goes through `&self`
// and `&mut self` methods, so the usual borrow rules apply across threads.
unsafe impl Send for PoolMem {}

impl PoolMem {
    /// Maps `len` (> 0) bytes.
    pub(super) fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty receive pool",
            ));
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
        // pointer is passed in, and the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ptr..ptr+len` is the mapping just made. The advice only changes how it is
        // backed; if the kernel refuses it (no THP support), residency is already per page.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { ptr, len })
    }

    /// The start of the mapping (for handing buffers to the kernel).
    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The whole mapping.
    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, zero-filled by the kernel, alive as long
        // as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Gives the pages wholly inside `start..start + len` back to the kernel; they read as
    /// zeros afterwards and cost memory again only once written. The caller guarantees nothing
    /// (the kernel included) is writing that range meanwhile.
    pub(super) fn release(&self, start: usize, len: usize) {
        const PAGE: usize = 4096;
        let end = (start + len).min(self.len) & !(PAGE - 1);
        let start = (start + PAGE - 1) & !(PAGE - 1);
        if start >= end {
            return;
        }
        // SAFETY: `start..end` is page-aligned and inside the mapping; MADV_DONTNEED on a private
        // anonymous mapping only drops page contents (reads then see zeros), and the caller
        // vouches that no write into the range is in progress.
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                libc::MADV_DONTNEED,
            )
        };
    }

    /// The whole mapping, writable.
    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PoolMem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing references any more
        // (owners that may still have the kernel writing into it never drop it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_zeroed_writable_and_page_aligned() {
        let mut mem = PoolMem::new(3 * 4096 + 10).unwrap();
        assert_eq!(mem.as_ptr() as usize % 4096, 0);
        assert!(mem.as_slice().iter().all(|&b| b == 0));
        mem.as_mut_slice()[4096 * 3 + 9] = 7;
        mem.as_mut_slice()[4096 + 1] = 9;
        mem.release(4096, 4096);
        assert_eq!(
            mem.as_slice()[4096 + 1],
            0,
            "a released page reads as zeros"
        );
        assert_eq!(
            mem.as_slice()[4096 * 3 + 9],
            7,
            "pages outside the range stay"
        );
        mem.release(1, 4094);
        assert_eq!(
            mem.as_slice()[4096 * 3 + 9],
            7,
            "a range inside one page releases nothing"
        );
        assert_eq!(mem.as_slice()[4096 * 3 + 9], 7);
        assert!(PoolMem::new(0).is_err());
    }
}
