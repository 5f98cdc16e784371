//! Which slots of a large group hold a copy, on which side, and a Fenwick
//! tree over them: counting and selecting the i-th local / remote / any copy.

use super::Part;

/// Slots per block of the [`Fenwick`] tree: one bit each in a `u64`.
pub(super) const BLOCK: usize = 64;

/// 64 slots of a group: which hold a copy, which copies are local, and the
/// Fenwick node of the block.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Block {
    /// Bit `j`: slot `64 * b + j` of block `b` holds a copy.
    pub(super) live: u64,
    /// Bit `j`: that copy is local (left as it was for a hole).
    pub(super) local: u64,
    /// Fenwick node `b + 1`: `[local, remote]` copies of the blocks it
    /// covers.
    pub(super) node: [u32; 2],
}

impl Block {
    /// The slots of the block that hold a copy in `part`.
    pub(super) fn bits(&self, part: Part) -> u64 {
        match part {
            Part::All => self.live,
            Part::Local => self.live & self.local,
            Part::Remote => self.live & !self.local,
        }
    }
}

/// Which slots of a group hold a copy and on which side, and a Fenwick
/// (binary indexed) tree over blocks of [`BLOCK`] slots counting local and
/// remote copies apart: 24 bytes per 64 slots (3 bits a slot). Counting
/// and selection go down the tree to a block, then count bits within it.
/// Counters are `u32`: a group would need billions of copies, hundreds of
/// gigabytes of slots, to overflow one.
#[derive(Debug, Clone, Default)]
pub(super) struct Fenwick {
    /// Node `i` (1-based) of the tree is `blocks[i - 1].node`.
    pub(super) blocks: Vec<Block>,
    /// Number of slots (holes included).
    pub(super) len: usize,
}

pub(super) fn wide(c: [u32; 2]) -> [usize; 2] {
    [c[0] as usize, c[1] as usize]
}

pub(super) fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

pub(super) fn weight(c: [usize; 2], part: Part) -> usize {
    match part {
        Part::All => c[0] + c[1],
        Part::Local => c[0],
        Part::Remote => c[1],
    }
}

/// Bit position of the `k`-th (0-based) set bit of `w`; 64 if `w` has no
/// more than `k` set bits. Broadword: the running bit counts of the eight
/// bytes side by side in one word find the byte, a table the bit.
pub(super) fn select_bit(w: u64, k: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // bits set in each byte, then in bytes 0..=i (at most 64: 7 bits)
    let mut c = w - ((w >> 1) & 0x5555_5555_5555_5555);
    c = (c & 0x3333_3333_3333_3333) + ((c >> 2) & 0x3333_3333_3333_3333);
    c = (c + (c >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    let running = c.wrapping_mul(ONES);
    if k >= (running >> 56) as usize {
        return 64;
    }
    // the bytes whose running count is at most k: those before the bit's
    let at_most = ((((k as u64) * ONES) | HIGH) - running) & HIGH;
    let byte = ((at_most >> 7).wrapping_mul(ONES) >> 56) as u32;
    let before = ((running << 8) >> (8 * byte)) & 0xff;
    let bits = (w >> (8 * byte)) & 0xff;
    8 * byte as usize + usize::from(SELECT_IN_BYTE[bits as usize][(k as u64 - before) as usize])
}

/// `SELECT_IN_BYTE[b][r]`: position of the `r`-th set bit of byte `b` (8
/// where there is none), for [`select_bit`].
pub(super) static SELECT_IN_BYTE: [[u8; 8]; 256] = {
    let mut t = [[8u8; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut r = 0;
        let mut j = 0;
        while j < 8 {
            if (b >> j) & 1 != 0 {
                t[b][r] = j as u8;
                r += 1;
            }
            j += 1;
        }
        b += 1;
    }
    t
};

/// The slots holding a copy in one part, oldest first (from both ends):
/// the set bits of the blocks, so holes cost nothing to skip.
pub(super) struct Positions<'a> {
    pub(super) blocks: &'a [Block],
    pub(super) part: Part,
    /// Blocks `lo..hi` are not started yet.
    pub(super) lo: usize,
    pub(super) hi: usize,
    /// The block the front is in and its bits not yet taken.
    pub(super) front: (usize, u64),
    /// The block the back is in and its bits not yet taken.
    pub(super) back: (usize, u64),
}

impl<'a> Positions<'a> {
    pub(super) fn new(blocks: &'a [Block], part: Part) -> Self {
        Positions {
            blocks,
            part,
            lo: 0,
            hi: blocks.len(),
            front: (0, 0),
            back: (0, 0),
        }
    }
}

/// Takes the lowest (`low`) or highest set bit of a block's bits; its slot.
pub(super) fn take_bit((block, bits): &mut (usize, u64), low: bool) -> Option<usize> {
    if *bits == 0 {
        return None;
    }
    let j = if low {
        bits.trailing_zeros()
    } else {
        63 - bits.leading_zeros()
    };
    *bits &= !(1 << j);
    Some(*block * BLOCK + j as usize)
}

impl Positions<'_> {
    /// The next slot from the oldest end (`oldest`) or the newest.
    pub(super) fn step(&mut self, oldest: bool) -> Option<usize> {
        loop {
            let (near, far) = if oldest {
                (&mut self.front, &mut self.back)
            } else {
                (&mut self.back, &mut self.front)
            };
            if let Some(pos) = take_bit(near, oldest) {
                return Some(pos);
            }
            if self.lo == self.hi {
                return take_bit(far, oldest);
            }
            let block = if oldest {
                self.lo += 1;
                self.lo - 1
            } else {
                self.hi -= 1;
                self.hi
            };
            *near = (block, self.blocks[block].bits(self.part));
        }
    }
}

impl Iterator for Positions<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        self.step(true)
    }
}

impl DoubleEndedIterator for Positions<'_> {
    fn next_back(&mut self) -> Option<usize> {
        self.step(false)
    }

    /// The whole walk newest first (what collecting a group's members
    /// runs): a tight loop per block, none of `next_back`'s bookkeeping.
    fn rfold<B, F: FnMut(B, usize) -> B>(mut self, init: B, mut f: F) -> B {
        let mut acc = init;
        while let Some(pos) = take_bit(&mut self.back, false) {
            acc = f(acc, pos);
        }
        for block in (self.lo..self.hi).rev() {
            let base = block * BLOCK;
            let mut bits = self.blocks[block].bits(self.part);
            if bits == u64::MAX {
                for j in (0..BLOCK).rev() {
                    acc = f(acc, base + j);
                }
                continue;
            }
            while bits != 0 {
                let j = 63 - bits.leading_zeros();
                bits &= !(1 << j);
                acc = f(acc, base + j as usize);
            }
        }
        while let Some(pos) = take_bit(&mut self.front, false) {
            acc = f(acc, pos);
        }
        acc
    }
}

impl Fenwick {
    /// Room for `n` slots.
    pub(super) fn with_capacity(n: usize) -> Self {
        Fenwick {
            blocks: Vec::with_capacity(n.div_ceil(BLOCK)),
            len: 0,
        }
    }

    /// Sums of the first `i` blocks.
    pub(super) fn prefix2(&self, mut i: usize) -> [usize; 2] {
        let mut s = [0, 0];
        while i > 0 {
            let node = self.blocks[i - 1].node;
            s[0] += node[0] as usize;
            s[1] += node[1] as usize;
            i &= i - 1;
        }
        s
    }

    /// Whether slot `pos` holds a copy in `part`.
    pub(super) fn has(&self, pos: usize, part: Part) -> bool {
        self.blocks
            .get(pos / BLOCK)
            .is_some_and(|b| (b.bits(part) >> (pos % BLOCK)) & 1 != 0)
    }

    /// Number of `part` copies among the first `i` slots.
    pub(super) fn prefix(&self, i: usize, part: Part) -> usize {
        let (b, r) = (i / BLOCK, i % BLOCK);
        let mut n = weight(self.prefix2(b), part);
        if r > 0 {
            n += (self.blocks[b].bits(part) & ((1 << r) - 1)).count_ones() as usize;
        }
        n
    }

    /// Appends a slot holding one copy (local or remote).
    pub(super) fn push(&mut self, is_local: bool) {
        let (b, r) = (self.len / BLOCK, self.len % BLOCK);
        if r == 0 {
            // The new node covers blocks (i - lowbit(i), i].
            let i = b + 1;
            let lo = self.prefix2(i - lowbit(i));
            let hi = self.prefix2(i - 1);
            let node = [(hi[0] - lo[0]) as u32, (hi[1] - lo[1]) as u32];
            make_room(&mut self.blocks);
            self.blocks.push(Block {
                node,
                ..Block::default()
            });
        }
        // The last block's node covers no later block.
        let block = &mut self.blocks[b];
        block.live |= 1 << r;
        block.local = (block.local & !(1 << r)) | (u64::from(is_local) << r);
        block.node[usize::from(!is_local)] += 1;
        self.len += 1;
    }

    /// Removes the copy at 0-based slot `pos`.
    pub(super) fn remove(&mut self, pos: usize, is_local: bool) {
        let c = usize::from(!is_local);
        self.blocks[pos / BLOCK].live &= !(1 << (pos % BLOCK));
        let mut i = pos / BLOCK + 1;
        while i <= self.blocks.len() {
            self.blocks[i - 1].node[c] -= 1;
            i += lowbit(i);
        }
    }

    /// 0-based slot of the `k`-th (0-based, oldest first) `part` copy.
    /// Requires `k < total(part)`.
    pub(super) fn select(&self, k: usize, part: Part) -> usize {
        let n = self.blocks.len();
        let mut pos = 0;
        let mut rem = k;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            let next = pos + step;
            if next <= n {
                let w = weight(wide(self.blocks[next - 1].node), part);
                if w <= rem {
                    pos = next;
                    rem -= w;
                }
            }
            step >>= 1;
        }
        let bits = self.blocks.get(pos).map_or(0, |b| b.bits(part));
        pos * BLOCK + select_bit(bits, rem)
    }
}

/// Makes room for one more element: one at a time below four (a first
/// push would otherwise allocate four), then by a quarter of the length
/// (at least four) instead of doubling. The slots and the Fenwick tree of
/// a group then carry at most a quarter of their length unused (an eighth
/// on average) instead of up to as much again; a push stays amortized
/// `O(1)`: growing by a quarter moves each element about four times in
/// all.
pub(super) fn make_room<T>(v: &mut Vec<T>) {
    let len = v.len();
    if len == v.capacity() {
        v.reserve_exact(if len < 4 { 1 } else { (len / 4).max(4) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn select_bit_finds_each_set_bit() {
        let w: u64 = 0x8000_0100_00f0_0001;
        let set: Vec<usize> = (0..64).filter(|b| (w >> b) & 1 != 0).collect();
        for (k, b) in set.iter().enumerate() {
            assert_eq!(select_bit(w, k), *b);
        }
        assert_eq!(select_bit(w, set.len()), 64);
        assert_eq!(select_bit(0, 0), 64);
        assert_eq!(select_bit(u64::MAX, 63), 63);
    }

    proptest! {
        /// The tree over blocks against plain per-slot flags: counts and
        /// selection of every part, across block boundaries.
        #[test]
        fn fenwick_matches_flags(sides in proptest::collection::vec(any::<bool>(), 1..400), holes in proptest::collection::vec(any::<prop::sample::Index>(), 0..300)) {
            let mut t = Fenwick::default();
            // per slot: None = hole, Some(is_local)
            let mut flags: Vec<Option<bool>> = Vec::new();
            for &l in &sides {
                t.push(l);
                flags.push(Some(l));
            }
            for h in holes {
                let pos = h.index(flags.len());
                if let Some(l) = flags[pos].take() {
                    t.remove(pos, l);
                }
            }
            for part in [Part::All, Part::Local, Part::Remote] {
                let mut k = 0;
                for (pos, f) in flags.iter().enumerate() {
                    prop_assert_eq!(t.prefix(pos, part), k);
                    let here = f.is_some_and(|l| part.includes(l));
                    prop_assert_eq!(t.has(pos, part), here);
                    if here {
                        prop_assert_eq!(t.select(k, part), pos);
                        k += 1;
                    }
                }
                prop_assert_eq!(t.prefix(flags.len(), part), k);
                // from both ends, alternating, they meet without a gap
                let want: Vec<usize> = (0..flags.len()).filter(|&pos| t.has(pos, part)).collect();
                let mut it = Positions::new(&t.blocks, part);
                let (mut front, mut back) = (Vec::new(), Vec::new());
                for i in 0.. {
                    let got = if i % 3 == 0 {
                        it.next_back().map(|p| back.push(p))
                    } else {
                        it.next().map(|p| front.push(p))
                    };
                    if got.is_none() {
                        break;
                    }
                }
                prop_assert!(it.next().is_none() && it.next_back().is_none());
                let mut folded: Vec<usize> = Positions::new(&t.blocks, part).rev().collect();
                folded.reverse();
                prop_assert_eq!(&folded, &want);
                // and after a few steps from each end
                let mut it = Positions::new(&t.blocks, part);
                let head: Vec<usize> = it.by_ref().take(3).collect();
                let tail: Vec<usize> = it.by_ref().rev().take(70).collect();
                let mut all = head;
                let rest = it.rfold(Vec::new(), |mut v, p| {
                    v.push(p);
                    v
                });
                all.extend(rest.into_iter().rev());
                all.extend(tail.into_iter().rev());
                prop_assert_eq!(&all, &want);
                front.extend(back.into_iter().rev());
                prop_assert_eq!(front, want);
            }
        }
    }
}
