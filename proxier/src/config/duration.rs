//! Go `time.Duration` strings, the way Kubernetes config files spell them
//! (`30s`, `1m0s`, `500ms`, `1h30m`, `0`).
//!
//! Parsing follows Go's `time.ParseDuration` for the units Kubernetes uses;
//! formatting follows `Duration.String()` so a configuration prints back the
//! way `kube-proxy --write-config-to` would write it.

use std::time::Duration;

/// Parses a Go duration string. Negative durations are refused (no
/// kube-proxy period may be negative).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("empty duration; write it like 30s, 1m0s or 500ms".into());
    }
    if t.starts_with('-') {
        return Err(format!("{text:?} is negative; durations must be >= 0"));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let mut rest = t;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?} has a number without a unit (ns, us, ms, s, m, h)"))?;
        if number_len == 0 {
            return Err(format!(
                "{text:?} is not a duration; write it like 30s or 1m0s"
            ));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "{text:?} has unknown unit {unit:?}; use ns, us, ms, s, m or h"
                ))
            }
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(format!("{text:?} is not a duration"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("{text:?} is not a duration"))?
        };
        let mut part = whole * unit_nanos;
        let mut scale = unit_nanos;
        for digit in frac.chars() {
            let d = digit
                .to_digit(10)
                .ok_or_else(|| format!("{text:?} is not a duration"))?;
            scale /= 10;
            part += d as u128 * scale;
        }
        total_nanos += part;
        rest = after;
    }
    u64::try_from(total_nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{text:?} is too long"))
}

/// Formats like Go's `Duration.String()`: `30s`, `1m0s`, `1h0m0s`, `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            return format!("{nanos}ns");
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1_000.0, "µs")
        } else {
            (nanos as f64 / 1_000_000.0, "ms")
        };
        return format!("{}{unit}", trim_float(value));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let secs_text = if sub == 0 {
        format!("{secs}")
    } else {
        let frac = format!("{sub:09}");
        format!("{secs}.{}", frac.trim_end_matches('0'))
    };
    if hours > 0 {
        format!("{hours}h{minutes}m{secs_text}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs_text}s")
    } else {
        format!("{secs_text}s")
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1m0s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("24h0m0s").unwrap(), Duration::from_secs(86400));
    }

    #[test]
    fn refuses_bad_durations() {
        for bad in ["", "30", "3x", "-1s", "s", "1..2s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_secs(60)), "1m0s");
        assert_eq!(format(Duration::from_secs(86400)), "24h0m0s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
