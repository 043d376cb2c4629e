//! The extension framework: negotiation through `Sec-WebSocket-Extensions`, ownership of the RSV
//! bits, and per-message transforms (outgoing in order, incoming in reverse order).
//!
//! An [`Extension`] is registered once per server or client and negotiates; each connection that
//! agrees on it gets its own [`ExtensionSession`], which transforms that connection's data
//! messages. Control frames never pass through extensions.

use std::fmt;

use bytes::Bytes;

use super::close::CloseCode;

/// A set of RSV bits, as they sit in the first frame-header byte (RSV1 = 0x40).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rsv(pub u8);

impl Rsv {
    /// No bits.
    pub const NONE: Rsv = Rsv(0);
    /// RSV1, the bit permessage-deflate owns.
    pub const RSV1: Rsv = Rsv(0x40);
    /// RSV2.
    pub const RSV2: Rsv = Rsv(0x20);
    /// RSV3.
    pub const RSV3: Rsv = Rsv(0x10);

    /// Whether the two sets share a bit.
    pub fn intersects(self, other: Rsv) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets together.
    pub fn union(self, other: Rsv) -> Rsv {
        Rsv(self.0 | other.0)
    }

    /// Whether every bit of `self` is in `other`.
    pub fn is_subset_of(self, other: Rsv) -> bool {
        self.0 & !other.0 == 0
    }
}

/// One element of a `Sec-WebSocket-Extensions` header: a name and its parameters in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionParams {
    /// The extension's registered name, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in header order; a bare parameter has no value. Quoted values are unquoted.
    pub params: Vec<(String, Option<String>)>,
}

impl ExtensionParams {
    /// An element with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    pub fn with_param(mut self, key: impl Into<String>, value: Option<String>) -> Self {
        self.params.push((key.into(), value));
        self
    }
}

/// A `Sec-WebSocket-Extensions` header that does not follow the RFC 6455 9.1 grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionHeaderError {
    /// What was wrong, for a person.
    pub message: String,
}

impl fmt::Display for ExtensionHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Invalid Sec-WebSocket-Extensions header: {}",
            self.message
        )
    }
}

impl std::error::Error for ExtensionHeaderError {}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `Sec-WebSocket-Extensions` value (several header lines are joined with `,` first).
///
/// Grammar: `1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )`, with optional white
/// space around separators. Linear in the input; empty list elements are skipped, as RFC 7230's
/// `#rule` allows.
pub fn parse_extensions(value: &str) -> Result<Vec<ExtensionParams>, ExtensionHeaderError> {
    let s = value.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |m: String| ExtensionHeaderError { message: m };
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> Option<String> {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        (*i > start).then(|| value[start..*i].to_owned())
    };
    loop {
        skip_ws(&mut i);
        if i == s.len() {
            break;
        }
        if s[i] == b',' {
            i += 1;
            continue;
        }
        let name = token(&mut i).ok_or_else(|| err(format!("expected a name at byte {i}")))?;
        let mut ext = ExtensionParams::new(name);
        loop {
            skip_ws(&mut i);
            if i == s.len() || s[i] == b',' {
                break;
            }
            if s[i] != b';' {
                return Err(err(format!("unexpected {:?} at byte {i}", s[i] as char)));
            }
            i += 1;
            skip_ws(&mut i);
            let key = token(&mut i)
                .ok_or_else(|| err(format!("expected a parameter name at byte {i}")))?;
            skip_ws(&mut i);
            let val =
                if i < s.len() && s[i] == b'=' {
                    i += 1;
                    skip_ws(&mut i);
                    if i < s.len() && s[i] == b'"' {
                        i += 1;
                        let mut v = String::new();
                        loop {
                            match s.get(i) {
                                None => return Err(err("unterminated quoted string".into())),
                                Some(b'"') => {
                                    i += 1;
                                    break;
                                }
                                Some(b'\\') if i + 1 < s.len() => {
                                    v.push(s[i + 1] as char);
                                    i += 2;
                                }
                                Some(&b) if b.is_ascii() && !b.is_ascii_control() => {
                                    v.push(b as char);
                                    i += 1;
                                }
                                Some(_) => {
                                    return Err(err(format!(
                                        "bad character in quoted string at byte {i}"
                                    )))
                                }
                            }
                        }
                        // RFC 6455 9.1: a quoted value must still be a token once unquoted.
                        if v.is_empty() || !v.bytes().all(is_tchar) {
                            return Err(err(format!("quoted value {v:?} is not a token")));
                        }
                        Some(v)
                    } else {
                        Some(token(&mut i).ok_or_else(|| {
                            err(format!("expected a parameter value at byte {i}"))
                        })?)
                    }
                } else {
                    None
                };
            ext.params.push((key, val));
        }
        out.push(ext);
    }
    Ok(out)
}

/// Writes extension elements as a `Sec-WebSocket-Extensions` value.
pub fn format_extensions(exts: &[ExtensionParams]) -> String {
    let mut out = String::new();
    for (n, ext) in exts.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(&ext.name);
        for (k, v) in &ext.params {
            out.push_str("; ");
            out.push_str(k);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    out
}

/// Why an extension refused a negotiation or a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionError {
    /// The close code the connection ends with: 1010 in general, 1007 for data that cannot be
    /// decoded, 1009 when decoding would exceed the message size limit.
    pub code: CloseCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ExtensionError {
    /// An error closing with 1010.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: CloseCode::EXTENSION_ERROR,
            message: message.into(),
        }
    }
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExtensionError {}

/// Whether a data message is text or binary (extensions see only data messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// A UTF-8 text message.
    Text,
    /// A binary message.
    Binary,
}

/// A whole data message as extensions see it: its kind, RSV bits and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtMessage {
    /// Text or binary.
    pub kind: DataKind,
    /// RSV bits of the message's first frame (incoming) or to set on it (outgoing).
    pub rsv: Rsv,
    /// The payload, transformed by each extension in turn.
    pub payload: Bytes,
}

/// A server's answer to an offer: the response parameters and the connection's session.
pub type AcceptedOffer = (ExtensionParams, Box<dyn ExtensionSession>);

/// An extension as registered on a server or client: it negotiates and creates sessions.
pub trait Extension: Send + Sync {
    /// The registered name, as it appears in `Sec-WebSocket-Extensions`.
    fn name(&self) -> &str;

    /// The RSV bits its sessions use. Two extensions with a bit in common are never both active:
    /// the one listed first wins.
    fn rsv(&self) -> Rsv;

    /// Server role: picks one of the client's offers for this extension (all elements carrying
    /// [`Extension::name`], in the client's order) and answers with response parameters and a
    /// session. `Ok(None)` declines; an error means the offers were malformed and is logged, not
    /// fatal: the extension is simply not used.
    fn accept_offer(
        &self,
        offers: &[&ExtensionParams],
    ) -> Result<Option<AcceptedOffer>, ExtensionError>;

    /// Client role: the elements to offer, in order of preference.
    fn client_offers(&self) -> Vec<ExtensionParams>;

    /// Client role: checks the server's response for this extension and creates the session.
    /// An error fails the handshake.
    fn accept_response(
        &self,
        response: &ExtensionParams,
    ) -> Result<Box<dyn ExtensionSession>, ExtensionError>;
}

/// One connection's state for a negotiated extension.
pub trait ExtensionSession: Send {
    /// The RSV bits this session sets and reads.
    fn rsv(&self) -> Rsv;

    /// Transforms an outgoing data message, setting its RSV bits as needed.
    fn encode(&mut self, message: ExtMessage) -> Result<ExtMessage, ExtensionError>;

    /// Transforms an incoming data message, clearing the RSV bits it consumed. The result must
    /// not exceed `max_length` bytes: a session returns 1009 rather than produce more.
    fn decode(
        &mut self,
        message: ExtMessage,
        max_length: usize,
    ) -> Result<ExtMessage, ExtensionError>;

    /// When this session encodes every message the same way whatever was sent before (it keeps
    /// no context), a key naming that encoding: sessions with equal keys give equal output for
    /// equal input, so a message for many connections is encoded once per key. `None` (the
    /// default): each connection encodes for itself.
    fn stateless_key(&self) -> Option<u64> {
        None
    }
}

/// The sessions active on one connection, in negotiated order, with the RSV bits they own.
#[derive(Default)]
pub struct Extensions {
    sessions: Vec<Box<dyn ExtensionSession>>,
    rsv: Rsv,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("sessions", &self.sessions.len())
            .field("rsv", &self.rsv)
            .finish()
    }
}

impl Extensions {
    /// Activates sessions in order; a session whose RSV bits overlap an earlier one's is dropped.
    pub fn new(sessions: Vec<Box<dyn ExtensionSession>>) -> Self {
        let mut rsv = Rsv::NONE;
        let mut kept = Vec::with_capacity(sessions.len());
        for s in sessions {
            if s.rsv().intersects(rsv) {
                continue;
            }
            rsv = rsv.union(s.rsv());
            kept.push(s);
        }
        Self {
            sessions: kept,
            rsv,
        }
    }

    /// Whether no extension is active (the common fast path).
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The RSV bits some active session owns; any other bit on a frame is a protocol error.
    pub fn rsv(&self) -> Rsv {
        self.rsv
    }

    /// The key of the whole chain's encoding when every session is stateless (see
    /// [`ExtensionSession::stateless_key`]); `Some(0)` when no extension is active.
    pub fn stateless_key(&self) -> Option<u64> {
        self.sessions.iter().try_fold(0u64, |acc, s| {
            s.stateless_key()
                .map(|k| acc.rotate_left(17) ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        })
    }

    /// Runs an outgoing message through every session in order.
    pub fn encode(&mut self, mut message: ExtMessage) -> Result<ExtMessage, ExtensionError> {
        for s in &mut self.sessions {
            message = s.encode(message)?;
        }
        Ok(message)
    }

    /// Runs an incoming message through every session in reverse order.
    pub fn decode(
        &mut self,
        mut message: ExtMessage,
        max_length: usize,
    ) -> Result<ExtMessage, ExtensionError> {
        for s in self.sessions.iter_mut().rev() {
            message = s.decode(message, max_length)?;
        }
        Ok(message)
    }
}

/// Server role: negotiates the client's offers against the registered extensions.
///
/// Extensions are considered in the order the client first names them; each registered
/// extension picks among its offers; an extension whose RSV bits clash with one already accepted
/// is skipped. Returns the response elements (for `Sec-WebSocket-Extensions`) and the sessions.
pub fn negotiate_server(
    registered: &[std::sync::Arc<dyn Extension>],
    offers: &[ExtensionParams],
) -> (Vec<ExtensionParams>, Vec<Box<dyn ExtensionSession>>) {
    let mut responses = Vec::new();
    let mut sessions = Vec::new();
    let mut used = Rsv::NONE;
    let mut seen: Vec<&str> = Vec::new();
    for offer in offers {
        if seen.contains(&offer.name.as_str()) {
            continue;
        }
        seen.push(&offer.name);
        let Some(ext) = registered.iter().find(|e| e.name() == offer.name) else {
            continue;
        };
        if ext.rsv().intersects(used) {
            continue;
        }
        let same: Vec<&ExtensionParams> = offers.iter().filter(|o| o.name == offer.name).collect();
        if let Ok(Some((response, session))) = ext.accept_offer(&same) {
            used = used.union(ext.rsv());
            responses.push(response);
            sessions.push(session);
        }
    }
    (responses, sessions)
}

/// Client role: builds the offer from the registered extensions, in registration order.
pub fn client_offers(registered: &[std::sync::Arc<dyn Extension>]) -> Vec<ExtensionParams> {
    registered.iter().flat_map(|e| e.client_offers()).collect()
}

/// Client role: checks the server's `Sec-WebSocket-Extensions` answer against what was offered.
///
/// Each element must name a registered extension, appear at most once, and not clash on RSV bits
/// with an earlier one; the extension itself then checks the parameters.
pub fn negotiate_client(
    registered: &[std::sync::Arc<dyn Extension>],
    responses: &[ExtensionParams],
) -> Result<Vec<Box<dyn ExtensionSession>>, ExtensionError> {
    let mut sessions = Vec::new();
    let mut used = Rsv::NONE;
    let mut seen: Vec<&str> = Vec::new();
    for response in responses {
        let Some(ext) = registered.iter().find(|e| e.name() == response.name) else {
            return Err(ExtensionError::new(format!(
                "Sec-WebSocket-Extensions header has an extension that was not offered: {}",
                response.name
            )));
        };
        if seen.contains(&response.name.as_str()) {
            return Err(ExtensionError::new(format!(
                "Sec-WebSocket-Extensions header names {} twice",
                response.name
            )));
        }
        seen.push(&response.name);
        if ext.rsv().intersects(used) {
            return Err(ExtensionError::new(format!(
                "Sec-WebSocket-Extensions header: {} clashes on RSV bits with an earlier extension",
                response.name
            )));
        }
        used = used.union(ext.rsv());
        sessions.push(ext.accept_response(response)?);
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn header_grammar_parses_names_params_and_quoted_values() {
        let v = parse_extensions(
            "permessage-deflate; client_max_window_bits, x-foo ; a=1;b=\"two\" ,, bar",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].name, "permessage-deflate");
        assert_eq!(v[0].params, vec![("client_max_window_bits".into(), None)]);
        assert_eq!(
            v[1].params,
            vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("two".into()))
            ]
        );
        assert_eq!(v[2], ExtensionParams::new("bar"));
    }

    #[test]
    fn header_grammar_refuses_malformed_values() {
        for bad in [
            "; a",
            "foo; =1",
            "foo; a=",
            "foo; a=\"unterminated",
            "foo bar",
            "foo; a=\"not a token\"",
            "foo; a=1 2",
        ] {
            assert!(parse_extensions(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_then_parse_is_identity() {
        let exts = vec![
            ExtensionParams::new("a")
                .with_param("x", None)
                .with_param("y", Some("9".into())),
            ExtensionParams::new("b"),
        ];
        assert_eq!(parse_extensions(&format_extensions(&exts)).unwrap(), exts);
    }

    struct Fake {
        name: &'static str,
        rsv: Rsv,
    }
    struct FakeSession(Rsv);
    impl ExtensionSession for FakeSession {
        fn rsv(&self) -> Rsv {
            self.0
        }
        fn encode(&mut self, m: ExtMessage) -> Result<ExtMessage, ExtensionError> {
            Ok(m)
        }
        fn decode(&mut self, m: ExtMessage, _: usize) -> Result<ExtMessage, ExtensionError> {
            Ok(m)
        }
    }
    impl Extension for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn rsv(&self) -> Rsv {
            self.rsv
        }
        fn accept_offer(
            &self,
            offers: &[&ExtensionParams],
        ) -> Result<Option<AcceptedOffer>, ExtensionError> {
            Ok(Some((offers[0].clone(), Box::new(FakeSession(self.rsv)))))
        }
        fn client_offers(&self) -> Vec<ExtensionParams> {
            vec![ExtensionParams::new(self.name)]
        }
        fn accept_response(
            &self,
            _: &ExtensionParams,
        ) -> Result<Box<dyn ExtensionSession>, ExtensionError> {
            Ok(Box::new(FakeSession(self.rsv)))
        }
    }

    #[test]
    fn server_skips_an_extension_whose_rsv_bits_are_taken() {
        let reg: Vec<Arc<dyn Extension>> = vec![
            Arc::new(Fake {
                name: "a",
                rsv: Rsv::RSV1,
            }),
            Arc::new(Fake {
                name: "b",
                rsv: Rsv::RSV1,
            }),
            Arc::new(Fake {
                name: "c",
                rsv: Rsv::RSV2,
            }),
        ];
        let offers = parse_extensions("b, a, c, unknown").unwrap();
        let (resp, sessions) = negotiate_server(&reg, &offers);
        let names: Vec<_> = resp.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "c"], "client order decides; a clashes with b");
        assert_eq!(Extensions::new(sessions).rsv(), Rsv(0x60));
    }

    #[test]
    fn client_refuses_unoffered_duplicate_or_clashing_responses() {
        let reg: Vec<Arc<dyn Extension>> = vec![
            Arc::new(Fake {
                name: "a",
                rsv: Rsv::RSV1,
            }),
            Arc::new(Fake {
                name: "b",
                rsv: Rsv::RSV1,
            }),
        ];
        assert!(negotiate_client(&reg, &parse_extensions("zzz").unwrap()).is_err());
        assert!(negotiate_client(&reg, &parse_extensions("a, a").unwrap()).is_err());
        assert!(negotiate_client(&reg, &parse_extensions("a, b").unwrap()).is_err());
        assert_eq!(
            negotiate_client(&reg, &parse_extensions("b").unwrap())
                .unwrap()
                .len(),
            1
        );
    }
}
