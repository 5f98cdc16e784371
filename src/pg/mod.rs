//! A peer of OTP `pg` scopes: this node takes part in `pg` process groups
//! as one more scope, for each configured scope name.
//!
//! - [`wire`]: the messages scope processes exchange, strict on encode,
//!   tolerant on decode;
//! - [`scope`]: the pure state machine (remote view per peer scope, exact
//!   local bookkeeping), unit- and property-tested without sockets;
//! - [`server`]: the scope process on a [`Node`](crate::Node)
//!   ([`PgScope`]), with pg's API names.
//!
//! A BEAM scope never discovers a hidden node, so this side does: it sends
//! `{discover, Self}` to `{Scope, Node}` when it starts, on every nodeup,
//! and again whenever a peer scope went away (monitored) until a scope on
//! that node answers.

pub mod scope;
pub mod server;
pub mod wire;

pub use scope::{EventKind, PgError, PgEvent, PgState};
pub use server::{MonitorError, PgMonitor, PgScope, PgScopeError, DEFAULT_PG_SCOPE};
