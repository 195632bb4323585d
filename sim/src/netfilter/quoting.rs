//! iptables' quoting, both ways: how `iptables-restore` splits a line into
//! arguments, and how `iptables-save` quotes a string argument.
//!
//! Models: xtables' `add_param_to_argv` tokenizer (spaces and tabs separate
//! arguments; `"` opens and closes a quoted span and ends the argument at its
//! close; inside quotes `\x` stands for `x`; outside quotes `\` is an ordinary
//! character) and `xtables_save_string` (bare when the value is non-empty and
//! made only of `[A-Za-z0-9_-]`, otherwise double-quoted with `"`, `\` and `'`
//! escaped by a backslash).
//!
//! Must never: invent escapes iptables does not know (`\n` is the letter `n`).
//!
//! Error contract: an unclosed double quote is [`ErrorKind::UnterminatedQuote`]
//! (the real tool would swallow the newline into the argument; a simulator
//! must not store that silently).

use super::error::ErrorKind;

/// One argument of a restore line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// The argument text with quotes and escapes removed.
    pub text: String,
    /// Whether any part of it was quoted (a quoted `!` is not a negation).
    pub quoted: bool,
}

/// Split one restore line into arguments the way iptables-restore does.
pub(crate) fn tokenize(line: &str) -> Result<Vec<Token>, ErrorKind> {
    let mut tokens = Vec::new();
    let mut buf = String::new();
    let mut quoted = false;
    let mut quote_open = false;
    let mut escaped = false;
    for c in line.chars() {
        if quote_open {
            if escaped {
                buf.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                // Closing quote ends the argument, even if text follows.
                quote_open = false;
                tokens.push(Token {
                    text: std::mem::take(&mut buf),
                    quoted,
                });
                quoted = false;
            } else {
                buf.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quote_open = true;
                quoted = true;
            }
            ' ' | '\t' | '\n' | '\r' => {
                if !buf.is_empty() {
                    tokens.push(Token {
                        text: std::mem::take(&mut buf),
                        quoted,
                    });
                    quoted = false;
                }
            }
            _ => buf.push(c),
        }
    }
    if quote_open {
        return Err(ErrorKind::UnterminatedQuote { token: buf });
    }
    if !buf.is_empty() {
        tokens.push(Token {
            text: buf,
            quoted: false,
        });
    }
    Ok(tokens)
}

/// Append ` value`, quoted as `xtables_save_string` does.
pub(crate) fn push_save_string(out: &mut String, value: &str) {
    out.push(' ');
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        tokenize(line)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn tokenizes_like_iptables_restore() {
        assert_eq!(texts("-A X  -j\tACCEPT "), ["-A", "X", "-j", "ACCEPT"]);
        assert_eq!(
            texts(r#"--comment "a \"q\" b\\c\n""#),
            ["--comment", "a \"q\" b\\cn"]
        );
        assert_eq!(texts(r#"--comment """#), ["--comment", ""]);
        // A closing quote ends the argument; the rest is a new one.
        assert_eq!(texts(r#""a"b"#), ["a", "b"]);
        assert_eq!(texts(r#"a"b c"d"#), ["ab c", "d"]);
        // Outside quotes a backslash is literal and single quotes are plain.
        assert_eq!(texts(r"a\b 'x'"), [r"a\b", "'x'"]);
        assert!(tokenize(r#"--comment "open"#).is_err());
        assert!(tokenize(r#"! "!""#).unwrap()[1].quoted);
    }

    #[test]
    fn quotes_like_iptables_save() {
        let q = |v: &str| {
            let mut s = String::new();
            push_save_string(&mut s, v);
            s
        };
        assert_eq!(q("foo_-9"), " foo_-9");
        assert_eq!(q(""), r#" """#);
        assert_eq!(q("a b"), r#" "a b""#);
        assert_eq!(q(r#"a"b\c'd"#), r#" "a\"b\\c\'d""#);
        assert_eq!(q("ns/svc:p"), r#" "ns/svc:p""#);
    }
}
