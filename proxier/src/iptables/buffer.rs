//! Line buffers for building an `iptables-restore` payload (upstream's
//! `proxyutil.LineBuffer`).
//!
//! A buffer can be *discarding*: it counts lines but keeps no text. Partial
//! syncs write the rules of unchanged services into a discarding buffer so
//! the rule counts stay right while the payload stays small.

use std::fmt::Write;

#[derive(Debug, Clone, Default)]
pub struct LineBuffer {
    text: String,
    lines: usize,
    discard: bool,
}

impl LineBuffer {
    /// A buffer that only counts.
    pub fn discarding() -> Self {
        LineBuffer {
            discard: true,
            ..LineBuffer::default()
        }
    }

    /// Appends one line built from format arguments.
    pub fn line_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        self.lines += 1;
        if !self.discard {
            self.text
                .write_fmt(args)
                .expect("writing to a String cannot fail");
            self.text.push('\n');
        }
    }

    /// `:CHAIN - [0:0]`, upstream's `MakeChainLine`.
    pub fn chain(&mut self, chain: &str) {
        self.line_fmt(format_args!(":{chain} - [0:0]"));
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// `writeln!`-style helper: `line!(buf, "-A {} -j {}", a, b)`.
macro_rules! line {
    ($buf:expr, $($arg:tt)*) => {
        $buf.line_fmt(format_args!($($arg)*))
    };
}
pub(crate) use line;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarding_buffer_counts_without_text() {
        let mut b = LineBuffer::discarding();
        b.chain("KUBE-SVC-X");
        line!(b, "-A {} -j {}", "KUBE-SVC-X", "KUBE-SEP-Y");
        assert_eq!(b.lines(), 2);
        assert_eq!(b.text(), "");
        let mut k = LineBuffer::default();
        k.chain("KUBE-SVC-X");
        assert_eq!(k.text(), ":KUBE-SVC-X - [0:0]\n");
    }
}
