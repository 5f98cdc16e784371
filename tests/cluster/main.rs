//! Integration tests against real `erl` nodes (one binary).
//!
//! - `dist`: the hidden node seen from Erlang: ping, nodes(hidden), message
//!   round trips, gen_server calls both ways, monitors and links both ways,
//!   wrong cookies, 1 MiB messages, node restart, connection loss.
//! - `cpg_modes`: the default `Auto` mode against a BEAM scope at `all` and
//!   at `visible` (genuine cpg with CPG_EBIN, else the model scope).
//! - `cpg_storage`: map group storage (any term as a group name) against a
//!   driver scope and, with CPG_EBIN, genuine cpg with `group_storage` dict.
//! - `faults`: the node comes back by itself after faults (seed restart,
//!   SIGSTOP either side, EPMD restart, scope restarts, silent partition,
//!   crashes), and discovers the cluster through a seed.
//! - `schedule`: a randomized schedule of joins, leaves, exits, partitions
//!   and heals on two BEAM nodes (genuine cpg with CPG_EBIN, else the model
//!   scope `erl_test/cpg_model_scope.erl`; at node_type `all`, and at
//!   `visible`) and a Rust node.

mod support;

// Runs the binary, which needs the default `cli` feature.
#[cfg(feature = "cli")]
mod cli;
mod cpg_interop;
mod cpg_modes;
mod cpg_protocol;
mod cpg_storage;
mod cpg_wire;
mod dist;
mod faults;
mod pg;
mod pubsub;
mod schedule;
