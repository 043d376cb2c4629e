//! One connection's permessage-deflate: compresses outgoing data messages from the threshold up
//! and inflates those that arrive with RSV1.

use super::codec::{Deflater, InflateError, Inflater};
use super::compressor::Settings;
use super::params::Agreement;
use super::DeflateOptions;
use crate::ws::close::CloseCode;
use crate::ws::extension::{ExtMessage, ExtensionError, ExtensionSession, Rsv};

/// The per-connection state of a negotiated permessage-deflate.
pub struct DeflateSession {
    deflater: Deflater,
    inflater: Inflater,
    threshold: usize,
    /// Names this session's encoding when it carries no context (see
    /// [`ExtensionSession::stateless_key`]).
    key: Option<u64>,
}

impl std::fmt::Debug for DeflateSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The zlib contexts have no useful text form.
        f.debug_struct("DeflateSession")
            .field("threshold", &self.threshold)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl DeflateSession {
    /// A session for what was agreed, with the level and threshold of the options.
    pub fn new(agreement: &Agreement, opts: &DeflateOptions) -> Self {
        let settings = Settings {
            level: opts.level as u8,
            window_bits: agreement.own_window_bits.max(9),
            mem_level: opts.mem_level,
            strategy: opts.strategy,
        };
        let key = (!agreement.own_context_takeover).then(|| {
            // The compressor's settings and the threshold decide the bytes; a tag keeps the
            // key apart from other extensions' keys.
            (0x7064_u64 << 48)
                | (u64::from(settings.level) << 44)
                | (u64::from(settings.window_bits) << 40)
                | (u64::from(settings.mem_level) << 36)
                | (settings.strategy as u64) << 32
                | opts.threshold as u64 & 0xffff_ffff
        });
        Self {
            deflater: Deflater::new(settings, agreement.own_context_takeover),
            inflater: Inflater::new(agreement.peer_window_bits, agreement.peer_context_takeover),
            threshold: opts.threshold,
            key,
        }
    }
}

impl ExtensionSession for DeflateSession {
    fn rsv(&self) -> Rsv {
        Rsv::RSV1
    }

    fn encode(&mut self, message: ExtMessage) -> Result<ExtMessage, ExtensionError> {
        if message.payload.len() < self.threshold {
            return Ok(message);
        }
        Ok(match self.deflater.compress(&message.payload) {
            Some(payload) => ExtMessage {
                rsv: message.rsv.union(Rsv::RSV1),
                payload,
                ..message
            },
            None => message,
        })
    }

    fn decode(
        &mut self,
        message: ExtMessage,
        max_length: usize,
    ) -> Result<ExtMessage, ExtensionError> {
        if !message.rsv.intersects(Rsv::RSV1) {
            return Ok(message);
        }
        match self.inflater.inflate(&message.payload, max_length) {
            Ok(payload) => Ok(ExtMessage {
                rsv: Rsv(message.rsv.0 & !Rsv::RSV1.0),
                payload,
                ..message
            }),
            Err(InflateError::TooBig) => Err(ExtensionError {
                code: CloseCode::MESSAGE_TOO_BIG,
                message: format!("the inflated message is over the {max_length}-byte limit"),
            }),
            Err(InflateError::Corrupt(why)) => Err(ExtensionError {
                code: CloseCode::INVALID_PAYLOAD,
                message: format!("permessage-deflate: cannot inflate the message: {why}"),
            }),
        }
    }

    fn stateless_key(&self) -> Option<u64> {
        self.key
    }
}
