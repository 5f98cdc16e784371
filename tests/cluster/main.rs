//! Integration tests against real `erl` nodes (one binary).
//!
//! - `dist`: the hidden node seen from Erlang: ping, nodes(hidden), message
//!   round trips, gen_server calls both ways, monitors and links both ways,
//!   wrong cookies, 1 MiB messages, node restart, connection loss.

mod support;

mod cli;
mod cpg_interop;
mod cpg_protocol;
mod cpg_wire;
mod dist;
