//! The io_uring backend: one ring per shard, completion-driven end to end.
//!
//! - **Accept**: one multishot accept per listener; after a resource error the listener rests
//!   (reported once, re-armed after [`ACCEPT_RETRY`](crate::reactor::ACCEPT_RETRY) or a
//!   `close`), any other ending is re-armed at the next wait (`listener.rs`).
//! - **Receive**: one multishot recv per connection, selecting buffers from a provided buffer
//!   ring; an idle connection holds no buffer. Pool exhaustion (`ENOBUFS`) parks the connection
//!   until buffers come back, never reported; where the kernel allows it each recv is capped at
//!   the read budget and re-armed for the next wait. Skips cancel the multishot recv and drop
//!   bytes with truncating one-shot recvs, each followed by a header-sized probe; a pause cancels
//!   it until resumed. All of this is one pure transition function (`recv.rs`).
//! - **Buffers**: one contiguous, page-aligned pool per backend, the ring kept only as deep as
//!   the load needs, recycled buffers published once per wait (`buf_pool.rs`).
//! - **Send**: one gathered `sendmsg` per call, `MSG_WAITALL`, from a boxed op that holds
//!   everything the kernel reads (`send_op.rs`).
//! - **Close**: cancels whatever is in flight by user_data, closes the fd with an SQE, and
//!   reports `Closed` after the last CQE of the connection (`backend.rs`).
//!
//! The parts, leaves first (each uses only those above it; the backend uses them all):
//!
//! - `user_data.rs`: what each SQE is for, encoded in its user_data.
//! - `buf_pool.rs`: the provided-buffer ring and its adaptive depth.
//! - `setup.rs`: ring setup and feature probing (multishot recv, the read budget's cap).
//! - `listener.rs`: a listener's accept and its rests after resource errors.
//! - `send_op.rs`: the memory of one gathered send.
//! - `recv.rs`: a connection's receive side as a value and one transition function that says
//!   what to submit and what to report.
//! - `backend.rs`: [`UringBackend`], the [`Backend`](crate::reactor::Backend) itself: it owns the
//!   ring, turns CQEs into inputs of the parts and carries out what they decide.

mod backend;
mod buf_pool;
mod listener;
mod recv;
mod send_op;
mod setup;
mod user_data;

pub use backend::UringBackend;
