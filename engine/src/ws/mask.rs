//! Masking and unmasking payloads (RFC 6455 5.3). STUB: being written.

use std::mem::MaybeUninit;

/// XORs `buf` in place with `key`, starting at key byte `phase` (0..4). Returns the phase after.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) & 3];
    }
    (phase + buf.len()) & 3
}

/// Copies `src` into `dst` (same length) XORed with `key` from key byte `phase`; returns the
/// phase after. Fused so the payload is read once.
pub fn unmask_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], phase: usize) -> usize {
    assert_eq!(dst.len(), src.len());
    for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
        d.write(s ^ key[(phase + i) & 3]);
    }
    (phase + src.len()) & 3
}

/// Appends `src` XORed with `key` (from key byte `phase`) to `dst`; returns the phase after.
pub fn extend_masked(dst: &mut bytes::BytesMut, src: &[u8], key: [u8; 4], phase: usize) -> usize {
    let start = dst.len();
    dst.extend_from_slice(src);
    apply_mask(&mut dst[start..], key, phase)
}
