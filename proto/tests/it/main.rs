//! The protocol core's integration tests, in one binary (`cargo test -p ringsock-proto --test
//! it`): each module one concern, named in the test paths (`rules::…`, `autobahn_mirror::…`).
//!
//! Frames the tests feed come from `ringsock-testkit`, built from literal bytes; nothing here
//! depends on the engine or on tokio.

mod common;

mod autobahn_mirror;
mod deflate;
mod limits;
mod rfc6455_examples;
mod roundtrip_props;
mod rules;
mod smoke;
