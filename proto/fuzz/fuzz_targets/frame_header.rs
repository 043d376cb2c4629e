//! `FrameHeader::parse` on arbitrary bytes: never panics, never claims more bytes than it was
//! given, and a parsed header encodes back to a header that parses to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsock_proto::ws::frame::{FrameHeader, MAX_HEADER_LEN, RSV_MASK};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, used))) = FrameHeader::parse(data) else {
        return;
    };
    assert!(used <= data.len() && used <= MAX_HEADER_LEN);
    assert_eq!(used, FrameHeader::len_from_prefix(data[0], data[1]));
    assert_eq!(header.rsv & !RSV_MASK, 0);

    let mut buf = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut buf);
    assert_eq!(n, header.encoded_len());
    // Encoding picks the shortest length form, so it may be shorter than the input's header.
    assert!(n <= used);
    assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((header, n))));
    // One byte short is never a whole header.
    assert_eq!(FrameHeader::parse(&buf[..n - 1]), Ok(None));
});
