//! Value syntax of match options: TCP flag lists, ICMP type names and
//! numbers, `value[/mask]` marks, address-type and conntrack-state lists.
//!
//! Models: the parsers of libxt_tcp, libxt_icmp/libip6t_icmp6, libxt_mark,
//! libxt_addrtype and libxt_conntrack/libxt_state, case-insensitive where
//! iptables is.
//!
//! Must never: accept a name or number iptables would refuse.
//!
//! Error contract: [`ErrorKind::BadValue`] naming the option and the value.

use super::error::ErrorKind;
use super::ext_common::parse_u32;
use super::matches::{AddrTypes, CtStates, IcmpKind, ADDR_TYPES, CT_STATES, TCP_FLAGS};

pub(crate) fn parse_tcp_flags(text: &str) -> Result<u8, ErrorKind> {
    let mut bits = 0u8;
    for name in text.split(',') {
        bits |= match name.to_ascii_uppercase().as_str() {
            "ALL" => 0x3f,
            "NONE" => 0,
            upper => TCP_FLAGS
                .iter()
                .find(|(n, _)| *n == upper)
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    ErrorKind::bad_value(
                        "--tcp-flags",
                        text,
                        "flags are FIN,SYN,RST,PSH,ACK,URG,ALL,NONE",
                    )
                })?,
        };
    }
    Ok(bits)
}

const ICMP_NAMES: &[(&str, u8, Option<u8>)] = &[
    ("echo-reply", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("echo-request", 8, None),
    ("time-exceeded", 11, None),
    ("parameter-problem", 12, None),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
];
const ICMP6_NAMES: &[(&str, u8, Option<u8>)] = &[
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("port-unreachable", 1, Some(4)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("parameter-problem", 4, None),
    ("echo-request", 128, None),
    ("echo-reply", 129, None),
    ("router-solicitation", 133, None),
    ("router-advertisement", 134, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-solicitation", 135, None),
    ("neighbour-advertisement", 136, None),
    ("neighbor-advertisement", 136, None),
];

pub(crate) fn parse_icmp_type(option: &str, text: &str, v6: bool) -> Result<IcmpKind, ErrorKind> {
    if text == "any" && !v6 {
        return Ok(IcmpKind::Any);
    }
    let names = if v6 { ICMP6_NAMES } else { ICMP_NAMES };
    if let Some((_, ty, code)) = names.iter().find(|(n, _, _)| *n == text) {
        let codes = code.map_or((0, 255), |c| (c, c));
        return Ok(IcmpKind::Type { ty: *ty, codes });
    }
    let bad = || {
        ErrorKind::bad_value(
            option,
            text,
            "expected TYPE, TYPE/CODE or a known ICMP type name",
        )
    };
    let (ty, code) = match text.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (text, None),
    };
    let ty: u8 = ty.parse().map_err(|_| bad())?;
    let codes = match code {
        Some(c) => {
            let c: u8 = c.parse().map_err(|_| bad())?;
            (c, c)
        }
        None => (0, 255),
    };
    Ok(IcmpKind::Type { ty, codes })
}

/// Parse `value[/mask]` as xtables does (decimal, `0x` hex or `0` octal).
pub(crate) fn parse_mark(option: &str, text: &str) -> Result<(u32, u32), ErrorKind> {
    let (v, m) = match text.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (text, None),
    };
    let value = parse_u32(option, v, text)?;
    let mask = match m {
        Some(m) => parse_u32(option, m, text)?,
        None => u32::MAX,
    };
    Ok((value, mask))
}

pub(crate) fn parse_addr_types(option: &str, text: &str) -> Result<AddrTypes, ErrorKind> {
    let mut bits = 0u16;
    for name in text.split(',') {
        let upper = name.to_ascii_uppercase();
        let i = ADDR_TYPES.iter().position(|n| *n == upper).ok_or_else(|| {
            ErrorKind::bad_value(
                option,
                text,
                "address types are LOCAL, UNICAST, BROADCAST, ... (comma list)",
            )
        })?;
        bits |= 1 << i;
    }
    Ok(AddrTypes(bits))
}

pub(crate) fn parse_states(
    option: &str,
    text: &str,
    conntrack: bool,
) -> Result<CtStates, ErrorKind> {
    let mut bits = 0u8;
    for name in text.split(',') {
        let upper = name.to_ascii_uppercase();
        let i = CT_STATES
            .iter()
            .position(|n| *n == upper)
            .filter(|i| conntrack || *i < 5)
            .ok_or_else(|| {
                ErrorKind::bad_value(
                    option,
                    text,
                    "states are INVALID, NEW, RELATED, ESTABLISHED, UNTRACKED (and SNAT, DNAT for --ctstate)",
                )
            })?;
        bits |= 1 << i;
    }
    Ok(CtStates(bits))
}
