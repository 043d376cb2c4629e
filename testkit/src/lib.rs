//! What ringsock's test suites share, so each writes it once: WebSocket frames built and read
//! byte by byte without ringsock's code ([`frame`]), a raw blocking client ([`raw::Raw`]),
//! bounded waits ([`wait`]), the bounded tokio runner (`run`, feature `tokio`), the fd limit
//! ([`raise_fd_limit`]), test payloads ([`pattern`]) and [`on_both_backends!`].
//!
//! A dev-dependency only, depending on no ringsock crate: the protocol core's tests use it as an
//! independent oracle, without the `tokio` feature.

#![warn(missing_docs)]

pub mod frame;
pub mod raw;
pub mod wait;

use std::sync::Once;
use std::time::Duration;

pub use raw::{Raw, RawEnd};
#[cfg(feature = "tokio")]
pub use wait::{recv_async, run, wait_progress_async};
pub use wait::{recv_within, wait_until};

/// The longest any single step of a test (a handshake, a read, a channel message) may take
/// before the test fails: a bound for a stuck test, far above a loaded machine's delays.
pub const STEP: Duration = Duration::from_secs(10);

/// Declares, for each `case` (a function taking the caller's `BackendKind`, which must be in
/// scope), a module `case` with two tests, `io_uring` and `epoll`, running it on each backend:
/// the tests are named `…::case::io_uring` and `…::case::epoll`.
///
/// ```
/// # #[allow(dead_code)]
/// enum BackendKind { IoUring, Epoll } // or `use ringsock_engine::reactor::BackendKind;`
///
/// fn echoes(kind: BackendKind) { /* start a server on `kind`, … */ }
///
/// ringsock_testkit::on_both_backends!(echoes); // tests `echoes::io_uring`, `echoes::epoll`
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn io_uring() {
                super::$case(super::BackendKind::IoUring)
            }

            #[test]
            fn epoll() {
                super::$case(super::BackendKind::Epoll)
            }
        }
    )*};
}

/// Raises the soft fd limit to the hard one, once per process: a test binary runs several
/// servers and their clients at once, two descriptors per loopback connection.
pub fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write a live rlimit of the right type.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

/// The process's current soft fd limit.
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a live rlimit of the right type.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    lim.rlim_cur
}

/// `len` deterministic bytes that do not repeat with any short period, so an echo shifted,
/// truncated or spliced at a buffer boundary cannot compare equal.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// As [`pattern`], mapped to printable ASCII (valid UTF-8).
pub fn text_pattern(len: usize, seed: u64) -> String {
    pattern(len, seed)
        .into_iter()
        .map(|b| char::from(b' ' + b % 95))
        .collect()
}
