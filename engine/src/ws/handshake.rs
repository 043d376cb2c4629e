//! The opening handshake for both roles. STUB: being written.
