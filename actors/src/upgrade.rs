//! The upgrade hook's view of a request, and its answer.

use std::borrow::Cow;
use std::net::SocketAddr;

use ringsock_engine::http::RequestHead;
use ringsock_engine::server::Upgrade;

/// A valid WebSocket upgrade request, before the 101: what an upgrade hook decides on (auth,
/// routing, the subprotocol).
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    upgrade: &'a Upgrade<'a>,
}

impl<'a> UpgradeRequest<'a> {
    pub(crate) fn new(upgrade: &'a Upgrade<'a>) -> Self {
        Self { upgrade }
    }

    /// The method (always `GET` for a valid upgrade).
    pub fn method(&self) -> &'a str {
        self.upgrade.request.method()
    }

    /// The path, without the query.
    pub fn path(&self) -> &'a str {
        self.upgrade.request.path()
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.upgrade.request.query()
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        url::form_urlencoded::parse(self.query()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A header's first value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.upgrade.request.headers().get(name)
    }

    /// The whole request head.
    pub fn head(&self) -> &'a RequestHead {
        self.upgrade.request
    }

    /// A cookie's value from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.cookies().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every cookie, as (name, value).
    pub fn cookies(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.upgrade
            .request
            .headers()
            .get_all("cookie")
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.trim(), v.trim().trim_matches('"')))
            })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.upgrade.peer
    }

    /// The subprotocols the client offers, in its order.
    pub fn protocols(&self) -> &'a [&'a str] {
        self.upgrade.protocols
    }
}

/// An upgrade hook's yes: the connection's handler, and what to add to the 101.
#[derive(Debug)]
pub struct Accept<H> {
    pub(crate) handler: H,
    pub(crate) protocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl<H> Accept<H> {
    /// Opens the connection with `handler` as its state.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            protocol: None,
            headers: Vec::new(),
        }
    }

    /// Answers with this subprotocol (it must be one the client offered, else 500).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocol = Some(name.into());
        self
    }

    /// Adds a header to the 101.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn map<T>(self, f: impl FnOnce(H) -> T) -> Accept<T> {
        Accept {
            handler: f(self.handler),
            protocol: self.protocol,
            headers: self.headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringsock_engine::http::{parse_request, HeadLimits};

    fn with_request(raw: &str, check: impl FnOnce(&UpgradeRequest<'_>)) {
        let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        let protocols = ["chat", "v2"];
        let upgrade = Upgrade {
            request: &head,
            protocols: &protocols,
            peer: None,
            shard: 0,
        };
        check(&UpgradeRequest::new(&upgrade));
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        with_request(
            "GET /chat?room=a%20b&nick=ada&nick=bob HTTP/1.1\r\nHost: x\r\n\r\n",
            |req| {
                assert_eq!(req.path(), "/chat");
                assert_eq!(req.query_param("room").as_deref(), Some("a b"));
                assert_eq!(req.query_param("nick").as_deref(), Some("ada"));
                assert_eq!(req.query_param("none"), None);
                assert_eq!(req.protocols(), ["chat", "v2"]);
            },
        );
    }

    #[test]
    fn cookies_come_from_every_cookie_header() {
        with_request(
            "GET / HTTP/1.1\r\nCookie: a=1; session=\"xyz\"\r\nCookie: b=2\r\n\r\n",
            |req| {
                assert_eq!(req.cookie("session"), Some("xyz"));
                assert_eq!(req.cookie("b"), Some("2"));
                assert_eq!(req.cookie("c"), None);
                assert_eq!(req.cookies().count(), 3);
            },
        );
    }
}
