//! Server role: checking an upgrade request and answering it with 101 or a refusal.

use std::fmt;
use std::sync::Arc;

use base64_simd::AsOut;

use super::{accept_key, extension_elements};
use crate::http::headers::trim_ows;
use crate::http::response::plain_text_skipping_invalid;
use crate::http::{
    is_token, validate_header, HeadError, HeadWriter, InvalidHeader, InvalidHeaderReason,
    RequestHead, Version,
};
use crate::ws::extension::{format_extensions, negotiate_server, Extension, ExtensionSession};

/// Picks a subprotocol from the client's list (in the client's order). Its answer must be one of
/// those entries; see [`ServerOptions::select_protocol`].
pub type ProtocolSelector = Arc<dyn Fn(&[&str]) -> Option<String> + Send + Sync>;

/// Headers a 101 answer gets from the handshake itself; a configured header by one of these names
/// would contradict it.
const RESERVED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Whether `req` asks for a WebSocket: an HTTP/1.1 `GET` whose `Connection` list holds `upgrade`
/// and whose `Upgrade` list holds `websocket` (both case-insensitive).
pub fn is_websocket_upgrade(req: &RequestHead) -> bool {
    upgrade_problem(req).is_none()
}

fn upgrade_problem(req: &RequestHead) -> Option<&'static str> {
    let h = req.headers();
    if req.method() != "GET" {
        Some("Not a WebSocket handshake request: the method must be GET")
    } else if req.version() < Version::Http11 {
        Some("Not a WebSocket handshake request: HTTP/1.1 is required")
    } else if !h.has_token("connection", "upgrade") {
        Some("Not a WebSocket handshake request: 'Connection' header must contain 'Upgrade'")
    } else if !h.has_token("upgrade", "websocket") {
        Some("Not a WebSocket handshake request: 'Upgrade' header must be 'websocket'")
    } else {
        None
    }
}

/// A key is the base64 of 16 bytes: 24 characters, padded, and canonical (re-encoding the bytes
/// gives the same text), so each key has exactly one accepted spelling.
fn is_valid_key(key: &[u8]) -> bool {
    if key.len() != 24 {
        return false;
    }
    let mut raw = [0u8; 18];
    match base64_simd::STANDARD.decode(key, raw.as_mut_slice().as_out()) {
        Ok(bytes) if bytes.len() == 16 => {
            let mut text = [0u8; 24];
            base64_simd::STANDARD.encode(bytes, text.as_mut_slice().as_out()) == key
        }
        _ => false,
    }
}

/// A server's handshake settings: subprotocols, extensions and extra response headers.
///
/// Built once and shared by every connection; [`ServerOptions::accept`] answers one request.
#[derive(Clone, Default)]
pub struct ServerOptions {
    protocols: Vec<String>,
    selector: Option<ProtocolSelector>,
    extensions: Vec<Arc<dyn Extension>>,
    headers: Vec<(String, String)>,
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("protocols", &self.protocols)
            .field("selector", &self.selector.is_some())
            .field(
                "extensions",
                &self.extensions.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .field("headers", &self.headers)
            .finish()
    }
}

impl ServerOptions {
    /// No subprotocols, no extensions, no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a supported subprotocol. The first entry of the client's list that is supported is
    /// chosen, so the client's preference wins, as in faye.
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Lets `select` choose the subprotocol instead of the supported list. It is called only when
    /// the client offers at least one, with the client's entries in order; `None` opens without a
    /// subprotocol. An answer the client did not offer is a server bug: the client would fail
    /// the handshake anyway, so the request is refused with 500 and the reason says why.
    pub fn select_protocol(
        mut self,
        select: impl Fn(&[&str]) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.selector = Some(Arc::new(select));
        self
    }

    /// Registers an extension. Order matters only for RSV-bit clashes; see
    /// [`crate::ws::extension::negotiate_server`].
    pub fn extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Accepts permessage-deflate with these settings whenever a client offers it.
    pub fn deflate(self, options: crate::ws::deflate::DeflateOptions) -> Self {
        self.extension(Arc::new(crate::ws::deflate::PerMessageDeflate::new(
            options,
        )))
    }

    /// Adds a header to every 101 answer, after the handshake's own. Refused here, when the
    /// server is configured, if the name is not a token, the value holds CR, LF or another control
    /// character, or the handshake sets that header itself.
    pub fn header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidHeader> {
        let (name, value) = (name.into(), value.into());
        validate_header(&name, &value)?;
        if is_reserved(&name) {
            return Err(InvalidHeader::new(&name, InvalidHeaderReason::Reserved));
        }
        self.headers.push((name, value));
        Ok(self)
    }

    /// Checks an upgrade request and writes the answer.
    ///
    /// The checks, in order: it is an upgrade ([`is_websocket_upgrade`]); `Sec-WebSocket-Version`
    /// is `13` (else 400 with `Sec-WebSocket-Version: 13`, RFC 6455 4.4); `Sec-WebSocket-Key` is
    /// present once and is 16 bytes of base64; there is no request body (bytes after the head
    /// are read as frames, so a body would be misread); `Sec-WebSocket-Extensions` follows the
    /// grammar; `Sec-WebSocket-Protocol` entries are tokens. Every refusal is a 400 except a
    /// selector answering with an unoffered protocol (500).
    pub fn accept(&self, req: &RequestHead) -> Result<Negotiated, Refusal> {
        self.accept_with(req, |_| Ok::<_, Refusal>(Decision::default()))
            .map_err(|e| match e {
                UpgradeError::Refused(r) | UpgradeError::Decided(r) => r,
            })
    }

    /// [`ServerOptions::accept`] with the application's say: once the request has passed every
    /// check, `decide` sees the client's subprotocols (in its order) and may refuse with its own
    /// answer (`E`), pick the subprotocol, and add response headers.
    pub fn accept_with<E>(
        &self,
        req: &RequestHead,
        decide: impl FnOnce(&[&str]) -> Result<Decision, E>,
    ) -> Result<Negotiated, UpgradeError<E>> {
        let refuse = |r: Refusal| Err(UpgradeError::Refused(r));
        if let Some(problem) = upgrade_problem(req) {
            return refuse(Refusal::bad_request(problem));
        }
        let h = req.headers();

        let version_refusal =
            |reason: &str| Refusal::bad_request(reason).with_header("Sec-WebSocket-Version", "13");
        match (
            h.count("sec-websocket-version"),
            h.get_bytes("sec-websocket-version"),
        ) {
            (0, _) => {
                return refuse(version_refusal(
                    "Missing handshake request header: Sec-WebSocket-Version",
                ))
            }
            (1, Some(v)) if trim_ows(v) == b"13" => {}
            _ => {
                return refuse(version_refusal(
                    "Unsupported WebSocket version: only 13 is supported",
                ))
            }
        }

        let key = match (
            h.count("sec-websocket-key"),
            h.get_bytes("sec-websocket-key"),
        ) {
            (0, _) | (_, None) => {
                return refuse(Refusal::bad_request(
                    "Missing handshake request header: Sec-WebSocket-Key",
                ))
            }
            (1, Some(key)) => trim_ows(key),
            _ => {
                return refuse(Refusal::bad_request(
                    "Sec-WebSocket-Key must appear only once",
                ))
            }
        };
        if !is_valid_key(key) {
            return refuse(Refusal::bad_request(
                "Invalid Sec-WebSocket-Key: it must be 16 bytes in base64",
            ));
        }

        let has_body = h.contains("transfer-encoding")
            || h.get_all_bytes("content-length")
                .any(|v| trim_ows(v) != b"0");
        if has_body {
            return refuse(Refusal::bad_request(
                "A WebSocket handshake request must not have a body",
            ));
        }

        let offers = extension_elements(h)
            .map_err(|e| UpgradeError::Refused(Refusal::bad_request(e.to_string())))?;

        let mut offered: Vec<&str> = Vec::new();
        for line in h.get_all_bytes("sec-websocket-protocol") {
            for entry in line.split(|&b| b == b',').map(trim_ows) {
                if entry.is_empty() {
                    continue;
                }
                match std::str::from_utf8(entry) {
                    Ok(entry) if is_token(entry) => offered.push(entry),
                    _ => {
                        return refuse(Refusal::bad_request(
                            "Invalid Sec-WebSocket-Protocol header: every entry must be a token",
                        ))
                    }
                }
            }
        }
        let decision = decide(&offered).map_err(UpgradeError::Decided)?;
        let protocol = match decision.protocol {
            Some(p) if offered.contains(&p.as_str()) => Some(p),
            Some(_) => {
                return refuse(Refusal::new(
                    500,
                    "The upgrade hook chose a subprotocol the client did not offer",
                ))
            }
            None => self.select(&offered).map_err(UpgradeError::Refused)?,
        };

        let (responses, extensions) = negotiate_server(&self.extensions, &offers);

        let server_error = |e: InvalidHeader| {
            UpgradeError::Refused(Refusal::new(
                500,
                format!("Invalid response header configured on the server: {e}"),
            ))
        };
        let mut w = HeadWriter::response(101);
        w.header("Upgrade", "websocket")
            .and_then(|w| w.header("Connection", "Upgrade"))
            .and_then(|w| w.header("Sec-WebSocket-Accept", &accept_key(key)))
            .map_err(server_error)?;
        if let Some(p) = &protocol {
            w.header("Sec-WebSocket-Protocol", p)
                .map_err(server_error)?;
        }
        if !responses.is_empty() {
            w.header("Sec-WebSocket-Extensions", &format_extensions(&responses))
                .map_err(server_error)?;
        }
        for (name, value) in self.headers.iter().chain(&decision.headers) {
            if is_reserved(name) {
                return Err(server_error(InvalidHeader::new(
                    name,
                    InvalidHeaderReason::Reserved,
                )));
            }
            w.header(name, value).map_err(server_error)?;
        }
        Ok(Negotiated {
            response: w.finish(),
            protocol,
            extensions,
        })
    }

    fn select(&self, offered: &[&str]) -> Result<Option<String>, Refusal> {
        if offered.is_empty() {
            return Ok(None);
        }
        let Some(select) = &self.selector else {
            return Ok(offered
                .iter()
                .find(|p| self.protocols.iter().any(|s| s == *p))
                .map(|p| (*p).to_owned()));
        };
        match select(offered) {
            None => Ok(None),
            Some(p) if offered.contains(&p.as_str()) => Ok(Some(p)),
            Some(_) => Err(Refusal::new(
                500,
                "Subprotocol selector chose a protocol the client did not offer",
            )),
        }
    }
}

/// What the application adds to an accepted handshake (see [`ServerOptions::accept_with`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The subprotocol; it must be one the client offered. `None` leaves the choice to the
    /// server's options.
    pub protocol: Option<String>,
    /// Headers added to the 101 answer.
    pub headers: Vec<(String, String)>,
}

/// Why [`ServerOptions::accept_with`] did not upgrade.
#[derive(Debug, PartialEq, Eq)]
pub enum UpgradeError<E> {
    /// The request failed a handshake check (or the server's configuration is wrong).
    Refused(Refusal),
    /// The application refused it.
    Decided(E),
}

/// A request the server agreed to upgrade.
pub struct Negotiated {
    /// The complete 101 head to send; frames may follow it at once.
    pub response: Vec<u8>,
    /// The chosen subprotocol, if any.
    pub protocol: Option<String>,
    /// The negotiated extension sessions, in order, for the connection.
    pub extensions: Vec<Box<dyn ExtensionSession>>,
}

impl fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiated")
            .field("response", &String::from_utf8_lossy(&self.response))
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

/// A request the server will not upgrade: the status, a reason for a person (sent as the
/// plain-text body) and extra headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Refusal {
    /// The HTTP status, 400 for a bad handshake.
    pub status: u16,
    /// Why, sent as the body.
    pub reason: String,
    /// Extra headers for the answer.
    pub headers: Vec<(String, String)>,
}

impl Refusal {
    /// A refusal with no extra headers.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// A `400 Bad Request` refusal.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(400, reason)
    }

    /// Adds a header (builder style); it is checked when the answer is written.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The complete answer: status line, `Content-Type: text/plain`, `Content-Length`,
    /// `Connection: close`, the extra headers, and the reason as body. A refusal must always be
    /// sendable, so an extra header that is invalid (CR/LF in the value, bad name) or that would
    /// contradict those written here is left out rather than written.
    pub fn to_response(&self) -> Vec<u8> {
        plain_text_skipping_invalid(
            self.status,
            &self.reason,
            self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        )
    }
}

impl From<HeadError> for Refusal {
    /// The answer to a head that could not be parsed: 431 or 400, with the parse error as reason.
    fn from(e: HeadError) -> Self {
        Refusal::new(e.status(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::test_support::FakeExt;
    use super::*;
    use crate::http::{parse_request, HeadLimits};

    const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn req(raw: &str) -> RequestHead {
        parse_request(raw.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    /// A valid upgrade request with `extra` header lines added.
    fn upgrade_with(extra: &str) -> RequestHead {
        req(&format!(
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        ))
    }

    /// A valid upgrade request without the lines starting with `drop`, plus `extra`.
    fn upgrade_without(drop: &str, extra: &str) -> RequestHead {
        let base = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        let kept: String = base
            .split_inclusive("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with(drop))
            .collect();
        req(&format!("GET / HTTP/1.1\r\n{kept}{extra}\r\n"))
    }

    fn refusal(opts: &ServerOptions, r: &RequestHead) -> Refusal {
        opts.accept(r).unwrap_err()
    }

    #[test]
    fn accept_happy_path_is_byte_exact_against_the_rfc_6455_example() {
        let a = ServerOptions::new()
            .protocol("chat")
            .accept(&req(RFC_REQUEST))
            .unwrap();
        assert_eq!(
            String::from_utf8(a.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
        assert_eq!(a.protocol.as_deref(), Some("chat"));
        assert!(a.extensions.is_empty());
    }

    #[test]
    fn upgrade_detection_understands_token_lists_and_case() {
        for extra in [
            "Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n",
            "Connection: keep-alive\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n",
        ] {
            assert!(is_websocket_upgrade(&req(&format!(
                "GET / HTTP/1.1\r\n{extra}\r\n"
            ))));
        }
    }

    #[test]
    fn request_that_is_not_an_upgrade_is_refused_with_400() {
        let opts = ServerOptions::new();
        for (raw, reason) in [
            (
                RFC_REQUEST.replacen("GET", "POST", 1),
                "Not a WebSocket handshake request: the method must be GET",
            ),
            (
                RFC_REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1),
                "Not a WebSocket handshake request: HTTP/1.1 is required",
            ),
            (
                RFC_REQUEST.replacen("Connection: Upgrade", "Connection: keep-alive", 1),
                "Not a WebSocket handshake request: 'Connection' header must contain 'Upgrade'",
            ),
            (
                RFC_REQUEST.replacen("Upgrade: websocket", "Upgrade: h2c", 1),
                "Not a WebSocket handshake request: 'Upgrade' header must be 'websocket'",
            ),
        ] {
            let r = req(&raw);
            assert!(!is_websocket_upgrade(&r));
            assert_eq!(refusal(&opts, &r), Refusal::bad_request(reason));
        }
    }

    #[test]
    fn version_other_than_13_is_refused_with_400_and_version_header() {
        let opts = ServerOptions::new();
        for extra in [
            "",
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 13, 8\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n",
        ] {
            let r = refusal(&opts, &upgrade_without("sec-websocket-version", extra));
            assert_eq!(r.status, 400, "{extra:?}");
            assert_eq!(r.headers, [("Sec-WebSocket-Version".into(), "13".into())]);
        }
        let missing = refusal(&opts, &upgrade_without("sec-websocket-version", ""));
        assert_eq!(
            missing.reason,
            "Missing handshake request header: Sec-WebSocket-Version"
        );
        let resp = String::from_utf8(missing.to_response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
        assert!(resp.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{resp}");
        assert!(resp.ends_with("\r\n\r\nMissing handshake request header: Sec-WebSocket-Version"));
    }

    #[test]
    fn missing_or_repeated_key_is_refused_with_400() {
        let opts = ServerOptions::new();
        assert_eq!(
            refusal(&opts, &upgrade_without("sec-websocket-key", "")),
            Refusal::bad_request("Missing handshake request header: Sec-WebSocket-Key")
        );
        assert_eq!(
            refusal(
                &opts,
                &upgrade_with("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n")
            ),
            Refusal::bad_request("Sec-WebSocket-Key must appear only once")
        );
    }

    #[test]
    fn key_that_is_not_16_bytes_of_canonical_base64_is_refused_with_400() {
        let opts = ServerOptions::new();
        for key in [
            "dGhlIHNhbXBsZSBub25jZR==",     // non-zero padding bits
            "dGhlIHNhbXBsZSBub25jZQ",       // unpadded
            "AAAAAAAAAAAAAAAAAAAAAAAA",     // 18 bytes
            "AAAAAAAAAAAAAAAAAAAA",         // 15 bytes
            "dGhlIHNhbXBsZSBub25j*Q==",     // not base64
            "dGhlIHNhbXBsZSBub25jZQ==AAAA", // too long
            "",
        ] {
            let r = refusal(
                &opts,
                &upgrade_without(
                    "sec-websocket-key",
                    &format!("Sec-WebSocket-Key: {key}\r\n"),
                ),
            );
            assert_eq!(
                r,
                Refusal::bad_request("Invalid Sec-WebSocket-Key: it must be 16 bytes in base64"),
                "{key:?}"
            );
        }
    }

    #[test]
    fn request_with_a_body_is_refused_with_400() {
        let opts = ServerOptions::new();
        for extra in ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"] {
            assert_eq!(refusal(&opts, &upgrade_with(extra)).status, 400, "{extra}");
        }
        assert!(opts.accept(&upgrade_with("Content-Length: 0\r\n")).is_ok());
    }

    #[test]
    fn malformed_extensions_header_is_refused_with_400() {
        let opts = ServerOptions::new().extension(Arc::new(FakeExt("x-fake")));
        let r = refusal(
            &opts,
            &upgrade_with("Sec-WebSocket-Extensions: x-fake; =1\r\n"),
        );
        assert_eq!(r.status, 400);
        assert!(
            r.reason
                .starts_with("Invalid Sec-WebSocket-Extensions header: "),
            "{}",
            r.reason
        );
    }

    #[test]
    fn extension_offered_and_registered_is_negotiated_across_lines() {
        let opts = ServerOptions::new().extension(Arc::new(FakeExt("x-fake")));
        let a = opts
            .accept(&upgrade_with(
                "Sec-WebSocket-Extensions: x-unknown\r\nSec-WebSocket-Extensions: x-fake; a=1\r\n",
            ))
            .unwrap();
        assert_eq!(a.extensions.len(), 1);
        let resp = String::from_utf8(a.response).unwrap();
        assert!(
            resp.contains("\r\nSec-WebSocket-Extensions: x-fake; agreed\r\n"),
            "{resp}"
        );
    }

    #[test]
    fn declined_or_unregistered_extension_gives_no_extensions_header() {
        let opts = ServerOptions::new().extension(Arc::new(FakeExt("x-fake")));
        for extra in [
            "Sec-WebSocket-Extensions: x-fake; decline\r\n",
            "Sec-WebSocket-Extensions: x-other\r\n",
            "",
        ] {
            let a = opts.accept(&upgrade_with(extra)).unwrap();
            assert!(a.extensions.is_empty());
            assert!(!String::from_utf8(a.response)
                .unwrap()
                .contains("Sec-WebSocket-Extensions"));
        }
    }

    #[test]
    fn subprotocol_is_the_first_client_entry_the_server_supports() {
        let opts = ServerOptions::new().protocol("chat").protocol("superchat");
        let a = opts
            .accept(&upgrade_with(
                "Sec-WebSocket-Protocol: unknown, superchat\r\nSec-WebSocket-Protocol: chat\r\n",
            ))
            .unwrap();
        assert_eq!(a.protocol.as_deref(), Some("superchat"));
        assert!(String::from_utf8(a.response)
            .unwrap()
            .contains("\r\nSec-WebSocket-Protocol: superchat\r\n"));
    }

    #[test]
    fn no_matching_subprotocol_opens_without_the_header() {
        let opts = ServerOptions::new().protocol("chat");
        for extra in ["Sec-WebSocket-Protocol: other, CHAT\r\n", ""] {
            let a = opts.accept(&upgrade_with(extra)).unwrap();
            assert_eq!(a.protocol, None);
            assert!(!String::from_utf8(a.response)
                .unwrap()
                .contains("Sec-WebSocket-Protocol"));
        }
    }

    #[test]
    fn subprotocol_callback_decides_instead_of_the_list() {
        let opts = ServerOptions::new()
            .protocol("a")
            .select_protocol(|offered| offered.last().map(|p| p.to_string()));
        let a = opts
            .accept(&upgrade_with("Sec-WebSocket-Protocol: a, b, c\r\n"))
            .unwrap();
        assert_eq!(a.protocol.as_deref(), Some("c"));

        let none = ServerOptions::new().protocol("a").select_protocol(|_| None);
        let a = none
            .accept(&upgrade_with("Sec-WebSocket-Protocol: a\r\n"))
            .unwrap();
        assert_eq!(a.protocol, None);
    }

    #[test]
    fn subprotocol_callback_answering_an_unoffered_protocol_is_a_500() {
        let opts = ServerOptions::new().select_protocol(|_| Some("zzz".into()));
        let r = refusal(&opts, &upgrade_with("Sec-WebSocket-Protocol: a\r\n"));
        assert_eq!(r.status, 500);
        assert_eq!(
            r.reason,
            "Subprotocol selector chose a protocol the client did not offer"
        );
    }

    #[test]
    fn subprotocol_callback_is_not_called_when_the_client_offers_none() {
        static CALLED: AtomicBool = AtomicBool::new(false);
        let opts = ServerOptions::new().select_protocol(|_| {
            CALLED.store(true, Ordering::SeqCst);
            Some("x".into())
        });
        assert_eq!(opts.accept(&upgrade_with("")).unwrap().protocol, None);
        assert!(!CALLED.load(Ordering::SeqCst));
    }

    #[test]
    fn subprotocol_entry_that_is_not_a_token_is_refused_with_400() {
        let r = refusal(
            &ServerOptions::new(),
            &upgrade_with("Sec-WebSocket-Protocol: chat, a/b\r\n"),
        );
        assert_eq!(r.status, 400);
    }

    #[test]
    fn user_header_with_cr_or_lf_is_refused_when_configuring() {
        for value in ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b"] {
            assert!(
                ServerOptions::new().header("X-Test", value).is_err(),
                "{value:?}"
            );
        }
        assert_eq!(
            ServerOptions::new()
                .header("Bad Name", "v")
                .unwrap_err()
                .reason,
            InvalidHeaderReason::NameNotToken
        );
    }

    #[test]
    fn user_header_the_handshake_sets_is_refused_when_configuring() {
        for name in [
            "Upgrade",
            "connection",
            "Sec-WebSocket-Accept",
            "Content-Length",
        ] {
            assert_eq!(
                ServerOptions::new().header(name, "x").unwrap_err().reason,
                InvalidHeaderReason::Reserved,
                "{name}"
            );
        }
    }

    #[test]
    fn user_headers_follow_the_handshake_headers() {
        let opts = ServerOptions::new()
            .header("X-Server", "ringsock")
            .unwrap()
            .header("Set-Cookie", "a=b")
            .unwrap();
        let resp = String::from_utf8(opts.accept(&req(RFC_REQUEST)).unwrap().response).unwrap();
        assert!(
            resp.ends_with(
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Server: ringsock\r\nSet-Cookie: a=b\r\n\r\n"
            ),
            "{resp}"
        );
    }

    #[test]
    fn refusal_response_is_plain_text_with_close_and_reason_body() {
        let r = Refusal::new(403, "no entry").with_header("X-Why", "policy");
        assert_eq!(
            String::from_utf8(r.to_response()).unwrap(),
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\
             Connection: close\r\nX-Why: policy\r\n\r\nno entry"
        );
    }

    #[test]
    fn refusal_leaves_out_invalid_or_conflicting_headers() {
        let r = Refusal::bad_request("x")
            .with_header("X-Evil", "a\r\nSet-Cookie: pwned")
            .with_header("Content-Length", "999")
            .with_header("X-Ok", "1");
        let resp = String::from_utf8(r.to_response()).unwrap();
        assert!(!resp.contains("pwned") && !resp.contains("999"), "{resp}");
        assert!(resp.contains("\r\nX-Ok: 1\r\n"), "{resp}");
    }

    #[test]
    fn head_errors_become_431_or_400_refusals() {
        let r = Refusal::from(HeadError::TooLarge { limit: 8192 });
        assert_eq!(
            (r.status, r.reason.as_str()),
            (431, "HTTP head larger than 8192 bytes")
        );
        assert!(r
            .to_response()
            .starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert_eq!(Refusal::from(HeadError::Malformed("x")).status, 400);
    }
}
