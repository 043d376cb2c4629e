//! What each SQE is for, encoded in its user_data so that its CQEs find their way back.
//!
//! `op kind (8 bits) << 56 | generation (low 24 bits) << 32 | slab index (32 bits)`. The full
//! [`Token`] lives in the backend's per-connection side table (a `Vec` indexed by the slab
//! index, mirroring the shard's slab), so generations need no restriction: the 24 bits only let
//! the backend drop a CQE that could not belong to the slot's current occupant (which cannot
//! happen while the shard keeps the `Closed` rule, but costs nothing to check). Listener ops
//! carry the listener's index instead.

use crate::reactor::Token;

/// What an SQE was for, in the top byte of its user_data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Op {
    /// The waker's eventfd poll.
    Wake = 1,
    /// A listener's multishot accept (payload: listener index).
    Accept = 2,
    /// Cancelling a listener's accept (payload: listener index).
    AcceptCancel = 3,
    /// A connection's multishot recv, or its one-shot probe.
    Recv = 4,
    /// A connection's gathered send.
    Send = 5,
    /// A connection's `shutdown(SHUT_WR)`.
    Shutdown = 6,
    /// Cancelling a connection's recv, skip or send (for a skip, a pause or `close`).
    Cancel = 7,
    /// Closing a connection's fd.
    Close = 8,
    /// Backend-internal ops (the start-up probes, the cancel-all in `Drop`).
    Internal = 9,
    /// A connection's one-shot truncating recv ([`Backend::skip`](crate::reactor::Backend::skip)).
    Skip = 10,
}

impl Op {
    /// The op whose discriminant is `bits`, if any (a CQE of no op of ours is ignored).
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
pub(super) const GEN_MASK: u64 = 0xFF_FFFF;

/// user_data for an op of a connection.
pub(super) fn conn_ud(op: Op, token: Token) -> u64 {
    ((op as u64) << 56)
        | ((u64::from(token.generation()) & GEN_MASK) << 32)
        | (token.0 & 0xFFFF_FFFF)
}

/// user_data for an op that is not a connection's (listeners, waker, internal).
pub(super) fn plain_ud(op: Op, index: usize) -> u64 {
    ((op as u64) << 56) | (index as u64 & 0xFFFF_FFFF)
}

/// Splits user_data into (op, generation bits, index).
pub(super) fn decode_ud(ud: u64) -> (Option<Op>, u64, usize) {
    (
        Op::from_bits((ud >> 56) as u8),
        (ud >> 32) & GEN_MASK,
        (ud & 0xFFFF_FFFF) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let token = Token::new(0xDEAD_BEEF, 0x1234_5678);
        let (op, gen, index) = decode_ud(conn_ud(Op::Skip, token));
        assert_eq!(op, Some(Op::Skip));
        // Only the low 24 bits of the generation travel.
        assert_eq!(gen, 0x34_5678);
        assert_eq!(index, 0xDEAD_BEEF);
        assert_eq!(decode_ud(plain_ud(Op::Accept, 3)), (Some(Op::Accept), 0, 3));
        assert_eq!(decode_ud(0).0, None, "user_data 0 is no op of ours");
    }
}
