//! Frame headers: two-phase parsing (are there enough bytes? then parse) and encoding.
//!
//! The header is at most 14 bytes: two fixed bytes, 0, 2 or 8 length bytes, and 4 mask bytes when
//! masked. Parsing checks only what the header alone can tell (opcode, control-frame rules, the
//! 64-bit length's top bit); what depends on the connection's state (RSV bits owned by extensions,
//! masking required by the role, continuation order) is the [`Connection`](super::Connection)'s job.

use std::fmt;

/// The longest a frame header can be: 2 + 8 length bytes + 4 mask bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame (close, ping, pong) may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode, restricted to the six RFC 6455 defines; the reserved ones are a parse error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Continues the fragmented message started by a text or binary frame.
    Continuation = 0x0,
    /// First frame of a UTF-8 text message.
    Text = 0x1,
    /// First frame of a binary message.
    Binary = 0x2,
    /// Starts or answers the closing handshake.
    Close = 0x8,
    /// Asks the peer for a pong with the same payload.
    Ping = 0x9,
    /// Answers a ping (or, unsolicited, serves as a heartbeat).
    Pong = 0xA,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte; `None` for the reserved opcodes.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong: frames that may not be fragmented and carry at most 125 bytes.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// RSV1, RSV2 and RSV3 as they sit in the first header byte.
pub const RSV_MASK: u8 = 0x70;

/// A parsed (or to-be-encoded) frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the last frame of its message.
    pub fin: bool,
    /// The RSV bits exactly as in the first header byte (a subset of [`RSV_MASK`]).
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key; clients must mask, servers must not.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes (never above 2^63 − 1: the top bit is refused when parsing).
    pub payload_len: u64,
}

/// Why a frame header is invalid on its own. Each maps to close code 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The opcode is one RFC 6455 reserves (3–7, 0xB–0xF).
    ReservedOpcode(u8),
    /// A close, ping or pong frame without FIN.
    FragmentedControl,
    /// A control frame longer than 125 bytes.
    ControlTooLong(u64),
    /// A 64-bit length with its most significant bit set.
    LengthOverflow,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedOpcode(op) => write!(f, "Unrecognized frame opcode: {op}"),
            Self::FragmentedControl => f.write_str("Received fragmented control frame"),
            Self::ControlTooLong(n) => {
                write!(f, "Received control frame having too long payload: {n}")
            }
            Self::LengthOverflow => {
                f.write_str("Frame length has its most significant bit set (RFC 6455 5.2)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameHeader {
    /// Phase one: how long the header is, judged from its first two bytes.
    ///
    /// The caller waits until it has this many bytes, then calls [`FrameHeader::parse`].
    #[inline]
    pub fn len_from_prefix(b0: u8, b1: u8) -> usize {
        let _ = b0;
        let len_bytes = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + len_bytes + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    /// Phase two: parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, else the header and how
    /// many bytes it took.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let header_len = Self::len_from_prefix(b0, b1);
        if buf.len() < header_len {
            return Ok(None);
        }
        let fin = b0 & 0x80 != 0;
        let rsv = b0 & RSV_MASK;
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(FrameError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut at) = match b1 & 0x7F {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(FrameError::LengthOverflow);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::FragmentedControl);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::ControlTooLong(payload_len));
            }
        }
        let mask = if masked {
            let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(key)
        } else {
            None
        };
        debug_assert_eq!(at, header_len);
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            at,
        )))
    }

    /// How many bytes [`FrameHeader::encode`] writes for this header.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out` with the shortest length encoding; returns the bytes written.
    #[inline]
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (if self.fin { 0x80 } else { 0 }) | (self.rsv & RSV_MASK) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// One whole unmasked frame (server to client) carrying `payload`: a message framed once and
/// then queued to many connections with [`crate::ws::Connection::send_raw_frames`].
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> bytes::Bytes {
    server_frame_rsv(opcode, 0, payload)
}

/// [`server_frame`] with RSV bits set: a message an extension encoded once for many
/// connections (a compressed topic message).
pub fn server_frame_rsv(opcode: OpCode, rsv: u8, payload: &[u8]) -> bytes::Bytes {
    let header = FrameHeader {
        fin: true,
        rsv: rsv & RSV_MASK,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
    out.into()
}

/// One whole masked frame (client to server) carrying `payload`, under masking key `key` (the
/// caller draws it from its generator): a message framed once and queued many times with
/// [`crate::ws::Connection::send_raw_frames`] by a client that sends the same message over and
/// over (a load generator). Every copy shares the key, where RFC 6455 wants a fresh one per
/// frame: masking keeps bytes a script chose from reaching intermediaries in the clear, which
/// matters for browsers, not for a load test.
pub fn client_frame(opcode: OpCode, payload: &[u8], key: [u8; 4]) -> bytes::Bytes {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut out = bytes::BytesMut::with_capacity(n + payload.len());
    out.extend_from_slice(&head[..n]);
    crate::ws::mask::extend_masked(&mut out, payload, key, 0);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn lengths_use_the_shortest_encoding_and_parse_back() {
        for len in [0u64, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = header(true, OpCode::Binary, mask, len);
                let mut buf = [0u8; MAX_HEADER_LEN];
                let n = h.encode(&mut buf);
                assert_eq!(n, h.encoded_len());
                assert_eq!(FrameHeader::len_from_prefix(buf[0], buf[1]), n);
                assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((h, n))));
                assert_eq!(FrameHeader::parse(&buf[..n - 1]), Ok(None), "len {len}");
            }
        }
    }

    #[test]
    fn reserved_opcodes_are_refused() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(FrameError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn fragmented_control_frames_are_refused() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0]),
            Err(FrameError::FragmentedControl)
        );
    }

    #[test]
    fn control_frames_over_125_bytes_are_refused() {
        assert_eq!(
            FrameHeader::parse(&[0x89, 126, 0, 126]),
            Err(FrameError::ControlTooLong(126))
        );
    }

    #[test]
    fn sixty_four_bit_length_with_top_bit_is_refused() {
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(FrameHeader::parse(&buf), Err(FrameError::LengthOverflow));
    }

    #[test]
    fn rsv_bits_are_kept_for_the_connection_to_judge() {
        let (h, _) = FrameHeader::parse(&[0xC1, 0]).unwrap().unwrap();
        assert_eq!(h.rsv, 0x40);
        assert_eq!(h.opcode, OpCode::Text);
    }
}
