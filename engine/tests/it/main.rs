//! The engine's integration tests, in one binary (`cargo test -p ringsock-engine --test it`):
//! the server over real loopback sockets on both reactor backends, one module per concern,
//! named in the test paths (`server_loopback::…::io_uring`, `keepalive::…::epoll`).
//!
//! Every wait is for an event (a frame, an EOF, a state read), bounded by a deadline far above
//! what a loaded machine needs; where a test measures a timeout, the lower bound is strict and
//! the upper bound generous.

mod support;

mod fd_exhaustion;
mod keepalive;
mod output_backpressure;
mod server_loopback;
