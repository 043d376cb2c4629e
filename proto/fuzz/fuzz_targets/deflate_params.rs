//! permessage-deflate negotiation on arbitrary `Sec-WebSocket-Extensions` values, in both roles.
//! Nothing may panic; a server's answer must itself parse, and a client built from the same
//! options must accept it (the two roles agree on what the rules allow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsock_proto::ws::deflate::{DeflateOptions, PerMessageDeflate};
use ringsock_proto::ws::extension::{format_extensions, parse_extensions, Extension, ExtensionParams};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(elements) = parse_extensions(text) else {
        return;
    };
    let offers: Vec<&ExtensionParams> = elements
        .iter()
        .filter(|e| e.name == "permessage-deflate")
        .collect();
    for takeover in [false, true] {
        let options = DeflateOptions::new().context_takeover(takeover);
        let server = PerMessageDeflate::new(options.clone());
        if let Ok(Some((response, _))) = server.accept_offer(&offers) {
            let again = parse_extensions(&format_extensions(std::slice::from_ref(&response)))
                .expect("the server's answer parses");
            assert_eq!(again, [response]);
        }
        // Any element as a server's answer: a typed error or a session, never a panic.
        let client = PerMessageDeflate::new(options);
        for e in &offers {
            let _ = client.accept_response(e);
        }
    }
});
