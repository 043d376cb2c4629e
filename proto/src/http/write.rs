//! Writing HTTP/1.1 heads with every header line checked first.
//!
//! A header value holding CR or LF would let whoever supplied it add header lines or end the
//! head early (response splitting), so such a value is refused with a typed error and never
//! written, whatever its source.

use std::fmt;

use super::response::reason_phrase;

/// What is wrong with a header that was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidHeaderReason {
    /// The name is not an RFC 7230 token (or is empty).
    NameNotToken,
    /// The value contains CR or LF.
    ValueHasLineBreak,
    /// The value contains NUL.
    ValueHasNul,
    /// The value contains another control character (only HTAB is allowed).
    ValueHasControl,
    /// The header is one the handshake or the response writer sets itself.
    Reserved,
}

impl fmt::Display for InvalidHeaderReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NameNotToken => "the name is not an RFC 7230 token",
            Self::ValueHasLineBreak => "the value contains CR or LF",
            Self::ValueHasNul => "the value contains NUL",
            Self::ValueHasControl => "the value contains a control character",
            Self::Reserved => "this header is set by ringsock itself",
        })
    }
}

/// A header that was refused and not written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid header {name:?}: {reason}")]
pub struct InvalidHeader {
    /// The header's name, as given.
    pub name: String,
    /// Why it was refused.
    pub reason: InvalidHeaderReason,
}

impl From<InvalidHeader> for std::io::Error {
    /// As an `InvalidInput` error, so `?` carries it through code that returns `io::Result`.
    fn from(e: InvalidHeader) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// Appends `part` to a request line, percent-encoding white space and control bytes.
fn push_request_part(buf: &mut Vec<u8>, part: &str) {
    for &b in part.as_bytes() {
        if b <= b' ' || b == 0x7f {
            buf.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            buf.push(b);
        }
    }
}

impl InvalidHeader {
    /// A header `name` refused for `reason`.
    pub fn new(name: &str, reason: InvalidHeaderReason) -> Self {
        Self {
            name: name.to_owned(),
            reason,
        }
    }
}

/// Whether `s` is an RFC 7230 token (`1*tchar`): what header names, methods and subprotocol
/// names must be.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a header line before it is written: the name must be a token; the value may hold any
/// visible character, SP, HTAB and non-ASCII text, but no other control character.
pub fn validate_header(name: &str, value: &str) -> Result<(), InvalidHeader> {
    if !is_token(name) {
        return Err(InvalidHeader::new(name, InvalidHeaderReason::NameNotToken));
    }
    for b in value.bytes() {
        let reason = match b {
            b'\r' | b'\n' => InvalidHeaderReason::ValueHasLineBreak,
            0 => InvalidHeaderReason::ValueHasNul,
            b'\t' => continue,
            b if b.is_ascii_control() => InvalidHeaderReason::ValueHasControl,
            _ => continue,
        };
        return Err(InvalidHeader::new(name, reason));
    }
    Ok(())
}

/// Builds one HTTP/1.1 head: a start line, checked header lines, the blank line and an optional
/// body.
#[derive(Clone, Debug)]
pub struct HeadWriter {
    buf: Vec<u8>,
}

impl HeadWriter {
    /// Starts a response with `HTTP/1.1 <status> <reason phrase>`. A status that is not three
    /// digits is a programming error; the peer gets 500 rather than a broken status line.
    pub fn response(status: u16) -> Self {
        let status = if (100..=999).contains(&status) {
            status
        } else {
            500
        };
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"HTTP/1.1 ");
        buf.extend_from_slice(status.to_string().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(reason_phrase(status).as_bytes());
        buf.extend_from_slice(b"\r\n");
        Self { buf }
    }

    /// Starts a request with `<method> <target> HTTP/1.1`. White space and control bytes in
    /// either (which a parsed URL never holds) are percent-encoded, so no argument can break
    /// the request line or start a header.
    pub fn request(method: &str, target: &str) -> Self {
        let mut buf = Vec::with_capacity(256);
        push_request_part(&mut buf, method);
        buf.push(b' ');
        push_request_part(&mut buf, target);
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        Self { buf }
    }

    /// Adds `name: value` after checking both with [`validate_header`]; on error nothing is
    /// written.
    pub fn header(&mut self, name: &str, value: &str) -> Result<&mut Self, InvalidHeader> {
        validate_header(name, value)?;
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        Ok(self)
    }

    /// Ends the head with the blank line, no body.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }

    /// Adds `Content-Length`, the blank line and `body`.
    pub fn finish_with_body(mut self, body: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(b"Content-Length: ");
        self.buf
            .extend_from_slice(body.len().to_string().as_bytes());
        self.buf.extend_from_slice(b"\r\n\r\n");
        self.buf.extend_from_slice(body);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_cannot_be_broken_by_its_parts() {
        let head = HeadWriter::request("GET", "/a b\r\nX-Evil: 1").finish();
        assert_eq!(head, b"GET /a%20b%0D%0AX-Evil:%201 HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn header_value_with_cr_lf_or_nul_is_refused_and_never_written() {
        for (value, reason) in [
            ("a\r\nSet-Cookie: x", InvalidHeaderReason::ValueHasLineBreak),
            ("a\rb", InvalidHeaderReason::ValueHasLineBreak),
            ("a\nb", InvalidHeaderReason::ValueHasLineBreak),
            ("a\0b", InvalidHeaderReason::ValueHasNul),
            ("a\x07b", InvalidHeaderReason::ValueHasControl),
            ("a\x7fb", InvalidHeaderReason::ValueHasControl),
        ] {
            let mut w = HeadWriter::response(200);
            let err = w.header("X-Test", value).unwrap_err();
            assert_eq!(err, InvalidHeader::new("X-Test", reason));
            assert_eq!(w.finish(), b"HTTP/1.1 200 OK\r\n\r\n");
        }
    }

    #[test]
    fn header_name_must_be_a_token() {
        for name in ["", "Bad Name", "X:Y", "Ä", "a\r\n"] {
            assert_eq!(
                validate_header(name, "v").unwrap_err().reason,
                InvalidHeaderReason::NameNotToken,
                "{name:?}"
            );
        }
        assert!(validate_header("X-Ok_1.~", "tab\tand caf\u{e9} and \"quotes\"").is_ok());
    }

    #[test]
    fn invalid_header_display_names_the_header_and_the_problem() {
        let err = validate_header("X-A", "1\n2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid header \"X-A\": the value contains CR or LF"
        );
    }

    #[test]
    fn writer_produces_status_line_headers_and_body() {
        let mut w = HeadWriter::response(404);
        w.header("A", "1").unwrap().header("B", "").unwrap();
        assert_eq!(
            w.finish_with_body(b"gone"),
            b"HTTP/1.1 404 Not Found\r\nA: 1\r\nB: \r\nContent-Length: 4\r\n\r\ngone"
        );
        assert_eq!(
            HeadWriter::request("GET", "/a?b").finish(),
            b"GET /a?b HTTP/1.1\r\n\r\n"
        );
    }

    #[test]
    fn status_that_is_not_three_digits_becomes_500() {
        assert!(HeadWriter::response(42)
            .finish()
            .starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(HeadWriter::response(499)
            .finish()
            .starts_with(b"HTTP/1.1 499 \r\n"));
    }
}
