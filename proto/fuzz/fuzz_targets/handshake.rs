//! The handshake parsers on arbitrary bytes: request head → server accept, response head →
//! client checks, and the extension header grammar. None may panic; a parsed head's length never
//! exceeds the input; an accepted request's 101 answer is itself a parseable response head.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringsock_proto::http::{parse_request, parse_response, HeadLimits};
use ringsock_proto::ws::extension::parse_extensions;
use ringsock_proto::ws::{ClientHandshake, ClientOptions, ServerOptions};

fn client() -> &'static ClientHandshake {
    static CLIENT: OnceLock<ClientHandshake> = OnceLock::new();
    CLIENT.get_or_init(|| {
        ClientHandshake::new(
            "ws://example.test/chat",
            &ClientOptions::new().protocol("a"),
            *b"the sample nonce",
        )
        .expect("a valid URL")
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits::default();
    if let Ok(Some((request, len))) = parse_request(data, &limits) {
        assert!(len <= data.len());
        let server = ServerOptions::new().protocol("a").protocol("b");
        match server.accept(&request) {
            Ok(accepted) => {
                let parsed = parse_response(&accepted.response, &limits);
                assert!(matches!(parsed, Ok(Some(_))), "our 101 must parse");
            }
            Err(refusal) => {
                let _ = refusal.to_response();
            }
        }
    }
    if let Ok(Some((_, len))) = client().read_response(data) {
        assert!(len <= data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_extensions(text);
    }
});
