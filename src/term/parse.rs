//! Reading an Erlang term from its text, as a person types it on a command
//! line: `my_group` (an atom), `'My Group'`, `"s"` (a string: a list of
//! code points), `<<"topic">>`, `<<1,2>>`, `42`, `-1`, `1.5`, `{a,1}`,
//! `[a,b|c]`, `#{k => v}`. A trailing `.` is allowed. Pids, refs, funs and
//! variables are not terms one can type, and are refused.

use super::{atom, binary, list, map, tuple, BigInteger, Float, ImproperList, Term};

/// Why a text is not a term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Erlang term at byte {at}: {what}")]
pub struct ParseError {
    /// Where in the text.
    pub at: usize,
    /// What was expected or found.
    pub what: String,
}

/// Deepest nesting accepted (input typed by a person; no stack at risk).
const MAX_DEPTH: usize = 100;

/// Parses the whole of `text` as one term.
pub fn parse_term(text: &str) -> Result<Term, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let t = p.term(0)?;
    p.ws();
    if p.peek() == Some(b'.') {
        p.i += 1;
        p.ws();
    }
    if p.i != p.s.len() {
        return Err(p.err("the end of the term"));
    }
    Ok(t)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> ParseError {
        ParseError {
            at: self.i,
            what: format!("expected {what}"),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), ParseError> {
        self.ws();
        if self.s[self.i..].starts_with(tok.as_bytes()) {
            self.i += tok.len();
            Ok(())
        } else {
            Err(self.err(&format!("`{tok}`")))
        }
    }

    fn term(&mut self, depth: usize) -> Result<Term, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("less nesting"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let v = self.seq(b'}', depth)?;
                Ok(tuple(v))
            }
            Some(b'[') => {
                self.i += 1;
                if self.eat(b']') {
                    return Ok(list(vec![]));
                }
                let mut v = vec![self.term(depth + 1)?];
                loop {
                    if self.eat(b',') {
                        v.push(self.term(depth + 1)?);
                    } else if self.eat(b'|') {
                        let tail = self.term(depth + 1)?;
                        self.expect("]")?;
                        return Ok(match tail {
                            Term::List(l) => {
                                v.extend(l.elements);
                                list(v)
                            }
                            tail => Term::ImproperList(ImproperList {
                                elements: v,
                                last: Box::new(tail),
                            }),
                        });
                    } else {
                        self.expect("]")?;
                        return Ok(list(v));
                    }
                }
            }
            Some(b'#') => {
                self.i += 1;
                self.expect("{")?;
                let mut pairs = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        let k = self.term(depth + 1)?;
                        self.expect("=>")?;
                        let v = self.term(depth + 1)?;
                        pairs.push((k, v));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(map(pairs))
            }
            Some(b'<') => {
                self.expect("<<")?;
                let mut bytes = Vec::new();
                if !self.eat(b'>') {
                    loop {
                        self.ws();
                        if self.peek() == Some(b'"') {
                            bytes.extend(self.quoted(b'"')?.into_bytes());
                        } else {
                            match self.number()? {
                                Term::FixInteger(n) if (0..256).contains(&n.value) => {
                                    bytes.push(n.value as u8)
                                }
                                _ => return Err(self.err("a byte (0..255)")),
                            }
                        }
                        if self.eat(b'>') {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                self.expect(">")?;
                Ok(binary(bytes))
            }
            Some(b'"') => {
                let s = self.quoted(b'"')?;
                Ok(super::string_to_charlist(&s))
            }
            Some(b'\'') => Ok(atom(&self.quoted(b'\'')?)),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_ascii_lowercase() => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'@')
                {
                    self.i += 1;
                }
                Ok(atom(&self.text[start..self.i]))
            }
            _ => Err(self.err("a term")),
        }
    }

    /// Comma-separated terms up to `close` (already past the opener).
    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Term>, ParseError> {
        let mut v = Vec::new();
        if self.eat(close) {
            return Ok(v);
        }
        loop {
            v.push(self.term(depth + 1)?);
            if self.eat(close) {
                return Ok(v);
            }
            self.expect(",")?;
        }
    }

    /// A quoted atom or string, with Erlang's common escapes.
    fn quoted(&mut self, q: u8) -> Result<String, ParseError> {
        self.i += 1;
        let mut out = String::new();
        let rest = &self.text[self.i..];
        let mut chars = rest.char_indices();
        while let Some((k, c)) = chars.next() {
            if c as u32 == u32::from(q) {
                self.i += k + 1;
                return Ok(out);
            }
            if c == '\\' {
                let Some((_, e)) = chars.next() else { break };
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    's' => ' ',
                    '0' => '\0',
                    e => e,
                });
            } else {
                out.push(c);
            }
        }
        self.i = self.s.len();
        Err(self.err(&format!("a closing {}", q as char)))
    }

    fn number(&mut self) -> Result<Term, ParseError> {
        self.ws();
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit() || c == b'_') {
                p.i += 1;
            }
            p.i > s
        };
        if !digits(self) {
            return Err(self.err("a number"));
        }
        let mut float = false;
        if self.peek() == Some(b'.') && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            self.i += 1;
            digits(self);
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.peek(), Some(b'-' | b'+')) {
                    self.i += 1;
                }
                digits(self);
            }
        }
        let text: String = self.text[start..self.i]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        if float {
            let v: f64 = text.parse().map_err(|_| self.err("a float"))?;
            return Float::try_from(v)
                .map(Term::Float)
                .map_err(|_| self.err("a finite float"));
        }
        if let Ok(v) = text.parse::<i32>() {
            return Ok(super::int(v));
        }
        let v: i64 = text.parse().map_err(|_| self.err("a smaller integer"))?;
        Ok(Term::BigInteger(BigInteger::from(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::int;

    #[test]
    fn reads_the_terms_people_type() {
        assert_eq!(parse_term("my_group").unwrap(), atom("my_group"));
        assert_eq!(parse_term("'My Group'").unwrap(), atom("My Group"));
        assert_eq!(parse_term("{a,1}").unwrap(), tuple(vec![atom("a"), int(1)]));
        assert_eq!(
            parse_term(" {a, -1}. ").unwrap(),
            tuple(vec![atom("a"), int(-1)])
        );
        assert_eq!(
            crate::term::charlist_to_string(&parse_term("\"s\\n\"").unwrap()).unwrap(),
            "s\n"
        );
        assert_eq!(
            parse_term("<<\"room:1\">>").unwrap(),
            binary(b"room:1".to_vec())
        );
        assert_eq!(parse_term("<<1, 2>>").unwrap(), binary(vec![1, 2]));
        assert_eq!(parse_term("[]").unwrap(), list(vec![]));
        assert_eq!(
            parse_term("[a|[b]]").unwrap(),
            list(vec![atom("a"), atom("b")])
        );
        assert!(matches!(
            parse_term("[a|b]").unwrap(),
            Term::ImproperList(_)
        ));
        assert_eq!(
            parse_term("#{k => v}").unwrap(),
            map(vec![(atom("k"), atom("v"))])
        );
        assert!(matches!(
            parse_term("12345678901234").unwrap(),
            Term::BigInteger(_)
        ));
        assert!(matches!(parse_term("1.5").unwrap(), Term::Float(_)));
    }

    #[test]
    fn refuses_what_is_not_a_term() {
        for bad in [
            "", "Var", "room:1", "{a", "[a,", "'open", "<<300>>", "a b", "#{a}",
        ] {
            assert!(parse_term(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(parse_term(&deep).is_err());
    }
}
