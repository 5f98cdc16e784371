//! One spelling per Erlang term: a term as the canonical form its
//! equal terms share (strings as lists, small integers as such, whole-byte
//! bit strings as binaries, `-0.0` as `0.0`, map entries by their keys'
//! encodings), and its encoding. Group names of map storage are compared by it
//! ([`TermName`](crate::cpg::TermName)), and the decoder refuses a map whose
//! keys are one term spelled apart, as BEAM does.

use crate::term::{Binary, FixInteger, Float, ImproperList, List, Term};
use std::collections::{btree_map, BTreeMap};

/// One spelling per Erlang term: strings as lists of integers, integers
/// that fit 32 bits as small integers, improper lists with a list tail
/// flattened, bit strings of whole bytes as binaries, `-0.0` as `0.0`
/// (OTP 25 and earlier: `-0.0 =:= 0.0`, one map key, one `dict` key,
/// though `term_to_binary` keeps the sign; OTP 27 tells them apart).
pub(crate) fn canonical(t: &Term) -> Term {
    match t {
        Term::Float(f) if f.value == 0.0 => Term::Float(Float { value: 0.0 }),
        Term::ByteList(b) => crate::term::list(
            b.bytes
                .iter()
                .map(|&c| crate::term::int(c.into()))
                .collect(),
        ),
        Term::BigInteger(b) => match i32::try_from(&b.value) {
            Ok(v) => Term::FixInteger(FixInteger::from(v)),
            Err(_) => t.clone(),
        },
        Term::BitBinary(b) if b.tail_bits_size == 8 => Term::Binary(Binary::from(b.bytes.clone())),
        Term::Tuple(x) => crate::term::tuple(x.elements.iter().map(canonical).collect()),
        Term::List(x) => crate::term::list(x.elements.iter().map(canonical).collect()),
        Term::ImproperList(x) => {
            let mut elements: Vec<Term> = x.elements.iter().map(canonical).collect();
            match canonical(&x.last) {
                Term::List(tail) => {
                    elements.extend(tail.elements);
                    Term::List(List::from(elements))
                }
                Term::ImproperList(tail) => {
                    elements.extend(tail.elements);
                    Term::ImproperList(ImproperList::from((elements, *tail.last)))
                }
                last => Term::ImproperList(ImproperList::from((elements, last))),
            }
        }
        Term::Map(m) => {
            // Entries by the canonical encoding of their keys, not by
            // eetf's `Hash`: keys spelled differently can be one key once
            // canonical (0 and a bignum 0), and eetf hashes a map in its
            // (random) iteration order, so two equal map keys can even be two
            // keys of one map. BEAM refuses both. Which value is kept must
            // not depend on iteration order, or two equal terms would give
            // two names: the greatest by canonical encoding.
            let mut entries: BTreeMap<Vec<u8>, (Term, Term, Vec<u8>)> = BTreeMap::new();
            for (k, v) in &m.map {
                let (k, v) = (canonical(k), canonical(v));
                let vb = canonical_encoding(&v);
                match entries.entry(canonical_encoding(&k)) {
                    btree_map::Entry::Vacant(e) => {
                        e.insert((k, v, vb));
                    }
                    btree_map::Entry::Occupied(mut e) => {
                        if vb > e.get().2 {
                            e.insert((k, v, vb));
                        }
                    }
                }
            }
            Term::Map(crate::term::Map {
                map: entries.into_values().map(|(k, v, _)| (k, v)).collect(),
            })
        }
        _ => t.clone(),
    }
}

/// [`write_canonical`] into a fresh buffer (empty if it cannot encode).
pub(crate) fn canonical_encoding(t: &Term) -> Vec<u8> {
    let mut b = Vec::new();
    if write_canonical(t, &mut b).is_err() {
        b.clear();
    }
    b
}

/// The external term format of a [`canonical`] term (without the version
/// byte), map entries sorted by the encoding of their keys.
pub(crate) fn write_canonical(t: &Term, out: &mut Vec<u8>) -> Result<(), crate::term::TermError> {
    const MAP_EXT: u8 = 116;
    const LIST_EXT: u8 = 108;
    const NIL_EXT: u8 = 106;
    const SMALL_TUPLE_EXT: u8 = 104;
    const LARGE_TUPLE_EXT: u8 = 105;
    let len32 =
        |n: usize| u32::try_from(n).map_err(|_| crate::term::TermError::Encode("too long".into()));
    match t {
        Term::Map(m) => {
            let mut entries = Vec::with_capacity(m.map.len());
            for (k, v) in &m.map {
                let (mut kb, mut vb) = (Vec::new(), Vec::new());
                write_canonical(k, &mut kb)?;
                write_canonical(v, &mut vb)?;
                entries.push((kb, vb));
            }
            entries.sort();
            out.push(MAP_EXT);
            out.extend_from_slice(&len32(entries.len())?.to_be_bytes());
            for (k, v) in entries {
                out.extend(k);
                out.extend(v);
            }
        }
        Term::Tuple(x) => {
            match u8::try_from(x.elements.len()) {
                Ok(n) => out.extend([SMALL_TUPLE_EXT, n]),
                Err(_) => {
                    out.push(LARGE_TUPLE_EXT);
                    out.extend_from_slice(&len32(x.elements.len())?.to_be_bytes());
                }
            }
            for e in &x.elements {
                write_canonical(e, out)?;
            }
        }
        // eetf 0.11 writes a list of integers below 256 as STRING_EXT,
        // negative ones included (`[-300]` as `"Ô"`, `[-1]` as `[255]`):
        // such a list is written here element by element instead, so two
        // different names never share their bytes.
        Term::List(x) if !x.elements.iter().all(is_leaf) || x.elements.iter().any(is_negative) => {
            out.push(LIST_EXT);
            out.extend_from_slice(&len32(x.elements.len())?.to_be_bytes());
            for e in &x.elements {
                write_canonical(e, out)?;
            }
            out.push(NIL_EXT);
        }
        Term::ImproperList(x) => {
            out.push(LIST_EXT);
            out.extend_from_slice(&len32(x.elements.len())?.to_be_bytes());
            for e in &x.elements {
                write_canonical(e, out)?;
            }
            write_canonical(&x.last, out)?;
        }
        // Leaves, and lists of leaves (strings among them): as eetf writes
        // them, which is deterministic for these.
        leaf => {
            let mut b = Vec::new();
            crate::term::encode_into(leaf, &mut b)?;
            out.extend_from_slice(&b[1..]);
        }
    }
    Ok(())
}

/// A negative fixed-size integer (see the list case of `write_canonical`).
fn is_negative(t: &Term) -> bool {
    matches!(t, Term::FixInteger(i) if i.value < 0)
}

/// A term that holds no map, tuple or list (eetf encodes it on its own).
fn is_leaf(t: &Term) -> bool {
    !matches!(
        t,
        Term::Map(_) | Term::Tuple(_) | Term::List(_) | Term::ImproperList(_) | Term::ByteList(_)
    )
}
