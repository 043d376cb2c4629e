//! WebSocket frames (RFC 6455 section 5.2) written and read byte by byte, with no ringsock code.
//!
//! This is the tests' independent oracle: a frame a test feeds to the protocol core is built here
//! from the header bits and a hand-written XOR, and a frame the core writes is read back here, so
//! an encoding bug in ringsock that its own parser would mirror cannot pass unnoticed.

/// Continuation frame opcode.
pub const CONT: u8 = 0x0;
/// Text frame opcode.
pub const TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const BINARY: u8 = 0x2;
/// Close frame opcode.
pub const CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const PING: u8 = 0x9;
/// Pong frame opcode.
pub const PONG: u8 = 0xA;

/// RSV1 as it sits in a frame's first byte (permessage-deflate's "compressed" bit).
pub const RSV1: u8 = 0x40;

/// The masking key of RFC 6455's own examples (section 5.7), used for every frame a test client
/// sends unless it picks another: `37 fa 21 3d`.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame header alone: FIN, the RSV bits (`rsv` as they sit in the first byte: `0x40` is
/// RSV1), the opcode's low four bits (any value, reserved ones included), the mask bit and key,
/// and `len` in the shortest of the three length forms.
pub fn header(fin: bool, rsv: u8, opcode: u8, key: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push(if fin { 0x80 } else { 0 } | (rsv & 0x70) | (opcode & 0x0F));
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.push((len >> 8) as u8);
        out.push(len as u8);
    } else {
        out.push(mask_bit | 127);
        for shift in (0..8).rev() {
            out.push((len >> (8 * shift)) as u8);
        }
    }
    if let Some(key) = key {
        out.extend_from_slice(&key);
    }
    out
}

/// XORs `data` with `key`, `data` starting at byte `offset` of its payload (masking and
/// unmasking are the same operation).
pub fn xor_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

/// A whole frame: [`header`], then `payload`, masked with `key` when there is one.
pub fn frame(fin: bool, rsv: u8, opcode: u8, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = header(fin, rsv, opcode, key, payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = key {
        xor_mask(&mut out[start..], key, 0);
    }
    out
}

/// A frame as a client sends it: masked with [`KEY`].
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, rsv, opcode, Some(KEY), payload)
}

/// A frame as a server sends it: unmasked.
pub fn server_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, rsv, opcode, None, payload)
}

/// A close frame's payload: the code, big-endian, then the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = vec![(code >> 8) as u8, code as u8];
    out.extend_from_slice(reason);
    out
}

/// A frame read back by [`parse_frame`], its payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// The RSV bits as they sit in the first byte (`0x40`: RSV1).
    pub rsv: u8,
    /// The opcode (the first byte's low four bits).
    pub opcode: u8,
    /// The masking key, if the frame was masked.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame (`None` for other frames and for a close without one).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from(self.payload[0]) << 8 | u16::from(self.payload[1]))
    }
}

/// Reads one frame from the start of `bytes`: the frame and how many bytes it took, or `None`
/// if `bytes` holds only part of it. Fails the test on a length that is not in its shortest form
/// or has the 64-bit form's top bit set (RFC 6455 forbids both): this reads what ringsock wrote.
pub fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            let len = u64::from(*bytes.get(2)?) << 8 | u64::from(*bytes.get(3)?);
            assert!(
                len >= 126,
                "a 16-bit length of {len}: not the shortest form"
            );
            (len, 4)
        }
        127 => {
            let mut len = 0u64;
            for &b in bytes.get(2..10)? {
                len = len << 8 | u64::from(b);
            }
            assert!(len >> 63 == 0, "the 64-bit length's top bit is set");
            assert!(
                len > 0xFFFF,
                "a 64-bit length of {len}: not the shortest form"
            );
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let key = bytes.get(at..at + 4)?;
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = bytes.get(at..end)?.to_vec();
    if let Some(key) = mask {
        xor_mask(&mut payload, key, 0);
    }
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0F,
        mask,
        payload,
    };
    Some((frame, end))
}

/// Reads every frame in `bytes`, which must end at a frame boundary.
pub fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = parse_frame(bytes)
            .unwrap_or_else(|| panic!("{} bytes left that are not a whole frame", bytes.len()));
        frames.push(frame);
        bytes = &bytes[used..];
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 section 5.7, "A single-frame masked text message".
    #[test]
    fn builds_the_rfc_masked_hello() {
        assert_eq!(
            client_frame(true, 0, TEXT, b"Hello"),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn lengths_take_their_shortest_form() {
        assert_eq!(header(true, 0, BINARY, None, 125), [0x82, 125]);
        assert_eq!(header(true, 0, BINARY, None, 126), [0x82, 126, 0, 126]);
        assert_eq!(
            header(true, 0, BINARY, None, 65535),
            [0x82, 126, 0xFF, 0xFF]
        );
        assert_eq!(
            header(false, RSV1, CONT, None, 65536),
            [0x40, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn reads_back_what_it_builds() {
        let bytes = [
            frame(false, RSV1, TEXT, Some([1, 2, 3, 4]), b"abc"),
            server_frame(true, 0, PING, &[7; 300]),
        ]
        .concat();
        let frames = parse_frames(&bytes);
        assert_eq!(frames[0].payload, b"abc");
        assert_eq!((frames[0].fin, frames[0].rsv), (false, RSV1));
        assert_eq!(frames[0].mask, Some([1, 2, 3, 4]));
        assert_eq!((frames[1].opcode, frames[1].payload.len()), (PING, 300));
        assert!(
            parse_frame(&bytes[..5]).is_none(),
            "a header without its whole key"
        );
    }
}
