//! Small helpers shared by the layers.

use std::collections::HashMap;
use std::hash::Hash;

/// Gives memory back from a map that has emptied out: once fewer than a
/// quarter of its slots are used it shrinks to twice its length. Called
/// after removals, this costs O(1) amortised (a map shrinks again only
/// after half of what it kept has gone), and a burst (100k monitors, 100k
/// memberships) no longer pins its peak size for the node's life.
pub(crate) fn shrink_sparse<K: Eq + Hash, V>(m: &mut HashMap<K, V>) {
    const MIN: usize = 256;
    if m.capacity() > MIN && m.len() * 4 < m.capacity() {
        m.shrink_to((m.len() * 2).max(MIN / 4));
    }
}

/// A term as text for a log line, cut at about 200 bytes.
pub(crate) fn short_text(t: &crate::term::Term) -> String {
    let mut s = t.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_that_empties_gives_its_memory_back() {
        let mut m: HashMap<u32, u64> = (0..100_000).map(|i| (i, 0)).collect();
        let peak = m.capacity();
        for i in 0..100_000 {
            m.remove(&i);
            shrink_sparse(&mut m);
        }
        assert!(m.capacity() <= 256, "{} of {peak}", m.capacity());
        let mut small: HashMap<u32, u64> = (0..10).map(|i| (i, 0)).collect();
        let cap = small.capacity();
        small.remove(&1);
        shrink_sparse(&mut small);
        assert_eq!(small.capacity(), cap, "small maps are left alone");
    }
}
