//! Streaming UTF-8 validation. STUB: being written.

use std::fmt;

/// Bytes that are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Could not decode a text frame as UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validates a text message piece by piece, carrying an incomplete code point across pieces.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    pending: Vec<u8>,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            pending: Vec::new(),
        }
    }

    /// Validates the next piece; fails as soon as the bytes seen cannot start valid UTF-8.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(_) => {
                self.pending.clear();
                Ok(())
            }
            Err(e) if e.error_len().is_none() => Ok(()),
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the message: fails if a code point was left incomplete. Resets for the next message.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending.is_empty();
        self.pending.clear();
        if complete {
            Ok(())
        } else {
            Err(Utf8Error)
        }
    }

    /// Forgets any carried bytes.
    pub fn reset(&mut self) {
        self.pending.clear();
    }
}
