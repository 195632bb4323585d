//! The `iptables-restore` input format, parsed into table blocks of typed
//! commands — the first, pure stage of a restore.
//!
//! Models: `*table` … `COMMIT` blocks; `:CHAIN POLICY [packets:bytes]`
//! lines (`-` as the policy of a user chain); command lines `-A`, `-I [n]`,
//! `-D n|rule`, `-R n`, `-N`, `-X [chain]`, `-F [chain]`, `-Z [chain]`,
//! `-P chain policy`, `-E old new` (long forms too), each optionally led by
//! `[packets:bytes]`; `#` comment lines and empty lines.
//!
//! Must never: look at the current ruleset (that is `apply`'s job), or skip
//! a line it does not understand.
//!
//! Error contract: the first bad line is a [`RestoreError`] with its 1-based
//! line number. Deliberately stricter than iptables-restore: malformed
//! `[packets:bytes]` and trailing words on a chain line are errors even
//! without `--counters`; chain names that are target names are refused.

use super::addr::Family;
use super::error::{ErrorKind, RestoreError};
use super::ext_target::is_target_name;
use super::parse_rule::parse_rule;
use super::quoting::{tokenize, Token};
use super::rule::Rule;
use super::ruleset::{Counters, Policy, TableId, Variant};

/// One `*table` … `COMMIT` block.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub table: TableId,
    pub commands: Vec<(usize, Command)>,
    pub commit_line: usize,
}

/// One line's worth of change to a table.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// `:CHAIN POLICY [p:b]`; `policy` is `None` for `-`.
    Declare {
        chain: String,
        policy: Option<Policy>,
        counters: Counters,
    },
    Append {
        chain: String,
        rule: Rule,
        counters: Option<Counters>,
    },
    /// 1-based position.
    Insert {
        chain: String,
        index: usize,
        rule: Rule,
        counters: Option<Counters>,
    },
    Replace {
        chain: String,
        index: usize,
        rule: Rule,
        counters: Option<Counters>,
    },
    DeleteAt {
        chain: String,
        index: usize,
    },
    Delete {
        chain: String,
        rule: Rule,
    },
    NewChain(String),
    DeleteChain(Option<String>),
    Flush(Option<String>),
    Zero(Option<String>),
    SetPolicy {
        chain: String,
        policy: Policy,
    },
    Rename {
        old: String,
        new: String,
    },
}

/// Parse a whole payload.
pub(crate) fn parse_script(
    text: &str,
    family: Family,
    variant: Variant,
) -> Result<Vec<Block>, RestoreError> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    let mut last = 0;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        last = line_no;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if open.is_some() {
                return Err(unexpected(
                    line,
                    "a new table while the previous one is open",
                    "end the block with COMMIT first",
                )
                .at(line_no));
            }
            let name = name.split_whitespace().next().unwrap_or("");
            let table = TableId::from_name(name).ok_or_else(|| {
                ErrorKind::UnknownTable {
                    token: name.to_string(),
                }
                .at(line_no)
            })?;
            open = Some(Block {
                table,
                commands: Vec::new(),
                commit_line: 0,
            });
            continue;
        }
        let Some(block) = open.as_mut() else {
            let token = line.split_whitespace().next().unwrap_or(line);
            return Err(unexpected(
                token,
                "a line outside a table block",
                "start the block with `*filter`, `*nat`, ...",
            )
            .at(line_no));
        };
        if line == "COMMIT" {
            let mut b = open.take().expect("checked above");
            b.commit_line = line_no;
            blocks.push(b);
            continue;
        }
        let command = if let Some(rest) = line.strip_prefix(':') {
            parse_chain_line(rest)
        } else {
            parse_command_line(line, block.table, family, variant)
        }
        .map_err(|k| k.at(line_no))?;
        block.commands.push((line_no, command));
    }
    if let Some(b) = open {
        return Err(ErrorKind::MissingCommit {
            table: b.table.name().to_string(),
        }
        .at(last + 1));
    }
    Ok(blocks)
}

fn unexpected(token: &str, reason: &'static str, hint: &'static str) -> ErrorKind {
    ErrorKind::Unexpected {
        token: token.to_string(),
        reason,
        hint,
    }
}

/// Check a new chain name as iptables does (and refuse target names).
pub(crate) fn check_chain_name(name: &str) -> Result<(), ErrorKind> {
    let bad = |reason| {
        Err(ErrorKind::InvalidChainName {
            token: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name.len() > 28 {
        return bad("chain names are at most 28 bytes");
    }
    if name.starts_with('-') || name.starts_with('!') {
        return bad("chain names may not start with `-` or `!`");
    }
    if name.chars().any(char::is_whitespace) {
        return bad("chain names may not contain spaces");
    }
    if is_target_name(name) {
        return bad("chain names may not clash with target names");
    }
    Ok(())
}

fn parse_chain_line(rest: &str) -> Result<Command, ErrorKind> {
    let mut words = rest.split_whitespace();
    let chain = words.next().unwrap_or("");
    let policy_text = words.next().ok_or_else(|| ErrorKind::MissingValue {
        token: format!(":{chain}"),
    })?;
    let counters = match words.next() {
        Some(c) => Counters::parse_bracketed(c)?,
        None => Counters::default(),
    };
    if let Some(extra) = words.next() {
        return Err(unexpected(
            extra,
            "trailing text on a chain line",
            "a chain line is `:NAME POLICY [packets:bytes]`",
        ));
    }
    let policy = match policy_text {
        "-" => None,
        p => Some(Policy::parse(p)?),
    };
    if !matches!(
        chain,
        "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
    ) {
        check_chain_name(chain)?;
    }
    Ok(Command::Declare {
        chain: chain.to_string(),
        policy,
        counters,
    })
}

fn parse_command_line(
    line: &str,
    table: TableId,
    family: Family,
    variant: Variant,
) -> Result<Command, ErrorKind> {
    let mut tokens = tokenize(line)?;
    if tokens.is_empty() {
        return Err(unexpected(
            line,
            "no command specified",
            "remove the blank line or give a command like -A",
        ));
    }
    let mut prefix = None;
    if tokens[0].text.starts_with('[') && !tokens[0].quoted {
        prefix = Some(Counters::parse_bracketed(&tokens[0].text)?);
        tokens.remove(0);
    }
    let Some(cmd) = tokens.first().map(|t| t.text.clone()) else {
        return Err(unexpected(
            line,
            "no command after the counters",
            "write `[p:b] -A CHAIN ...`",
        ));
    };
    let mut args = tokens[1..].iter();
    let mut next_word = |what: &str| -> Result<String, ErrorKind> {
        args.next()
            .map(|t| t.text.clone())
            .ok_or_else(|| ErrorKind::MissingValue {
                token: format!("{cmd} {what}"),
            })
    };
    let chain = |args: &mut dyn FnMut(&str) -> Result<String, ErrorKind>| args("CHAIN");
    let rule_of = |rest: &[Token]| -> Result<(Rule, Option<Counters>), ErrorKind> {
        let parsed = parse_rule(rest, table, family)?;
        Ok((parsed.rule.normalized(variant)?, parsed.counters.or(prefix)))
    };
    let parse_index = |t: &Token| -> Result<usize, ErrorKind> {
        t.text
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                ErrorKind::bad_value(&cmd, &t.text, "invalid rule number (1 is the first rule)")
            })
    };
    let no_more = |rest: &[Token]| -> Result<(), ErrorKind> {
        match rest.first() {
            Some(t) => Err(unexpected(
                &t.text,
                "extra argument",
                "this command takes no rule options",
            )),
            None => Ok(()),
        }
    };
    Ok(match cmd.as_str() {
        "-A" | "--append" => {
            let chain = chain(&mut next_word)?;
            let (rule, counters) = rule_of(&tokens[2..])?;
            Command::Append {
                chain,
                rule,
                counters,
            }
        }
        "-I" | "--insert" | "-R" | "--replace" | "-D" | "--delete" => {
            let chain = chain(&mut next_word)?;
            let num = tokens
                .get(2)
                .filter(|t| !t.text.starts_with('-') && !t.text.starts_with('!'));
            let index = num.map(parse_index).transpose()?;
            let rest = &tokens[if index.is_some() { 3 } else { 2 }..];
            match (cmd.as_str(), index) {
                ("-I" | "--insert", index) => {
                    let (rule, counters) = rule_of(rest)?;
                    Command::Insert {
                        chain,
                        index: index.unwrap_or(1),
                        rule,
                        counters,
                    }
                }
                ("-R" | "--replace", Some(index)) => {
                    let (rule, counters) = rule_of(rest)?;
                    Command::Replace {
                        chain,
                        index,
                        rule,
                        counters,
                    }
                }
                ("-R" | "--replace", None) => {
                    return Err(ErrorKind::MissingValue {
                        token: "-R CHAIN RULENUM".to_string(),
                    })
                }
                (_, Some(index)) => {
                    no_more(rest)?;
                    Command::DeleteAt { chain, index }
                }
                (_, None) => Command::Delete {
                    chain,
                    rule: rule_of(rest)?.0,
                },
            }
        }
        "-N" | "--new-chain" | "--new" => {
            let name = chain(&mut next_word)?;
            no_more(&tokens[2..])?;
            check_chain_name(&name)?;
            Command::NewChain(name)
        }
        "-X" | "--delete-chain" | "-F" | "--flush" | "-Z" | "--zero" => {
            let name = tokens.get(1).map(|t| t.text.clone());
            no_more(tokens.get(2..).unwrap_or(&[]))?;
            match cmd.as_str() {
                "-X" | "--delete-chain" => Command::DeleteChain(name),
                "-F" | "--flush" => Command::Flush(name),
                _ => Command::Zero(name),
            }
        }
        "-P" | "--policy" => {
            let chain = chain(&mut next_word)?;
            let policy = Policy::parse(&next_word("POLICY")?)?;
            no_more(&tokens[3..])?;
            Command::SetPolicy { chain, policy }
        }
        "-E" | "--rename-chain" => {
            let old = chain(&mut next_word)?;
            let new = next_word("NEW-NAME")?;
            no_more(&tokens[3..])?;
            check_chain_name(&new)?;
            Command::Rename { old, new }
        }
        other => return Err(unexpected(
            other,
            "not a restore command",
            "lines start with -A, -I, -D, -R, -N, -X, -F, -Z, -P or -E (commands must come first)",
        )),
    })
}
