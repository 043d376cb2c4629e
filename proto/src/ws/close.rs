//! Close codes and close-frame payloads (RFC 6455 5.5.1 and 7.4).

use std::fmt;

/// A WebSocket close status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no code was present in the close frame. Never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection ended without a close handshake. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text message was not valid UTF-8 (or data was inconsistent with its type).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message broke the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client needed an extension the server did not negotiate, or an extension failed.
    pub const EXTENSION_ERROR: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// Whether a peer may send this code in a close frame.
    ///
    /// 1000–1003, 1007–1011 and 3000–4999, as faye-websocket accepts; 1012–1014 are registered
    /// with IANA since RFC 6455 and accepted too, as browsers send them.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether application code may close with this code: 1000 or 3000–4999.
    pub fn is_allowed_for_application(self) -> bool {
        self.0 == 1000 || (3000..=4999).contains(&self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

/// The code and reason a close frame carried (or that the connection ended with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code; 1000 when the frame had no payload (as faye reports it, see
    /// [`CloseFrame::parse`]), 1006 when there was no frame at all.
    pub code: CloseCode,
    /// The UTF-8 reason, possibly empty.
    pub reason: String,
}

/// Why a received close payload is invalid. Each ends the connection with 1002 (or 1007).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClosePayloadError {
    /// One byte cannot hold a status code.
    OneByte,
    /// The code is not one a peer may send.
    InvalidCode(u16),
    /// The reason is not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for ClosePayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OneByte => f.write_str("Received close frame with a one-byte payload"),
            Self::InvalidCode(c) => write!(f, "Received close frame with invalid code {c}"),
            Self::InvalidUtf8 => {
                f.write_str("Received close frame with a reason that is not UTF-8")
            }
        }
    }
}

impl std::error::Error for ClosePayloadError {}

impl CloseFrame {
    /// Parses and checks a received close payload (already unmasked, at most 125 bytes).
    ///
    /// An empty payload means 1000, as faye-websocket reports it, since the peer asked for a
    /// normal close without saying more.
    pub fn parse(payload: &[u8]) -> Result<CloseFrame, ClosePayloadError> {
        match payload.len() {
            0 => Ok(CloseFrame {
                code: CloseCode::NORMAL,
                reason: String::new(),
            }),
            1 => Err(ClosePayloadError::OneByte),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_valid_on_wire() {
                    return Err(ClosePayloadError::InvalidCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(&payload[2..])
                    .map_err(|_| ClosePayloadError::InvalidUtf8)?;
                Ok(CloseFrame {
                    code,
                    reason: reason.to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_close_payload_means_normal_closure() {
        assert_eq!(CloseFrame::parse(&[]).unwrap().code, CloseCode::NORMAL);
    }

    #[test]
    fn one_byte_close_payload_is_invalid() {
        assert_eq!(CloseFrame::parse(&[3]), Err(ClosePayloadError::OneByte));
    }

    #[test]
    fn close_codes_a_peer_may_not_send_are_invalid() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let p = code.to_be_bytes();
            assert_eq!(
                CloseFrame::parse(&p),
                Err(ClosePayloadError::InvalidCode(code)),
                "{code}"
            );
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(CloseFrame::parse(&code.to_be_bytes()).is_ok(), "{code}");
        }
    }

    #[test]
    fn close_reason_must_be_utf8() {
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xE8, 0xFF]),
            Err(ClosePayloadError::InvalidUtf8)
        );
        let ok = CloseFrame::parse(&[0x03, 0xE8, b'b', b'y', b'e']).unwrap();
        assert_eq!(ok.reason, "bye");
    }

    #[test]
    fn applications_may_close_only_with_1000_or_3000_to_4999() {
        assert!(CloseCode(1000).is_allowed_for_application());
        assert!(CloseCode(3000).is_allowed_for_application());
        assert!(CloseCode(4999).is_allowed_for_application());
        assert!(!CloseCode(1001).is_allowed_for_application());
        assert!(!CloseCode(2999).is_allowed_for_application());
        assert!(!CloseCode(5000).is_allowed_for_application());
    }
}
