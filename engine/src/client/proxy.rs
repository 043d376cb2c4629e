//! An HTTP CONNECT proxy for outgoing connections: the proxy's address and credentials, the
//! CONNECT request, and the check of its answer (only 200 opens the tunnel).

use std::fmt;

use super::tls::TlsConfig;
use crate::http::{
    parse_response, validate_header, HeadError, HeadLimits, HeadWriter, Headers, InvalidHeader,
    InvalidHeaderReason, ResponseHead,
};
use ringsock_proto::endpoint::{Endpoint, Schemes};

/// Proxy request headers ringsock writes itself. `Proxy-Authorization` is not here: an explicit
/// one replaces the URL's userinfo.
const RESERVED: &[&str] = &["host", "content-length", "transfer-encoding"];

/// An HTTP proxy that outgoing connections tunnel through with `CONNECT host:port`, as faye's
/// `proxy` option: the WebSocket handshake (and, for `wss://`, TLS to the server) runs inside
/// the tunnel, so the proxy sees only the server's name and port.
///
/// Made from the proxy's URL: `http://` talks to the proxy in the clear, `https://` over TLS
/// (checked with [`Proxy::tls`], or Mozilla's roots); userinfo (`http://user:pass@host:3128`)
/// becomes `Proxy-Authorization: Basic`. The proxy's host name is resolved by whoever dials
/// (`Running::connect` resolves it instead of the server's, which only the proxy needs to
/// know).
#[derive(Clone)]
pub struct Proxy {
    host: String,
    port: u16,
    secure: bool,
    authorization: Option<String>,
    headers: Vec<(String, String)>,
    tls: Option<TlsConfig>,
    limits: HeadLimits,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are left out.
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("secure", &self.secure)
            .field("authorization", &self.authorization.is_some())
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy at `url` (`http://[user:pass@]host[:port]`, or `https://` for TLS to the proxy);
    /// the port defaults to 80 or 443. A path in the URL is ignored.
    pub fn new(url: &str) -> Result<Proxy, ProxyError> {
        let endpoint = Endpoint::parse(url, Schemes::HTTP)
            .map_err(|e| ProxyError::InvalidUrl(e.to_string()))?;
        Ok(Proxy {
            host: endpoint.host,
            port: endpoint.port,
            secure: endpoint.secure,
            authorization: endpoint.basic_auth,
            headers: Vec::new(),
            tls: None,
            limits: HeadLimits::DEFAULT,
        })
    }

    /// Adds a header to the CONNECT request (e.g. `User-Agent`, or a `Proxy-Authorization` of
    /// another scheme, which replaces the one from the URL). Refused if the name is not a token,
    /// the value holds a control character, or ringsock writes that header itself (`Host`).
    pub fn header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidHeader> {
        let (name, value) = (name.into(), value.into());
        validate_header(&name, &value)?;
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
            return Err(InvalidHeader::new(&name, InvalidHeaderReason::Reserved));
        }
        self.headers.push((name, value));
        Ok(self)
    }

    /// How an `https://` proxy's certificate is checked (default: Mozilla's roots). Unused for
    /// an `http://` proxy.
    pub fn tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Limits for the proxy's answer head (default 8 KiB, 64 lines).
    pub fn head_limits(mut self, limits: HeadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The proxy's host: a domain or an IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the connection to the proxy itself is TLS (an `https://` proxy URL).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The TLS configuration for an `https://` proxy, if one was set.
    pub fn tls_config(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The `CONNECT` request for a tunnel to `host:port` (IPv6 hosts bracketed).
    pub fn connect_request(&self, host: &str, port: u16) -> Vec<u8> {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut w = HeadWriter::request("CONNECT", &authority);
        // Every value here was checked when it was set; the writer checks again and would only
        // drop a line, never write a broken one.
        let _ = w.header("Host", &authority);
        let explicit = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"));
        if let (Some(auth), false) = (&self.authorization, explicit) {
            let _ = w.header("Proxy-Authorization", auth);
        }
        for (name, value) in &self.headers {
            let _ = w.header(name, value);
        }
        w.finish()
    }

    /// Reads the proxy's answer from the start of `buf`: `Ok(None)` while the head is incomplete,
    /// `Ok(Some(n))` for a 200 whose head took `n` bytes (what follows is the tunnel's), an error
    /// for any other answer.
    pub fn read_response(&self, buf: &[u8]) -> Result<Option<usize>, ProxyError> {
        match parse_response(buf, &self.limits)? {
            None => Ok(None),
            Some((head, len)) if head.status() == 200 => Ok(Some(len)),
            Some((head, _)) => Err(ProxyError::Refused(Box::new(head))),
        }
    }
}

/// Why a proxy could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL does not parse, is not http: or https:, or has no host.
    #[error("invalid proxy URL: {0}")]
    InvalidUrl(String),
    /// The proxy answered the CONNECT with something other than 200 (407: it wants
    /// credentials; its `Proxy-Authenticate` header says which).
    #[error("the proxy refused the tunnel: {} {}", .0.status(), .0.reason())]
    Refused(Box<ResponseHead>),
    /// The proxy's answer is not valid HTTP or is over the head limits.
    #[error("the proxy's answer to CONNECT is not usable: {0}")]
    Head(#[from] HeadError),
}

impl ProxyError {
    /// The proxy's answer, when it refused.
    pub fn response(&self) -> Option<&ResponseHead> {
        match self {
            ProxyError::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// The status of the proxy's refusal (e.g. 407).
    pub fn status(&self) -> Option<u16> {
        self.response().map(ResponseHead::status)
    }

    /// The headers of the proxy's refusal (e.g. `Proxy-Authenticate`).
    pub fn headers(&self) -> Option<Headers<'_>> {
        self.response().map(ResponseHead::headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn connect_request_names_the_server_and_carries_credentials_and_headers() {
        let proxy = Proxy::new("http://us%20er:p%40ss@proxy.test:3128/ignored")
            .unwrap()
            .header("User-Agent", "ringsock")
            .unwrap();
        assert_eq!(
            (proxy.host(), proxy.port(), proxy.is_secure()),
            ("proxy.test", 3128, false)
        );
        // base64 of `us er:p@ss`, worked out by hand.
        let basic = "dXMgZXI6cEBzcw==";
        assert_eq!(
            text(proxy.connect_request("example.com", 443)),
            format!(
                "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                 Proxy-Authorization: Basic {basic}\r\nUser-Agent: ringsock\r\n\r\n"
            )
        );
        assert!(!format!("{proxy:?}").contains(basic));
    }

    #[test]
    fn ipv6_targets_are_bracketed_and_default_ports_follow_the_scheme() {
        let proxy = Proxy::new("http://[::1]").unwrap();
        assert_eq!((proxy.host(), proxy.port()), ("::1", 80));
        assert!(text(proxy.connect_request("2001:db8::1", 8080))
            .starts_with("CONNECT [2001:db8::1]:8080 HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n"));
        let proxy = Proxy::new("https://proxy.test").unwrap();
        assert_eq!((proxy.port(), proxy.is_secure()), (443, true));
    }

    #[test]
    fn an_explicit_proxy_authorization_replaces_the_userinfo() {
        let proxy = Proxy::new("http://u:p@proxy.test")
            .unwrap()
            .header("Proxy-Authorization", "Bearer t")
            .unwrap();
        let req = text(proxy.connect_request("h", 80));
        assert_eq!(req.matches("Proxy-Authorization").count(), 1, "{req}");
        assert!(req.contains("Proxy-Authorization: Bearer t\r\n"), "{req}");
    }

    #[test]
    fn bad_urls_and_headers_are_refused() {
        for url in ["ws://proxy.test", "not a url", "http://"] {
            assert!(
                matches!(Proxy::new(url), Err(ProxyError::InvalidUrl(_))),
                "{url}"
            );
        }
        let err = Proxy::new("socks5://u:secret@h").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid proxy URL: the scheme must be http: or https:, not socks5:"
        );
        let proxy = Proxy::new("http://h").unwrap();
        assert_eq!(
            proxy.clone().header("Host", "x").unwrap_err().reason,
            InvalidHeaderReason::Reserved
        );
        assert_eq!(
            proxy.header("X", "a\r\nb").unwrap_err().reason,
            InvalidHeaderReason::ValueHasLineBreak
        );
    }

    #[test]
    fn only_a_200_opens_the_tunnel() {
        let proxy = Proxy::new("http://h").unwrap();
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03";
        assert_eq!(proxy.read_response(&ok[..10]).unwrap(), None);
        assert_eq!(proxy.read_response(ok).unwrap(), Some(ok.len() - 2));

        let refused = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                        Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n";
        let err = proxy.read_response(refused).unwrap_err();
        assert_eq!(err.status(), Some(407));
        assert_eq!(
            err.headers().unwrap().get("proxy-authenticate"),
            Some("Basic realm=\"x\"")
        );
        assert_eq!(
            err.to_string(),
            "the proxy refused the tunnel: 407 Proxy Authentication Required"
        );
        let err = proxy
            .read_response(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap_err();
        assert_eq!(err.status(), Some(204));
        let err = proxy.read_response(b"SSH-2.0-x\r\n\r\n").unwrap_err();
        assert!(matches!(err, ProxyError::Head(_)), "{err:?}");
        assert_eq!(err.status(), None);
    }
}
