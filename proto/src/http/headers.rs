//! Case-insensitive header lookup over a parsed head, including comma-separated token lists that
//! may be spread over several header lines (`Connection: keep-alive` + `Connection: Upgrade`).
//!
//! Values are kept as the bytes the peer sent: RFC 7230 lets a field value carry obs-text
//! (0x80–0xFF), which need not be UTF-8. The `&str` views ([`Headers::get`], [`Headers::get_all`],
//! [`Headers::tokens`]) skip values that are not UTF-8; [`Headers::get_bytes`] and
//! [`Headers::iter`] see everything.

use std::fmt;

/// A byte range inside an owned head. `u32` keeps a header entry at 16 bytes; heads are capped far
/// below 4 GiB by [`crate::http::HeadLimits`], so the offsets always fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Where `part` lies inside `base`, or `None` if it does not (httparse returns a static `""`
    /// for an unreadable reason phrase, which points elsewhere).
    pub(crate) fn of(base: &[u8], part: &[u8]) -> Option<Span> {
        if part.is_empty() {
            return Some(Span::default());
        }
        let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        if end > base.len() {
            return None;
        }
        Some(Span {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    /// The bytes this span covers; empty if it does not fit `raw` (it always does for spans made
    /// by [`Span::of`] over the same bytes).
    pub(crate) fn slice(self, raw: &[u8]) -> &[u8] {
        raw.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// The covered bytes as text; empty if they are not UTF-8.
    pub(crate) fn str(self, raw: &[u8]) -> &str {
        std::str::from_utf8(self.slice(raw)).unwrap_or_default()
    }
}

/// Where one header line's name and value sit in the owned head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderSpan {
    pub(crate) name: Span,
    pub(crate) value: Span,
}

/// One header line as received: the name (a token, so always ASCII) and the raw value, with the
/// white space around it already removed by the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The field name as sent (case preserved).
    pub name: &'a str,
    /// The field value's bytes.
    pub value: &'a [u8],
}

impl<'a> Header<'a> {
    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }
}

/// A read-only view of a head's header lines, in the order received.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    raw: &'a [u8],
    spans: &'a [HeaderSpan],
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|h| (h.name, String::from_utf8_lossy(h.value))),
            )
            .finish()
    }
}

impl<'a> Headers<'a> {
    pub(crate) fn new(raw: &'a [u8], spans: &'a [HeaderSpan]) -> Self {
        Self { raw, spans }
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Every header line in order.
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + use<'a> {
        let raw = self.raw;
        self.spans.iter().map(move |s| Header {
            name: s.name.str(raw),
            value: s.value.slice(raw),
        })
    }

    /// The raw values of every line called `name` (case-insensitive), in order.
    pub fn get_all_bytes<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The values of every line called `name` that are UTF-8, in order.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.get_all_bytes(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
    }

    /// The raw value of the first line called `name`.
    pub fn get_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.get_all_bytes(name).next()
    }

    /// The value of the first line called `name`; `None` when there is none or its value is not
    /// UTF-8 (use [`Headers::get_bytes`] to tell the two apart).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether some line is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// How many lines are called `name`; handshake headers that must appear once are checked
    /// with this.
    pub fn count(&self, name: &str) -> usize {
        self.get_all_bytes(name).count()
    }

    /// The elements of a comma-separated list across every line called `name`, white space
    /// trimmed, empty elements skipped (RFC 7230 7). Quoted strings are not understood, which is
    /// right for token lists such as `Connection`, `Upgrade` or `Sec-WebSocket-Protocol`.
    pub fn tokens<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.get_all_bytes(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|t| !t.is_empty())
            .filter_map(|t| std::str::from_utf8(t).ok())
    }

    /// Whether the list in the lines called `name` holds `token`, compared case-insensitively.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// Trims optional white space (SP and HTAB, RFC 7230 3.2.3) from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::http::{parse_request, HeadLimits};

    fn with_headers(lines: &str, check: impl FnOnce(super::Headers<'_>)) {
        let raw = format!("GET / HTTP/1.1\r\n{lines}\r\n");
        let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        check(head.headers());
    }

    #[test]
    fn lookup_ignores_name_case_and_returns_the_first_occurrence() {
        with_headers("X-A: one\r\nx-a: two\r\nOther: z\r\n", |h| {
            assert_eq!(h.get("X-A"), Some("one"));
            assert_eq!(h.get("x-a"), Some("one"));
            assert_eq!(h.get_all("X-a").collect::<Vec<_>>(), ["one", "two"]);
            assert_eq!(h.count("x-A"), 2);
            assert_eq!(h.get("missing"), None);
            assert!(!h.contains("missing"));
            assert_eq!(h.len(), 3);
        });
    }

    #[test]
    fn token_lists_span_lines_trim_white_space_and_ignore_case() {
        with_headers(
            "Connection: keep-alive ,\t\r\nConnection:  , UPGRADE\r\n",
            |h| {
                assert_eq!(
                    h.tokens("connection").collect::<Vec<_>>(),
                    ["keep-alive", "UPGRADE"]
                );
                assert!(h.has_token("Connection", "upgrade"));
                assert!(h.has_token("CONNECTION", "Keep-Alive"));
                assert!(!h.has_token("Connection", "close"));
                assert!(!h.has_token("Upgrade", "websocket"));
            },
        );
    }

    #[test]
    fn token_match_is_whole_element_not_substring() {
        with_headers("Connection: upgraded, xupgrade\r\n", |h| {
            assert!(!h.has_token("connection", "upgrade"));
        });
    }

    #[test]
    fn values_that_are_not_utf8_are_reachable_as_bytes_only() {
        let raw = b"GET / HTTP/1.1\r\nX: caf\xe9\r\nX: ok\r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::default()).unwrap().unwrap();
        let h = head.headers();
        assert_eq!(h.get_bytes("x"), Some(&b"caf\xe9"[..]));
        assert_eq!(h.get("x"), None);
        assert_eq!(h.get_all("x").collect::<Vec<_>>(), ["ok"]);
        assert_eq!(h.iter().next().unwrap().value_str(), None);
    }

    #[test]
    fn white_space_around_values_is_not_part_of_the_value() {
        with_headers("A:   x y \t \r\nB:\r\n", |h| {
            assert_eq!(h.get("a"), Some("x y"));
            assert_eq!(h.get("b"), Some(""));
        });
    }
}
