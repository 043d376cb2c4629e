//! Why a client handshake could not be started or was refused.
//!
//! The Display texts of the response checks follow faye-websocket
//! (`Error during WebSocket handshake: …`), so they can serve as the close reason (1002) and so
//! logs read the same as faye's. Where a response was received it rides along, so callers can
//! read its status code and headers whatever went wrong, as faye exposes `statusCode` and
//! `headers`.

use crate::http::{HeadError, Headers, InvalidHeader, ResponseHead};
use crate::ws::extension::ExtensionError;

/// A client handshake failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The URL does not parse, is not ws: or wss:, or has no host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A configured request header was refused (line break in the value, bad name, or a header
    /// the handshake sets itself).
    #[error(transparent)]
    InvalidHeader(#[from] InvalidHeader),
    /// A configured subprotocol is not a token or is listed twice (RFC 6455 4.1).
    #[error("invalid subprotocol {0:?}: each must be a non-empty token, listed once")]
    InvalidProtocol(String),
    /// The response head is malformed or over the limits.
    #[error("Error during WebSocket handshake: {0}")]
    Head(#[from] HeadError),
    /// The status is not 101.
    #[error("Error during WebSocket handshake: Unexpected response code: {}", .0.status())]
    UnexpectedStatus(Box<ResponseHead>),
    /// There is no `Upgrade` header.
    #[error("Error during WebSocket handshake: 'Upgrade' header is missing")]
    MissingUpgrade(Box<ResponseHead>),
    /// `Upgrade` is something other than `websocket`.
    #[error("Error during WebSocket handshake: 'Upgrade' header value is not 'WebSocket'")]
    BadUpgrade(Box<ResponseHead>),
    /// There is no `Connection` header.
    #[error("Error during WebSocket handshake: 'Connection' header is missing")]
    MissingConnection(Box<ResponseHead>),
    /// `Connection` does not hold the token `upgrade`.
    #[error("Error during WebSocket handshake: 'Connection' header value is not 'Upgrade'")]
    BadConnection(Box<ResponseHead>),
    /// `Sec-WebSocket-Accept` is missing, repeated or does not match the key sent.
    #[error("Error during WebSocket handshake: Sec-WebSocket-Accept mismatch")]
    BadAccept(Box<ResponseHead>),
    /// `Sec-WebSocket-Protocol` names a protocol not offered, or more than one.
    #[error("Error during WebSocket handshake: Sec-WebSocket-Protocol mismatch")]
    UnofferedProtocol(Box<ResponseHead>),
    /// `Sec-WebSocket-Extensions` is malformed or an extension refused the server's answer.
    #[error("Error during WebSocket handshake: {source}")]
    Extension {
        /// What the extension framework or the extension said.
        source: ExtensionError,
        /// The response.
        response: Box<ResponseHead>,
    },
}

impl From<HandshakeError> for std::io::Error {
    /// A bad URL or option is `InvalidInput`; anything the server answered is `InvalidData`.
    fn from(e: HandshakeError) -> Self {
        let kind = match e {
            HandshakeError::InvalidUrl(_)
            | HandshakeError::InvalidProtocol(_)
            | HandshakeError::InvalidHeader(_) => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

impl HandshakeError {
    /// The response this error is about, when one was received and parsed.
    pub fn response(&self) -> Option<&ResponseHead> {
        match self {
            Self::InvalidUrl(_)
            | Self::InvalidHeader(_)
            | Self::InvalidProtocol(_)
            | Self::Head(_) => None,
            Self::UnexpectedStatus(r)
            | Self::MissingUpgrade(r)
            | Self::BadUpgrade(r)
            | Self::MissingConnection(r)
            | Self::BadConnection(r)
            | Self::BadAccept(r)
            | Self::UnofferedProtocol(r)
            | Self::Extension { response: r, .. } => Some(r),
        }
    }

    /// The response's status code, when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.response().map(ResponseHead::status)
    }

    /// The response's headers, when there was a response.
    pub fn headers(&self) -> Option<Headers<'_>> {
        self.response().map(ResponseHead::headers)
    }
}
