//! IP and CIDR text read the way kube-proxy reads it (`netutils.
//! ParseIPSloppy` / `ParseCIDRSloppy`): IPv4 octets and prefixes may carry
//! leading zeros, read as decimal, because old API objects can still hold
//! such values. It must never read a leading zero as octal, nor accept
//! what Go's sloppy parser refuses; a refusal is `None`, and the caller
//! names the field.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses an IP the way kube-proxy does (`netutils.ParseIPSloppy`): IPv4
/// octets may carry leading zeros, read as decimal (`010.1.1.1` is
/// 10.1.1.1). Old API objects can still hold such values.
pub fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p
            .trim_start_matches('0')
            .parse::<u8>()
            .or_else(|e| {
                if p.bytes().all(|b| b == b'0') {
                    Ok(0)
                } else {
                    Err(e)
                }
            })
            .ok()?;
    }
    Some(IpAddr::from(octets))
}

/// Parses a CIDR like `netutils.ParseCIDRSloppy` and masks it to its
/// network address (`10.1.2.3/8` → `10.0.0.0/8`).
pub fn parse_cidr_sloppy(text: &str) -> Option<IpNet> {
    let (ip, prefix) = text.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix
        .trim_start_matches('0')
        .parse()
        .or_else(|e| {
            if prefix.bytes().all(|b| b == b'0') {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .ok()?;
    IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_decimal_like_upstream() {
        assert_eq!(
            parse_ip_sloppy("172.30.0.041"),
            Some("172.30.0.41".parse().unwrap())
        );
        assert_eq!(
            parse_cidr_sloppy("203.0.113.000/025"),
            Some("203.0.113.0/25".parse().unwrap())
        );
        assert_eq!(parse_ip_sloppy("1.2.3.256"), None);
        assert_eq!(parse_ip_sloppy("1.2.3"), None);
    }
}
