//! A connection's receive side.
//!
//! - **Receive**: one multishot recv per connection, selecting buffers from the provided buffer
//!   ring. An idle connection holds no buffer. `-ENOBUFS` (pool empty) ends the multishot: the
//!   connection is parked and its recv re-armed, never reported, once the shard has recycled
//!   buffers (at most as many re-arms per wait as there are free buffers, oldest first). Data
//!   the kernel could not deliver stays in the socket, so nothing is lost or reordered. Each
//!   completion carries at most one buffer (`buffer_size` bytes); the shard recycles every
//!   buffer within the loop turn that received it, so one socket can hold the pool for one turn
//!   at most, and the sockets it starved are re-armed in FIFO order.
//! - **Read budget**: where the kernel allows it (6.17+, probed at start), each multishot recv
//!   is capped at [`PoolConfig::read_budget`](crate::reactor::PoolConfig::read_budget) bytes in
//!   all (the SQE's `optlen`; checked after each receive, so one buffer more at most); it then
//!   ends without `MORE` and is re-armed for the next wait. So one socket that floods gets at
//!   most that much of a loop turn, however much it has queued, instead of everything one
//!   `io_uring_enter` can receive for it.
//! - **Skip**: a multishot recv cannot be told to drop bytes, so
//!   [`Backend::skip`](crate::reactor::Backend::skip) cancels it (`AsyncCancel` by user_data).
//!   CQEs it posts before it ends still deliver their bytes as `Received`, and those count
//!   against the skip. Once its last CQE is in, a one-shot `IORING_OP_RECV` with `MSG_TRUNC` (no
//!   buffer selected, pointed at an unbacked sink: TCP copies nothing) drops what is left to
//!   drop, each completion reported as `Skipped`, repeated while bytes remain to be dropped. A
//!   connection starved of buffers starts skipping at once (no buffer is needed to drop bytes).
//!   EOF and errors end a skip as they end a recv, and `close` cancels whatever is in flight.
//! - **After a skip, a header-sized probe**: a multishot recv takes everything the socket holds
//!   (one buffer after another, in the same task-work run) before the shard has seen the next
//!   frame's header, so re-armed after a skip it would copy the very payloads the next skip
//!   was for: measured on loopback with 1 MiB messages, 78% of the bytes were still copied. So
//!   a finished skip is followed by a one-shot buffer-selected recv of at most
//!   [`PROBE_LEN`](crate::reactor::PROBE_LEN) bytes (a probe), and the connection then pauses:
//!   if the shard asks for the next skip in that loop turn, it starts at once with nothing to
//!   cancel; if not, the multishot recv is re-armed at the next wait.
//! - **Pause**: [`Backend::pause`](crate::reactor::Backend::pause) cancels the multishot recv
//!   (anything else in flight ends by itself) and marks the connection held; every re-arm goes
//!   through one function that then leaves it idle (`Held`) until
//!   [`Backend::resume`](crate::reactor::Backend::resume) arms it again.

/// Where a connection's multishot recv stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecvState {
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
    /// A one-shot truncating recv is in flight ([`Backend::skip`](crate::reactor::Backend::skip)).
    Skipping,
    /// The shard paused reading: nothing in flight until it resumes.
    Held,
    /// Ended for good: EOF, error, or cancelled by `close`.
    Ended,
}
