//! The tokenizer for `nft -f` scripts and `nft list` output, and the token
//! cursor the parsers walk.
//!
//! Models: nft's lexical rules as far as knftables transactions and listings
//! use them — words (names, numbers, addresses such as `fd00::1`,
//! `10.0.0.0/8`, `[fd00::1]:80`, chain names with `/` and `.`), `"…"`
//! strings, the punctuation `{ } ; ,`, newlines (which end a command outside
//! braces), `#` comments to the end of a line and `\` line continuations.
//! Operators (`.`, `:`, `==`, `!=`, `&`, `=`) are words of their own, so they
//! must be surrounded by spaces, as knftables and `nft list` write them.
//!
//! Must never: drop a character silently, or read anything but its input.
//!
//! Error contract: an unterminated string is an [`ErrorKind::UnterminatedString`]
//! at its opening quote; the cursor turns "expected X" into
//! [`ErrorKind::Unexpected`] / [`ErrorKind::UnexpectedEnd`] at the token.

use super::error::{ErrorKind, NftError};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Anything unquoted.
    Word,
    /// A `"…"` string (text without the quotes).
    Str,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `;`
    Semi,
    /// `,`
    Comma,
    /// End of a line.
    Newline,
}

/// One token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub text: String,
    pub line: usize,
    pub col: usize,
}

impl Token {
    /// Whether this is the word `w`.
    pub fn is(&self, w: &str) -> bool {
        self.kind == TokKind::Word && self.text == w
    }

    /// Whether this token ends a command (outside braces).
    pub fn ends_command(&self) -> bool {
        matches!(self.kind, TokKind::Semi | TokKind::Newline)
    }

    pub fn err(&self, kind: ErrorKind) -> NftError {
        kind.at(self.line, self.col)
    }
}

/// Split `input` into tokens.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, NftError> {
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let push = |out: &mut Vec<Token>, kind, text: String, line, col| {
        out.push(Token {
            kind,
            text,
            line,
            col,
        })
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => {
                i += 1;
                col += 1;
            }
            '\n' => {
                push(&mut out, TokKind::Newline, "\n".into(), line, col);
                i += 1;
                line += 1;
                col = 1;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
                col = 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                let start_col = col;
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '"' && chars[j] != '\n' {
                    j += 1;
                }
                let text: String = chars[i + 1..j].iter().collect();
                if j >= chars.len() || chars[j] != '"' {
                    return Err(ErrorKind::UnterminatedString {
                        token: format!("\"{text}"),
                    }
                    .at(line, start_col));
                }
                col += j + 1 - i;
                i = j + 1;
                push(&mut out, TokKind::Str, text, line, start_col);
            }
            '{' | '}' | ';' | ',' => {
                let kind = match c {
                    '{' => TokKind::LBrace,
                    '}' => TokKind::RBrace,
                    ';' => TokKind::Semi,
                    _ => TokKind::Comma,
                };
                push(&mut out, kind, c.to_string(), line, col);
                i += 1;
                col += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !is_break(chars[i]) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                push(&mut out, TokKind::Word, text, line, col);
                col += i - start;
            }
        }
    }
    Ok(out)
}

fn is_break(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\r' | '\n' | '{' | '}' | ';' | ',' | '"' | '#'
    )
}

/// A cursor over a token slice, with the end position for errors.
pub(crate) struct Cursor<'a> {
    toks: &'a [Token],
    pos: usize,
    end_line: usize,
    end_col: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(toks: &'a [Token], end_line: usize, end_col: usize) -> Self {
        Cursor {
            toks,
            pos: 0,
            end_line,
            end_col,
        }
    }

    pub fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.pos)
    }

    pub fn peek_at(&self, ahead: usize) -> Option<&'a Token> {
        self.toks.get(self.pos + ahead)
    }

    pub fn next(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    /// Whether the next token is the word `w`.
    pub fn peek_is(&self, w: &str) -> bool {
        self.peek().is_some_and(|t| t.is(w))
    }

    pub fn peek_kind(&self, kind: TokKind) -> bool {
        self.peek().is_some_and(|t| t.kind == kind)
    }

    /// Consume the word `w` if it is next.
    pub fn eat(&mut self, w: &str) -> bool {
        if self.peek_is(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn eat_kind(&mut self, kind: TokKind) -> bool {
        if self.peek_kind(kind) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skip newlines (inside braces they are plain whitespace).
    pub fn skip_newlines(&mut self) {
        while self.eat_kind(TokKind::Newline) {}
    }

    /// The error for "expected X" at the next token (or at the end).
    pub fn expected(&self, expected: &'static str) -> NftError {
        match self.peek() {
            Some(t) => t.err(ErrorKind::unexpected(&t.text, expected)),
            None => ErrorKind::UnexpectedEnd { expected }.at(self.end_line, self.end_col),
        }
    }

    /// The next token, which must exist.
    pub fn need(&mut self, expected: &'static str) -> Result<&'a Token, NftError> {
        match self.next() {
            Some(t) => Ok(t),
            None => Err(ErrorKind::UnexpectedEnd { expected }.at(self.end_line, self.end_col)),
        }
    }

    /// The next token, which must be a word.
    pub fn word(&mut self, expected: &'static str) -> Result<&'a Token, NftError> {
        match self.peek() {
            Some(t) if t.kind == TokKind::Word => {
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.expected(expected)),
        }
    }

    /// The next token, which must be the word `w`.
    pub fn expect(&mut self, w: &str, expected: &'static str) -> Result<&'a Token, NftError> {
        match self.peek() {
            Some(t) if t.is(w) => {
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.expected(expected)),
        }
    }

    pub fn expect_kind(
        &mut self,
        kind: TokKind,
        expected: &'static str,
    ) -> Result<&'a Token, NftError> {
        match self.peek() {
            Some(t) if t.kind == kind => {
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.expected(expected)),
        }
    }

    /// A name: a word or a quoted string.
    pub fn name(&mut self, expected: &'static str) -> Result<&'a Token, NftError> {
        match self.peek() {
            Some(t) if matches!(t.kind, TokKind::Word | TokKind::Str) => {
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.expected(expected)),
        }
    }

    /// The last token consumed (for error places).
    pub fn prev(&self) -> Option<&'a Token> {
        self.pos.checked_sub(1).and_then(|p| self.toks.get(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_strings_and_punctuation() {
        let t = tokenize("add rule ip t c ip daddr { 1.2.3.4, fd00::1 } comment \"a b\" # x\n;")
            .unwrap();
        let texts: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "add", "rule", "ip", "t", "c", "ip", "daddr", "{", "1.2.3.4", ",", "fd00::1", "}",
                "comment", "a b", "\n", ";"
            ]
        );
        assert_eq!(t[13].kind, TokKind::Str);
        assert_eq!((t[15].line, t[15].col), (2, 1));
    }

    #[test]
    fn unterminated_string_names_its_place() {
        let e = tokenize("add table ip t\nadd chain ip t c { comment \"x ; }\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 28));
        assert!(matches!(e.kind, ErrorKind::UnterminatedString { .. }));
    }
}
