//! ringsock's public face: the `Handler` trait, `Ctx`, `Addr` and topics.
//!
//! Empty until the actors issue; the crate exists now so the workspace has its final shape.
