//! The `nft -f` script parser: transaction commands, and the block syntax
//! `nft list` prints (`table ip t { set s { … } chain c { … } }`), into
//! [`Command`]s that `apply` runs.
//!
//! Models: `add`, `create`, `insert`, `replace`, `delete`, `destroy`,
//! `flush` of `table`, `chain`, `rule`, `set`, `map`, `element`, and
//! `flush ruleset`; the family defaults to `ip` as in nft; `handle N`,
//! `index N` and `position N` for rules; chain specs
//! (`{ type … hook … priority …; policy …; comment "…"; }`); set and map
//! bodies (`type`, `flags`, `timeout`, `gc-interval`, `size`, `auto-merge`,
//! `comment`, `elements = { … }`); element lists with `timeout`, `expires`,
//! `comment` and `: value`. A table block expands as nft expands it:
//! chains, then sets with their elements, then rules. `destroy` (delete if
//! present) is accepted although nft 1.0.6 lacks it (it arrived in 1.0.8),
//! because newer knftables may emit it.
//!
//! Must never: skip a command or a clause it does not understand; `define`,
//! `include`, `list` and other commands are refused with a hint.
//!
//! Error contract: [`NftError`] at the offending token.

use super::decl::{
    chain_body, chain_clause, raw_elements, set_body, skip_separators, BaseSpec, SetDecl,
};
use super::error::{ErrorKind, NftError};
use super::lexer::{Cursor, TokKind, Token};
use super::rule_parse::{parse_rule, ParsedRule};
use super::types::{check_comment, check_name, Family};

/// What a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Add,
    Create,
    Insert,
    Replace,
    Delete,
    Destroy,
    Flush,
}

/// Where a rule goes relative to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Handle(u64),
    Index(u64),
}

/// The object a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Object {
    Table {
        comment: Option<String>,
    },
    Chain {
        name: String,
        base: Option<BaseSpec>,
        comment: Option<String>,
    },
    Rule {
        chain: String,
        position: Option<Position>,
        rule: Option<ParsedRule>,
    },
    Set {
        name: String,
        is_map: bool,
        decl: Option<SetDecl>,
    },
    Element {
        set: String,
        /// The tokens between the braces; parsed once the set's type is known.
        raw: Vec<Token>,
        /// The closing brace (end place for errors).
        close: Token,
    },
    Ruleset,
}

/// One command with its table and its place in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub verb: Verb,
    pub family: Family,
    pub table: String,
    /// `delete … handle N` (tables, chains, sets).
    pub handle: Option<u64>,
    pub object: Object,
    /// The token that names the object (for error places).
    pub at: Token,
}

/// Parse a whole script.
pub(crate) fn parse_script(text: &str) -> Result<Vec<Command>, NftError> {
    let toks = super::lexer::tokenize(text)?;
    let (end_line, end_col) = text
        .lines()
        .enumerate()
        .last()
        .map_or((1, 1), |(i, l)| (i + 1, l.chars().count() + 1));
    let mut c = Cursor::new(&toks, end_line, end_col);
    let mut out = Vec::new();
    loop {
        while c.eat_kind(TokKind::Newline) || c.eat_kind(TokKind::Semi) {}
        let Some(t) = c.next() else { break };
        if t.kind != TokKind::Word {
            return Err(t.err(ErrorKind::unexpected(&t.text, "a command")));
        }
        let verb = match t.text.as_str() {
            "add" => Verb::Add,
            "create" => Verb::Create,
            "insert" => Verb::Insert,
            "replace" => Verb::Replace,
            "delete" => Verb::Delete,
            "destroy" => Verb::Destroy,
            "flush" => Verb::Flush,
            "table" => {
                parse_table_block(&mut c, t, &mut out)?;
                end_of_command(&mut c)?;
                continue;
            }
            "define" | "include" | "list" | "reset" | "rename" | "monitor" | "describe"
            | "export" | "import" | "get" => {
                return Err(t.err(ErrorKind::unsupported(
                    &t.text,
                    "only add, create, insert, replace, delete, destroy and flush commands and table blocks are modelled (knftables emits no others); listings go through Ruleset::list",
                )))
            }
            _ => return Err(t.err(ErrorKind::unexpected(&t.text, "a command"))),
        };
        parse_command(&mut c, verb, &mut out)?;
        end_of_command(&mut c)?;
    }
    Ok(out)
}

fn end_of_command(c: &mut Cursor) -> Result<(), NftError> {
    match c.peek() {
        None => Ok(()),
        Some(t) if t.ends_command() => Ok(()),
        Some(_) => Err(c.expected("end of command (newline or `;`)")),
    }
}

fn family_and_table<'a>(c: &mut Cursor<'a>) -> Result<(Family, &'a Token), NftError> {
    let first = c.name("a family or table name")?;
    if first.kind == TokKind::Word
        && c.peek()
            .is_some_and(|n| n.kind == TokKind::Word || n.kind == TokKind::Str)
    {
        if let Some(f) = Family::from_name(&first.text) {
            return Ok((f, c.name("a table name")?));
        }
        if Family::is_other_family(&first.text) {
            return Err(first.err(ErrorKind::unsupported(
                &first.text,
                "only the ip, ip6 and inet families are modelled",
            )));
        }
    }
    Ok((Family::Ip, first))
}

fn handle_number(c: &mut Cursor) -> Result<u64, NftError> {
    let t = c.word("a handle number")?;
    t.text
        .parse()
        .map_err(|_| t.err(ErrorKind::bad("handle", &t.text, "expected a number")))
}

fn object_name(
    c: &mut Cursor,
    what: &'static str,
    expected: &'static str,
) -> Result<(String, Token), NftError> {
    let t = c.name(expected)?;
    check_name(what, &t.text).map_err(|k| t.err(k))?;
    Ok((t.text.clone(), t.clone()))
}

fn parse_command(c: &mut Cursor, verb: Verb, out: &mut Vec<Command>) -> Result<(), NftError> {
    let obj = c.word("table, chain, rule, set, map, element or ruleset")?;
    let by_handle =
        |c: &Cursor| c.peek_is("handle") && matches!(verb, Verb::Delete | Verb::Destroy);
    match obj.text.as_str() {
        "ruleset" if verb == Verb::Flush => {
            out.push(Command {
                verb,
                family: Family::Ip,
                table: String::new(),
                handle: None,
                object: Object::Ruleset,
                at: obj.clone(),
            });
            Ok(())
        }
        "table" => {
            let first = c.name("a family or table name")?;
            let (family, name) = if c.peek_is("handle") && Family::from_name(&first.text).is_some()
            {
                (Family::from_name(&first.text).unwrap_or(Family::Ip), first)
            } else if first.kind == TokKind::Word
                && Family::from_name(&first.text).is_some()
                && c.peek()
                    .is_some_and(|n| matches!(n.kind, TokKind::Word | TokKind::Str))
            {
                (
                    Family::from_name(&first.text).unwrap_or(Family::Ip),
                    c.name("a table name")?,
                )
            } else {
                (Family::Ip, first)
            };
            let mut handle = None;
            if name.is("handle") && matches!(verb, Verb::Delete | Verb::Destroy) {
                handle = Some(handle_number(c)?);
            } else {
                check_name("table", &name.text).map_err(|k| name.err(k))?;
            }
            let mut comment = None;
            if matches!(verb, Verb::Add | Verb::Create) && c.eat_kind(TokKind::LBrace) {
                let (cm, chains, sets) = table_body(c, family, &name.text)?;
                if let Some(at) = chains
                    .first()
                    .map(|b| &b.at)
                    .or(sets.first().map(|s| &s.at))
                {
                    return Err(at.err(ErrorKind::unsupported(
                        &at.text,
                        "declare chains and sets with the table block syntax (`table ip t { … }`) or separate add commands",
                    )));
                }
                comment = cm;
            }
            out.push(Command {
                verb,
                family,
                table: if handle.is_some() {
                    String::new()
                } else {
                    name.text.clone()
                },
                handle,
                object: Object::Table { comment },
                at: name.clone(),
            });
            Ok(())
        }
        "chain" => {
            let (family, table) = family_and_table(c)?;
            let (name, at, handle) = if by_handle(c) {
                c.next();
                let h = handle_number(c)?;
                (String::new(), table.clone(), Some(h))
            } else {
                let (n, t) = object_name(c, "chain", "a chain name")?;
                (n, t, None)
            };
            let (mut base, mut comment) = (None, None);
            if matches!(verb, Verb::Add | Verb::Create) && c.eat_kind(TokKind::LBrace) {
                (base, comment) = chain_body(c)?;
            }
            out.push(Command {
                verb,
                family,
                table: table.text.clone(),
                handle,
                object: Object::Chain {
                    name,
                    base,
                    comment,
                },
                at,
            });
            Ok(())
        }
        "rule" => {
            let (family, table) = family_and_table(c)?;
            let (chain, at) = object_name(c, "chain", "a chain name")?;
            let mut position = None;
            for (kw, is_handle) in [("handle", true), ("position", true), ("index", false)] {
                if c.eat(kw) {
                    let n = handle_number(c)?;
                    position = Some(if is_handle {
                        Position::Handle(n)
                    } else {
                        Position::Index(n)
                    });
                    break;
                }
            }
            let rule = match verb {
                Verb::Delete | Verb::Destroy => None,
                Verb::Flush | Verb::Create => {
                    return Err(obj.err(ErrorKind::invalid(
                        "rule",
                        "rules are added, inserted, replaced or deleted",
                    )))
                }
                _ => Some(parse_rule(c, family)?),
            };
            if matches!(verb, Verb::Delete | Verb::Destroy | Verb::Replace)
                && !matches!(position, Some(Position::Handle(_)))
            {
                return Err(c.expected("`handle N` (rules are deleted and replaced by handle)"));
            }
            out.push(Command {
                verb,
                family,
                table: table.text.clone(),
                handle: None,
                object: Object::Rule {
                    chain,
                    position,
                    rule,
                },
                at,
            });
            Ok(())
        }
        "set" | "map" => {
            let is_map = obj.text == "map";
            let (family, table) = family_and_table(c)?;
            let (name, at, handle) = if by_handle(c) {
                c.next();
                let h = handle_number(c)?;
                (String::new(), table.clone(), Some(h))
            } else {
                let (n, t) = object_name(c, "set", "a set name")?;
                (n, t, None)
            };
            let mut decl = None;
            if matches!(verb, Verb::Add | Verb::Create) {
                c.expect_kind(TokKind::LBrace, "`{` and the set declaration")?;
                decl = Some(set_body(c, is_map, &at)?);
            }
            out.push(Command {
                verb,
                family,
                table: table.text.clone(),
                handle,
                object: Object::Set { name, is_map, decl },
                at,
            });
            Ok(())
        }
        "element" => {
            let (family, table) = family_and_table(c)?;
            let (set, at) = object_name(c, "set", "a set or map name")?;
            if matches!(verb, Verb::Insert | Verb::Replace | Verb::Flush) {
                return Err(obj.err(ErrorKind::invalid(
                    "element",
                    "elements are added, created, deleted or destroyed",
                )));
            }
            c.expect_kind(TokKind::LBrace, "`{` and the elements")?;
            // The set's key type is needed to parse values; `apply` resolves
            // it, so keep the raw tokens until then.
            let (raw, close) = raw_elements(c)?;
            out.push(Command {
                verb,
                family,
                table: table.text.clone(),
                handle: None,
                object: Object::Element { set, raw, close },
                at,
            });
            Ok(())
        }
        _ => Err(obj.err(ErrorKind::unexpected(
            &obj.text,
            "table, chain, rule, set, map, element or ruleset",
        ))),
    }
}

/// A pending chain block inside a table block.
struct ChainBlock {
    at: Token,
    name: String,
    base: Option<BaseSpec>,
    comment: Option<String>,
    rules: Vec<(ParsedRule, Token)>,
}

/// What a table body holds.
type TableBody = (Option<String>, Vec<ChainBlock>, Vec<Command>);

/// Parse `{ … }` of a table: its comment, chain blocks and set commands.
fn table_body(c: &mut Cursor, family: Family, table: &str) -> Result<TableBody, NftError> {
    let mut comment = None;
    let mut chains = Vec::new();
    let mut sets: Vec<Command> = Vec::new();
    loop {
        skip_separators(c);
        if c.eat_kind(TokKind::RBrace) {
            break;
        }
        let t = c.word("comment, chain, set or map")?;
        match t.text.as_str() {
            "comment" => {
                let s = c.expect_kind(TokKind::Str, "a quoted comment")?;
                check_comment(&s.text).map_err(|k| s.err(k))?;
                comment = Some(s.text.clone());
            }
            "chain" => {
                let (name, at) = object_name(c, "chain", "a chain name")?;
                c.expect_kind(TokKind::LBrace, "`{`")?;
                let mut block = ChainBlock {
                    at,
                    name,
                    base: None,
                    comment: None,
                    rules: Vec::new(),
                };
                loop {
                    skip_separators(c);
                    if c.peek_kind(TokKind::RBrace) || c.peek_is("type") || c.peek_is("comment") {
                        if c.eat_kind(TokKind::RBrace) {
                            break;
                        }
                        let (b, cm) = chain_clause(c)?;
                        if b.is_some() {
                            block.base = b;
                        }
                        if cm.is_some() {
                            block.comment = cm;
                        }
                        continue;
                    }
                    let at = c.peek().cloned().ok_or_else(|| c.expected("`}`"))?;
                    block.rules.push((parse_rule(c, family)?, at));
                }
                chains.push(block);
            }
            "set" | "map" => {
                let (name, at) = object_name(c, "set", "a set name")?;
                c.expect_kind(TokKind::LBrace, "`{`")?;
                let decl = set_body(c, t.text == "map", &at)?;
                sets.push(Command {
                    verb: Verb::Add,
                    family,
                    table: table.to_string(),
                    handle: None,
                    object: Object::Set {
                        name,
                        is_map: t.text == "map",
                        decl: Some(decl),
                    },
                    at,
                });
            }
            "flags" => {
                return Err(t.err(ErrorKind::unsupported(
                    "flags",
                    "table flags (dormant) are not modelled",
                )))
            }
            _ => return Err(t.err(ErrorKind::unexpected(&t.text, "comment, chain, set or map"))),
        }
    }
    Ok((comment, chains, sets))
}

/// `table FAMILY NAME { … }` at top level: add the table, then its chains,
/// its sets (with elements), then its rules.
fn parse_table_block(c: &mut Cursor, t: &Token, out: &mut Vec<Command>) -> Result<(), NftError> {
    let (family, name) = family_and_table(c)?;
    check_name("table", &name.text).map_err(|k| name.err(k))?;
    c.expect_kind(TokKind::LBrace, "`{`")?;
    let (comment, chains, sets) = table_body(c, family, &name.text)?;
    let mk = |object, at: &Token| Command {
        verb: Verb::Add,
        family,
        table: name.text.clone(),
        handle: None,
        object,
        at: at.clone(),
    };
    out.push(mk(Object::Table { comment }, t));
    for ch in &chains {
        out.push(mk(
            Object::Chain {
                name: ch.name.clone(),
                base: ch.base.clone(),
                comment: ch.comment.clone(),
            },
            &ch.at,
        ));
    }
    out.extend(sets);
    for ch in chains {
        for (rule, at) in ch.rules {
            out.push(mk(
                Object::Rule {
                    chain: ch.name.clone(),
                    position: None,
                    rule: Some(rule),
                },
                &at,
            ));
        }
    }
    Ok(())
}
