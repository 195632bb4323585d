//! Turning a refused `iptables-restore` into an error that names the
//! payload line.
//!
//! The tools say where they stopped in three ways (iptables 1.8):
//! `iptables-restore: line 90 failed` (legacy, at COMMIT, when the kernel
//! refused the table), `Error occurred at line: 3` (either variant, when a
//! rule did not parse), and `line 87: RULE_APPEND failed (…)` (nft, when the
//! kernel refused a rule; one such line per refused rule). The first number
//! found wins. When the text that was restored is not the caller's payload
//! (a merged flush-mode restore, see `merge.rs`), a line map translates the
//! number back.

use crate::dataplane::DataplaneError;

/// The first line number the tool's message names.
pub fn failed_line(message: &str) -> Option<usize> {
    for line in message.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Error occurred at line: ") {
            if let Some(n) = leading_number(rest) {
                return Some(n);
            }
        }
        if let Some(rest) = line.strip_prefix("line ") {
            // `line 87: RULE_APPEND failed …`
            if let Some(n) = leading_number(rest) {
                return Some(n);
            }
        }
        // `iptables-restore: line 90 failed`, possibly after a prefix.
        let mut search = line;
        while let Some(i) = search.find("line ") {
            let after = &search[i + 5..];
            if let Some(n) = leading_number(after) {
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                if after[digits..].starts_with(" failed") {
                    return Some(n);
                }
            }
            search = after;
        }
    }
    None
}

fn leading_number(text: &str) -> Option<usize> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The error for a refused restore. `restored` is the text the tool was
/// given; `line_map[i]` is the payload line (1-based) that restored line
/// `i + 1` came from, if the two differ.
pub fn restore_error(
    operation: String,
    complaint: &str,
    restored: &str,
    payload: &str,
    line_map: Option<&[Option<usize>]>,
) -> DataplaneError {
    let Some(n) = failed_line(complaint) else {
        return DataplaneError::new(operation, complaint);
    };
    let restored_text = restored.lines().nth(n.saturating_sub(1)).unwrap_or("");
    let payload_line = match line_map {
        None => Some(n),
        Some(map) => map.get(n.saturating_sub(1)).copied().flatten(),
    };
    match payload_line {
        Some(p) => {
            let text = payload.lines().nth(p.saturating_sub(1)).unwrap_or("");
            DataplaneError {
                operation,
                message: format!("line {p} `{text}` was refused: {complaint}"),
                line: Some(p),
            }
        }
        None => DataplaneError {
            operation,
            message: format!(
                "the kernel refused a rule kpsim kept from the current table (restored line {n} `{restored_text}`): {complaint}"
            ),
            line: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_in_every_format_the_tools_print() {
        assert_eq!(failed_line("iptables-restore: line 90 failed\n"), Some(90));
        assert_eq!(
            failed_line(
                "iptables-restore v1.8.9 (legacy): Couldn't load match `bogus':No such file or directory\n\nError occurred at line: 3\nTry `iptables-restore -h'"
            ),
            Some(3)
        );
        assert_eq!(
            failed_line(
                "iptables-nft-restore v1.8.9 (nf_tables): \nline 87: RULE_APPEND failed (No such file or directory): rule in chain KUBE-FORWARD\nline 90: RULE_APPEND failed"
            ),
            Some(87)
        );
        assert_eq!(
            failed_line("iptables-nft-restore: line 3 failed: No chain/target/match by that name."),
            Some(3)
        );
        assert_eq!(failed_line("something else entirely"), None);
    }

    #[test]
    fn names_the_payload_line_through_the_map() {
        let payload = "*nat\n:KUBE-X - [0:0]\n-A KUBE-X -m bogus -j RETURN\nCOMMIT\n";
        let err = restore_error(
            "iptables-restore".into(),
            "Error occurred at line: 3",
            payload,
            payload,
            None,
        );
        assert_eq!(err.line, Some(3));
        assert!(
            err.message.contains("`-A KUBE-X -m bogus -j RETURN`"),
            "{err}"
        );

        let restored = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-X - [0:0]\n-A KUBE-X -m bogus -j RETURN\nCOMMIT\n";
        let map = [Some(1), None, Some(2), Some(3), Some(4)];
        let err = restore_error("r".into(), "line 4 failed", restored, payload, Some(&map));
        assert_eq!(err.line, Some(3));
        let err = restore_error("r".into(), "line 2 failed", restored, payload, Some(&map));
        assert_eq!(err.line, None);
        assert!(err.message.contains(":PREROUTING ACCEPT"), "{err}");
    }
}
