//! Time values as nft writes them: `10800s`, `3h`, `1d1h1m1s`, `996ms`.
//!
//! Models: parsing of set timeouts, element timeouts and `expires` (a
//! number with units d/h/m/s/ms, or a bare number of seconds) into
//! milliseconds, and nft 1.0.6's `time_print` (each non-zero unit, largest
//! first, no separators).
//!
//! Must never: read a clock; durations are plain numbers here.
//!
//! Error contract: [`parse`] returns [`ErrorKind::BadValue`] naming the token.

use super::error::ErrorKind;

/// The kernel keeps timeouts in jiffies; the reference kernel runs at
/// `CONFIG_HZ=250`, so timeouts are truncated to multiples of 4 ms (a
/// `timeout 1003ms` lists as `1s`).
pub const KERNEL_TICK_MS: u64 = 4;

/// A timeout as the kernel stores it (truncated to whole ticks).
pub(crate) fn to_ticks(ms: u64) -> u64 {
    ms - ms % KERNEL_TICK_MS
}

/// Parse a duration into milliseconds.
pub(crate) fn parse(token: &str) -> Result<u64, ErrorKind> {
    let bad = || {
        ErrorKind::bad(
            "time",
            token,
            "expected a duration like 10800s, 3h or 1m30s",
        )
    };
    if let Ok(secs) = token.parse::<u64>() {
        return secs.checked_mul(1000).ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut rest = token;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('d') {
            (86_400_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('s') {
            (1000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Print milliseconds the way `nft list` does.
pub(crate) fn format(ms: u64) -> String {
    let mut out = String::new();
    let mut rest = ms;
    for (unit, name) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
        (1, "ms"),
    ] {
        let n = rest / unit;
        rest %= unit;
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nft_forms() {
        assert_eq!(parse("10800s").unwrap(), 10_800_000);
        assert_eq!(format(10_800_000), "3h");
        assert_eq!(format(10_801_000), "3h1s");
        assert_eq!(format(90_061_001), "1d1h1m1s1ms");
        assert_eq!(parse("1d1h1m992ms").unwrap(), 90_060_992);
        assert_eq!(parse("60").unwrap(), 60_000);
        assert!(parse("3x").is_err());
        assert!(parse("").is_err());
    }
}
