//! Shared bits of ringsock's command-line tools.

use std::time::Duration;

/// Tunes glibc's malloc for a server that allocates and frees large messages at a high rate:
/// by default it hands a freed 1 MiB message back to the kernel and faults it in again for the
/// next, which made the 1 MiB echo swing between 1.0 and 2.6 GB/s from run to run. glibc stays
/// the allocator (mimalloc was tried) because its small blocks are tighter than mimalloc's size
/// classes and huge pages: 10,000 idle connections cost 1.0 KB each instead of 1.7 KB.
/// Call first thing in `main`, before any thread starts.
pub fn keep_large_blocks() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Blocks SIGINT and SIGTERM on this thread (threads started later inherit the mask), so that
/// [`wait_for_signal`] can take them synchronously instead of a handler interrupting a shard.
pub fn block_termination_signals() {
    // SAFETY: builds a signal set in a zeroed sigset_t and changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGINT or SIGTERM (blocked beforehand with [`block_termination_signals`]).
pub fn wait_for_signal() -> i32 {
    // SAFETY: sigwait reads the set and writes the signal number into a live c_int.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig: libc::c_int = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}

/// The grace period tools give connections to finish their close handshakes on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
