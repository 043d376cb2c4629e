//! Published messages on their way to subscribers, in each form a subscriber's extensions need.

use bytes::{Bytes, BytesMut};
use ringsock_engine::ws::{
    server_frame, server_frame_rsv, Connection, DataKind, FrameHeader, OpCode,
};

/// Published messages on their way to subscribers: plain frames built once, and, for
/// subscribers whose extensions keep no context (compression without context takeover), the
/// same messages encoded once per kind of encoding among them. Subscribers whose compression
/// keeps context get each message compressed for them alone: the price of context takeover in
/// a fan-out, paid per subscriber and message.
pub(crate) struct Outgoing {
    /// One or more whole unmasked frames (a publish, or a batch of them).
    plain: Bytes,
    /// `plain` encoded, by [`Connection::stateless_key`]; made when a subscriber first needs it.
    encoded: Vec<(u64, Bytes)>,
}

impl Outgoing {
    /// Messages as plain frames made by [`server_frame`].
    pub(crate) fn new(plain: Bytes) -> Self {
        Self {
            plain,
            encoded: Vec::new(),
        }
    }

    /// Queues the messages on `ws` in the form its extensions need; false if it is not open.
    pub(crate) fn queue(&mut self, ws: &mut Connection) -> bool {
        match ws.stateless_key() {
            Some(0) => ws.send_raw_frames(&self.plain).is_ok(),
            Some(key) => {
                let frames = match self.encoded.iter().find(|(k, _)| *k == key) {
                    Some((_, frames)) => frames.clone(),
                    None => {
                        let frames = self.encode(ws);
                        self.encoded.push((key, frames.clone()));
                        frames
                    }
                };
                ws.send_raw_frames(&frames).is_ok()
            }
            None => self
                .messages()
                .all(|(kind, payload)| ws.send_shared(kind, payload).is_ok()),
        }
    }

    /// The messages in `plain`, as kind and payload (shared, not copied).
    fn messages(&self) -> impl Iterator<Item = (DataKind, Bytes)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (header, len) = FrameHeader::parse(&self.plain[at..]).ok()??;
            let start = at + len;
            at = start + header.payload_len as usize;
            let kind = match header.opcode {
                OpCode::Text => DataKind::Text,
                _ => DataKind::Binary,
            };
            Some((kind, self.plain.slice(start..at)))
        })
    }

    /// `plain` encoded by `ws`'s stateless extensions, each message framed with its RSV bits.
    /// A message an extension refuses goes plain: an uncompressed message is always valid.
    fn encode(&self, ws: &mut Connection) -> Bytes {
        let mut frames = BytesMut::new();
        for (kind, payload) in self.messages() {
            let opcode = match kind {
                DataKind::Text => OpCode::Text,
                DataKind::Binary => OpCode::Binary,
            };
            match ws.encode_stateless(kind, payload.clone()) {
                Some(Ok(m)) => {
                    frames.extend_from_slice(&server_frame_rsv(opcode, m.rsv.0, &m.payload))
                }
                _ => frames.extend_from_slice(&server_frame(opcode, &payload)),
            }
        }
        frames.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringsock_engine::ws::extension::{
        parse_extensions, Extension, ExtensionParams, Extensions,
    };
    use ringsock_engine::ws::{Config, DeflateOptions, PerMessageDeflate};

    /// A server connection that negotiated permessage-deflate from `offer` under `server`.
    fn deflate_conn(server: DeflateOptions, offer: &str) -> Connection {
        let ext = PerMessageDeflate::new(server);
        let offers = parse_extensions(offer).unwrap();
        let refs: Vec<&ExtensionParams> = offers.iter().collect();
        let (_, session) = ext.accept_offer(&refs).unwrap().unwrap();
        Connection::server(Config::default(), Extensions::new(vec![session]))
    }

    fn drain(ws: &mut Connection) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = ws.poll_transmit() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn a_burst_is_compressed_once_per_encoding_and_per_subscriber_with_takeover() {
        let text = "{\"symbol\":\"ACME\",\"bid\":101.25,\"ask\":101.5}".repeat(8);
        let mut plain = BytesMut::new();
        for _ in 0..3 {
            plain.extend_from_slice(&server_frame(OpCode::Text, text.as_bytes()));
        }
        let mut out = Outgoing::new(plain.freeze());
        let takeover = DeflateOptions::new().context_takeover(true);
        let mut shared_a = deflate_conn(DeflateOptions::new(), "permessage-deflate");
        let mut shared_b = deflate_conn(DeflateOptions::new(), "permessage-deflate");
        let mut own = deflate_conn(takeover, "permessage-deflate");
        let mut bare = Connection::server(Config::default(), Extensions::default());
        for ws in [&mut shared_a, &mut shared_b, &mut own, &mut bare] {
            assert!(out.queue(ws));
        }
        assert_eq!(
            out.encoded.len(),
            1,
            "one encoding shared by both stateless subscribers"
        );
        let (a, b, o, p) = (
            drain(&mut shared_a),
            drain(&mut shared_b),
            drain(&mut own),
            drain(&mut bare),
        );
        assert_eq!(a, b);
        assert_eq!(p, out.plain[..]);
        assert_eq!(a[0] & 0x40, 0x40, "RSV1: compressed");
        assert!(a.len() < p.len() / 2, "{} vs {}", a.len(), p.len());
        // With takeover the 2nd and 3rd copies refer back to the 1st: smaller again.
        assert!(o.len() < a.len(), "{} vs {}", o.len(), a.len());
    }
}
