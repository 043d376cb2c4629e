//! The connection state machine. STUB: being written.

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections; receives masked frames, sends unmasked ones.
    Server,
    /// Opens connections; masks what it sends.
    Client,
}
/// Connection settings.
#[derive(Clone, Debug)]
pub struct Config;
/// A connection.
pub struct Connection;
/// What the connection reports.
pub enum Event {}
/// Identifies a ping.
pub struct PingId;
/// Why a send was refused.
pub enum SendError {}
/// Connection state.
pub enum State {}
