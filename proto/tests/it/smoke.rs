use crate::common::*;
use ringsock_proto::ws::frame::OpCode;
use ringsock_proto::ws::{CloseCode, Event};

#[test]
fn smoke_text_then_close() {
    let mut s = server();
    let mut input = client_frame(true, 0, 1, b"hello");
    input.extend(client_frame(true, 0, 8, &close_payload(1000, b"bye")));
    for piece in [1, 2, 3, 7, 100] {
        let mut s2 = server();
        let ev = feed_split(&mut s2, &input, piece);
        assert_eq!(ev.len(), 2, "piece {piece}: {ev:?}");
    }
    let ev = feed(&mut s, &input);
    assert!(matches!(&ev[0], Event::Text(t) if t.as_str() == "hello"));
    assert!(matches!(&ev[1], Event::Close(c) if c.code == CloseCode::NORMAL && c.reason == "bye"));
    let out = parse_frames(&output(&mut s));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2, OpCode::Close);
    assert_eq!(&out[0].3[..], &1000u16.to_be_bytes());
}
