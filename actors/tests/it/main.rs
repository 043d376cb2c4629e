//! The actors layer's integration tests, in one binary (`cargo test -p ringsock-actors --test
//! it`): handlers, topics, timers, pings and clients over real loopback sockets on both reactor
//! backends, the examples run as programs, and interop against Python's `websockets` and
//! Chromium; one module per concern, named in the test paths (`timers::…::io_uring`).
//!
//! Every wait is for an event (a message, a channel report, a state read), bounded by a deadline
//! far above what a loaded machine needs; where a test measures a timeout, the lower bound is
//! strict and the upper bound generous.

mod dial_support;
mod interop;
mod support;

mod addr;
mod backpressure;
mod chat;
mod client;
mod client_proxy;
mod client_timeout;
mod client_tls;
mod examples;
mod fanout;
mod fanout_deflate;
mod interop_chromium;
mod interop_python;
mod lifecycle;
mod ping;
mod pool;
mod publish_burst;
mod shared_state;
mod skip;
mod slow_subscriber;
mod timers;
mod topics;
mod upgrade;
