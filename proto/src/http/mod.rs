//! HTTP/1.1 heads, as much as the WebSocket and EventSource handshakes need: bounded parsing
//! with `httparse` ([`head`]), case-insensitive header and token-list lookup ([`headers`]), and
//! writing heads whose header lines are checked before they go out ([`mod@write`], [`response`]).

pub mod head;
pub mod headers;
pub mod response;
pub mod write;

pub use head::{
    parse_request, parse_response, HeadError, HeadLimits, RequestHead, ResponseHead, Version,
};
pub use headers::{Header, Headers};
pub use response::{plain_text_response, reason_phrase};
pub use write::{is_token, validate_header, HeadWriter, InvalidHeader, InvalidHeaderReason};
