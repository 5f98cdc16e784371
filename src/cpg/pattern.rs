//! Group-name patterns as okeuday/trie understands them (`is_pattern2/1`
//! and the string matcher behind `find_match2/2`).
//!
//! A group name is a string of Unicode scalar values (an Erlang charlist,
//! one `char` per code point). Two characters are wildcards:
//!
//! - `*` stands for one or more characters, any characters; a match tries
//!   the shortest run first and backtracks to longer ones.
//! - `?` also stands for one or more characters, but it ends at the *first*
//!   occurrence of the literal character that follows it in the pattern and
//!   never contains that character. Its first character must differ from
//!   that literal. There is no backtracking into a longer run. So `?/` in a
//!   pattern is "one path segment, then `/`", whereas `*/` may span several
//!   segments.
//!
//! A valid pattern never holds two wildcards in a row (`**`, `??`, `*?`,
//! `?*`) and never ends with `?` (a `?` needs the literal after it).
//!
//! [`pattern_matches`] tells whether one pattern matches one name on its
//! own. Inside a [`Trie`](crate::cpg::trie::Trie) holding several keys the
//! genuine lookup can give a different answer, because it depends on the
//! other stored keys; see that type for the exact rule.

/// The wildcard that stands for any one or more characters.
pub const WILDCARD_ANY: char = '*';

/// The wildcard that stands for one or more characters up to the first
/// occurrence of the literal character that follows it.
pub const WILDCARD_SHORT: char = '?';

/// What a group name is, as `trie:is_pattern2/1` classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A plain name without wildcards (`is_pattern2` returns `false`).
    Exact,
    /// A valid pattern holding at least one `*` or `?` (`is_pattern2`
    /// returns `true`).
    Pattern,
}

/// Why a name was refused; keeps the input so the message can show it.
///
/// Positions count characters (code points) from 0, as an index into the
/// Erlang charlist would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The name is the empty string. `is_pattern2("")` answers `false`, but
    /// genuine trie cannot store an empty key (`trie:store("")` crashes), so
    /// no group can have this name.
    #[error("invalid group name: the empty string cannot be a group name")]
    Empty,
    /// Two wildcards follow each other (`**`, `??`, `*?` or `?*`), which
    /// `is_pattern2` refuses (`badarg`).
    #[error(
        "invalid group name pattern {name:?}: two wildcards in a row at character {pos} \
         (\"**\", \"??\", \"*?\" and \"?*\" are forbidden)"
    )]
    DoubleWildcard {
        /// The refused name.
        name: String,
        /// Index (in characters) of the first of the two wildcards.
        pos: usize,
    },
    /// The pattern ends with `?`, which `is_pattern2` refuses (`badarg`):
    /// `?` must be followed by the literal character that ends it.
    #[error("invalid group name pattern {name:?}: \"?\" may not be the last character")]
    TrailingQuestion {
        /// The refused name.
        name: String,
    },
}

/// Whether `c` is one of the two wildcard characters `*` and `?`.
pub fn is_wildcard(c: char) -> bool {
    c == WILDCARD_ANY || c == WILDCARD_SHORT
}

/// Classifies a group name as `trie:is_pattern2/1` does: [`NameKind::Exact`]
/// for `false`, [`NameKind::Pattern`] for `true`, an error where it raises
/// `badarg`.
///
/// The one difference from `is_pattern2` is the empty string, refused here
/// with [`PatternError::Empty`] because it cannot be stored as a group name.
///
/// ```
/// # use cpg_node::cpg::pattern::{classify, NameKind, PatternError};
/// assert_eq!(classify("a/b"), Ok(NameKind::Exact));
/// assert_eq!(classify("a/*/?/c"), Ok(NameKind::Pattern));
/// assert!(matches!(classify("a/**"), Err(PatternError::DoubleWildcard { pos: 2, .. })));
/// assert!(matches!(classify("a/?"), Err(PatternError::TrailingQuestion { .. })));
/// ```
pub fn classify(name: &str) -> Result<NameKind, PatternError> {
    if name.is_empty() {
        return Err(PatternError::Empty);
    }
    let mut kind = NameKind::Exact;
    let mut chars = name.chars().enumerate().peekable();
    while let Some((pos, c)) = chars.next() {
        if !is_wildcard(c) {
            continue;
        }
        match chars.peek() {
            None if c == WILDCARD_SHORT => {
                return Err(PatternError::TrailingQuestion {
                    name: name.to_owned(),
                })
            }
            Some(&(_, next)) if is_wildcard(next) => {
                return Err(PatternError::DoubleWildcard {
                    name: name.to_owned(),
                    pos,
                })
            }
            _ => kind = NameKind::Pattern,
        }
    }
    Ok(kind)
}

/// Whether `name` holds a wildcard character (`*` or `?`), valid pattern or
/// not.
pub fn is_pattern(name: &str) -> bool {
    // Byte by byte: both wildcards are ASCII, and in UTF-8 an ASCII byte is
    // never part of another character (no decoding needed).
    name.bytes().any(|b| b == b'*' || b == b'?')
}

/// Whether `pattern` matches `name` on its own: the string matcher genuine
/// trie applies to a key that is alone in its branch (in particular, what
/// `find_match2(Name, Trie)` answers for a trie holding only `pattern`).
///
/// A `*` matches one or more characters (shortest first, with
/// backtracking); a `?` matches one or more characters up to the first
/// occurrence of the literal that follows it, never starting with that
/// literal. A name holding a wildcard never matches (genuine trie raises
/// `badarg`), and neither does a malformed pattern where genuine trie
/// would raise. A pattern without wildcards matches only itself.
///
/// ```
/// # use cpg_node::cpg::pattern::pattern_matches;
/// assert!(pattern_matches("a/*", "a/b/c"));
/// assert!(pattern_matches("a/?/c", "a/b/c"));
/// assert!(!pattern_matches("a/?", "a/b")); // malformed: trailing `?`
/// assert!(!pattern_matches("?b", "xbyb")); // `?` stops at the first `b`
/// assert!(pattern_matches("*b", "xbyb"));
/// assert!(!pattern_matches("a/*", "a/")); // `*` needs at least one character
/// ```
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    matches!(match_suffix(pattern, name, is_pattern(name)), Ok(true))
}

/// Genuine trie raises an exception (`badarg`, or a failed assertion on a
/// malformed pattern); `cpg` turns such a lookup into "no such group".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raise;

/// The string matcher of genuine trie, with its exceptions: matches the rest
/// of a stored key (`pattern`, which may start with a wildcard) against the
/// rest of a looked-up name.
///
/// `checked` asks for the checks genuine trie makes on the name (a name
/// holding a wildcard raises once the matcher reaches it); without it the
/// caller promises that `name` has no wildcard, which saves rescans.
pub(crate) fn match_suffix(pattern: &str, name: &str, checked: bool) -> Result<bool, Raise> {
    // The checks can only change the answer where this part of the name
    // holds a wildcard (every one of them looks for one in it): without,
    // the answer is the search's below, in time linear in the name for
    // most patterns and never worse than the two lengths' product.
    if checked && is_pattern(name) {
        match_search(pattern, name, true)
    } else {
        match_greedy(pattern, name)
    }
}

/// [`match_suffix`] as genuine trie computes it: each `*` tries every
/// occurrence of the literal after it in turn, recursively. Exponential in
/// the number of `*` for some names (`*a*a*a*a*c` against `aaa...ab`), so
/// used only for a name holding a wildcard, where the search raises at the
/// first scan that meets it (a name without one goes to [`match_greedy`]),
/// and by the tests as the reference.
pub(crate) fn match_search(pattern: &str, name: &str, checked: bool) -> Result<bool, Raise> {
    let mut pattern = pattern;
    let mut name = name;
    loop {
        let mut pattern_chars = pattern.chars();
        let Some(p) = pattern_chars.next() else {
            return if name.is_empty() {
                Ok(true)
            } else {
                no_wildcard_then(name, checked, false)
            };
        };
        let mut name_chars = name.chars();
        let Some(n) = name_chars.next() else {
            return Ok(false);
        };
        if is_wildcard(n) {
            return Err(Raise);
        }
        let pattern_rest = pattern_chars.as_str();
        let name_rest = name_chars.as_str();
        match p {
            WILDCARD_SHORT => {
                // `?` must be followed by a literal that ends it.
                let Some(end) = pattern_rest.chars().next() else {
                    return Err(Raise);
                };
                if is_wildcard(end) {
                    return Err(Raise);
                }
                if n == end {
                    return Ok(false);
                }
                match find_literal(end, name_rest, checked)? {
                    Some(after) => {
                        pattern = &pattern_rest[end.len_utf8()..];
                        name = after;
                    }
                    None => return Ok(false),
                }
            }
            WILDCARD_ANY => {
                let Some(end) = pattern_rest.chars().next() else {
                    return no_wildcard_then(name_rest, checked, true);
                };
                if is_wildcard(end) {
                    return Err(Raise);
                }
                let pattern_after = &pattern_rest[end.len_utf8()..];
                let mut search = name_rest;
                while let Some(after) = find_literal(end, search, checked)? {
                    if match_search(pattern_after, after, checked)? {
                        return Ok(true);
                    }
                    search = after;
                }
                return Ok(false);
            }
            literal if literal == n => {
                pattern = pattern_rest;
                name = name_rest;
            }
            _ => return no_wildcard_then(name, checked, false),
        }
    }
}

/// [`match_search`] for a name without wildcards, without its blow-up: the
/// same answer (a match, none, or [`Raise`]), found by trying only the
/// last `*` met at its next occurrences, never an earlier one.
///
/// Why that gives the same answer: between two `*`, a pattern is literals
/// and `?` runs, which leave no choice, and where such a part matches from
/// two starting points the later start ends no earlier. A `*` picks any
/// occurrence of its literal at least one character on. So once every
/// occurrence the last `*` can pick has failed, an earlier `*` picking a
/// later occurrence could only start the last one later, with fewer
/// occurrences to pick from: it fails too. And a malformed part (a `?` or
/// `*` with a wildcard or nothing after it, which raises when the search
/// reaches it with characters left) is reached by some choice exactly when
/// the earliest choices reach it, which leave the most characters.
///
/// Each step moves the last `*` to a later occurrence, and a `?` after it
/// remembers where its literal was found, so its scans go forward only:
/// time linear in the name, times the pattern's length at worst.
fn match_greedy(pattern: &str, name: &str) -> Result<bool, Raise> {
    // Up to the first `*` with a literal after it, nothing to choose.
    let (mut pi, mut ni) = (0, 0);
    loop {
        match step(pattern, name, pi, ni, |end, from| position(end, name, from)) {
            Step::Next(p, n) => (pi, ni) = (p, n),
            Step::Done(answer) => return answer,
            Step::Failed => return Ok(false),
            Step::Star(star) => return match_stars(pattern, name, star),
        }
    }
}

/// The last `*` met: where the pattern goes on after its literal, the
/// literal, and where the name is searched for its next occurrence.
struct Star {
    pattern_after: usize,
    end: char,
    search: usize,
}

/// One step of the matcher at pattern byte `pi`, name byte `ni`.
enum Step {
    /// On to these positions.
    Next(usize, usize),
    /// The answer, whatever any `*` chooses.
    Done(Result<bool, Raise>),
    /// No match from here.
    Failed,
    /// A `*` with a literal after it: a choice to make.
    Star(Star),
}

/// The step at `(pi, ni)`, as [`match_search`]'s loop takes it (without
/// checks); `scan(end, from)` finds the first `end` from byte `from` on.
#[inline(always)]
fn step(
    pattern: &str,
    name: &str,
    pi: usize,
    ni: usize,
    scan: impl FnOnce(char, usize) -> Option<usize>,
) -> Step {
    let Some(p) = pattern[pi..].chars().next() else {
        return if ni == name.len() {
            Step::Done(Ok(true))
        } else {
            Step::Failed
        };
    };
    let Some(n) = name[ni..].chars().next() else {
        return Step::Failed;
    };
    let after_p = pi + p.len_utf8();
    match p {
        WILDCARD_SHORT => {
            let Some(end) = pattern[after_p..].chars().next() else {
                return Step::Done(Err(Raise));
            };
            if is_wildcard(end) {
                return Step::Done(Err(Raise));
            }
            if n == end {
                return Step::Failed;
            }
            // None from here, none from any later start either: no `*`
            // met before can make it match.
            match scan(end, ni + n.len_utf8()) {
                Some(at) => Step::Next(after_p + end.len_utf8(), at + end.len_utf8()),
                None => Step::Done(Ok(false)),
            }
        }
        WILDCARD_ANY => match pattern[after_p..].chars().next() {
            None => Step::Done(Ok(true)),
            Some(end) if is_wildcard(end) => Step::Done(Err(Raise)),
            Some(end) => Step::Star(Star {
                pattern_after: after_p + end.len_utf8(),
                end,
                search: ni + n.len_utf8(),
            }),
        },
        literal if literal == n => Step::Next(after_p, ni + n.len_utf8()),
        _ => Step::Failed,
    }
}

/// [`match_greedy`] from its first `*` with a choice on: a failure moves
/// the last `*` met to its next occurrence (see there why no earlier one).
#[inline(never)]
fn match_stars(pattern: &str, name: &str, first: Star) -> Result<bool, Raise> {
    let mut star = first;
    // Per `?` after the last `*` (by its position in the pattern): where
    // its last scan started and what it found. The next start is later, so
    // its scans go forward only.
    let mut scans: Vec<(usize, usize, Option<usize>)> = Vec::new();
    let (mut pi, mut ni);
    'choose: loop {
        // The last `*` at its next occurrence, or no match at all.
        let Some(at) = position(star.end, name, star.search) else {
            return Ok(false);
        };
        star.search = at + star.end.len_utf8();
        (pi, ni) = (star.pattern_after, star.search);
        loop {
            let scan = |end, from| {
                let scan = || position(end, name, from);
                match scans.iter_mut().find(|s| s.0 == pi) {
                    Some(s) if from >= s.1 && s.2.is_none_or(|at| at >= from) => {
                        s.1 = from;
                        s.2
                    }
                    Some(s) => {
                        (s.1, s.2) = (from, scan());
                        s.2
                    }
                    None => {
                        let found = scan();
                        scans.push((pi, from, found));
                        found
                    }
                }
            };
            match step(pattern, name, pi, ni, scan) {
                Step::Next(p, n) => (pi, ni) = (p, n),
                Step::Done(answer) => return answer,
                Step::Failed => continue 'choose,
                Step::Star(next) => {
                    star = next;
                    scans.clear();
                    continue 'choose;
                }
            }
        }
    }
}

/// Where `c` first occurs in `name` from byte `from` on: [`find_literal`]'s
/// scan (a plain loop: names are short, and `str::find`'s setup costs more
/// than it saves), without its checks, which never raises.
fn position(c: char, name: &str, from: usize) -> Option<usize> {
    let after = find_literal(c, &name[from..], false).ok()??;
    Some(name.len() - after.len() - c.len_utf8())
}

/// `result`, unless checking is on and `name` holds a wildcard.
fn no_wildcard_then(name: &str, checked: bool, result: bool) -> Result<bool, Raise> {
    if checked && is_pattern(name) {
        Err(Raise)
    } else {
        Ok(result)
    }
}

/// The rest of `name` after the first occurrence of `literal`, if any;
/// raises on a wildcard met before it when checking is on.
fn find_literal(literal: char, name: &str, checked: bool) -> Result<Option<&str>, Raise> {
    for (i, c) in name.char_indices() {
        if c == literal {
            return Ok(Some(&name[i + c.len_utf8()..]));
        }
        if checked && is_wildcard(c) {
            return Err(Raise);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_examples() {
        assert_eq!(classify("abc"), Ok(NameKind::Exact));
        assert_eq!(classify("*"), Ok(NameKind::Pattern));
        assert_eq!(classify("*a?b"), Ok(NameKind::Pattern));
        assert_eq!(classify("组/*"), Ok(NameKind::Pattern));
        assert_eq!(classify(""), Err(PatternError::Empty));
        assert_eq!(
            classify("ab*?c"),
            Err(PatternError::DoubleWildcard {
                name: "ab*?c".into(),
                pos: 2
            })
        );
        assert_eq!(
            classify("ü?"),
            Err(PatternError::TrailingQuestion { name: "ü?".into() })
        );
        assert!(matches!(
            classify("?"),
            Err(PatternError::TrailingQuestion { .. })
        ));
        assert!(matches!(
            classify("a??"),
            Err(PatternError::DoubleWildcard { pos: 1, .. })
        ));
        let message = classify("x/**").unwrap_err().to_string();
        assert!(
            message.contains("\"x/**\"") && message.contains('2'),
            "{message}"
        );
    }

    #[test]
    fn matcher_examples() {
        assert!(pattern_matches("abc", "abc"));
        assert!(!pattern_matches("abc", "abd"));
        assert!(pattern_matches("*", "a"));
        assert!(!pattern_matches("*", ""));
        assert!(pattern_matches("a*c", "abbc"));
        assert!(pattern_matches("a*c", "acc"));
        assert!(!pattern_matches("a*c", "ac"));
        assert!(pattern_matches("*/b", "x/y/b"));
        assert!(!pattern_matches("?/b", "x/y/b"));
        assert!(pattern_matches("?/b", "xy/b"));
        assert!(!pattern_matches("?a", "aa"));
        assert!(!pattern_matches("?a", "xaa"));
        assert!(pattern_matches("grüppe/*", "grüppe/组"));
        assert!(pattern_matches("组/?/x", "组/ü/x"));
        // names holding wildcards and malformed patterns never match
        assert!(!pattern_matches("a*", "a*"));
        assert!(!pattern_matches("a", "a*"));
        assert!(!pattern_matches("a**", "abc"));
        assert!(!pattern_matches("a?", "ab"));
        assert_eq!(match_suffix("a?", "ab", false), Err(Raise));
        assert_eq!(match_suffix("ab", "a?", true), Err(Raise));
    }

    /// Patterns of a few literals and wildcards in any order, malformed
    /// ones (`**`, `*?`, a trailing `?`) included.
    fn any_pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![3 => Just('a'), 2 => Just('b'), 1 => Just('ü'), 2 => Just('*'), 2 => Just('?')],
            0..9,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// The greedy matcher answers as genuine trie's search does (a match,
        /// none, or a raise), on names without wildcards; with checks asked
        /// for, on names with them too.
        #[test]
        fn greedy_answers_as_the_search(
            pattern in any_pattern(),
            name in "[abü]{0,10}",
            wild in proptest::option::of((0usize..11, proptest::prelude::prop_oneof![
                proptest::prelude::Just('*'), proptest::prelude::Just('?')])),
        ) {
            proptest::prop_assert_eq!(
                match_greedy(&pattern, &name),
                match_search(&pattern, &name, false),
                "{:?} against {:?}", pattern, name
            );
            let mut name = name;
            if let Some((at, w)) = wild {
                let at = name.char_indices().map(|(i, _)| i).nth(at).unwrap_or(name.len());
                name.insert(at, w);
            }
            proptest::prop_assert_eq!(
                match_suffix(&pattern, &name, true),
                match_search(&pattern, &name, true),
                "{:?} against {:?} (checked)", pattern, name
            );
        }
    }

    /// The blow-up of genuine trie's search (every occurrence of `a` tried
    /// by each `*`: some 10^11 tries here) is a walk along the name.
    #[test]
    fn many_stars_against_a_long_name() {
        let pattern = format!("{}*c", "*a".repeat(12));
        let name = format!("{}b", "a".repeat(10_000));
        assert_eq!(match_suffix(&pattern, &name, false), Ok(false));
        assert_eq!(match_suffix(&pattern, &format!("{name}c"), false), Ok(true));
        // ?-runs after the last `*` scan forward only
        let pattern = format!("{}?bc", "*a".repeat(12));
        let name = format!("{}bd", "a".repeat(10_000));
        assert_eq!(match_suffix(&pattern, &name, false), Ok(false));
        // a malformed tail raises where it is reached with characters left
        let pattern = format!("{}*b?", "*a".repeat(12));
        assert_eq!(
            match_suffix(&pattern, &format!("{}bx", "a".repeat(10_000)), false),
            Err(Raise)
        );
        assert_eq!(
            match_suffix(&pattern, &format!("{}b", "a".repeat(10_000)), false),
            Ok(false)
        );
        // as many stars as the name is long: no recursion to overflow
        let pattern = "*a".repeat(100_000);
        assert_eq!(
            match_suffix(&pattern, &"a".repeat(200_000), false),
            Ok(true)
        );
        assert_eq!(
            match_suffix(&pattern, &"a".repeat(199_999), false),
            Ok(false)
        );
    }
}
