//! The Erlang distribution protocol.
//!
//! ```text
//!  connect/accept -> handshake (pure, handshake.rs) -> connected -> down
//!                                                   |  link.rs: framing, ticks,
//!                                                   |    batching (pure)
//!                                                   |  codec.rs: fragments
//!                                                   |  control.rs: messages
//!                                                   |  monitors.rs: MONITOR_P batches
//!                                                   |  raw.rs: payloads left as bytes
//!                                                   |  send_cache.rs: our atom cache entries
//!                                                   |  connection.rs: IO
//! ```
//!
//! Spec: the erts "Distribution Protocol" chapter (`erl_dist_protocol`) and
//! the "External Term Format" chapter of the OTP documentation. Where a
//! live OTP 25 node behaves otherwise, the code says so where it matters
//! (e.g. the pass-through packets refused once FRAGMENTS is negotiated, in
//! `codec.rs`).

pub mod codec;
pub mod compat;
pub mod connection;
pub mod control;
pub mod flags;
pub mod handshake;
pub mod link;
pub mod monitors;
pub mod raw;
pub mod send_cache;
pub mod sender;

#[cfg(test)]
mod golden_tests;
