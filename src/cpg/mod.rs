//! The cpg scope (CloudI Process Groups): group-name trie, pure scope state
//! machine, scope process and read API.
//!
//! | cpg (Erlang)                       | here                     |
//! |------------------------------------|--------------------------|
//! | `trie:find_match2/2`, `is_pattern2`| [`trie`], [`pattern`]    |
//! | scope messages on the wire         | [`wire`]                 |

pub mod wire;
