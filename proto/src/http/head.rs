//! Bounded, two-phase parsing of HTTP/1.1 request and response heads.
//!
//! Phase one runs `httparse` over a borrowed window of at most
//! [`HeadLimits::max_head_bytes`]: an incomplete head costs a scan and no allocation, and a
//! malformed one is refused as soon as the bad byte arrives. Phase two runs only on a complete
//! head and copies it once into an owned form: one [`Bytes`] plus offsets, not a `String` per
//! header. Bytes after the head are not touched; they belong to the next layer (WebSocket frames a
//! client sends right behind its request, or a server right behind its 101).

use std::fmt;

use bytes::Bytes;

use super::headers::{HeaderSpan, Headers, Span};

/// How big a head may grow before the peer is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// The most bytes a head may take, request or status line and final blank line included.
    /// Default 8192, as common servers use.
    pub max_head_bytes: usize,
    /// The most header lines a head may have. Default 64.
    pub max_headers: usize,
}

impl HeadLimits {
    /// 8 KiB and 64 header lines.
    pub const DEFAULT: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
    };
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a head cannot be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The head did not end within [`HeadLimits::max_head_bytes`].
    #[error("HTTP head larger than {limit} bytes")]
    TooLarge {
        /// The limit that was reached.
        limit: usize,
    },
    /// The head has more than [`HeadLimits::max_headers`] header lines.
    #[error("more than {limit} HTTP header lines")]
    TooManyHeaders {
        /// The limit that was passed.
        limit: usize,
    },
    /// The head does not follow the HTTP/1.1 grammar.
    #[error("malformed HTTP head: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The status a server answers with: 431 for a head over the limits, 400 for bad grammar.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge { .. } | HeadError::TooManyHeaders { .. } => 431,
            HeadError::Malformed(_) => 400,
        }
    }
}

/// The HTTP version of a head; httparse knows only these two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// A complete, owned HTTP request head.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHead {
    raw: Bytes,
    method: Span,
    target: Span,
    version: Version,
    headers: Vec<HeaderSpan>,
}

impl RequestHead {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.method.str(&self.raw)
    }

    /// The request target as sent: path and query (or an absolute URI from a proxy).
    pub fn target(&self) -> &str {
        self.target.str(&self.raw)
    }

    /// The path part of the target, without the query. For an absolute-form target
    /// (`http://host/p?q`) the scheme and authority are dropped, so this is `/p`.
    pub fn path(&self) -> &str {
        let t = self.target();
        let t = t.split_once('?').map_or(t, |(p, _)| p);
        match t.split_once("://") {
            Some((scheme, rest)) if !scheme.contains('/') => {
                rest.find('/').map_or("/", |i| &rest[i..])
            }
            _ => t,
        }
    }

    /// The query part of the target, after the first `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header lines.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new(&self.raw, &self.headers)
    }

    /// The head as received, final blank line included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("version", &self.version)
            .field("headers", &self.headers())
            .finish()
    }
}

/// A complete, owned HTTP response head.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseHead {
    raw: Bytes,
    status: u16,
    reason: Span,
    version: Version,
    headers: Vec<HeaderSpan>,
}

impl ResponseHead {
    /// The status code, e.g. 101.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase; empty when absent or not UTF-8.
    pub fn reason(&self) -> &str {
        self.reason.str(&self.raw)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header lines.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new(&self.raw, &self.headers)
    }

    /// The head as received, final blank line included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
}

impl fmt::Debug for ResponseHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHead")
            .field("status", &self.status)
            .field("reason", &self.reason())
            .field("version", &self.version)
            .field("headers", &self.headers())
            .finish()
    }
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet; call again with more bytes. `Ok(Some((head, n)))`:
/// the head took the first `n` bytes; the rest of `buf` belongs to the next layer.
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let (window, max) = window(buf, limits);
    with_slots(limits.max_headers, |slots| {
        let mut req = httparse::Request::new(slots);
        let len = match req.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return incomplete(window, max),
            Err(e) => return Err(map_error(e, limits)),
        };
        let head = window
            .get(..len)
            .ok_or(HeadError::Malformed("head length"))?;
        let span = |part: &str| Span::of(head, part.as_bytes()).unwrap_or_default();
        let method = span(req.method.unwrap_or_default());
        let target = span(req.path.unwrap_or_default());
        let version = Version::from_minor(req.version.unwrap_or(1));
        let headers = header_spans(head, req.headers);
        Ok(Some((
            RequestHead {
                raw: Bytes::copy_from_slice(head),
                method,
                target,
                version,
                headers,
            },
            len,
        )))
    })
}

/// Parses a response head from the start of `buf`; the same contract as [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let (window, max) = window(buf, limits);
    with_slots(limits.max_headers, |slots| {
        let mut resp = httparse::Response::new(slots);
        let len = match resp.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return incomplete(window, max),
            Err(e) => return Err(map_error(e, limits)),
        };
        let head = window
            .get(..len)
            .ok_or(HeadError::Malformed("head length"))?;
        let reason = Span::of(head, resp.reason.unwrap_or_default().as_bytes()).unwrap_or_default();
        let headers = header_spans(head, resp.headers);
        Ok(Some((
            ResponseHead {
                raw: Bytes::copy_from_slice(head),
                status: resp.code.unwrap_or_default(),
                reason,
                version: Version::from_minor(resp.version.unwrap_or(1)),
                headers,
            },
            len,
        )))
    })
}

/// The part of `buf` the parser may look at, and the effective size limit. The cap at `u32::MAX`
/// keeps every offset representable in a [`Span`].
fn window<'b>(buf: &'b [u8], limits: &HeadLimits) -> (&'b [u8], usize) {
    let max = limits.max_head_bytes.min(u32::MAX as usize);
    (&buf[..buf.len().min(max)], max)
}

fn incomplete<T>(window: &[u8], max: usize) -> Result<Option<T>, HeadError> {
    if window.len() >= max {
        Err(HeadError::TooLarge { limit: max })
    } else {
        Ok(None)
    }
}

/// Gives httparse its header slots: on the stack for the usual limits, so a parse attempt on a
/// partial head allocates nothing.
fn with_slots<'b, R>(max_headers: usize, f: impl FnOnce(&mut [httparse::Header<'b>]) -> R) -> R {
    const STACK: usize = 64;
    if max_headers <= STACK {
        let mut slots = [httparse::EMPTY_HEADER; STACK];
        f(&mut slots[..max_headers])
    } else {
        let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
        f(&mut slots)
    }
}

fn header_spans(head: &[u8], headers: &[httparse::Header<'_>]) -> Vec<HeaderSpan> {
    headers
        .iter()
        .map(|h| HeaderSpan {
            name: Span::of(head, h.name.as_bytes()).unwrap_or_default(),
            value: Span::of(head, h.value).unwrap_or_default(),
        })
        .collect()
}

fn map_error(e: httparse::Error, limits: &HeadLimits) -> HeadError {
    use httparse::Error as E;
    HeadError::Malformed(match e {
        E::TooManyHeaders => {
            return HeadError::TooManyHeaders {
                limit: limits.max_headers,
            }
        }
        E::HeaderName => "invalid header name",
        E::HeaderValue => "invalid header value",
        E::NewLine => "invalid line ending",
        E::Status => "invalid status line",
        E::Token => "invalid request line",
        E::Version => "invalid HTTP version",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] =
        b"GET /chat?room=1&x=2 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn request_head_exposes_method_target_path_query_version_and_headers() {
        let (h, n) = parse_request(REQ, &HeadLimits::default()).unwrap().unwrap();
        assert_eq!(n, REQ.len());
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), "/chat?room=1&x=2");
        assert_eq!(h.path(), "/chat");
        assert_eq!(h.query(), Some("room=1&x=2"));
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.headers().get("host"), Some("example.com"));
        assert_eq!(h.as_bytes(), REQ);
    }

    #[test]
    fn path_of_an_absolute_form_target_drops_scheme_and_authority() {
        for (raw, path, query) in [
            (
                &b"GET http://h:1/a/b?q HTTP/1.1\r\n\r\n"[..],
                "/a/b",
                Some("q"),
            ),
            (b"GET http://h HTTP/1.1\r\n\r\n", "/", None),
            (b"GET /x HTTP/1.0\r\n\r\n", "/x", None),
            (b"GET * HTTP/1.1\r\n\r\n", "*", None),
        ] {
            let (h, _) = parse_request(raw, &HeadLimits::default()).unwrap().unwrap();
            assert_eq!((h.path(), h.query()), (path, query));
        }
    }

    #[test]
    fn incomplete_request_is_none_at_every_split() {
        for i in 0..REQ.len() {
            assert_eq!(
                parse_request(&REQ[..i], &HeadLimits::default()).map(|r| r.is_some()),
                Ok(false),
                "split at {i}"
            );
        }
    }

    #[test]
    fn incomplete_response_is_none_at_every_split() {
        for i in 0..RESP.len() {
            assert_eq!(
                parse_response(&RESP[..i], &HeadLimits::default()).map(|r| r.is_some()),
                Ok(false),
                "split at {i}"
            );
        }
    }

    #[test]
    fn bytes_after_the_head_are_left_for_the_next_layer() {
        let mut buf = REQ.to_vec();
        buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
        let (_, n) = parse_request(&buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, REQ.len());
        assert_eq!(&buf[n..], &[0x81, 0x85, 1, 2, 3, 4]);
    }

    #[test]
    fn head_reaching_8_kib_without_ending_is_too_large_431() {
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(8191, b'a');
        assert_eq!(parse_request(&buf, &HeadLimits::default()), Ok(None));
        buf.push(b'a');
        let err = parse_request(&buf, &HeadLimits::default()).unwrap_err();
        assert_eq!(err, HeadError::TooLarge { limit: 8192 });
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn complete_head_longer_than_the_limit_is_too_large() {
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(9000, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request(&buf, &HeadLimits::default()).map(|_| ()),
            Err(HeadError::TooLarge { limit: 8192 })
        );
        let mut resp = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        resp.resize(9000, b'a');
        assert_eq!(
            parse_response(&resp, &HeadLimits::default()).map(|_| ()),
            Err(HeadError::TooLarge { limit: 8192 })
        );
    }

    #[test]
    fn head_exactly_at_the_limit_is_accepted() {
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        buf.resize(8192 - 4, b'a');
        buf.extend_from_slice(b"\r\n\r\n");
        let (_, n) = parse_request(&buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, 8192);
    }

    #[test]
    fn more_than_max_headers_is_431() {
        let limits = HeadLimits {
            max_headers: 3,
            ..HeadLimits::default()
        };
        let ok = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(parse_request(ok, &limits).unwrap().is_some());
        let bad = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
        let err = parse_request(bad, &limits).unwrap_err();
        assert_eq!(err, HeadError::TooManyHeaders { limit: 3 });
        assert_eq!(err.status(), 431);

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&many, &HeadLimits::default()).map(|_| ()),
            Err(HeadError::TooManyHeaders { limit: 64 })
        );
    }

    #[test]
    fn limits_above_the_stack_slots_still_parse() {
        let limits = HeadLimits {
            max_headers: 100,
            max_head_bytes: 1 << 16,
        };
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (h, _) = parse_request(&many, &limits).unwrap().unwrap();
        assert_eq!(h.headers().len(), 100);
    }

    #[test]
    fn malformed_heads_are_400_with_a_reason() {
        for bad in [
            &b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: 1\r\n continued\r\n\r\n",
        ] {
            let err = parse_request(bad, &HeadLimits::default()).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
            assert!(
                err.to_string().starts_with("malformed HTTP head: "),
                "{err}"
            );
        }
        let err = parse_response(b"HTTP/1.1 1x1 OK\r\n\r\n", &HeadLimits::default()).unwrap_err();
        assert_eq!(err, HeadError::Malformed("invalid status line"));
    }

    #[test]
    fn response_head_exposes_status_reason_and_headers() {
        let (h, n) = parse_response(RESP, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, RESP.len());
        assert_eq!(h.status(), 101);
        assert_eq!(h.reason(), "Switching Protocols");
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.headers().get("UPGRADE"), Some("websocket"));
        let (h, _) = parse_response(b"HTTP/1.0 403\r\n\r\n", &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status(), h.reason(), h.version()),
            (403, "", Version::Http10)
        );
    }

    #[test]
    fn unreadable_reason_phrase_reads_as_empty() {
        let (h, _) = parse_response(b"HTTP/1.1 200 caf\xe9\r\n\r\n", &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.reason(), "");
    }

    #[test]
    fn debug_output_shows_the_parsed_fields() {
        let (h, _) = parse_request(REQ, &HeadLimits::default()).unwrap().unwrap();
        let s = format!("{h:?}");
        assert!(s.contains("\"GET\"") && s.contains("example.com"), "{s}");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_request_never_panics_nor_reports_a_head_beyond_the_input(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                max_head_bytes in 0usize..3000,
                max_headers in 0usize..80,
            ) {
                let limits = HeadLimits { max_head_bytes, max_headers };
                if let Ok(Some((head, n))) = parse_request(&bytes, &limits) {
                    prop_assert!(n <= bytes.len());
                    prop_assert!(n <= max_head_bytes);
                    prop_assert_eq!(head.as_bytes(), &bytes[..n]);
                    let _ = (head.path(), head.query(), format!("{head:?}"));
                }
                if let Ok(Some((head, n))) = parse_response(&bytes, &limits) {
                    prop_assert!(n <= bytes.len());
                    let _ = format!("{head:?}");
                }
            }

            #[test]
            fn parse_request_handles_mutated_valid_heads(
                cut in 0usize..200,
                flip in 0usize..200,
                byte in any::<u8>(),
            ) {
                let mut buf = REQ.to_vec();
                if let Some(b) = buf.get_mut(flip) {
                    *b = byte;
                }
                buf.truncate(cut);
                if let Ok(Some((_, n))) = parse_request(&buf, &HeadLimits::default()) {
                    prop_assert!(n <= buf.len());
                }
            }
        }
    }
}
