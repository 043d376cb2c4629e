//! The memory of one gathered send, kept at a stable address while the kernel reads it.
//!
//! One `sendmsg` per [`Backend::send`](crate::reactor::Backend::send) gathers up to
//! [`MAX_IOVECS`] chunks, with `MSG_NOSIGNAL | MSG_WAITALL`: on a stream socket io_uring keeps
//! sending until every byte is written (or an error), so the shard normally gets one `Sent` per
//! batch instead of a chain of short writes. The msghdr, the iovecs and the chunks live in one
//! boxed [`SendOp`] until the CQE hands the chunks back; the boxes are reused.

use std::ptr;

use bytes::Bytes;

use crate::reactor::MAX_IOVECS;

/// One gathered send in flight: everything the kernel reads lives here, boxed, until the CQE.
pub(super) struct SendOp {
    /// The header the SQE points at; its iovec pointer points into `iov`.
    pub(super) hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOVECS],
    /// What the iovecs point into, owned here so that the bytes outlive the send.
    chunks: Vec<Bytes>,
}

impl SendOp {
    /// An empty op, boxed so that the pointers `load` sets stay valid wherever the box goes.
    pub(super) fn new() -> Box<Self> {
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

    /// Takes `chunks` and points the header's iovecs at the first [`MAX_IOVECS`] of them.
    pub(super) fn load(&mut self, chunks: Vec<Bytes>) {
        self.chunks = chunks;
        let n = self.chunks.len().min(MAX_IOVECS);
        for (iov, chunk) in self.iov.iter_mut().zip(&self.chunks) {
            iov.iov_base = chunk.as_ptr() as *mut libc::c_void;
            iov.iov_len = chunk.len();
        }
        self.hdr.msg_iov = self.iov.as_mut_ptr();
        self.hdr.msg_iovlen = n as _;
    }

    /// The chunks, given back once the kernel is done with them.
    pub(super) fn take_chunks(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.chunks)
    }
}
