//! Client role: writing the upgrade request and checking the server's answer.

use std::fmt;
use std::sync::Arc;

use super::{accept_key, extension_elements, HandshakeError};
use crate::endpoint::{Endpoint, Schemes};
use crate::http::headers::trim_ows;
use crate::http::{
    is_token, parse_response, validate_header, HeadLimits, HeadWriter, InvalidHeader,
    InvalidHeaderReason, ResponseHead,
};
use crate::ws::extension::{
    client_offers, format_extensions, negotiate_client, Extension, ExtensionError, ExtensionSession,
};

/// Request headers the handshake writes itself; a configured header by one of these names would
/// contradict it. `Authorization` is not here: an explicit one replaces the URL's userinfo.
const RESERVED: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

fn check_user_header(name: &str, value: &str) -> Result<(), InvalidHeader> {
    validate_header(name, value)?;
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(InvalidHeader::new(name, InvalidHeaderReason::Reserved));
    }
    Ok(())
}

/// A client's protocol settings: subprotocols to offer, extensions, extra request headers and
/// the response head limits. (How the connection reaches the server, TLS, a proxy, the connect
/// timeout, is the transport's business: `ringsock_engine::client::ConnectOptions`.)
#[derive(Clone, Default)]
pub struct ClientOptions {
    protocols: Vec<String>,
    extensions: Vec<Arc<dyn Extension>>,
    headers: Vec<(String, String)>,
    limits: HeadLimits,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("protocols", &self.protocols)
            .field(
                "extensions",
                &self.extensions.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .field("headers", &self.headers)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ClientOptions {
    /// No subprotocols, no extensions, no extra headers, default head limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subprotocol to offer, in order of preference. Each must be a token, listed once;
    /// [`ClientHandshake::new`] checks.
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Registers an extension; offers go out in registration order.
    pub fn extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Offers permessage-deflate with these settings.
    pub fn deflate(self, options: crate::ws::deflate::DeflateOptions) -> Self {
        self.extension(Arc::new(crate::ws::deflate::PerMessageDeflate::new(
            options,
        )))
    }

    /// Adds a request header (e.g. `Origin`, `Cookie`). Refused if the name is not a token, the
    /// value holds CR, LF or another control character, or the handshake sets that header
    /// itself. An `Authorization` header here replaces the one built from the URL's userinfo.
    pub fn header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidHeader> {
        let (name, value) = (name.into(), value.into());
        check_user_header(&name, &value)?;
        self.headers.push((name, value));
        Ok(self)
    }

    /// Sets the limits for the server's response head.
    pub fn head_limits(mut self, limits: HeadLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// One client handshake: the request to send and what the answer must contain.
#[derive(Clone)]
pub struct ClientHandshake {
    request: Vec<u8>,
    host: String,
    port: u16,
    secure: bool,
    key: String,
    accept: String,
    protocols: Vec<String>,
    extensions: Vec<Arc<dyn Extension>>,
    limits: HeadLimits,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The request is left out: it may carry credentials.
        f.debug_struct("ClientHandshake")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("secure", &self.secure)
            .field("key", &self.key)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Prepares the handshake for `url` (ws: or wss:). `nonce` is the `Sec-WebSocket-Key`
    /// before base64: RFC 6455 wants it random and fresh for each handshake, so the caller
    /// draws it from its generator (a test can pin it). A fragment in the URL is dropped: RFC
    /// 6455 3 gives it no meaning and it never goes on the wire.
    pub fn new(
        url: &str,
        opts: &ClientOptions,
        nonce: [u8; 16],
    ) -> Result<ClientHandshake, HandshakeError> {
        // The URL is left out of error texts: its userinfo may hold a password.
        let endpoint = Endpoint::parse(url, Schemes::WEBSOCKET)
            .map_err(|e| HandshakeError::InvalidUrl(e.to_string()))?;
        let url = &endpoint.url;
        // `url` drops a port equal to the scheme's default, so Host carries one only when it
        // differs, as browsers send it; `host_str` already brackets IPv6 addresses.
        let mut host_header = url.host_str().unwrap_or_default().to_owned();
        if let Some(p) = url.port() {
            host_header.push(':');
            host_header.push_str(&p.to_string());
        }
        let mut target = url.path().to_owned();
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }

        for (n, p) in opts.protocols.iter().enumerate() {
            if !is_token(p) || opts.protocols[..n].contains(p) {
                return Err(HandshakeError::InvalidProtocol(p.clone()));
            }
        }

        let key = base64_simd::STANDARD.encode_to_string(nonce);
        let mut w = HeadWriter::request("GET", &target);
        w.header("Host", &host_header)?
            .header("Upgrade", "websocket")?
            .header("Connection", "Upgrade")?
            .header("Sec-WebSocket-Key", &key)?
            .header("Sec-WebSocket-Version", "13")?;
        if !opts.protocols.is_empty() {
            w.header("Sec-WebSocket-Protocol", &opts.protocols.join(", "))?;
        }
        let offers = client_offers(&opts.extensions);
        if !offers.is_empty() {
            w.header("Sec-WebSocket-Extensions", &format_extensions(&offers))?;
        }
        let explicit_auth = opts
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (Some(basic), false) = (&endpoint.basic_auth, explicit_auth) {
            w.header("Authorization", basic)?;
        }
        for (name, value) in &opts.headers {
            // Checked again here because this is where the bytes are written.
            check_user_header(name, value)?;
            w.header(name, value)?;
        }

        Ok(ClientHandshake {
            request: w.finish(),
            host: endpoint.host,
            port: endpoint.port,
            secure: endpoint.secure,
            accept: accept_key(key.as_bytes()),
            key,
            protocols: opts.protocols.clone(),
            extensions: opts.extensions.clone(),
            limits: opts.limits,
        })
    }

    /// The complete request head to send.
    pub fn request_bytes(&self) -> &[u8] {
        &self.request
    }

    /// The host to connect to (and to name in TLS SNI): a domain in ASCII form or an IP address,
    /// IPv6 without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to; 80 or 443 when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URL is wss:, i.e. the connection needs TLS.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` the server must answer with.
    pub fn expected_accept(&self) -> &str {
        &self.accept
    }

    /// Reads the server's answer from the start of `buf`.
    ///
    /// `Ok(None)`: the head is incomplete; call again with more bytes. `Ok(Some((accepted, n)))`:
    /// the handshake succeeded and the head took `n` bytes; the rest of `buf` are WebSocket
    /// frames. The checks, in faye's order: status 101; `Upgrade: websocket`; `Connection` holds
    /// `upgrade`; `Sec-WebSocket-Accept` matches; `Sec-WebSocket-Protocol`, if present, is a
    /// single protocol that was offered; `Sec-WebSocket-Extensions` is accepted by the registered
    /// extensions.
    pub fn read_response(
        &self,
        buf: &[u8],
    ) -> Result<Option<(ClientNegotiated, usize)>, HandshakeError> {
        let Some((response, len)) = parse_response(buf, &self.limits)? else {
            return Ok(None);
        };
        match self.check(&response) {
            Ok((protocol, extensions)) => Ok(Some((
                ClientNegotiated {
                    status: response.status(),
                    response,
                    protocol,
                    extensions,
                },
                len,
            ))),
            Err(failure) => Err(failure.into_error(Box::new(response))),
        }
    }

    fn check(&self, response: &ResponseHead) -> Result<Negotiated, Failure> {
        if response.status() != 101 {
            return Err(Failure::Status);
        }
        let h = response.headers();

        if h.count("upgrade") == 0 {
            return Err(Failure::MissingUpgrade);
        }
        let mut upgrade = h.tokens("upgrade");
        match (upgrade.next(), upgrade.next()) {
            (Some(u), None) if u.eq_ignore_ascii_case("websocket") => {}
            _ => return Err(Failure::BadUpgrade),
        }

        if h.count("connection") == 0 {
            return Err(Failure::MissingConnection);
        }
        if !h.has_token("connection", "upgrade") {
            return Err(Failure::BadConnection);
        }

        let accept = h.get_bytes("sec-websocket-accept").map(trim_ows);
        if h.count("sec-websocket-accept") != 1 || accept != Some(self.accept.as_bytes()) {
            return Err(Failure::Accept);
        }

        // An empty value counts as no protocol, as in faye.
        let protocol = match h.count("sec-websocket-protocol") {
            0 => None,
            1 => match h.get("sec-websocket-protocol") {
                Some("") => None,
                Some(p) if self.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
                _ => return Err(Failure::Protocol),
            },
            _ => return Err(Failure::Protocol),
        };

        let elements = extension_elements(h)
            .map_err(|e| Failure::Extension(ExtensionError::new(e.to_string())))?;
        let extensions =
            negotiate_client(&self.extensions, &elements).map_err(Failure::Extension)?;
        Ok((protocol, extensions))
    }
}

type Negotiated = (Option<String>, Vec<Box<dyn ExtensionSession>>);

/// Which response check failed; turned into a [`HandshakeError`] carrying the response.
enum Failure {
    Status,
    MissingUpgrade,
    BadUpgrade,
    MissingConnection,
    BadConnection,
    Accept,
    Protocol,
    Extension(ExtensionError),
}

impl Failure {
    fn into_error(self, response: Box<ResponseHead>) -> HandshakeError {
        match self {
            Failure::Status => HandshakeError::UnexpectedStatus(response),
            Failure::MissingUpgrade => HandshakeError::MissingUpgrade(response),
            Failure::BadUpgrade => HandshakeError::BadUpgrade(response),
            Failure::MissingConnection => HandshakeError::MissingConnection(response),
            Failure::BadConnection => HandshakeError::BadConnection(response),
            Failure::Accept => HandshakeError::BadAccept(response),
            Failure::Protocol => HandshakeError::UnofferedProtocol(response),
            Failure::Extension(source) => HandshakeError::Extension { source, response },
        }
    }
}

/// A handshake the server accepted.
pub struct ClientNegotiated {
    /// The status code (always 101).
    pub status: u16,
    /// The whole response head, for its headers (e.g. `Set-Cookie`).
    pub response: ResponseHead,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The negotiated extension sessions, in order, for the connection.
    pub extensions: Vec<Box<dyn ExtensionSession>>,
}

impl fmt::Debug for ClientNegotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientNegotiated")
            .field("status", &self.status)
            .field("response", &self.response)
            .field("protocol", &self.protocol)
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::FakeExt;
    use super::*;
    use crate::http::HeadError;

    const NONCE: [u8; 16] = *b"the sample nonce";
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn hs(url: &str, opts: &ClientOptions) -> ClientHandshake {
        ClientHandshake::new(url, opts, NONCE).unwrap()
    }

    fn request(url: &str, opts: &ClientOptions) -> String {
        String::from_utf8(hs(url, opts).request_bytes().to_vec()).unwrap()
    }

    fn host_line(url: &str) -> String {
        request(url, &ClientOptions::new())
            .lines()
            .find_map(|l| l.strip_prefix("Host: ").map(str::to_owned))
            .unwrap()
    }

    fn ok_response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
    }

    fn read(opts: &ClientOptions, response: &str) -> Result<ClientNegotiated, HandshakeError> {
        hs("ws://h/", opts)
            .read_response(response.as_bytes())
            .map(|r| r.unwrap().0)
    }

    #[test]
    fn request_has_the_rfc_6455_format() {
        assert_eq!(
            request("ws://server.example.com/chat?a=1&b", &ClientOptions::new()),
            format!(
                "GET /chat?a=1&b HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
        );
        let h = hs("ws://server.example.com/chat", &ClientOptions::new());
        assert_eq!((h.key(), h.expected_accept()), (KEY, ACCEPT));
    }

    #[test]
    fn the_key_is_the_nonce_in_base64_and_differs_with_it() {
        let a = ClientHandshake::new("ws://h/", &ClientOptions::new(), [1; 16]).unwrap();
        let b = ClientHandshake::new("ws://h/", &ClientOptions::new(), [2; 16]).unwrap();
        assert_eq!(
            base64_simd::STANDARD.decode_to_vec(a.key()).unwrap().len(),
            16
        );
        assert_ne!(a.key(), b.key());
        assert_eq!(a.expected_accept(), accept_key(a.key().as_bytes()));
    }

    #[test]
    fn host_header_omits_the_default_port_and_brackets_ipv6() {
        assert_eq!(host_line("ws://example.com/"), "example.com");
        assert_eq!(host_line("ws://example.com:80/"), "example.com");
        assert_eq!(host_line("ws://example.com:8080/"), "example.com:8080");
        assert_eq!(host_line("wss://example.com:443/"), "example.com");
        assert_eq!(host_line("wss://example.com:80/"), "example.com:80");
        assert_eq!(host_line("ws://[::1]:9000/"), "[::1]:9000");
        assert_eq!(host_line("wss://[2001:db8::1]/"), "[2001:db8::1]");
        assert_eq!(host_line("ws://127.0.0.1:1/"), "127.0.0.1:1");
        assert_eq!(host_line("ws://EXAMPLE.com/"), "example.com");
    }

    #[test]
    fn host_port_and_secure_come_from_the_url() {
        let cases = [
            ("ws://example.com/", "example.com", 80, false),
            ("wss://example.com/", "example.com", 443, true),
            ("wss://example.com:8443/", "example.com", 8443, true),
            ("ws://[::1]:9000/", "::1", 9000, false),
        ];
        for (url, host, port, secure) in cases {
            let h = hs(url, &ClientOptions::new());
            assert_eq!(
                (h.host(), h.port(), h.is_secure()),
                (host, port, secure),
                "{url}"
            );
        }
    }

    #[test]
    fn request_target_keeps_the_query_and_defaults_to_slash() {
        for (url, line) in [
            ("ws://h", "GET / HTTP/1.1"),
            ("ws://h?x=1", "GET /?x=1 HTTP/1.1"),
            ("ws://h/a%20b/c?q=%2F#frag", "GET /a%20b/c?q=%2F HTTP/1.1"),
        ] {
            assert_eq!(
                request(url, &ClientOptions::new()).lines().next(),
                Some(line)
            );
        }
    }

    #[test]
    fn url_that_is_not_ws_or_wss_is_an_invalid_url_error() {
        for url in [
            "http://h/",
            "wss//h",
            "/relative",
            "ws://",
            "ws://user:secret@:80/",
        ] {
            let err = ClientHandshake::new(url, &ClientOptions::new(), NONCE).unwrap_err();
            assert!(
                matches!(err, HandshakeError::InvalidUrl(_)),
                "{url}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid URL: "), "{err}");
            assert!(!err.to_string().contains("secret"), "{err}");
            assert_eq!(err.status(), None);
        }
        assert_eq!(
            ClientHandshake::new("http://h/", &ClientOptions::new(), NONCE)
                .unwrap_err()
                .to_string(),
            "invalid URL: the scheme must be ws: or wss:, not http:"
        );
    }

    #[test]
    fn userinfo_becomes_basic_authorization_percent_decoded() {
        let auth = |url: &str| {
            request(url, &ClientOptions::new())
                .lines()
                .find_map(|l| l.strip_prefix("Authorization: Basic ").map(str::to_owned))
        };
        let decode = |b64: String| {
            String::from_utf8(base64_simd::STANDARD.decode_to_vec(b64).unwrap()).unwrap()
        };
        assert_eq!(
            decode(auth("ws://us%20er:p%40ss%3A@h/").unwrap()),
            "us er:p@ss:"
        );
        assert_eq!(decode(auth("ws://alice@h/").unwrap()), "alice:");
        assert_eq!(decode(auth("ws://:pw@h/").unwrap()), ":pw");
        assert_eq!(decode(auth("ws://%C3%A9:%zz@h/").unwrap()), "é:%zz");
        assert_eq!(auth("ws://h/"), None);
    }

    #[test]
    fn explicit_authorization_header_replaces_the_userinfo() {
        let opts = ClientOptions::new()
            .header("Authorization", "Bearer t")
            .unwrap();
        let req = request("ws://u:p@h/", &opts);
        assert!(req.contains("\r\nAuthorization: Bearer t\r\n"), "{req}");
        assert_eq!(req.matches("Authorization").count(), 1, "{req}");
    }

    #[test]
    fn protocols_and_extension_offers_and_user_headers_are_sent_in_order() {
        let opts = ClientOptions::new()
            .protocol("chat")
            .protocol("superchat")
            .extension(Arc::new(FakeExt("x-fake")))
            .header("Origin", "http://example.com")
            .unwrap();
        let req = request("ws://h/", &opts);
        assert!(
            req.ends_with(
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
                 Sec-WebSocket-Extensions: x-fake; level=3\r\nOrigin: http://example.com\r\n\r\n"
            ),
            "{req}"
        );
    }

    #[test]
    fn protocol_that_is_not_a_token_or_is_repeated_is_refused() {
        for bad in ["", "a b", "a,b", "x"] {
            let opts = ClientOptions::new().protocol("x").protocol(bad);
            let err = ClientHandshake::new("ws://h/", &opts, NONCE).unwrap_err();
            assert!(
                matches!(&err, HandshakeError::InvalidProtocol(p) if p == bad),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn user_header_with_cr_or_lf_is_refused() {
        for value in ["a\r\nX: 1", "a\nb", "a\rb"] {
            assert_eq!(
                ClientOptions::new()
                    .header("X-Test", value)
                    .unwrap_err()
                    .reason,
                InvalidHeaderReason::ValueHasLineBreak
            );
        }
        for name in ["Host", "sec-websocket-key", "Upgrade"] {
            assert_eq!(
                ClientOptions::new().header(name, "x").unwrap_err().reason,
                InvalidHeaderReason::Reserved
            );
        }
    }

    #[test]
    fn incomplete_response_is_none_at_every_split() {
        let resp = ok_response("");
        let h = hs("ws://h/", &ClientOptions::new());
        for i in 0..resp.len() {
            assert!(
                h.read_response(&resp.as_bytes()[..i]).unwrap().is_none(),
                "{i}"
            );
        }
    }

    #[test]
    fn valid_response_is_accepted_and_frames_after_it_are_left() {
        let mut wire = ok_response("Set-Cookie: a=b\r\n").into_bytes();
        let head_len = wire.len();
        wire.extend_from_slice(b"\x81\x00");
        let (a, n) = hs("ws://h/", &ClientOptions::new())
            .read_response(&wire)
            .unwrap()
            .unwrap();
        assert_eq!(n, head_len);
        assert_eq!(a.status, 101);
        assert_eq!(a.response.headers().get("set-cookie"), Some("a=b"));
        assert_eq!(a.protocol, None);
    }

    #[test]
    fn response_lenient_in_case_and_connection_list() {
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n\
             connection: keep-alive, UPGRADE\r\nsec-websocket-accept: {ACCEPT}\r\n\r\n"
        );
        assert!(read(&ClientOptions::new(), &resp).is_ok());
    }

    #[test]
    fn status_other_than_101_is_unexpected_response_code_with_status_and_headers() {
        let err = read(
            &ClientOptions::new(),
            "HTTP/1.1 403 Forbidden\r\nX-Reason: nope\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap_err();
        assert!(matches!(err, HandshakeError::UnexpectedStatus(_)));
        assert_eq!(
            err.to_string(),
            "Error during WebSocket handshake: Unexpected response code: 403"
        );
        assert_eq!(err.status(), Some(403));
        assert_eq!(err.headers().unwrap().get("x-reason"), Some("nope"));
    }

    fn failing(response: &str) -> HandshakeError {
        let opts = ClientOptions::new()
            .protocol("chat")
            .extension(Arc::new(FakeExt("x-fake")));
        let err = read(&opts, response).unwrap_err();
        assert_eq!(err.status(), Some(101), "{err}");
        err
    }

    #[test]
    fn upgrade_missing_or_not_websocket_fails() {
        let base = ok_response("");
        let err = failing(&base.replace("Upgrade: websocket\r\n", ""));
        assert!(matches!(err, HandshakeError::MissingUpgrade(_)));
        assert_eq!(
            err.to_string(),
            "Error during WebSocket handshake: 'Upgrade' header is missing"
        );
        for bad in ["Upgrade: h2c", "Upgrade: websocket, h2c", "Upgrade: "] {
            let err = failing(&base.replace("Upgrade: websocket", bad));
            assert!(matches!(err, HandshakeError::BadUpgrade(_)), "{bad}");
            assert_eq!(
                err.to_string(),
                "Error during WebSocket handshake: 'Upgrade' header value is not 'WebSocket'"
            );
        }
    }

    #[test]
    fn connection_missing_or_without_upgrade_fails() {
        let base = ok_response("");
        let err = failing(&base.replace("Connection: Upgrade\r\n", ""));
        assert!(matches!(err, HandshakeError::MissingConnection(_)));
        assert_eq!(
            err.to_string(),
            "Error during WebSocket handshake: 'Connection' header is missing"
        );
        let err = failing(&base.replace("Connection: Upgrade", "Connection: close"));
        assert!(matches!(err, HandshakeError::BadConnection(_)));
        assert_eq!(
            err.to_string(),
            "Error during WebSocket handshake: 'Connection' header value is not 'Upgrade'"
        );
    }

    #[test]
    fn accept_missing_wrong_or_repeated_is_a_mismatch() {
        let base = ok_response("");
        let line = format!("Sec-WebSocket-Accept: {ACCEPT}\r\n");
        for resp in [
            base.replace(&line, ""),
            base.replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            base.replace(&line, &format!("{line}{line}")),
        ] {
            let err = failing(&resp);
            assert!(matches!(err, HandshakeError::BadAccept(_)), "{resp}");
            assert_eq!(
                err.to_string(),
                "Error during WebSocket handshake: Sec-WebSocket-Accept mismatch"
            );
        }
    }

    #[test]
    fn protocol_not_offered_or_more_than_one_is_a_mismatch() {
        for extra in [
            "Sec-WebSocket-Protocol: other\r\n",
            "Sec-WebSocket-Protocol: chat, chat\r\n",
            "Sec-WebSocket-Protocol: CHAT\r\n",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
        ] {
            let err = failing(&ok_response(extra));
            assert!(
                matches!(err, HandshakeError::UnofferedProtocol(_)),
                "{extra}"
            );
            assert_eq!(
                err.to_string(),
                "Error during WebSocket handshake: Sec-WebSocket-Protocol mismatch"
            );
        }
        let err = read(
            &ClientOptions::new(),
            &ok_response("Sec-WebSocket-Protocol: chat\r\n"),
        )
        .unwrap_err();
        assert!(matches!(err, HandshakeError::UnofferedProtocol(_)));
    }

    #[test]
    fn offered_protocol_is_reported() {
        let opts = ClientOptions::new().protocol("a").protocol("chat");
        let a = read(&opts, &ok_response("Sec-WebSocket-Protocol: chat\r\n")).unwrap();
        assert_eq!(a.protocol.as_deref(), Some("chat"));
        let a = read(&opts, &ok_response("Sec-WebSocket-Protocol: \r\n")).unwrap();
        assert_eq!(a.protocol, None);
    }

    #[test]
    fn extension_answer_is_checked_by_the_registered_extensions() {
        let ok = ClientOptions::new().extension(Arc::new(FakeExt("x-fake")));
        let a = read(
            &ok,
            &ok_response("Sec-WebSocket-Extensions: x-fake; agreed\r\n"),
        )
        .unwrap();
        assert_eq!(a.extensions.len(), 1);

        for (extra, text) in [
            (
                "Sec-WebSocket-Extensions: x-other\r\n",
                "Error during WebSocket handshake: Sec-WebSocket-Extensions header has an \
                 extension that was not offered: x-other",
            ),
            (
                "Sec-WebSocket-Extensions: x-fake; bad\r\n",
                "Error during WebSocket handshake: x-fake: bad parameter",
            ),
            (
                "Sec-WebSocket-Extensions: x-fake\r\nSec-WebSocket-Extensions: x-fake\r\n",
                "Error during WebSocket handshake: Sec-WebSocket-Extensions header names \
                 x-fake twice",
            ),
        ] {
            let err = failing(&ok_response(extra));
            assert!(matches!(err, HandshakeError::Extension { .. }), "{extra}");
            assert_eq!(err.to_string(), text);
        }
        let err = failing(&ok_response("Sec-WebSocket-Extensions: x-fake; =\r\n"));
        assert!(
            err.to_string().starts_with(
                "Error during WebSocket handshake: Invalid Sec-WebSocket-Extensions header: "
            ),
            "{err}"
        );
    }

    #[test]
    fn extension_answer_without_an_offer_fails() {
        let err = read(
            &ClientOptions::new(),
            &ok_response("Sec-WebSocket-Extensions: x-fake\r\n"),
        )
        .unwrap_err();
        assert!(matches!(err, HandshakeError::Extension { .. }));
    }

    #[test]
    fn malformed_or_oversized_response_head_is_a_head_error_without_status() {
        let err = read(&ClientOptions::new(), "HTTP/1.1 10x Oops\r\n\r\n").unwrap_err();
        assert!(matches!(err, HandshakeError::Head(HeadError::Malformed(_))));
        assert_eq!((err.status(), err.headers().is_none()), (None, true));
        assert_eq!(
            err.to_string(),
            "Error during WebSocket handshake: malformed HTTP head: invalid status line"
        );

        let opts = ClientOptions::new().head_limits(HeadLimits {
            max_head_bytes: 64,
            max_headers: 4,
        });
        let err = hs("ws://h/", &opts)
            .read_response(ok_response(&"X: yyyyyyyy\r\n".repeat(8)).as_bytes())
            .unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Head(HeadError::TooLarge { limit: 64 })
        ));
    }
}
