//! The cpg scope (CloudI Process Groups): group-name trie, pure scope state
//! machine, scope process and read API.
//!
//! | cpg (Erlang)                          | here                         |
//! |---------------------------------------|------------------------------|
//! | `trie:find_match2/2`, `is_pattern2/1` | [`trie`], [`pattern`]        |
//! | `#cpg_data{}` and its updates         | [`group`] (no quadratic path)|
//! | a member pid (16 bytes, `Copy`)       | [`member`]                   |
//! | `cpg.erl` scope state and merge rules | [`scope`] (pure, no IO)      |
//! | scope messages on the wire            | [`wire`]                     |
//! | the scope gen_server on a node        | [`server`] ([`CpgScope`])    |
//! | `group_storage` (`trie` or a dict)    | [`storage`]                  |

pub mod group;
pub mod member;
pub mod pattern;
pub mod scope;
pub mod server;
mod snapshot;
pub mod storage;
pub mod trie;
pub mod wire;

pub use member::MemberPid;
pub use server::{
    BeamNodeType, CpgError, CpgScope, GroupEvent, ScopeOptions, ScopeSummary, DEFAULT_SCOPE,
    EVENTS_KEPT,
};
pub use snapshot::Members;
pub use storage::{Storage, TermName};
