//! permessage-deflate negotiation (RFC 7692 section 7): reading offers and responses, choosing
//! the parameters each side compresses with, and writing them back.
//!
//! "Own" is the side this endpoint compresses (its sending direction), "peer" the side it
//! inflates. Which RFC parameter names each maps to depends on the role.

use super::DeflateOptions;
use crate::ws::extension::{ExtensionError, ExtensionParams};

/// The extension's registered name.
pub const NAME: &str = "permessage-deflate";

/// The largest LZ77 window, 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window the RFC allows, 256 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The four parameters of one offer or response, checked for grammar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `server_no_context_takeover` is present.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` is present.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`, bare (`Some(None)`) or with a value.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// What one connection agreed on: the window and context rules of each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// The window this endpoint compresses with (8..=15; 8 runs as 9, zlib's smallest).
    pub own_window_bits: u8,
    /// Whether this endpoint keeps its compression context from message to message.
    pub own_context_takeover: bool,
    /// The window the peer compresses with, which this endpoint inflates with.
    pub peer_window_bits: u8,
    /// Whether the peer keeps its context, so this endpoint must keep its inflate context.
    pub peer_context_takeover: bool,
}

fn invalid(message: String) -> ExtensionError {
    ExtensionError::new(format!("{NAME}: {message}"))
}

/// Reads a window size: digits only, 8 to 15.
fn window_bits(name: &str, value: &str) -> Result<u8, ExtensionError> {
    let bits = (value.len() <= 2 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u8>().ok())
        .flatten()
        .filter(|b| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(b));
    bits.ok_or_else(|| invalid(format!("{name}={value} is not a window size from 8 to 15")))
}

impl Params {
    /// Reads an element's parameters. Unknown or repeated parameters, a value on a flag, and a
    /// missing or out-of-range window size make the element invalid.
    pub fn parse(element: &ExtensionParams) -> Result<Params, ExtensionError> {
        let mut p = Params::default();
        let mut seen: Vec<&str> = Vec::with_capacity(4);
        for (key, value) in &element.params {
            if seen.contains(&key.as_str()) {
                return Err(invalid(format!("{key} appears twice")));
            }
            seen.push(key);
            let flag = |value: &Option<String>| match value {
                None => Ok(true),
                Some(v) => Err(invalid(format!("{key} takes no value, got {v:?}"))),
            };
            match key.as_str() {
                SERVER_NO_CONTEXT_TAKEOVER => p.server_no_context_takeover = flag(value)?,
                CLIENT_NO_CONTEXT_TAKEOVER => p.client_no_context_takeover = flag(value)?,
                SERVER_MAX_WINDOW_BITS => {
                    let v = value
                        .as_deref()
                        .ok_or_else(|| invalid(format!("{key} needs a value")))?;
                    p.server_max_window_bits = Some(window_bits(key, v)?);
                }
                CLIENT_MAX_WINDOW_BITS => {
                    p.client_max_window_bits = Some(match value.as_deref() {
                        None => None,
                        Some(v) => Some(window_bits(key, v)?),
                    });
                }
                other => return Err(invalid(format!("unknown parameter {other}"))),
            }
        }
        Ok(p)
    }

    /// Writes the parameters as an extension element, in RFC order.
    pub fn to_element(self) -> ExtensionParams {
        let mut e = ExtensionParams::new(NAME);
        if self.server_no_context_takeover {
            e = e.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if self.client_no_context_takeover {
            e = e.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if let Some(bits) = self.server_max_window_bits {
            e = e.with_param(SERVER_MAX_WINDOW_BITS, Some(bits.to_string()));
        }
        if let Some(bits) = self.client_max_window_bits {
            e = e.with_param(CLIENT_MAX_WINDOW_BITS, bits.map(|b| b.to_string()));
        }
        e
    }
}

/// Server role: answers one valid offer. Returns the response parameters and the agreement.
///
/// The server's own window is the smaller of its option and the client's
/// `server_max_window_bits`, named in the response whenever the client named it, 15 included:
/// RFC 7692 section 7.1.2.1 accepts that parameter only by answering it, and clients that
/// follow it (Python's websockets) fail the connection when it is missing.
/// `client_max_window_bits` is answered only when the client offered it (a client that did not
/// may not understand it). Either side's `no_context_takeover` is granted or imposed.
pub fn server_accept(offer: &Params, opts: &DeflateOptions) -> (Params, Agreement) {
    let own_context_takeover = !(opts.no_context_takeover || offer.server_no_context_takeover);
    let peer_context_takeover =
        !(opts.request_no_context_takeover || offer.client_no_context_takeover);
    let own_window_bits = opts
        .max_window_bits
        .min(offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS));
    let (peer_window_bits, client_bits_answer) = match offer.client_max_window_bits {
        Some(offered) => {
            let bits = opts
                .request_max_window_bits
                .unwrap_or(MAX_WINDOW_BITS)
                .min(offered.unwrap_or(MAX_WINDOW_BITS));
            (bits, (bits < MAX_WINDOW_BITS).then_some(Some(bits)))
        }
        None => (MAX_WINDOW_BITS, None),
    };
    let response = Params {
        server_no_context_takeover: !own_context_takeover,
        client_no_context_takeover: !peer_context_takeover,
        server_max_window_bits: offer.server_max_window_bits.map(|_| own_window_bits),
        client_max_window_bits: client_bits_answer,
    };
    let agreement = Agreement {
        own_window_bits,
        own_context_takeover,
        peer_window_bits,
        peer_context_takeover,
    };
    (response, agreement)
}

/// Client role: the offer built from the options. `client_max_window_bits` is always offered
/// (bare unless the option lowers it), so a server may shrink the client's window.
pub fn client_offer(opts: &DeflateOptions) -> Params {
    Params {
        server_no_context_takeover: opts.request_no_context_takeover,
        client_no_context_takeover: opts.no_context_takeover,
        server_max_window_bits: opts.request_max_window_bits,
        client_max_window_bits: Some(
            (opts.max_window_bits < MAX_WINDOW_BITS).then_some(opts.max_window_bits),
        ),
    }
}

/// Client role: checks the server's response against what was offered and agrees on it.
///
/// A response that ignores a request (no `server_no_context_takeover` when it was asked for, no
/// or a larger `server_max_window_bits` than asked) or that sends a bare
/// `client_max_window_bits` fails the handshake.
pub fn client_accept(
    response: &Params,
    opts: &DeflateOptions,
) -> Result<Agreement, ExtensionError> {
    if opts.request_no_context_takeover && !response.server_no_context_takeover {
        return Err(invalid(
            "the server ignored the request for server_no_context_takeover".into(),
        ));
    }
    if let Some(asked) = opts.request_max_window_bits {
        match response.server_max_window_bits {
            Some(bits) if bits <= asked => {}
            // 15 is what an absent parameter means anyway.
            None if asked == MAX_WINDOW_BITS => {}
            Some(bits) => {
                return Err(invalid(format!(
                    "server_max_window_bits={bits} is above the {asked} asked for"
                )))
            }
            None => {
                return Err(invalid(format!(
                    "the server ignored the request for server_max_window_bits={asked}"
                )))
            }
        }
    }
    let own_window_bits = match response.client_max_window_bits {
        // RFC 7692 7.1.2.2: the answer may lower the offered window, never raise it.
        Some(Some(bits)) if bits > opts.max_window_bits => {
            return Err(invalid(format!(
                "client_max_window_bits={bits} is above the {} offered",
                opts.max_window_bits
            )))
        }
        Some(Some(bits)) => bits,
        Some(None) => {
            return Err(invalid(
                "client_max_window_bits in a response needs a value".into(),
            ))
        }
        None => opts.max_window_bits,
    };
    Ok(Agreement {
        own_window_bits,
        own_context_takeover: !(opts.no_context_takeover || response.client_no_context_takeover),
        peer_window_bits: response.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
        peer_context_takeover: !response.server_no_context_takeover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::extension::parse_extensions;

    fn params(header: &str) -> Result<Params, ExtensionError> {
        Params::parse(&parse_extensions(header).unwrap()[0])
    }

    #[test]
    fn offers_are_read_with_every_parameter() {
        let p = params(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            p,
            Params {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(None),
            }
        );
        assert_eq!(
            params("permessage-deflate; client_max_window_bits=\"9\"")
                .unwrap()
                .client_max_window_bits,
            Some(Some(9))
        );
    }

    #[test]
    fn malformed_offers_are_invalid() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=008",
            "permessage-deflate; client_max_window_bits=1a",
            "permessage-deflate; client_max_window_bits=0",
        ] {
            assert!(params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn elements_round_trip() {
        let p = Params {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(None),
        };
        assert_eq!(Params::parse(&p.to_element()).unwrap(), p);
    }

    #[test]
    fn server_takes_the_smaller_window_and_names_it_only_when_asked() {
        let opts = DeflateOptions::new()
            .context_takeover(true)
            .max_window_bits(11);
        let (resp, a) = server_accept(&params("permessage-deflate").unwrap(), &opts);
        assert_eq!(resp, Params::default(), "nothing named, nothing answered");
        assert_eq!(a.own_window_bits, 11);
        assert_eq!(a.peer_window_bits, 15);
        let (resp, a) = server_accept(
            &params("permessage-deflate; server_max_window_bits=13").unwrap(),
            &opts,
        );
        assert_eq!(resp.server_max_window_bits, Some(11));
        assert_eq!(a.own_window_bits, 11);
    }

    /// Regression: an offer of `server_max_window_bits=15` was answered without the parameter
    /// ("15 is the default"), which websockets 15 refuses ("expected server_max_window_bits"),
    /// failing the handshake: RFC 7692 section 7.1.2.1 accepts the parameter only by answering
    /// it. Found by the interop tests (actors/tests/it/interop_python.rs).
    #[test]
    fn server_answers_server_max_window_bits_whenever_offered() {
        for own in [15, 11] {
            let (resp, a) = server_accept(
                &params("permessage-deflate; server_max_window_bits=15").unwrap(),
                &DeflateOptions::new().max_window_bits(own),
            );
            assert_eq!(resp.server_max_window_bits, Some(own));
            assert_eq!(a.own_window_bits, own);
        }
        let (resp, _) = server_accept(
            &params("permessage-deflate").unwrap(),
            &DeflateOptions::new(),
        );
        assert_eq!(
            resp.server_max_window_bits, None,
            "not offered, not answered"
        );
    }

    #[test]
    fn server_answers_client_window_only_when_offered() {
        let opts = DeflateOptions::new().request_max_window_bits(10);
        let (resp, a) = server_accept(&params("permessage-deflate").unwrap(), &opts);
        assert_eq!(resp.client_max_window_bits, None);
        assert_eq!(a.peer_window_bits, 15);
        let (resp, a) = server_accept(
            &params("permessage-deflate; client_max_window_bits").unwrap(),
            &opts,
        );
        assert_eq!(resp.client_max_window_bits, Some(Some(10)));
        assert_eq!(a.peer_window_bits, 10);
        let (resp, a) = server_accept(
            &params("permessage-deflate; client_max_window_bits=9").unwrap(),
            &opts,
        );
        assert_eq!(resp.client_max_window_bits, Some(Some(9)));
        assert_eq!(a.peer_window_bits, 9);
    }

    #[test]
    fn context_takeover_is_granted_or_imposed() {
        let (resp, a) = server_accept(
            &params("permessage-deflate; client_no_context_takeover").unwrap(),
            &DeflateOptions::new().context_takeover(true),
        );
        assert!(resp.client_no_context_takeover && !resp.server_no_context_takeover);
        assert!(a.own_context_takeover && !a.peer_context_takeover);
        let (resp, a) = server_accept(
            &params("permessage-deflate").unwrap(),
            &DeflateOptions::new()
                .context_takeover(true)
                .no_context_takeover(true)
                .request_no_context_takeover(true),
        );
        assert!(resp.server_no_context_takeover && resp.client_no_context_takeover);
        assert!(!a.own_context_takeover && !a.peer_context_takeover);
    }

    #[test]
    fn client_offers_its_window_and_requests() {
        let p = client_offer(&DeflateOptions::new().context_takeover(true));
        assert_eq!(p.client_max_window_bits, Some(None));
        assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
        let p = client_offer(
            &DeflateOptions::new()
                .max_window_bits(12)
                .request_max_window_bits(10)
                .request_no_context_takeover(true)
                .no_context_takeover(true),
        );
        assert_eq!(
            p,
            Params {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(Some(12)),
            }
        );
    }

    #[test]
    fn client_refuses_responses_that_ignore_its_requests() {
        let asks = DeflateOptions::new()
            .request_no_context_takeover(true)
            .request_max_window_bits(10);
        assert!(client_accept(&params("permessage-deflate").unwrap(), &asks).is_err());
        assert!(client_accept(
            &params("permessage-deflate; server_no_context_takeover; server_max_window_bits=11")
                .unwrap(),
            &asks
        )
        .is_err());
        let a = client_accept(
            &params(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; \
                 client_max_window_bits=12",
            )
            .unwrap(),
            &asks,
        )
        .unwrap();
        assert_eq!(a.peer_window_bits, 9);
        assert_eq!(a.own_window_bits, 12);
        assert!(!a.peer_context_takeover);
        assert!(client_accept(
            &params("permessage-deflate; client_max_window_bits").unwrap(),
            &DeflateOptions::new()
        )
        .is_err());
        assert!(client_accept(
            &params("permessage-deflate; client_max_window_bits=12").unwrap(),
            &DeflateOptions::new()
                .context_takeover(true)
                .max_window_bits(10)
        )
        .is_err());
    }
}
