//! Response heads: reason phrases and the plain-text refusal a server sends when it will not
//! upgrade (faye's form: the reason as a `text/plain` body), plus `Connection: close` because
//! the server ends the connection after it.

use super::write::{validate_header, HeadWriter, InvalidHeader, InvalidHeaderReason};

/// The RFC 9110 reason phrase for `status`; empty for codes it does not name, which the grammar
/// allows.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The headers [`plain_text_response`] writes itself; an extra header by one of these names would
/// contradict them.
pub(crate) fn is_plain_text_reserved(name: &str) -> bool {
    [
        "content-type",
        "content-length",
        "connection",
        "transfer-encoding",
    ]
    .iter()
    .any(|r| r.eq_ignore_ascii_case(name))
}

/// A complete plain-text response: status line, `Content-Type: text/plain`, `Content-Length`,
/// `Connection: close`, the extra headers, then `reason` as the body.
///
/// An extra header that fails [`validate_header`] or names one of the headers written here is
/// refused and nothing is produced.
pub fn plain_text_response<'h>(
    status: u16,
    reason: &str,
    extra_headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<Vec<u8>, InvalidHeader> {
    let extra: Vec<(&str, &str)> = extra_headers.into_iter().collect();
    for &(name, value) in &extra {
        validate_header(name, value)?;
        if is_plain_text_reserved(name) {
            return Err(InvalidHeader::new(name, InvalidHeaderReason::Reserved));
        }
    }
    Ok(plain_text_skipping_invalid(status, reason, extra))
}

/// [`plain_text_response`] for paths that must always produce an answer (a refusal is the last
/// word on a connection): an invalid or reserved extra header is left out instead.
pub(crate) fn plain_text_skipping_invalid<'h>(
    status: u16,
    reason: &str,
    extra_headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Vec<u8> {
    let mut w = HeadWriter::response(status);
    // These values are constants or digits, which the writer always accepts; `header` writes
    // nothing on error, so ignoring its result can never emit a bad line.
    let _ = w.header("Content-Type", "text/plain");
    let _ = w.header("Content-Length", &reason.len().to_string());
    let _ = w.header("Connection", "close");
    for (name, value) in extra_headers {
        if !is_plain_text_reserved(name) {
            let _ = w.header(name, value);
        }
    }
    let mut out = w.finish();
    out.extend_from_slice(reason.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_refusal_has_type_length_close_extras_and_reason_body() {
        let r = plain_text_response(403, "go away", [("X-A", "1")]).unwrap();
        assert_eq!(
            r,
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\
              Connection: close\r\nX-A: 1\r\n\r\ngo away"
        );
    }

    #[test]
    fn plain_text_refusal_refuses_bad_or_reserved_extra_headers() {
        assert_eq!(
            plain_text_response(400, "x", [("X", "a\r\nb")])
                .unwrap_err()
                .reason,
            InvalidHeaderReason::ValueHasLineBreak
        );
        assert_eq!(
            plain_text_response(400, "x", [("content-length", "0")])
                .unwrap_err()
                .reason,
            InvalidHeaderReason::Reserved
        );
    }

    #[test]
    fn reason_phrases_cover_the_statuses_the_handshake_uses() {
        for (s, p) in [
            (101, "Switching Protocols"),
            (400, "Bad Request"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (799, ""),
        ] {
            assert_eq!(reason_phrase(s), p);
        }
    }
}
