//! The connection state machine, one engine for both roles.
//!
//! Bytes in, events out: [`Connection::recv`] parses what the transport delivered and returns
//! [`Event`]s one at a time. Messages in, bytes out: `send_*`, [`Connection::ping`] and
//! [`Connection::close`] queue frames that [`Connection::poll_transmit`] hands to the transport.
//! Time is an argument: the close timeout is armed from the `now` the caller passes and fires in
//! [`Connection::handle_timeout`]. Nothing here reads a clock or touches a socket.
//!
//! Payloads are copied once: from the caller's receive buffer into the message being assembled,
//! unmasked on the way. Small outgoing frames are corked into one buffer; a large `Bytes` payload
//! from the server role is queued as is, so a frame fanned out to many connections is not copied.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::close::{CloseCode, CloseFrame, ClosePayloadError};
use super::extension::{DataKind, ExtMessage, ExtensionError, Extensions, Rsv};
use super::frame::{FrameError, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use super::mask;
use super::message::Utf8Bytes;
use super::utf8::Utf8Validator;

/// Which end of the connection this is; it decides masking and which frames are acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: receives masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: masks every frame it sends with a fresh key from the generator
    /// seeded by [`Connection::client`].
    Client,
}

/// Limits and timeouts of one connection.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest message accepted, in bytes, summed over its fragments (and, with compression,
    /// after inflating). Larger ones end the connection with 1009. Default 2^26 − 1, as faye.
    pub max_length: usize,
    /// How long to wait for the peer's close frame after sending ours before giving up with 1006.
    pub close_timeout: Duration,
    /// Payloads at least this long, handed over as `Bytes` by the server role, are queued without
    /// copying; shorter ones are copied next to their header so one write carries many frames.
    pub zero_copy_threshold: usize,
    /// Pings and pongs the peer may send in any one-second window; one more ends the connection
    /// with 1008 ([`ProtocolError::ControlFlood`]). 0: no limit. Default 256: far above any
    /// keepalive, far below what a flood sends.
    pub max_control_per_second: u32,
    /// Once a fragmented message has more than [`FRAGMENT_GRACE`] fragments, they must carry at
    /// least this many payload bytes each on average, else the connection ends with 1008
    /// ([`ProtocolError::TinyFragments`]): a peer sending endless one-byte fragments makes the
    /// receiver parse a header per byte. 0: no limit. Default 16.
    pub min_fragment_average: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_length: (1 << 26) - 1,
            close_timeout: Duration::from_secs(30),
            zero_copy_threshold: 1024,
            max_control_per_second: 256,
            min_fragment_average: 16,
        }
    }
}

/// Fragments a message may have before [`Config::min_fragment_average`] applies: enough for any
/// legitimate fragmentation of a short message.
pub const FRAGMENT_GRACE: u32 = 1024;

/// What a send gets when it would take the connection's unwritten output past the limit the
/// transport set ([`Connection::limit_output`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The message is not queued ([`SendError::Full`]); the connection carries on.
    Drop,
    /// The message is not queued, and the connection ends with this code (1008 policy violation,
    /// or 1013 try again later): see [`Connection::abandon`].
    Close(CloseCode),
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// This side sent a close frame and waits for the peer's (or the close timeout).
    Closing,
    /// The close handshake finished or the connection failed; the transport may be shut.
    Closed,
}

/// Identifies a ping sent with [`Connection::ping`], so its pong can be recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PingId(pub u64);

/// What [`Connection::recv`] reports. After [`Event::Close`] nothing more comes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A whole text message.
    Text(Utf8Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// The peer pinged; the pong is already queued.
    Ping(Bytes),
    /// A pong arrived; `id` names the ping it answers, if it matches one still outstanding.
    Pong {
        /// The pong's payload.
        payload: Bytes,
        /// The matching [`Connection::ping`], or `None` for an unsolicited pong.
        id: Option<PingId>,
    },
    /// The peer broke the protocol; [`Event::Close`] follows with the code sent to it.
    Error(ProtocolError),
    /// The connection is closed: by a close handshake (the peer's code), by a protocol error (the
    /// code sent), or without a handshake (1006).
    Close(CloseFrame),
}

/// A rule of RFC 6455 the peer broke. Each maps to the close code sent in answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame header is invalid on its own.
    Frame(FrameError),
    /// A client sent an unmasked frame.
    UnmaskedClientFrame,
    /// A server sent a masked frame.
    MaskedServerFrame,
    /// RSV bits no negotiated extension owns, or on a frame where none may be set.
    ReservedBits(u8),
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message was unfinished.
    ExpectedContinuation,
    /// A message longer than the configured maximum.
    MessageTooBig {
        /// Bytes the message would have had.
        length: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A close frame whose payload is invalid.
    InvalidClosePayload(ClosePayloadError),
    /// A negotiated extension could not process a message.
    Extension(ExtensionError),
    /// More control frames in one second than [`Config::max_control_per_second`].
    ControlFlood {
        /// The configured limit.
        limit: u32,
    },
    /// A fragmented message whose fragments average fewer bytes than
    /// [`Config::min_fragment_average`].
    TinyFragments {
        /// Fragments so far.
        fragments: u32,
        /// Payload bytes so far.
        length: u64,
    },
}

impl ProtocolError {
    /// The close code this error is answered with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Self::Extension(e) => e.code,
            Self::ControlFlood { .. } | Self::TinyFragments { .. } => CloseCode::POLICY_VIOLATION,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::UnmaskedClientFrame => f.write_str("Received unmasked frame from a client"),
            Self::MaskedServerFrame => f.write_str("Received masked frame from a server"),
            Self::ReservedBits(rsv) => write!(
                f,
                "One or more reserved bits are on: reserved1 = {}, reserved2 = {}, reserved3 = {}",
                rsv >> 6 & 1,
                rsv >> 5 & 1,
                rsv >> 4 & 1
            ),
            Self::UnexpectedContinuation => f.write_str("Received unexpected continuation frame"),
            Self::ExpectedContinuation => {
                f.write_str("Received new data frame but previous continuous frame is unfinished")
            }
            Self::MessageTooBig { length, max } => write!(
                f,
                "WebSocket message of {length} bytes exceeds the maximum of {max}"
            ),
            Self::InvalidUtf8 => f.write_str("Could not decode a text frame as UTF-8"),
            Self::InvalidClosePayload(e) => e.fmt(f),
            Self::Extension(e) => e.fmt(f),
            Self::ControlFlood { limit } => {
                write!(f, "More than {limit} control frames in one second")
            }
            Self::TinyFragments { fragments, length } => write!(
                f,
                "A message of {fragments} fragments carrying only {length} bytes"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a send, ping or close was refused. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed; no more messages may be sent.
    Closed,
    /// Applications may close only with 1000 or 3000–4999.
    InvalidCloseCode(u16),
    /// A close reason longer than 123 bytes does not fit a control frame.
    ReasonTooLong(usize),
    /// A ping or pong payload longer than 125 bytes does not fit a control frame.
    ControlPayloadTooLong(usize),
    /// An extension could not encode the message.
    Extension(ExtensionError),
    /// The message would take the unwritten output past its limit
    /// ([`Connection::limit_output`]); under [`Overflow::Close`] the connection is ending too.
    Full,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the WebSocket is closing or closed"),
            Self::InvalidCloseCode(c) => write!(
                f,
                "close code {c} is not allowed: use 1000 or a code from 3000 to 4999"
            ),
            Self::ReasonTooLong(n) => {
                write!(
                    f,
                    "close reason of {n} bytes is longer than the 123 allowed"
                )
            }
            Self::ControlPayloadTooLong(n) => {
                write!(
                    f,
                    "control frame payload of {n} bytes is longer than the 125 allowed"
                )
            }
            Self::Extension(e) => write!(f, "extension failed to encode the message: {e}"),
            Self::Full => f.write_str(
                "the connection's unwritten output is at its limit (the peer does not read fast \
                 enough); the message was not queued",
            ),
        }
    }
}

impl std::error::Error for SendError {}

/// How many pings may await their pongs; past this the oldest is forgotten.
const MAX_OUTSTANDING_PINGS: usize = 32;

/// Pongs written while the transport takes no output; past this only the latest ping is
/// answered (RFC 6455 section 5.5.3 allows it), so a peer that pings without reading cannot
/// grow the output by a pong per ping. Enough that a burst of pings from a peer that does read
/// gets each its own pong.
const PONG_BURST: u8 = 32;

/// Fresh space for small messages is taken in chunks this large, so many messages share one
/// allocation (each keeps its slice alive by reference count).
const RX_CHUNK: usize = 4096;

/// The least the outgoing cork grows by: room for a few dozen small frames in one allocation.
const CORK_CHUNK: usize = 2048;

/// A data frame's announced length is reserved up front, up to this much, so a large message is
/// assembled without reallocating and copying as it grows. Reserving maps address space only:
/// pages become resident as bytes arrive, so a peer that announces much and sends little does
/// not pin memory.
const RX_RESERVE_CAP: usize = 1 << 20;

/// The frame whose payload is being read.
#[derive(Clone, Copy, Debug)]
struct FrameInProgress {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    remaining: u64,
    /// Where in the masking key the next byte falls (0-3; a byte keeps the connection small).
    phase: u8,
}

/// The data message being assembled across frames.
#[derive(Clone, Copy, Debug)]
struct MessageInProgress {
    kind: DataKind,
    rsv: Rsv,
    /// Bytes received so far, over all its frames.
    length: u64,
    /// Frames so far.
    fragments: u32,
    /// Its payload is skipped, not kept ([`Connection::discard_payloads`]).
    discard: bool,
}

/// What a discarded payload is handed out as: zero bytes of the right length, from here while
/// they fit (a static of zeros lives in `.bss`: it costs no memory until written, and nothing
/// writes it).
static ZEROS: [u8; 4 << 20] = [0; 4 << 20];

/// `len` zero bytes, without allocating or touching memory when they fit in [`ZEROS`].
fn zeros(len: usize) -> Bytes {
    match ZEROS.get(..len) {
        Some(z) => Bytes::from_static(z),
        None => Bytes::from(vec![0u8; len]),
    }
}

/// A WebSocket connection after the handshake: the protocol for one role, without I/O.
pub struct Connection {
    role: Role,
    /// The client role's masking keys: a ChaCha generator seeded by the caller (the server role
    /// has none, so a server connection pays one pointer for it).
    masks: Option<Box<StdRng>>,
    /// Shared by every connection made with the same settings (a shard's), so growing it costs
    /// no memory per connection.
    config: Arc<Config>,
    state: State,
    /// Data payloads are skipped ([`Connection::discard_payloads`]).
    discard: bool,
    /// A client's close handshake is done and its [`Event::Close`] waits in `pending` for the
    /// server to close the transport ([`Connection::wait_for_server_close`]).
    close_held: bool,
    /// How long that wait may last, in milliseconds; 0: the close is reported at once. (A u32
    /// beside the flags, where a `Duration` in `Config` would grow every connection by 16
    /// bytes.)
    server_close_wait_ms: u32,
    /// The length of the last data message, if it was discarded (saturating; 0 if it was kept):
    /// what [`Connection::skip_next_header_only`] judges by.
    last_discarded: u32,
    extensions: Extensions,

    // Receiving.
    /// A frame header split across reads: its bytes so far.
    header: [u8; MAX_HEADER_LEN],
    /// (A byte: a header is at most 14 bytes, and the connection stays small.)
    header_len: u8,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    /// The data message's payload; small messages share chunks of it.
    rx: BytesMut,
    /// A control frame's payload (at most 125 bytes). A vector, not an inline array: most
    /// connections never get a control payload, and 125 bytes each adds up over a million idle
    /// ones.
    control: Vec<u8>,
    utf8: Utf8Validator,
    /// Events decided but not yet returned (a protocol error yields two).
    pending: VecDeque<Event>,

    // Sending.
    /// Small frames written back to back, flushed as one chunk.
    cork: BytesMut,
    /// Chunks ready for the transport, oldest first; `cork` goes after them.
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    /// The last ping's pong is owed: its payload waits in `control` and is written when the
    /// transport next takes output, unless a newer ping replaces it.
    pong_owed: bool,
    /// Pongs written since the transport last took output (at most [`PONG_BURST`] count).
    pongs_unsent: u8,
    /// Control frames received in the current one-second window, and when it began
    /// ([`Config::max_control_per_second`]).
    control_count: u32,
    control_window: Option<Instant>,
    /// The most `queued_bytes` may reach through a send ([`Connection::limit_output`]).
    output_room: usize,
    /// What a send past `output_room` gets.
    overflow: Overflow,
    pings: VecDeque<(PingId, Bytes)>,
    next_ping: u64,
    close_deadline: Option<Instant>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("extensions", &self.extensions)
            .field("pending_output", &self.pending_output())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The server end of a connection whose handshake has completed, with the extensions it
    /// negotiated.
    pub fn server(config: impl Into<Arc<Config>>, extensions: Extensions) -> Self {
        Self::with_role(Role::Server, None, config.into(), extensions)
    }

    /// The client end of a connection whose handshake has completed. Its masking keys come
    /// from a cryptographic generator (ChaCha12) seeded with `rng_seed`: RFC 6455 wants them
    /// unpredictable, so the caller draws the seed from a strong source; a test can pin it, and
    /// with it every byte the connection writes.
    pub fn client(
        config: impl Into<Arc<Config>>,
        extensions: Extensions,
        rng_seed: [u8; 32],
    ) -> Self {
        let masks = Some(Box::new(StdRng::from_seed(rng_seed)));
        Self::with_role(Role::Client, masks, config.into(), extensions)
    }

    fn with_role(
        role: Role,
        masks: Option<Box<StdRng>>,
        config: Arc<Config>,
        extensions: Extensions,
    ) -> Self {
        Self {
            role,
            masks,
            config,
            state: State::Open,
            discard: false,
            close_held: false,
            server_close_wait_ms: 0,
            last_discarded: 0,
            extensions,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: None,
            rx: BytesMut::new(),
            control: Vec::new(),
            utf8: Utf8Validator::new(),
            pending: VecDeque::new(),
            cork: BytesMut::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            pong_owed: false,
            pongs_unsent: 0,
            control_count: 0,
            control_window: None,
            output_room: usize::MAX,
            overflow: Overflow::Drop,
            pings: VecDeque::new(),
            next_ping: 0,
            close_deadline: None,
        }
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection is over and the transport may be shut once output is flushed.
    /// A client waiting for the server to close the transport after the close handshake
    /// ([`Connection::wait_for_server_close`]) is in [`State::Closed`] but not yet closed here.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && !self.close_held
    }

    /// The limits this connection runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Client role: once the close handshake is done, wait up to `timeout` for the server to
    /// close the transport before reporting [`Event::Close`] (`None` or zero: report it at
    /// once, the default). RFC 6455 section 7.1.1 has the server close the TCP connection
    /// first, so that the server, not every client, holds the TIME_WAIT state; and the close
    /// is then reported when the connection is really over, as browsers do.
    /// [`Connection::transport_closed`] or [`Connection::handle_timeout`] lets it out;
    /// [`Connection::is_closed`] stays false until then, so a transport driven by it is not
    /// shut first. The engine's outgoing connections wait (`Limits::server_close_timeout`).
    /// Whole milliseconds, at most about 49 days.
    pub fn wait_for_server_close(&mut self, timeout: Option<Duration>) {
        let ms = timeout.map_or(0, |t| t.as_millis().min(u32::MAX.into()) as u32);
        self.server_close_wait_ms = ms;
    }

    /// Whether the handshake negotiated any extension (frames are then encoded per message and
    /// cannot be prepared in advance).
    pub fn has_extensions(&self) -> bool {
        !self.extensions.is_empty()
    }

    /// From the next data message on, skips payloads instead of keeping them: frames are still
    /// parsed and checked (order, lengths, limits), but each message arrives as that many zero
    /// bytes, shared and never written, and text is not checked for UTF-8. For a peer that only
    /// counts what it receives (a load generator, a meter), this takes the copy of every
    /// payload out of the receive path. No effect while an extension is in use (payloads must
    /// then be decoded). The transport may go further and not read such payloads at all: see
    /// [`Connection::skippable`].
    pub fn discard_payloads(&mut self, yes: bool) {
        self.discard = yes;
    }

    /// How many of the next input bytes the transport may drop unread: the rest of the payload
    /// of a data frame whose message is discarded ([`Connection::discard_payloads`]) and is at
    /// least `min_message` bytes long (as announced so far), else 0. Only the current frame's
    /// remainder counts, never more: the next frame's header must be read, whatever it is.
    /// Meaningful once [`Connection::recv`] has taken all input in.
    ///
    /// A transport that drops these bytes in the kernel (`recv` with `MSG_TRUNC` on TCP) saves
    /// their copy; it reports them with [`Connection::skipped`]. `min_message` lets it keep to
    /// messages large enough to repay the extra receive calls a skip costs.
    pub fn skippable(&self, min_message: u64) -> u64 {
        match (&self.frame, &self.message) {
            (Some(frame), Some(msg))
                if msg.discard && !frame.opcode.is_control() && msg.length >= min_message =>
            {
                frame.remaining
            }
            _ => 0,
        }
    }

    /// Whether the transport had better read no more than the next frame header before asking
    /// [`Connection::skippable`] again: the stream stands between frames and the last data
    /// message was discarded and at least `min_message` bytes long, so the next one likely is
    /// too, and its payload need not be read at all. Meaningful once [`Connection::recv`] has
    /// taken all input in.
    pub fn skip_next_header_only(&self, min_message: u64) -> bool {
        self.frame.is_none()
            && self.header_len == 0
            && self.discard
            && self.extensions.is_empty()
            && min_message > 0
            && u64::from(self.last_discarded) >= min_message
    }

    /// Accounts for `n` payload bytes the transport dropped unread, exactly as if they had been
    /// received: the frame advances, and when they end it, the message it ends becomes available
    /// from [`Connection::poll_event`] (the same zero-filled event `recv` would have made).
    ///
    /// `n` may be at most [`Connection::skippable`]: bytes beyond the frame belonged to the next
    /// header, so the stream cannot be followed any more and the connection ends as if its
    /// transport had broken ([`Event::Close`] with 1006). Ignored once the connection is closed
    /// (a skip may still be under way when it closes).
    pub fn skipped(&mut self, n: u64, now: Instant) {
        if n == 0 || self.state == State::Closed {
            return;
        }
        if n > self.skippable(0) {
            self.transport_closed();
            return;
        }
        let Some(frame) = self.frame.as_mut() else {
            return;
        };
        frame.remaining -= n;
        if frame.remaining > 0 {
            return;
        }
        let frame = *frame;
        self.frame = None;
        if let Some(event) = self.finish_frame(frame, now) {
            self.pending.push_back(event);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Receiving
    // ----------------------------------------------------------------------------------------

    /// Parses bytes from the transport and returns the next event, if one is complete.
    ///
    /// `input` is advanced past what was consumed. Call again until it returns `None`: then all
    /// of `input` has been taken in (a partial frame is kept internally). After the connection is
    /// closed, further input is discarded.
    pub fn recv(&mut self, input: &mut &[u8], now: Instant) -> Option<Event> {
        loop {
            if let Some(event) = self.poll_event() {
                return Some(event);
            }
            if self.state == State::Closed {
                *input = &[];
                return None;
            }
            if self.frame.is_none() && self.header_len == 0 && self.extensions.is_empty() {
                if let Some(event) = self.try_short_frame(input) {
                    return Some(event);
                }
            }
            let frame = match self.frame {
                Some(f) => f,
                None => match self.read_header(input, now) {
                    Some(f) => f,
                    // Either the header failed (events wait) or more input is needed.
                    None if !self.pending.is_empty() => continue,
                    None => return None,
                },
            };
            if frame.remaining > 0 {
                if input.is_empty() {
                    return None;
                }
                let take = (frame.remaining.min(input.len() as u64)) as usize;
                let (chunk, rest) = input.split_at(take);
                *input = rest;
                if let Err(e) = self.take_payload(chunk) {
                    self.fail(e, now);
                    continue;
                }
                let Some(f) = self.frame.as_ref() else {
                    continue;
                };
                if f.remaining > 0 {
                    return None;
                }
            }
            self.frame = None;
            if let Some(event) = self.finish_frame(frame, now) {
                return Some(event);
            }
        }
    }

    /// The common case in one step: a whole unfragmented text or binary frame with a 7-bit
    /// length at the start of `input`, masked as the role requires, outside any fragmented
    /// message. Anything else, including every error, is left to the general path, which
    /// re-reads the same bytes; so this only ever accepts what the general path would.
    #[inline]
    fn try_short_frame(&mut self, input: &mut &[u8]) -> Option<Event> {
        let &[b0, b1, ..] = *input else { return None };
        let masked = b1 & 0x80 != 0;
        if (b0 != 0x81 && b0 != 0x82) || masked != (self.role == Role::Server) {
            return None;
        }
        if self.message.is_some() {
            return None;
        }
        let len = (b1 & 0x7F) as usize;
        let header_len = if masked { 6 } else { 2 };
        if len >= 126 || input.len() < header_len + len || len > self.config.max_length {
            return None;
        }
        let text = b0 == 0x81;
        if self.discard && self.extensions.is_empty() {
            self.last_discarded = len as u32;
            *input = &input[header_len + len..];
            let payload = zeros(len);
            return Some(if text {
                Event::Text(Utf8Bytes::from_validated(payload))
            } else {
                Event::Binary(payload)
            });
        }
        let payload = &input[header_len..header_len + len];
        if self.rx.capacity() - self.rx.len() < len {
            self.rx.reserve(RX_CHUNK);
        }
        if masked {
            let key = [input[2], input[3], input[4], input[5]];
            mask::extend_masked(&mut self.rx, payload, key, 0);
        } else {
            self.rx.extend_from_slice(payload);
        }
        if text && simdutf8::basic::from_utf8(&self.rx).is_err() {
            self.rx.clear();
            return None;
        }
        *input = &input[header_len + len..];
        let payload = self.rx.split().freeze();
        Some(if text {
            Event::Text(Utf8Bytes::from_validated(payload))
        } else {
            Event::Binary(payload)
        })
    }

    /// Returns an event decided without new input (after [`Connection::handle_timeout`] or
    /// [`Connection::transport_closed`]), if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.close_held {
            return None;
        }
        self.pending.pop_front()
    }

    /// Reads a frame header from `input` (and earlier partial bytes) and checks it against the
    /// connection's state. Returns `None` when more bytes are needed or the frame failed (then
    /// `pending` holds the events).
    fn read_header(&mut self, input: &mut &[u8], now: Instant) -> Option<FrameInProgress> {
        let parsed = if self.header_len == 0 {
            match FrameHeader::parse(input) {
                Ok(Some((h, n))) => {
                    *input = &input[n..];
                    Ok(h)
                }
                Ok(None) => {
                    self.header[..input.len()].copy_from_slice(input);
                    self.header_len = input.len() as u8;
                    *input = &[];
                    return None;
                }
                Err(e) => Err(e),
            }
        } else {
            // Complete the split header: first learn its length, then take exactly the rest.
            let mut have = usize::from(self.header_len);
            while have < 2 && !input.is_empty() {
                self.header[have] = input[0];
                have += 1;
                *input = &input[1..];
            }
            if have < 2 {
                self.header_len = have as u8;
                return None;
            }
            let need = FrameHeader::len_from_prefix(self.header[0], self.header[1]);
            let take = (need - have).min(input.len());
            self.header[have..have + take].copy_from_slice(&input[..take]);
            have += take;
            *input = &input[take..];
            if have < need {
                self.header_len = have as u8;
                return None;
            }
            self.header_len = 0;
            match FrameHeader::parse(&self.header[..need]) {
                Ok(Some((h, _))) => Ok(h),
                Ok(None) => unreachable!("a header of its announced length parses"),
                Err(e) => Err(e),
            }
        };
        let header = match parsed {
            Ok(h) => h,
            Err(e) => {
                self.fail(ProtocolError::Frame(e), now);
                return None;
            }
        };
        match self.check_header(&header) {
            Ok(()) => {}
            Err(e) => {
                self.fail(e, now);
                return None;
            }
        }
        let frame = FrameInProgress {
            opcode: header.opcode,
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            phase: 0,
        };
        self.frame = Some(frame);
        Some(frame)
    }

    /// The rules a header breaks only in context: masking by role, RSV ownership, fragment
    /// order and the message size limit.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let rsv = Rsv(h.rsv);
        let starts_message = matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv != 0 && !(starts_message && rsv.is_subset_of(self.extensions.rsv())) {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        match h.opcode {
            OpCode::Continuation => {
                let Some(msg) = self.message.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                let length = msg.length + h.payload_len;
                if length > self.config.max_length as u64 {
                    return Err(ProtocolError::MessageTooBig {
                        length,
                        max: self.config.max_length,
                    });
                }
                msg.length = length;
                msg.fragments = msg.fragments.saturating_add(1);
                let min = self.config.min_fragment_average;
                // Judged by what the headers announce, before their payloads are read.
                if min > 0
                    && msg.fragments > FRAGMENT_GRACE
                    && length < u64::from(msg.fragments) * u64::from(min)
                {
                    return Err(ProtocolError::TinyFragments {
                        fragments: msg.fragments,
                        length,
                    });
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if h.payload_len > self.config.max_length as u64 {
                    return Err(ProtocolError::MessageTooBig {
                        length: h.payload_len,
                        max: self.config.max_length,
                    });
                }
                let kind = if h.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                let discard = self.discard && self.extensions.is_empty();
                self.message = Some(MessageInProgress {
                    kind,
                    rsv,
                    length: h.payload_len,
                    fragments: 1,
                    discard,
                });
                self.utf8.reset();
            }
            OpCode::Ping => {
                // A newer ping: the pong owed to the last one is not sent.
                self.pong_owed = false;
                self.control.clear();
                return Ok(());
            }
            OpCode::Close | OpCode::Pong => {
                // `control` is about to take this frame's payload: the owed pong goes first.
                self.settle_pong();
                self.control.clear();
                return Ok(());
            }
        }
        if self.message.is_some_and(|m| m.discard) {
            return Ok(());
        }
        let announced = (h.payload_len as usize).min(RX_RESERVE_CAP);
        if announced > RX_CHUNK && self.rx.capacity() - self.rx.len() < announced {
            self.rx.reserve(announced);
        }
        Ok(())
    }

    /// Copies (and unmasks) a piece of the current frame's payload into place.
    fn take_payload(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(());
        };
        frame.remaining -= chunk.len() as u64;
        if frame.opcode.is_control() {
            // The header check bounds a control payload to 125 bytes.
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            if let Some(key) = frame.mask {
                frame.phase =
                    mask::apply_mask(&mut self.control[start..], key, frame.phase.into()) as u8;
            }
            return Ok(());
        }
        if self.message.is_some_and(|m| m.discard) {
            return Ok(());
        }
        if self.rx.capacity() - self.rx.len() < chunk.len() {
            self.rx.reserve(chunk.len().max(RX_CHUNK));
        }
        let start = self.rx.len();
        match frame.mask {
            Some(key) => {
                frame.phase =
                    mask::extend_masked(&mut self.rx, chunk, key, frame.phase.into()) as u8
            }
            None => self.rx.extend_from_slice(chunk),
        }
        // Compressed text is checked after inflating; plain text as it arrives, so an invalid
        // byte ends the connection inside the fragment that carries it.
        let msg = self
            .message
            .as_ref()
            .expect("a data frame belongs to a message");
        if msg.kind == DataKind::Text && msg.rsv == Rsv::NONE {
            self.utf8
                .feed(&self.rx[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Acts on a frame whose payload is complete.
    fn finish_frame(&mut self, frame: FrameInProgress, now: Instant) -> Option<Event> {
        match frame.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if !frame.fin {
                    return None;
                }
                let msg = self
                    .message
                    .take()
                    .expect("checked when the header was read");
                match self.finish_message(msg) {
                    Ok(event) => Some(event),
                    Err(e) => {
                        self.fail(e, now);
                        None
                    }
                }
            }
            OpCode::Ping => {
                if let Err(e) = self.count_control(now) {
                    self.fail(e, now);
                    return None;
                }
                let payload = Bytes::copy_from_slice(&self.control[..]);
                // Answered even while closing: the peer may be waiting on it to finish.
                if self.pongs_unsent < PONG_BURST {
                    self.pongs_unsent += 1;
                    self.write_frame(OpCode::Pong, Rsv::NONE, &payload);
                } else {
                    self.pong_owed = true;
                }
                Some(Event::Ping(payload))
            }
            OpCode::Pong => {
                if let Err(e) = self.count_control(now) {
                    self.fail(e, now);
                    return None;
                }
                let payload = Bytes::copy_from_slice(&self.control[..]);
                let id = self
                    .pings
                    .iter()
                    .position(|(_, p)| *p == payload)
                    .and_then(|i| self.pings.remove(i))
                    .map(|(id, _)| id);
                Some(Event::Pong { payload, id })
            }
            OpCode::Close => {
                let payload = &self.control[..];
                match CloseFrame::parse(payload) {
                    Ok(close) => {
                        if self.state == State::Open {
                            // Echo the peer's code; an empty close is answered with an empty one.
                            let mut reply = [0u8; 2];
                            let n = if payload.is_empty() {
                                0
                            } else {
                                reply = close.code.0.to_be_bytes();
                                2
                            };
                            self.write_frame(OpCode::Close, Rsv::NONE, &reply[..n]);
                        }
                        self.enter_closed();
                        if self.role == Role::Client && self.server_close_wait_ms > 0 {
                            // Reported once the server has closed the transport, or after
                            // the wait (then this side closes it).
                            self.close_held = true;
                            self.close_deadline =
                                Some(now + Duration::from_millis(self.server_close_wait_ms.into()));
                            self.pending.push_back(Event::Close(close));
                            return None;
                        }
                        Some(Event::Close(close))
                    }
                    Err(e) => {
                        self.fail(ProtocolError::InvalidClosePayload(e), now);
                        None
                    }
                }
            }
        }
    }

    /// Counts a control frame against [`Config::max_control_per_second`].
    fn count_control(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let limit = self.config.max_control_per_second;
        if limit == 0 {
            return Ok(());
        }
        match self.control_window {
            Some(start) if now < start + Duration::from_secs(1) => {}
            _ => {
                self.control_window = Some(now);
                self.control_count = 0;
            }
        }
        self.control_count += 1;
        if self.control_count > limit {
            return Err(ProtocolError::ControlFlood { limit });
        }
        Ok(())
    }

    /// Writes the owed pong, if any, where the output stands now.
    fn settle_pong(&mut self) {
        if !self.pong_owed {
            return;
        }
        self.pong_owed = false;
        let payload = std::mem::take(&mut self.control);
        self.write_frame(OpCode::Pong, Rsv::NONE, &payload);
        self.control = payload;
    }

    /// Turns the assembled payload into a message event, through the extensions.
    fn finish_message(&mut self, msg: MessageInProgress) -> Result<Event, ProtocolError> {
        self.last_discarded = if msg.discard {
            u32::try_from(msg.length).unwrap_or(u32::MAX)
        } else {
            0
        };
        if msg.discard {
            let payload = zeros(msg.length as usize);
            return Ok(match msg.kind {
                DataKind::Binary => Event::Binary(payload),
                DataKind::Text => Event::Text(Utf8Bytes::from_validated(payload)),
            });
        }
        let payload = self.rx.split().freeze();
        if msg.rsv != Rsv::NONE || !self.extensions.is_empty() {
            let decoded = self
                .extensions
                .decode(
                    ExtMessage {
                        kind: msg.kind,
                        rsv: msg.rsv,
                        payload,
                    },
                    self.config.max_length,
                )
                .map_err(ProtocolError::Extension)?;
            if decoded.payload.len() > self.config.max_length {
                return Err(ProtocolError::MessageTooBig {
                    length: decoded.payload.len() as u64,
                    max: self.config.max_length,
                });
            }
            return Ok(match msg.kind {
                DataKind::Binary => Event::Binary(decoded.payload),
                DataKind::Text if msg.rsv == Rsv::NONE => {
                    self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    Event::Text(Utf8Bytes::from_validated(decoded.payload))
                }
                DataKind::Text => Event::Text(
                    Utf8Bytes::try_from_bytes(decoded.payload)
                        .map_err(|_| ProtocolError::InvalidUtf8)?,
                ),
            });
        }
        Ok(match msg.kind {
            DataKind::Binary => Event::Binary(payload),
            DataKind::Text => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Event::Text(Utf8Bytes::from_validated(payload))
            }
        })
    }

    /// Fails the connection: reports the error, sends a close frame with its code (unless one
    /// was already sent) and closes.
    fn fail(&mut self, error: ProtocolError, _now: Instant) {
        let code = error.close_code();
        let reason = error.to_string();
        if self.state == State::Open {
            self.write_close(code, truncate_reason(&reason));
        }
        self.enter_closed();
        self.pending.push_back(Event::Error(error));
        self.pending
            .push_back(Event::Close(CloseFrame { code, reason }));
    }

    fn enter_closed(&mut self) {
        self.state = State::Closed;
        self.close_deadline = None;
        self.frame = None;
        self.message = None;
        self.rx = BytesMut::new();
        self.pings.clear();
    }

    /// Tells the connection its transport ended (EOF or reset). If the close handshake had not
    /// finished, [`Event::Close`] with 1006 becomes available from [`Connection::poll_event`];
    /// a client's close held for the server to close the transport is let out as it was.
    pub fn transport_closed(&mut self) {
        if self.close_held {
            // The server closed after the close handshake, as it should: the close is clean.
            self.release_close();
        } else if self.state != State::Closed {
            self.enter_closed();
            self.pending.push_back(Event::Close(CloseFrame {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
            }));
        }
    }

    /// Ends the connection from this side at once, without waiting for the peer's close frame:
    /// a close frame with `code` and `reason` is queued behind the unsent output, and
    /// [`Event::Close`] with them is reported. For a peer that has stopped keeping up, whose
    /// answer would only come (if ever) after everything queued before it. Nothing happens once
    /// the connection is closed; after this side's own close frame, only the event is reported.
    pub fn abandon(&mut self, code: CloseCode, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        let reason = truncate_reason(reason);
        if self.state == State::Open {
            self.write_close(code, reason);
        }
        self.enter_closed();
        self.pending.push_back(Event::Close(CloseFrame {
            code,
            reason: reason.to_owned(),
        }));
    }

    /// When [`Connection::handle_timeout`] next needs calling, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.close_deadline
    }

    /// Advances time: a close handshake unanswered past its deadline ends with 1006; a client
    /// that waited ([`Connection::wait_for_server_close`]) for the server to close the transport
    /// reports its close (still clean: the handshake finished) and may now close it itself.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.close_deadline {
            if now >= deadline && (self.state == State::Closing || self.close_held) {
                self.transport_closed();
            }
        }
    }

    /// Lets the held [`Event::Close`] out.
    fn release_close(&mut self) {
        self.close_held = false;
        self.close_deadline = None;
    }

    // ----------------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------------

    /// Caps the output sends may queue: a data message, ping or unsolicited pong that would
    /// take [`Connection::pending_output`] past `max_pending` bytes is not queued and gets
    /// `overflow`. The transport sets it from its own limit minus what it still holds of earlier
    /// output, before handing the connection to code that sends. Frames the protocol writes by
    /// itself (pongs owed, close frames) are never refused: they are few and small. Without a
    /// call there is no limit.
    pub fn limit_output(&mut self, max_pending: usize, overflow: Overflow) {
        self.output_room = max_pending;
        self.overflow = overflow;
    }

    /// Refuses a send that would queue `len` more bytes past the output limit, applying the
    /// overflow policy.
    fn check_room(&mut self, len: usize) -> Result<(), SendError> {
        if self.queued_bytes.saturating_add(len) <= self.output_room {
            return Ok(());
        }
        if let Overflow::Close(code) = self.overflow {
            self.abandon(code, "outbound buffer limit exceeded");
        }
        Err(SendError::Full)
    }

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(DataKind::Text, text.as_bytes())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(DataKind::Binary, data)
    }

    /// When the active extensions encode every message the same way whatever came before, a
    /// key naming that encoding (`Some(0)` with no extension): connections with equal keys can
    /// be sent one encoded copy of a message. `None` when an extension keeps context (e.g.
    /// compression with context takeover), so each message must go through
    /// [`Connection::send_shared`].
    pub fn stateless_key(&self) -> Option<u64> {
        self.extensions.stateless_key()
    }

    /// Encodes a data message through stateless extensions, to frame once (with its RSV bits)
    /// and queue to every connection of the same [`Connection::stateless_key`] with
    /// [`Connection::send_raw_frames`]. `None` when an extension keeps context.
    pub fn encode_stateless(
        &mut self,
        kind: DataKind,
        payload: Bytes,
    ) -> Option<Result<ExtMessage, ExtensionError>> {
        self.extensions.stateless_key()?;
        Some(self.extensions.encode(ExtMessage {
            kind,
            rsv: Rsv::NONE,
            payload,
        }))
    }

    /// Queues a message whose payload is already shared bytes; the server role queues large
    /// payloads without copying them. A text payload must be UTF-8 ([`Utf8Bytes`] guarantees it).
    pub fn send_shared(&mut self, kind: DataKind, payload: Bytes) -> Result<(), SendError> {
        self.ensure_open()?;
        self.check_room(framed_len(payload.len()))?;
        if !self.extensions.is_empty() {
            let encoded = self
                .extensions
                .encode(ExtMessage {
                    kind,
                    rsv: Rsv::NONE,
                    payload,
                })
                .map_err(SendError::Extension)?;
            self.write_frame_shared(data_opcode(kind), encoded.rsv, encoded.payload);
        } else {
            self.write_frame_shared(data_opcode(kind), Rsv::NONE, payload);
        }
        Ok(())
    }

    fn send_data(&mut self, kind: DataKind, payload: &[u8]) -> Result<(), SendError> {
        if !self.extensions.is_empty() {
            return self.send_shared(kind, Bytes::copy_from_slice(payload));
        }
        self.ensure_open()?;
        self.check_room(framed_len(payload.len()))?;
        self.write_frame(data_opcode(kind), Rsv::NONE, payload);
        Ok(())
    }

    /// Sends a ping; the [`Event::Pong`] with the same payload will carry the returned id.
    pub fn ping(&mut self, payload: &[u8]) -> Result<PingId, SendError> {
        self.ensure_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.check_room(framed_len(payload.len()))?;
        let id = PingId(self.next_ping);
        self.next_ping += 1;
        if self.pings.len() == MAX_OUTSTANDING_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back((id, Bytes::copy_from_slice(payload)));
        self.write_frame(OpCode::Ping, Rsv::NONE, payload);
        Ok(id)
    }

    /// Sends an unsolicited pong (a one-way heartbeat).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.ensure_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.check_room(framed_len(payload.len()))?;
        self.write_frame(OpCode::Pong, Rsv::NONE, payload);
        Ok(())
    }

    /// Starts the close handshake as an application: code 1000 or 3000–4999, reason of at most
    /// 123 bytes. The peer has `close_timeout` from `now` to answer.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), SendError> {
        if !code.is_allowed_for_application() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        self.close_as_endpoint(code, reason, now)
    }

    /// Starts the close handshake with any code an endpoint may send (1001 when shutting down,
    /// 1008 or 1013 for a slow consumer, 1011 on an internal error).
    pub fn close_as_endpoint(
        &mut self,
        code: CloseCode,
        reason: &str,
        now: Instant,
    ) -> Result<(), SendError> {
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(SendError::ReasonTooLong(reason.len()));
        }
        self.ensure_open()?;
        self.write_close(code, reason);
        self.state = State::Closing;
        self.close_deadline = Some(now + self.config.close_timeout);
        Ok(())
    }

    fn ensure_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(SendError::Closed),
        }
    }

    fn write_close(&mut self, code: CloseCode, reason: &str) {
        // A pong owed goes before the close frame: nothing may follow that.
        self.settle_pong();
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.write_frame(OpCode::Close, Rsv::NONE, &payload[..2 + reason.len()]);
    }

    fn mask_key(&mut self) -> Option<[u8; 4]> {
        self.masks.as_mut().map(|rng| rng.random())
    }

    /// Makes room for `need` more bytes in the cork: at least [`CORK_CHUNK`] at a time. The cork
    /// starts empty after every flush that drained it ([`Connection::release_buffers`]), and
    /// growing it frame by frame from nothing cost a small echo five reallocations per loop
    /// turn and connection.
    #[inline]
    fn cork_room(&mut self, need: usize) {
        if self.cork.capacity() - self.cork.len() < need {
            self.cork.reserve(need.max(CORK_CHUNK));
        }
    }

    /// Writes a whole frame, header and payload, into the cork.
    fn write_frame(&mut self, opcode: OpCode, rsv: Rsv, payload: &[u8]) {
        let mask = self.mask_key();
        let header = FrameHeader {
            fin: true,
            rsv: rsv.0,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        self.cork_room(n + payload.len());
        self.cork.put_slice(&head[..n]);
        match mask {
            Some(key) => {
                mask::extend_masked(&mut self.cork, payload, key, 0);
            }
            None => self.cork.put_slice(payload),
        }
        self.queued_bytes += n + payload.len();
    }

    /// Writes a frame whose payload is shared: queued as is when large and unmasked.
    fn write_frame_shared(&mut self, opcode: OpCode, rsv: Rsv, payload: Bytes) {
        if self.role == Role::Client || payload.len() < self.config.zero_copy_threshold {
            return self.write_frame(opcode, rsv, &payload);
        }
        let header = FrameHeader {
            fin: true,
            rsv: rsv.0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        self.cork.put_slice(&head[..n]);
        self.queue.push_back(self.cork.split().freeze());
        self.queued_bytes += n + payload.len();
        self.queue.push_back(payload);
    }

    /// Queues bytes that already form whole frames for this role (a message framed once and
    /// fanned out to many server connections). The caller vouches for the framing.
    ///
    /// Short frames are copied into the cork, so a burst of small published messages still
    /// leaves in one contiguous write instead of one iovec each; long ones are shared (one
    /// reference count more), never copied. Taking a reference spares the short case a
    /// reference count taken and dropped for nothing, once per subscriber.
    pub fn send_raw_frames(&mut self, frames: &Bytes) -> Result<(), SendError> {
        self.ensure_open()?;
        self.check_room(frames.len())?;
        if frames.len() < self.config.zero_copy_threshold {
            self.cork_room(frames.len());
            self.cork.extend_from_slice(frames);
            self.queued_bytes += frames.len();
            return Ok(());
        }
        if !self.cork.is_empty() {
            self.queue.push_back(self.cork.split().freeze());
        }
        self.queued_bytes += frames.len();
        self.queue.push_back(frames.clone());
        Ok(())
    }

    /// The next chunk of bytes to write to the transport, oldest first.
    ///
    /// The caller owns the chunk and writes it in full (keeping any unwritten tail itself);
    /// gathering several chunks into one vectored write is the intended use.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.settle_pong();
        let chunk = match self.queue.pop_front() {
            Some(c) => c,
            None if !self.cork.is_empty() => self.cork.split().freeze(),
            None => return None,
        };
        self.queued_bytes -= chunk.len();
        self.pongs_unsent = 0;
        Some(chunk)
    }

    /// Bytes queued and not yet taken by [`Connection::poll_transmit`] (a pong owed, at most
    /// 131 bytes, is counted once written).
    pub fn pending_output(&self) -> usize {
        self.queued_bytes
    }

    /// Gives back idle buffer space, so a quiet connection holds no buffers. Call when the
    /// transport has drained the output and no frame is half received.
    pub fn release_buffers(&mut self) {
        if self.cork.is_empty() && self.queue.is_empty() {
            self.cork = BytesMut::new();
        }
        if self.rx.is_empty() {
            self.rx = BytesMut::new();
        }
        if self.frame.is_none() && !self.pong_owed {
            self.control = Vec::new();
        }
    }
}

/// The most bytes a frame of `payload_len` bytes takes (the longest header, masked).
fn framed_len(payload_len: usize) -> usize {
    payload_len.saturating_add(MAX_HEADER_LEN)
}

fn data_opcode(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::Text,
        DataKind::Binary => OpCode::Binary,
    }
}

/// Cuts a reason to what fits a close frame, on a character boundary.
fn truncate_reason(reason: &str) -> &str {
    let max = MAX_CONTROL_PAYLOAD - 2;
    if reason.len() <= max {
        return reason;
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}
