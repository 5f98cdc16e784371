//! Integration tests against real `erl` nodes (one binary).
//!
//! - `dist`: the hidden node seen from Erlang: ping, nodes(hidden), message
//!   round trips, gen_server calls both ways, monitors and links both ways,
//!   wrong cookies, 1 MiB messages, node restart, connection loss.
//! - `cpg_storage`: map group storage (any term as a group name) against a
//!   driver scope and, with CPG_EBIN, genuine cpg with `group_storage` dict.

mod support;

// Runs the binary, which needs the default `cli` feature.
#[cfg(feature = "cli")]
mod cli;
mod cpg_interop;
mod cpg_protocol;
mod cpg_storage;
mod cpg_wire;
mod dist;
mod faults;
