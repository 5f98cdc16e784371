//! # cpg-node
//!
//! A hidden Erlang distribution node written in Rust that takes part in
//! CloudI `cpg` process groups as an equal of the BEAM scope processes.
//!
//! ```text
//!             +-----------------------------------------------+
//!  CLI/app -> | Node (node/)   registry: pid -> mailbox       |
//!             |   |            peers:    node -> Connection   |
//!             |   +-- Process (process/)  mailbox, links, mons |
//!             |   +-- cpg scope (cpg/)    pure Scope + server |
//!             +---|-------------------------------------------+
//!                 | Outgoing control messages (one queue per peer)
//!             +---v-------------------------------------------+
//!             | dist/connection: one task per peer            |
//!             |   handshake (pure) -> framing -> buffered IO  |
//!             +---|-------------------------------------------+
//!                 | TCP                     EPMD (epmd/) client + server
//!              BEAM nodes
//! ```
//!
//! # Layout
//! - [`atom`]: interned node names; [`pid`]: pids with their node interned
//!   (16 bytes, `Copy`: what a scope stores and the node monitors).
//! - [`term`]: the one import path for Erlang terms; safe decoding of
//!   network input.
//! - [`epmd`]: EPMD wire format, client, and an embedded server.
//! - [`dist`]: distribution flags, the handshake state machine, framing,
//!   control messages and the per-peer connection task.
//! - [`process`]: light processes with real pids: mailbox, signals, links,
//!   monitors, gen_server call/reply helpers.
//! - [`node`]: the node handle that ties it together.
//! - [`cpg`]: the cpg scope: group-name trie, pure scope state machine,
//!   scope process, read API.
//! - [`pg`]: a peer of OTP `pg` scopes: wire messages, pure scope state,
//!   scope process, read API.
//! - [`pubsub`]: Phoenix.PubSub (PG2 adapter) subscribers and broadcasts
//!   over a pg scope.
//! - [`status`]: the node's status, served to any node of the cluster.
//! - [`config`]: node configuration.
//! - [`runtime`]: the tokio runtime the binary runs on, with a watchdog
//!   that keeps the node serving while one task computes for long.

#![warn(missing_docs)]

mod admission;
pub mod atom;
pub mod config;
pub mod cpg;
pub mod dist;
pub mod epmd;
pub mod node;
pub mod pg;
pub mod pid;
pub mod process;
pub mod pubsub;
mod resolve;
pub mod runtime;
pub mod status;
pub mod sync;
pub mod term;
mod util;

pub use config::NodeConfig;
pub use node::Node;
pub use term::Pid;
