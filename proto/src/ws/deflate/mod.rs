//! permessage-deflate (RFC 7692): compressed data messages, negotiated per connection.
//!
//! Register [`PerMessageDeflate`] on a server's or client's handshake options. Its defaults are
//! chosen for push services, where memory per connection and the cost of one message sent to
//! many decide: no context takeover in either direction, so a shard shares one compressor and
//! one decompressor among all its connections, an idle connection holds none, and a topic
//! message is compressed once for every subscriber. [`DeflateOptions::context_takeover`] turns
//! takeover on for chat-like traffic, where each connection's history makes small messages
//! much smaller, at about 340 KB of server memory per connection that has sent and received a
//! compressed message, 370 KB once a window's worth has gone through (zlib-rs, window 15;
//! `benches/results/deflate.md`).

mod codec;
mod compressor;
pub mod params;
mod session;

#[doc(hidden)]
pub use codec::compressions_on_this_thread;
pub use compressor::Strategy;
use params::{client_accept, client_offer, server_accept, Params, MAX_WINDOW_BITS, NAME};
pub use session::DeflateSession;

use crate::ws::extension::{
    AcceptedOffer, Extension, ExtensionError, ExtensionParams, ExtensionSession, Rsv,
};

/// Messages shorter than this are sent uncompressed by default. Below it, without context
/// takeover, DEFLATE's block header and Huffman tables cost about as much as they save on
/// typical JSON (see the `threshold_default_pays` test), while every compression still resets a
/// 64 KB hash table.
pub const DEFAULT_THRESHOLD: usize = 128;

/// zlib's default memory level for compressing.
const DEFAULT_MEM_LEVEL: u8 = 8;

/// The settings of permessage-deflate, for either role.
///
/// Field names follow faye's options: "own" settings describe what this endpoint compresses,
/// "request" settings what it asks of the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateOptions {
    level: u32,
    mem_level: u8,
    strategy: Strategy,
    max_window_bits: u8,
    no_context_takeover: bool,
    request_no_context_takeover: bool,
    request_max_window_bits: Option<u8>,
    threshold: usize,
}

impl Default for DeflateOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl DeflateOptions {
    /// Level 6, mem level 8, the default strategy, window 15, no context takeover either way,
    /// threshold [`DEFAULT_THRESHOLD`].
    pub fn new() -> Self {
        Self {
            level: 6,
            mem_level: DEFAULT_MEM_LEVEL,
            strategy: Strategy::Default,
            max_window_bits: MAX_WINDOW_BITS,
            no_context_takeover: true,
            request_no_context_takeover: true,
            request_max_window_bits: None,
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// Compression level, 0 (stored) to 9 (smallest); 1 is fastest with real compression.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// zlib's memory level for compressing, 1 to 9 (default 8): the size of the block
    /// buffers, 2^(level + 6) symbols. With context takeover each connection holds its own
    /// compressor, so this is a memory lever there: 1 saves about 53 KB per connection
    /// (zlib-rs, at any window: 340 → 288 KB at window 15, 214 → 161 KB at 10) for a few
    /// percent of compression, since blocks end sooner (`benches/results/deflate.md`). The hash
    /// table does not shrink with it in zlib-rs or zlib-ng (64 Ki entries).
    pub fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = level.clamp(1, 9);
        self
    }

    /// How the compressor looks for matches (default [`Strategy::Default`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The largest window this endpoint compresses with, 8 to 15 (8 runs as 9, zlib's
    /// smallest). Smaller windows use less memory per compressor and compress less, but the
    /// lever is short: zlib-rs's 128 KB hash table and 112 KB of block buffers do not shrink
    /// with the window, so with context takeover a connection at 10 bits still holds about
    /// 215-240 KB instead of 340-370 KB.
    pub fn max_window_bits(mut self, bits: u8) -> Self {
        self.max_window_bits = bits.clamp(params::MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// Whether this endpoint starts each message with a fresh context (default true).
    pub fn no_context_takeover(mut self, yes: bool) -> Self {
        self.no_context_takeover = yes;
        self
    }

    /// Whether to ask the peer to start each message afresh (default true). A server imposes
    /// it; a client asks and refuses a server that ignores it.
    pub fn request_no_context_takeover(mut self, yes: bool) -> Self {
        self.request_no_context_takeover = yes;
        self
    }

    /// Context takeover in both directions (`true`), or in neither (`false`, the default).
    pub fn context_takeover(self, yes: bool) -> Self {
        self.no_context_takeover(!yes)
            .request_no_context_takeover(!yes)
    }

    /// The largest window to ask the peer to compress with (default: none asked).
    pub fn request_max_window_bits(mut self, bits: u8) -> Self {
        self.request_max_window_bits = Some(bits.clamp(params::MIN_WINDOW_BITS, MAX_WINDOW_BITS));
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
}

/// The permessage-deflate extension, registered once on a server's or a client's options.
#[derive(Clone, Debug, Default)]
pub struct PerMessageDeflate {
    options: DeflateOptions,
}

impl PerMessageDeflate {
    /// The extension with these settings.
    pub fn new(options: DeflateOptions) -> Self {
        Self { options }
    }

    /// Its settings.
    pub fn options(&self) -> &DeflateOptions {
        &self.options
    }
}

impl Extension for PerMessageDeflate {
    fn name(&self) -> &str {
        NAME
    }

    fn rsv(&self) -> Rsv {
        Rsv::RSV1
    }

    /// Takes the first offer that is valid; invalid ones are passed over, as faye does.
    fn accept_offer(
        &self,
        offers: &[&ExtensionParams],
    ) -> Result<Option<AcceptedOffer>, ExtensionError> {
        let Some(offer) = offers.iter().find_map(|o| Params::parse(o).ok()) else {
            return Ok(None);
        };
        let (response, agreement) = server_accept(&offer, &self.options);
        Ok(Some((
            response.to_element(),
            Box::new(DeflateSession::new(&agreement, &self.options)),
        )))
    }

    fn client_offers(&self) -> Vec<ExtensionParams> {
        vec![client_offer(&self.options).to_element()]
    }

    fn accept_response(
        &self,
        response: &ExtensionParams,
    ) -> Result<Box<dyn ExtensionSession>, ExtensionError> {
        let agreement = client_accept(&Params::parse(response)?, &self.options)?;
        Ok(Box::new(DeflateSession::new(&agreement, &self.options)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::extension::{parse_extensions, DataKind, ExtMessage};
    use bytes::Bytes;

    fn negotiate(
        server: &DeflateOptions,
        client: &DeflateOptions,
    ) -> (Box<dyn ExtensionSession>, Box<dyn ExtensionSession>) {
        let c = PerMessageDeflate::new(client.clone());
        let s = PerMessageDeflate::new(server.clone());
        let offers = c.client_offers();
        let refs: Vec<&ExtensionParams> = offers.iter().collect();
        let (response, server_session) = s.accept_offer(&refs).unwrap().unwrap();
        let client_session = c.accept_response(&response).unwrap();
        (server_session, client_session)
    }

    fn text(s: &[u8]) -> ExtMessage {
        ExtMessage {
            kind: DataKind::Text,
            rsv: Rsv::NONE,
            payload: Bytes::copy_from_slice(s),
        }
    }

    #[test]
    fn both_roles_agree_and_exchange_messages() {
        for takeover in [false, true] {
            for (sb, cb) in [(15, 15), (8, 9), (10, 12)] {
                let so = DeflateOptions::new()
                    .context_takeover(takeover)
                    .max_window_bits(sb);
                let co = DeflateOptions::new()
                    .context_takeover(takeover)
                    .max_window_bits(cb)
                    .request_max_window_bits(sb);
                let (mut s, mut c) = negotiate(&so, &co);
                for round in 0..3 {
                    let msg = format!("{{\"round\":{round},\"pad\":\"{}\"}}", "x".repeat(300));
                    let z = s.encode(text(msg.as_bytes())).unwrap();
                    assert_eq!(z.rsv, Rsv::RSV1);
                    assert_eq!(c.decode(z, 1 << 20).unwrap().payload, msg.as_bytes());
                    let z = c.encode(text(msg.as_bytes())).unwrap();
                    assert_eq!(s.decode(z, 1 << 20).unwrap().payload, msg.as_bytes());
                }
            }
        }
    }

    #[test]
    fn short_messages_and_unflagged_ones_pass_unchanged() {
        let (mut s, mut c) = negotiate(&DeflateOptions::new(), &DeflateOptions::new());
        let short = s.encode(text(b"hi")).unwrap();
        assert_eq!((short.rsv, &short.payload[..]), (Rsv::NONE, &b"hi"[..]));
        assert_eq!(c.decode(short, 10).unwrap().payload, &b"hi"[..]);
    }

    #[test]
    fn a_corrupt_message_is_1007_and_a_bomb_1009() {
        let (mut s, mut c) = negotiate(&DeflateOptions::new(), &DeflateOptions::new());
        let bad = ExtMessage {
            rsv: Rsv::RSV1,
            ..text(&[0xff, 0xfe, 0xfd])
        };
        assert_eq!(s.decode(bad, 100).unwrap_err().code.0, 1007);
        let bomb = c.encode(text(&vec![b'a'; 1 << 20])).unwrap();
        assert_eq!(s.decode(bomb, 1000).unwrap_err().code.0, 1009);
    }

    #[test]
    fn stateless_sessions_name_their_encoding() {
        let (s, _) = negotiate(&DeflateOptions::new(), &DeflateOptions::new());
        let (t, _) = negotiate(&DeflateOptions::new(), &DeflateOptions::new());
        assert!(s.stateless_key().is_some());
        assert_eq!(s.stateless_key(), t.stateless_key());
        let (u, _) = negotiate(&DeflateOptions::new().level(1), &DeflateOptions::new());
        assert_ne!(s.stateless_key(), u.stateless_key());
        let (v, _) = negotiate(
            &DeflateOptions::new().context_takeover(true),
            &DeflateOptions::new().context_takeover(true),
        );
        assert_eq!(v.stateless_key(), None);
    }

    #[test]
    fn the_server_passes_over_invalid_offers() {
        let s = PerMessageDeflate::default();
        let offers = parse_extensions(
            "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10",
        )
        .unwrap();
        let refs: Vec<&ExtensionParams> = offers.iter().collect();
        let (response, _) = s.accept_offer(&refs).unwrap().unwrap();
        assert_eq!(
            crate::ws::extension::format_extensions(&[response]),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10"
        );
        let bad = parse_extensions("permessage-deflate; bogus").unwrap();
        let refs: Vec<&ExtensionParams> = bad.iter().collect();
        assert!(s.accept_offer(&refs).unwrap().is_none());
    }

    /// The default threshold is where compressing typical JSON without context starts to pay.
    #[test]
    fn threshold_default_pays() {
        let sample = |n: usize| {
            let mut s = String::from("{\"type\":\"quote\",\"symbol\":\"ACME\",\"bid\":101.25,");
            let mut i = 0;
            while s.len() < n {
                s.push_str(&format!("\"k{i}\":\"value {i}\","));
                i += 1;
            }
            s.truncate(n);
            s
        };
        let (mut s, _) = negotiate(&DeflateOptions::new().threshold(0), &DeflateOptions::new());
        let ratio = |n: usize, s: &mut Box<dyn ExtensionSession>| {
            let m = s.encode(text(sample(n).as_bytes())).unwrap();
            m.payload.len() as f64 / n as f64
        };
        assert!(ratio(64, &mut s) > 0.85, "64 B saves little or nothing");
        assert!(
            ratio(DEFAULT_THRESHOLD, &mut s) < 0.9,
            "from the threshold on it pays"
        );
    }
}
