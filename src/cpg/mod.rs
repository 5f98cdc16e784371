//! The cpg scope (CloudI Process Groups): group-name trie, pure scope state
//! machine, scope process and read API.
