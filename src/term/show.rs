//! Terms as text for log lines and error messages, at a cost bounded by
//! the text's length rather than the term's size.
//!
//! `eetf`'s `Display` of a term prints it whole: a big integer in decimal
//! (a 4 MB one takes seconds and makes ten million digits), every byte of
//! a binary, every element of a list. A term from the network shown that
//! way in a warning costs whatever its sender chose. [`show`] prints the
//! same text for an ordinary term, but stops after [`DEFAULT_MAX`] bytes
//! (or the `max` of [`show_max`]) with `…`, and writes an integer of more
//! than [`SHOWN_INTEGER_BYTES`] bytes as `<integer of N bytes>` without
//! converting it. Every error text and log line that holds a received term
//! goes through it (`crate::util::short_text` is `show(t).to_string()`).

use super::{BigInteger, Pid, Reference, Term, Tuple};
use std::fmt::{self, Write};

/// How many bytes of text [`show`] writes at most (then `…`).
pub const DEFAULT_MAX: usize = 200;

/// Integers of at most this many bytes (about 150 decimal digits) are
/// shown in decimal; larger ones as `<integer of N bytes>`.
pub const SHOWN_INTEGER_BYTES: u64 = 64;

/// What [`show`] can print: a term, or a part of one an error names on its
/// own.
#[derive(Debug, Clone, Copy)]
pub enum Shown<'a> {
    /// A whole term.
    Term(&'a Term),
    /// A tuple (a control message's, before it is a [`Term`] again).
    Tuple(&'a Tuple),
    /// A pid.
    Pid(&'a Pid),
    /// A reference (its id may hold up to 65,535 words).
    Reference(&'a Reference),
}

/// `From<&X> for Shown` for each kind, its variant named as its type.
macro_rules! shown_from {
    ($($kind:ident),*) => {$(
        impl<'a> From<&'a $kind> for Shown<'a> {
            fn from(x: &'a $kind) -> Self {
                Shown::$kind(x)
            }
        }
    )*};
}

shown_from!(Term, Tuple, Pid, Reference);

/// A term as text at a bounded cost (see the module documentation):
/// `Display` it, or `to_string()`.
#[derive(Debug, Clone, Copy)]
pub struct Show<'a> {
    what: Shown<'a>,
    max: usize,
}

/// `t` shown in at most [`DEFAULT_MAX`] bytes of text (then `…`).
///
/// ```
/// use cpg_node::term::{self, show, tuple};
/// // LARGE_BIG_EXT: an integer of 100,000 bytes, all 0xff
/// let mut bytes = vec![131, 111, 0x00, 0x01, 0x86, 0xa0, 0];
/// bytes.resize(bytes.len() + 100_000, 0xff);
/// let big = term::decode(&bytes, term::Limits::default()).unwrap();
/// let shown = show(&tuple(vec![big, term::atom("x")])).to_string();
/// assert_eq!(shown, "{<integer of 100000 bytes>,x}");
/// ```
pub fn show<'a>(t: impl Into<Shown<'a>>) -> Show<'a> {
    show_max(t, DEFAULT_MAX)
}

/// [`show`] in at most `max` bytes of text.
pub fn show_max<'a>(t: impl Into<Shown<'a>>, max: usize) -> Show<'a> {
    Show {
        what: t.into(),
        max,
    }
}

impl fmt::Display for Show<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bounded(f, self.max, |b| match self.what {
            Shown::Term(t) => term(b, t),
            Shown::Tuple(t) => seq(b, "{", &t.elements, "}"),
            Shown::Pid(p) => write!(b, "{p}"),
            Shown::Reference(r) => write!(b, "{r}"),
        })
    }
}

/// Runs `write` into `f` through a budget of `max` bytes; `…` when it was
/// cut.
fn bounded(
    f: &mut fmt::Formatter<'_>,
    max: usize,
    write: impl FnOnce(&mut Budget<'_, '_>) -> fmt::Result,
) -> fmt::Result {
    let mut b = Budget {
        out: f,
        left: max,
        cut: false,
    };
    match (write(&mut b), b.cut) {
        (_, true) => b.out.write_str("…"),
        (r, false) => r,
    }
}

/// Passes text on until `left` bytes are written, then refuses the rest
/// (an error that ends the walk over the term).
struct Budget<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    left: usize,
    cut: bool,
}

impl Write for Budget<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.left {
            self.left -= s.len();
            return self.out.write_str(s);
        }
        let mut end = self.left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.out.write_str(&s[..end])?;
        self.left = 0;
        self.cut = true;
        Err(fmt::Error)
    }
}

/// `t` as `eetf` writes it, but through the budget, with big integers
/// summarised. Every level writes at least one byte before it goes
/// deeper, so the recursion is as deep as the budget at most.
fn term(b: &mut Budget<'_, '_>, t: &Term) -> fmt::Result {
    match t {
        Term::BigInteger(i) => write_integer(b, i),
        Term::Atom(a) if is_plain_atom(&a.name) => b.write_str(&a.name),
        Term::Atom(a) => {
            b.write_char('\'')?;
            for c in a.name.chars() {
                if matches!(c, '\\' | '\'') {
                    b.write_char('\\')?;
                }
                b.write_char(c)?;
            }
            b.write_char('\'')
        }
        Term::List(l) => seq(b, "[", &l.elements, "]"),
        Term::Tuple(t) => seq(b, "{", &t.elements, "}"),
        Term::ImproperList(l) => {
            seq(b, "[", &l.elements, "|")?;
            term(b, &l.last)?;
            b.write_str("]")
        }
        Term::Map(m) => {
            b.write_str("#{")?;
            for (i, (k, v)) in m.map.iter().enumerate() {
                if i != 0 {
                    b.write_str(",")?;
                }
                term(b, k)?;
                b.write_str("=>")?;
                term(b, v)?;
            }
            b.write_str("}")
        }
        // The rest print element by element (binaries, strings, reference
        // ids) or are small: the budget stops them.
        t => write!(b, "{t}"),
    }
}

/// `i` in decimal, or as `<integer of N bytes>` past
/// [`SHOWN_INTEGER_BYTES`]: never a base conversion of a large integer,
/// which costs more than linear time (seconds for 4 MB). Also how
/// `TermName` prints a name.
pub(crate) fn write_integer(w: &mut impl Write, i: &BigInteger) -> fmt::Result {
    let bytes = i.value.bits().div_ceil(8);
    if bytes > SHOWN_INTEGER_BYTES {
        write!(w, "<integer of {bytes} bytes>")
    } else {
        write!(w, "{}", i.value)
    }
}

/// `open`, the elements separated by commas, `close`.
fn seq(b: &mut Budget<'_, '_>, open: &str, elements: &[Term], close: &str) -> fmt::Result {
    b.write_str(open)?;
    for (i, x) in elements.iter().enumerate() {
        if i != 0 {
            b.write_str(",")?;
        }
        term(b, x)?;
    }
    b.write_str(close)
}

/// An atom Erlang prints without quotes (`~p`, `io_lib:write_atom/1`):
/// a lowercase ASCII letter, then letters, digits, `_` and `@`, and not a
/// reserved word. (Erlang also leaves Latin-1 letters unquoted, `é` or
/// `aÀ`; they are quoted here, as [`parse`](super::parse) reads unquoted
/// atoms of ASCII only.)
pub fn is_plain_atom(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
        "catch", "cond", "div", "else", "end", "fun", "if", "let", "maybe", "not", "of", "or",
        "orelse", "receive", "rem", "try", "when", "xor",
    ];
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
        && !RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{atom, binary, int, list, map, tuple, ImproperList};
    use std::time::Instant;

    /// An integer of `n` bytes, all 0xff, decoded from the wire as a peer
    /// would send it (LARGE_BIG_EXT).
    fn big(n: usize, negative: bool) -> Term {
        let mut b = vec![crate::term::VERSION, 111];
        b.extend_from_slice(&(n as u32).to_be_bytes());
        b.push(u8::from(negative));
        b.resize(b.len() + n, 0xff);
        let t = Term::decode(&b[..]).unwrap();
        assert!(matches!(t, Term::BigInteger(_)));
        t
    }

    #[test]
    fn ordinary_terms_print_as_erlang_writes_them() {
        let small_big = Term::BigInteger(BigInteger::from(u64::MAX));
        let terms = [
            tuple(vec![int(6), atom("it's"), atom("a\\b"), list(vec![])]),
            list(vec![binary(b"ab".to_vec()), small_big, big(64, true)]),
            Term::ImproperList(ImproperList::from((vec![int(1), int(2)], atom("t")))),
            map(vec![(
                atom("k"),
                Term::from(crate::term::Float { value: 1.5 }),
            )]),
            Term::from(crate::term::Pid::new("a@h", 1, 2, 3)),
            crate::term::string_to_charlist("héllo"),
            tuple(vec![
                atom("ok"),
                atom("Up"),
                atom("end"),
                atom("a@h"),
                atom("é"),
            ]),
        ];
        // (As `io_lib:format("~w", [T])` writes them on OTP 25, but for
        // pids, which name their node, `eetf`'s floats and strings, and
        // 'é', which Erlang leaves unquoted.)
        let written = [
            r"{6,'it\'s','a\\b',[]}".to_string(),
            format!("[<<97,98>>,{},{}]", u64::MAX, big(64, true)),
            "[1,2|t]".to_string(),
            "#{k=>1.5}".to_string(),
            "<'a@h'.1.2>".to_string(),
            "[104,233,108,108,111]".to_string(),
            "{ok,'Up','end',a@h,'é'}".to_string(),
        ];
        for (t, w) in terms.iter().zip(written) {
            assert_eq!(show_max(t, 10_000).to_string(), w, "{t}");
        }
    }

    /// The whole point: a 16 MB integer (four times what BEAM takes) is
    /// named by its size, never converted to decimal, and the text stays
    /// short. Its decimal form would be ~40 million digits and take
    /// minutes.
    #[test]
    fn a_huge_integer_is_shown_by_its_size() {
        let n = 16 << 20;
        let t = tuple(vec![big(n, false), atom("x")]);
        let started = Instant::now();
        let s = show(&t).to_string();
        assert_eq!(s, format!("{{<integer of {n} bytes>,x}}"));
        let neg = show(&big(65, true)).to_string();
        assert_eq!(neg, "<integer of 65 bytes>");
        // (The bound that matters is the length; the time is only a guard
        // against the decimal conversion coming back: it took minutes.)
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        // Through the helper every log line uses.
        assert!(crate::util::short_text(&t).len() < 64);
    }

    #[test]
    fn long_terms_are_cut_with_an_ellipsis() {
        let long_list = list((0..1_000_000).map(int).collect());
        let long_bin = binary(vec![7; 1 << 20]);
        let long_string = Term::ByteList(vec![b'a'; 65_535].into());
        let long_atom = atom(&"é".repeat(1000));
        let mut deep = atom("bottom");
        for _ in 0..crate::term::DEFAULT_MAX_DEPTH {
            deep = tuple(vec![deep]);
        }
        for t in [long_list, long_bin, long_string, long_atom, deep] {
            let s = show(&t).to_string();
            assert!(s.ends_with('…'), "{s}");
            assert!(s.len() <= DEFAULT_MAX + '…'.len_utf8(), "{}", s.len());
            assert!(t.to_string().starts_with(s.trim_end_matches('…')));
        }
        let s = show_max(&list((0..100).map(int).collect()), 7).to_string();
        assert_eq!(s, "[0,1,2,…");
    }

    #[test]
    fn tuples_pids_and_references_show_alone() {
        let t = crate::term::Tuple::from(vec![int(1), binary(vec![0; 10_000])]);
        assert!(show(&t).to_string().len() <= DEFAULT_MAX + 3);
        let p = crate::term::Pid::new("a@h", 1, 2, 3);
        assert_eq!(show(&p).to_string(), "<'a@h'.1.2>");
        let r = crate::term::Reference {
            node: "a@h".into(),
            id: vec![u32::MAX; 65_535],
            creation: 1,
        };
        let s = show(&r).to_string();
        assert!(
            s.starts_with("#Ref<'a@h'.4294967295.") && s.ends_with('…'),
            "{s}"
        );
        assert!(s.len() <= DEFAULT_MAX + 3);
    }
}
