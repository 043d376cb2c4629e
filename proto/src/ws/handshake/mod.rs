//! The opening handshake (RFC 6455 section 4) for both roles.
//!
//! Server: [`is_websocket_upgrade`] spots an upgrade request, [`ServerOptions::accept`] checks it
//! and writes the 101 answer or a [`Refusal`]. Client: [`ClientHandshake`] writes the request and
//! checks the answer. Both negotiate subprotocols and extensions; the extension rules themselves
//! live in [`crate::ws::extension`].

mod client;
mod error;
mod server;

pub use client::{ClientHandshake, ClientNegotiated, ClientOptions};
pub use error::HandshakeError;
pub use server::{
    is_websocket_upgrade, Decision, Negotiated, ProtocolSelector, Refusal, ServerOptions,
    UpgradeError,
};

use sha1::{Digest, Sha1};

use crate::http::headers::Headers;
use crate::ws::extension::{parse_extensions, ExtensionHeaderError, ExtensionParams};

/// The GUID RFC 6455 appends to the client's key before hashing it.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`: base64 of the SHA-1 of
/// the key followed by [`GUID`].
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key);
    sha.update(GUID.as_bytes());
    base64_simd::STANDARD.encode_to_string(sha.finalize())
}

/// The `Sec-WebSocket-Extensions` elements of a head, every line joined with `,` as RFC 7230
/// allows a list header to be split.
fn extension_elements(headers: Headers<'_>) -> Result<Vec<ExtensionParams>, ExtensionHeaderError> {
    let mut joined = String::new();
    for line in headers.get_all_bytes("sec-websocket-extensions") {
        let line = std::str::from_utf8(line).map_err(|_| ExtensionHeaderError {
            message: "the value is not UTF-8".into(),
        })?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(line);
    }
    parse_extensions(&joined)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A fake extension that lets the handshake tests steer negotiation through parameters.

    use crate::ws::extension::{
        AcceptedOffer, ExtMessage, Extension, ExtensionError, ExtensionParams, ExtensionSession,
        Rsv,
    };

    /// Declines offers carrying `decline`; refuses responses carrying `bad`.
    pub(crate) struct FakeExt(pub &'static str);

    struct FakeSession;

    impl ExtensionSession for FakeSession {
        fn rsv(&self) -> Rsv {
            Rsv::RSV1
        }
        fn encode(&mut self, m: ExtMessage) -> Result<ExtMessage, ExtensionError> {
            Ok(m)
        }
        fn decode(&mut self, m: ExtMessage, _: usize) -> Result<ExtMessage, ExtensionError> {
            Ok(m)
        }
    }

    fn has(p: &ExtensionParams, key: &str) -> bool {
        p.params.iter().any(|(k, _)| k == key)
    }

    impl Extension for FakeExt {
        fn name(&self) -> &str {
            self.0
        }
        fn rsv(&self) -> Rsv {
            Rsv::RSV1
        }
        fn accept_offer(
            &self,
            offers: &[&ExtensionParams],
        ) -> Result<Option<AcceptedOffer>, ExtensionError> {
            if offers.iter().any(|o| has(o, "decline")) {
                return Ok(None);
            }
            let response = ExtensionParams::new(self.0).with_param("agreed", None);
            Ok(Some((response, Box::new(FakeSession))))
        }
        fn client_offers(&self) -> Vec<ExtensionParams> {
            vec![ExtensionParams::new(self.0).with_param("level", Some("3".into()))]
        }
        fn accept_response(
            &self,
            response: &ExtensionParams,
        ) -> Result<Box<dyn ExtensionSession>, ExtensionError> {
            if has(response, "bad") {
                return Err(ExtensionError::new(format!("{}: bad parameter", self.0)));
            }
            Ok(Box::new(FakeSession))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::test_support::FakeExt;
    use super::*;
    use crate::http::{parse_request, HeadLimits};

    #[test]
    fn accept_key_matches_the_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn round_trip_in_memory_agrees_on_protocol_and_extensions() {
        let client_opts = ClientOptions::new()
            .protocol("v2.chat")
            .protocol("chat")
            .extension(Arc::new(FakeExt("x-fake")))
            .header("Origin", "http://example.com")
            .unwrap();
        let client =
            ClientHandshake::new("ws://example.com:9001/room?id=7", &client_opts, [9; 16]).unwrap();

        let (req, n) = parse_request(client.request_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, client.request_bytes().len());
        assert!(is_websocket_upgrade(&req));
        assert_eq!(req.path(), "/room");
        assert_eq!(req.query(), Some("id=7"));
        let server = ServerOptions::new()
            .protocol("chat")
            .extension(Arc::new(FakeExt("x-fake")));
        let accepted = server.accept(&req).unwrap();
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
        assert_eq!(accepted.extensions.len(), 1);

        let mut wire = accepted.response.clone();
        wire.extend_from_slice(b"\x81\x02hi");
        let (done, n) = client.read_response(&wire).unwrap().unwrap();
        assert_eq!(&wire[n..], b"\x81\x02hi");
        assert_eq!(done.status, 101);
        assert_eq!(done.protocol, accepted.protocol);
        assert_eq!(done.extensions.len(), 1);
    }

    #[test]
    fn round_trip_without_common_protocol_opens_without_one() {
        let client_opts = ClientOptions::new().protocol("a");
        let client = ClientHandshake::new("wss://h/", &client_opts, [9; 16]).unwrap();
        let (req, _) = parse_request(client.request_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        let accepted = ServerOptions::new().protocol("b").accept(&req).unwrap();
        let (done, _) = client.read_response(&accepted.response).unwrap().unwrap();
        assert_eq!(done.protocol, None);
        assert!(done.extensions.is_empty());
    }
}
