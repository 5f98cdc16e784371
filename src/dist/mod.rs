//! The Erlang distribution protocol.
//!
//! ```text
//!  connect/accept -> handshake (pure, handshake.rs) -> connected -> down
//!                                                   |  codec.rs: packets,
//!                                                   |  fragments, control
//!                                                   |  connection.rs: IO
//! ```
//!
//! Spec: the erts "Distribution Protocol" chapter, and
//! `shared/spec/dist-and-pg-notes.md` for what OTP 25 really sends.

pub mod codec;
pub mod connection;
pub mod flags;
pub mod handshake;
