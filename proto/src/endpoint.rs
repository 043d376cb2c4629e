//! Where a URL says to connect: its scheme (plain or TLS), host, port and userinfo credentials.
//!
//! The same for a WebSocket server's `ws://`/`wss://` URL and a proxy's `http://`/`https://`
//! one, so the rules (which hosts count, the default ports, how userinfo is decoded) cannot
//! drift apart between the two.

use url::{Host, ParseError, Url};

/// The two schemes a kind of URL may have: the plain one and the one over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schemes {
    plain: &'static str,
    secure: &'static str,
}

impl Schemes {
    /// `ws:` and `wss:`, for a WebSocket server.
    pub const WEBSOCKET: Schemes = Schemes {
        plain: "ws",
        secure: "wss",
    };
    /// `http:` and `https:`, for a CONNECT proxy.
    pub const HTTP: Schemes = Schemes {
        plain: "http",
        secure: "https",
    };
}

/// A URL checked and taken apart by [`Endpoint::parse`]. Its `Debug` leaves the credentials
/// (userinfo) out.
pub struct Endpoint {
    /// The parsed URL, for what a caller needs beyond the endpoint (path, query, the `Host`
    /// header's form).
    pub url: Url,
    /// Whether the scheme is the TLS one of the pair.
    pub secure: bool,
    /// A domain in ASCII form or an IP address, IPv6 without brackets: what is resolved and
    /// named in SNI.
    pub host: String,
    /// The URL's port, else the scheme's default.
    pub port: u16,
    /// The userinfo as a `Basic` credentials value (`Basic base64(user:password)`, both parts
    /// percent-decoded); `None` when the URL has no userinfo.
    pub basic_auth: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("secure", &self.secure)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Why a URL cannot name an endpoint. The texts never quote the URL: its userinfo may hold a
/// password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The text does not parse as a URL.
    #[error("{0}")]
    Parse(ParseError),
    /// The scheme is not one of the pair asked for.
    #[error("the scheme must be {}: or {}:, not {found}:", .expected.plain, .expected.secure)]
    Scheme {
        /// The URL's scheme.
        found: String,
        /// The schemes it may have.
        expected: Schemes,
    },
    /// The URL names no host (`ws://`, `http://user@:8080`). Worded as `url` words it, the
    /// text these URLs have always been refused with.
    #[error("empty host")]
    NoHost,
}

impl Endpoint {
    /// Parses `text`, which must have one of `schemes` and a host.
    pub fn parse(text: &str, schemes: Schemes) -> Result<Endpoint, UrlError> {
        let url = Url::parse(text).map_err(|e| match e {
            // `url` refuses a missing host itself for these (special) schemes; it gets the same
            // variant as one missing after parsing, so callers have one case to look for.
            ParseError::EmptyHost => UrlError::NoHost,
            other => UrlError::Parse(other),
        })?;
        let secure = match url.scheme() {
            s if s == schemes.plain => false,
            s if s == schemes.secure => true,
            other => {
                return Err(UrlError::Scheme {
                    found: other.to_owned(),
                    expected: schemes,
                })
            }
        };
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            _ => return Err(UrlError::NoHost),
        };
        // `url` knows the defaults of all four schemes; the fallback only answers the Option.
        let port = url
            .port_or_known_default()
            .unwrap_or(if secure { 443 } else { 80 });
        let basic_auth = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let mut credentials = percent_decode(url.username());
            credentials.push(b':');
            credentials.extend(percent_decode(url.password().unwrap_or_default()));
            format!(
                "Basic {}",
                base64_simd::STANDARD.encode_to_string(credentials)
            )
        });
        Ok(Endpoint {
            url,
            secure,
            host,
            port,
            basic_auth,
        })
    }
}

/// Decodes `%XX` escapes (URL userinfo arrives percent-encoded); a `%` not followed by two hex
/// digits is kept as is, like browsers do.
fn percent_decode(s: &str) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(text: &str) -> Endpoint {
        Endpoint::parse(text, Schemes::WEBSOCKET).unwrap()
    }

    fn err(text: &str, schemes: Schemes) -> UrlError {
        Endpoint::parse(text, schemes).expect_err("an error")
    }

    /// The decoded `user:password` of an endpoint's credentials.
    fn credentials(e: &Endpoint) -> Option<String> {
        let b64 = e.basic_auth.as_deref()?.strip_prefix("Basic ").unwrap();
        Some(String::from_utf8(base64_simd::STANDARD.decode_to_vec(b64).unwrap()).unwrap())
    }

    #[test]
    fn default_ports_follow_the_scheme_and_an_explicit_one_wins() {
        let cases = [
            ("ws://h/", Schemes::WEBSOCKET, 80, false),
            ("wss://h/", Schemes::WEBSOCKET, 443, true),
            ("ws://h:443/", Schemes::WEBSOCKET, 443, false),
            ("wss://h:80/", Schemes::WEBSOCKET, 80, true),
            ("wss://h:8443/", Schemes::WEBSOCKET, 8443, true),
            ("http://h", Schemes::HTTP, 80, false),
            ("https://h", Schemes::HTTP, 443, true),
            ("http://h:3128", Schemes::HTTP, 3128, false),
        ];
        for (text, schemes, port, secure) in cases {
            let e = Endpoint::parse(text, schemes).unwrap();
            assert_eq!((e.port, e.secure), (port, secure), "{text}");
        }
    }

    #[test]
    fn hosts_are_ascii_domains_or_addresses_with_ipv6_unbracketed() {
        assert_eq!(ws("ws://EXAMPLE.com/").host, "example.com");
        assert_eq!(ws("ws://bücher.example/").host, "xn--bcher-kva.example");
        assert_eq!(ws("ws://127.0.0.1:9/").host, "127.0.0.1");
        let v6 = ws("wss://[2001:DB8::1]:9443/x");
        assert_eq!((v6.host.as_str(), v6.port), ("2001:db8::1", 9443));
        // The URL itself keeps the brackets, for the Host header.
        assert_eq!(v6.url.host_str(), Some("[2001:db8::1]"));
        let proxy = Endpoint::parse("http://u:p@[::1]", Schemes::HTTP).unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("::1", 80));
    }

    #[test]
    fn userinfo_becomes_basic_credentials_percent_decoded() {
        assert_eq!(
            credentials(&ws("ws://us%20er:p%40ss%3A@h/")).as_deref(),
            Some("us er:p@ss:")
        );
        assert_eq!(credentials(&ws("ws://alice@h/")).as_deref(), Some("alice:"));
        assert_eq!(credentials(&ws("ws://:pw@h/")).as_deref(), Some(":pw"));
        // UTF-8 escapes decode to their bytes; a `%` without two hex digits stays.
        assert_eq!(
            credentials(&ws("ws://%C3%A9:%zz%4@h/")).as_deref(),
            Some("é:%zz%4")
        );
        assert_eq!(ws("ws://h/").basic_auth, None);
        assert_eq!(ws("ws://@h/").basic_auth, None, "an empty userinfo is none");
        let proxy = Endpoint::parse("https://a:b@proxy.test", Schemes::HTTP).unwrap();
        assert_eq!(credentials(&proxy).as_deref(), Some("a:b"));
    }

    #[test]
    fn a_missing_host_is_no_host() {
        for text in ["ws://", "wss://:443/", "ws://user:secret@:80/", "ws:"] {
            assert_eq!(err(text, Schemes::WEBSOCKET), UrlError::NoHost, "{text}");
        }
        let e = err("http://", Schemes::HTTP);
        assert_eq!(e, UrlError::NoHost);
        assert_eq!(e.to_string(), "empty host");
    }

    #[test]
    fn a_scheme_of_the_other_pair_is_refused_by_name() {
        let e = err("http://h/", Schemes::WEBSOCKET);
        assert_eq!(
            e,
            UrlError::Scheme {
                found: "http".into(),
                expected: Schemes::WEBSOCKET
            }
        );
        assert_eq!(e.to_string(), "the scheme must be ws: or wss:, not http:");
        assert_eq!(
            err("wss://u:secret@h/", Schemes::HTTP).to_string(),
            "the scheme must be http: or https:, not wss:"
        );
    }

    #[test]
    fn text_that_is_not_a_url_is_a_parse_error() {
        for (text, e) in [
            ("/relative", ParseError::RelativeUrlWithoutBase),
            ("wss//h", ParseError::RelativeUrlWithoutBase),
            ("ws://h:65536/", ParseError::InvalidPort),
            ("ws://[::1/", ParseError::InvalidIpv6Address),
        ] {
            assert_eq!(err(text, Schemes::WEBSOCKET), UrlError::Parse(e), "{text}");
        }
        assert_eq!(
            err("ws://u:secret@h:99999/", Schemes::WEBSOCKET).to_string(),
            "invalid port number"
        );
    }
}
