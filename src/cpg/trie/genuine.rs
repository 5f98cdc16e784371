//! The trie as genuine okeuday/trie holds it ([`Trie::genuine_write`]).

use super::{Node, Trie};
use crate::term::write;

/// How big a term [`Trie::genuine_write`] writes at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenuineBounds {
    /// Deepest nesting of trie nodes (three term levels each).
    pub max_depth: usize,
    /// Most slots in all (a node spanning `a` and U+10FFFF alone has 1.1
    /// million).
    pub max_slots: usize,
}

impl Default for GenuineBounds {
    /// Nodes nested 600 deep (1,800 term levels, within what a term read
    /// here may hold), 4 million slots (about 40 MB written).
    fn default() -> Self {
        GenuineBounds {
            max_depth: 600,
            max_slots: 1 << 22,
        }
    }
}

/// Why [`Trie::genuine_write`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenuineTooBig {
    /// Names share a prefix longer than [`GenuineBounds::max_depth`].
    #[error("the trie is nested {0} nodes deep")]
    Deep(usize),
    /// The nodes' ranges hold more than [`GenuineBounds::max_slots`] slots.
    #[error("the trie's nodes hold more than {0} slots")]
    Wide(usize),
}

impl<V> Trie<V> {
    /// The trie as genuine okeuday/trie holds it: the term a genuine cpg scope
    /// hands out as its state (`cpg_data:get_groups/1`, the `cpg_data` call),
    /// which `trie`'s and `cpg_data`'s functions read on any BEAM node.
    ///
    /// Genuine trie's term (its list mode): `[]` for no key; else a node
    /// `{I0, I1, Slots}`, where `Slots` has one `{Node, Value}` per character
    /// `I0..=I1` (code points). A character no key goes through is
    /// `{[], error}`. A *leaf* (a branch holding one key) is `{Tail, Value}`,
    /// `Tail` the rest of its key after the character (`[]` when the key ends
    /// there). An expanded branch is `{Child, Value}`, `Child` the node below
    /// and `Value` the key ending at the character, or `error` for none.
    ///
    /// `trie:new([{"ab", 1}, {"ad", 2}])` is
    /// `{97,97,{{{98,100,{{[],1},{[],error},{[],2}}},error}}}`.
    ///
    /// Our trie keeps the shape that decides lookups (which branches are
    /// expanded), not each node's range: genuine `trie:erase/2` leaves a
    /// `{[], error}` slot where a leaf was, and a node's range never narrows.
    /// Such a slot decides no lookup (the lookups here agree with genuine
    /// trie's over histories of stores and erases: `tests/data/trie_history.jsonl`),
    /// so the term written here answers every lookup as the genuine one does,
    /// and equals it (`=:=`) for a trie that no key has left. An expanded
    /// branch that holds no key any more is written with one empty slot, at
    /// character 0.
    ///
    /// The term is written into `out` in the external format (no 131
    /// byte; [`crate::term::write`]), each stored value by `value`, with
    /// no term built: a state of 100,000 groups is about 9 MB, written in
    /// a few milliseconds. A term past `bounds` is refused, checked before
    /// anything is written.
    pub fn genuine_write(
        &self,
        bounds: GenuineBounds,
        out: &mut Vec<u8>,
        mut value: impl FnMut(&mut Vec<u8>, &V),
    ) -> Result<(), GenuineTooBig> {
        self.genuine_size(bounds)?;
        if self.root.children.is_empty() {
            write::nil(out);
        } else {
            self.genuine_node(&self.root, 0, out, &mut value);
        }
        Ok(())
    }

    /// Checks the term's size against `bounds`, without recursion.
    fn genuine_size(&self, bounds: GenuineBounds) -> Result<(), GenuineTooBig> {
        let mut slots = 0usize;
        let mut stack = vec![(&self.root, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            let chars = node.children.chars();
            let (Some(&first), Some(&last)) = (chars.first(), chars.last()) else {
                slots += usize::from(node.is_expanded());
                continue;
            };
            if depth >= bounds.max_depth {
                return Err(GenuineTooBig::Deep(depth + 1));
            }
            slots += (last as usize) - (first as usize) + 1;
            if slots > bounds.max_slots {
                return Err(GenuineTooBig::Wide(bounds.max_slots));
            }
            for child in node.children.nodes() {
                if child.is_expanded() {
                    stack.push((child, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// Writes the term of `node`, whose children's characters are the
    /// `depth`-th of their keys (a node with children; recursion as deep as
    /// [`genuine_size`](Self::genuine_size) allowed).
    fn genuine_node(
        &self,
        node: &Node,
        depth: usize,
        out: &mut Vec<u8>,
        value: &mut impl FnMut(&mut Vec<u8>, &V),
    ) {
        let chars = node.children.chars();
        let (first, last) = (chars[0], chars[chars.len() - 1]);
        write::tuple(out, 3);
        write::uint(out, first as u64);
        write::uint(out, last as u64);
        write::tuple(out, (last as usize) - (first as usize) + 1);
        let mut next = first as usize;
        for (c, child) in node.children.iter() {
            for _ in next..c as usize {
                empty_slot(out);
            }
            next = c as usize + 1;
            write::tuple(out, 2);
            match child.leaf() {
                Some(id) => {
                    let e = self.entries.at(id);
                    let key = &*e.key;
                    let tail = key
                        .char_indices()
                        .nth(depth + 1)
                        .map_or("", |(i, _)| &key[i..]);
                    write::charlist(out, tail);
                    value(out, &e.value);
                }
                None => {
                    if child.children.is_empty() {
                        // Its keys have all gone: one empty slot.
                        write::tuple(out, 3);
                        write::uint(out, 0);
                        write::uint(out, 0);
                        write::tuple(out, 1);
                        empty_slot(out);
                    } else {
                        self.genuine_node(child, depth + 1, out, value);
                    }
                    match child.value {
                        Some(id) => value(out, &self.entries.at(id).value),
                        None => write::atom(out, "error"),
                    }
                }
            }
        }
    }
}

/// `{[], error}`.
fn empty_slot(out: &mut Vec<u8>) {
    write::tuple(out, 2);
    write::nil(out);
    write::atom(out, "error");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{self, Term};

    /// The term `t` writes, its values written by `value`.
    fn genuine_with(
        t: &Trie<i32>,
        bounds: GenuineBounds,
        value: impl FnMut(&mut Vec<u8>, &i32),
    ) -> Result<Term, GenuineTooBig> {
        let mut out = Vec::new();
        t.genuine_write(bounds, &mut out, value)?;
        Ok(term::Encoded::written(out)
            .decode(term::Limits::default())
            .unwrap())
    }

    fn int(out: &mut Vec<u8>, v: &i32) {
        write::uint(out, *v as u64)
    }

    /// Written as `~w` shows a term, strings as lists of integers.
    fn show(t: &Term) -> String {
        match t {
            Term::Tuple(t) => format!(
                "{{{}}}",
                t.elements.iter().map(show).collect::<Vec<_>>().join(",")
            ),
            Term::List(l) if l.is_nil() => "[]".into(),
            Term::Atom(a) => a.name.clone(),
            _ => match term::charlist_to_string(t) {
                Ok(s) if !s.is_empty() => format!(
                    "[{}]",
                    s.chars()
                        .map(|c| (c as u32).to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                _ => crate::term::show(t).to_string(),
            },
        }
    }

    fn genuine(t: &Trie<i32>) -> String {
        show(&genuine_with(t, GenuineBounds::default(), int).unwrap())
    }

    /// The terms genuine trie 2.0.8 printed (`io:format("~w", [T])`) for the
    /// same stores and erases.
    #[test]
    fn the_term_is_genuine_tries() {
        let t: Trie<i32> = [("ab", 1), ("ad", 2)].into_iter().collect();
        assert_eq!(
            genuine(&t),
            "{97,97,{{{98,100,{{[],1},{[],error},{[],2}}},error}}}"
        );
        let mut t: Trie<i32> = [("a", 1), ("ab", 2)].into_iter().collect();
        assert_eq!(genuine(&t), "{97,97,{{{98,98,{{[],2}}},1}}}");
        // Erased: genuine keeps `{98,98,{{[],error}}}`, an empty slot.
        t.remove("ab");
        assert_eq!(genuine(&t), "{97,97,{{{0,0,{{[],error}}},1}}}");
        let mut t: Trie<i32> = [("abc", 1)].into_iter().collect();
        assert_eq!(genuine(&t), "{97,97,{{[98,99],1}}}");
        t.insert("abd", 2);
        assert_eq!(
            genuine(&t),
            "{97,97,{{{98,98,{{{99,100,{{[],1},{[],2}}},error}}},error}}}"
        );
        let t: Trie<i32> = [("d", 1), ("b", 2)].into_iter().collect();
        assert_eq!(genuine(&t), "{98,100,{{[],2},{[],error},{[],1}}}");
        assert_eq!(genuine(&Trie::new()), "[]");
        // A code point past Latin-1 in a tail, and as a range.
        let t: Trie<i32> = [("aé€", 1), ("€", 2)].into_iter().collect();
        let s = genuine(&t);
        assert!(s.starts_with("{97,8364,{{[233,8364],1},{[],error}"), "{s}");
        assert!(s.ends_with("{[],error},{[],2}}}"), "{s}");
    }

    #[test]
    fn a_term_past_its_bounds_is_refused_before_it_is_written() {
        let deep = "x".repeat(700);
        let t: Trie<i32> = [(format!("{deep}a"), 1), (format!("{deep}b"), 2)]
            .into_iter()
            .collect();
        let mut written = 0;
        let r = genuine_with(&t, GenuineBounds::default(), |o, v| {
            written += 1;
            int(o, v)
        });
        assert_eq!(r, Err(GenuineTooBig::Deep(601)));
        assert_eq!(written, 0);
        let wide: Trie<i32> = [("a", 1), ("\u{10FFFF}", 2)].into_iter().collect();
        let bounds = GenuineBounds {
            max_depth: 10,
            max_slots: 1 << 20,
        };
        assert_eq!(
            genuine_with(&wide, bounds, int),
            Err(GenuineTooBig::Wide(1 << 20))
        );
        assert!(genuine_with(&wide, GenuineBounds::default(), int).is_ok());
    }
}
