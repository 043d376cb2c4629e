//! The hostile-peer suite of issue 13: attacks on `ringsock-echo` run as a separate process,
//! the control client that shows what they cost everyone else, and the measurements (server
//! RSS and CPU time from `/proc/<pid>`). `tools/tests/it/hostile.rs` asserts on them; the
//! `ringsock-hostile` tool prints them as the figures table.
//!
//! - [`server`]: the echo server as a child process (address, pid, RSS, CPU, `RLIMIT_NOFILE`).
//! - [`client`]: a raw WebSocket client over std's `TcpStream`, for frames no library sends.
//! - [`control`]: the control client, echoing small messages beside the attacker.
//! - [`sampler`]: the server's peak RSS.
//! - [`tcp`]: how much of what an attacker wrote the server has not read yet.
//! - [`attacks`]: the attacks, each bounded in count and time.
//! - [`runner`]: one case from start to end.
//! - [`report`]: the table and the JSON lines.
//!
//! Everything is loopback only, and every loop is bounded in count and time.

pub mod attacks;
pub mod client;
pub mod control;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod server;
pub mod tcp;
pub mod units;

pub use attacks::{Case, Outcome};
pub use runner::{run_case, CaseResult, RunConfig};
pub use server::Backend;
