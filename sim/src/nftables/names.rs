//! Symbolic names nft reads and prints for numbers: IP protocols (as the
//! reference system's `/etc/protocols` names them), conntrack states and
//! statuses, route address types.
//!
//! Models: fixed tables — the simulator never reads `/etc/protocols` or any
//! other host file, so listings do not depend on the host.
//!
//! Must never: consult the host.
//!
//! Error contract: lookups return `Option`.

use std::fmt;

/// Protocol numbers and names of the reference system's `/etc/protocols`.
pub(crate) const PROTOCOLS: &[(u8, &str)] = &[
    (0, "ip"),
    (1, "icmp"),
    (2, "igmp"),
    (3, "ggp"),
    (4, "ipencap"),
    (5, "st"),
    (6, "tcp"),
    (8, "egp"),
    (9, "igp"),
    (12, "pup"),
    (17, "udp"),
    (20, "hmp"),
    (22, "xns-idp"),
    (27, "rdp"),
    (29, "iso-tp4"),
    (33, "dccp"),
    (36, "xtp"),
    (37, "ddp"),
    (38, "idpr-cmtp"),
    (41, "ipv6"),
    (43, "ipv6-route"),
    (44, "ipv6-frag"),
    (45, "idrp"),
    (46, "rsvp"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (57, "skip"),
    (58, "ipv6-icmp"),
    (59, "ipv6-nonxt"),
    (60, "ipv6-opts"),
    (73, "rspf"),
    (81, "vmtp"),
    (88, "eigrp"),
    (89, "ospf"),
    (93, "ax.25"),
    (94, "ipip"),
    (97, "etherip"),
    (98, "encap"),
    (103, "pim"),
    (108, "ipcomp"),
    (112, "vrrp"),
    (115, "l2tp"),
    (124, "isis"),
    (132, "sctp"),
    (133, "fc"),
    (135, "mobility-header"),
    (136, "udplite"),
    (137, "mpls-in-ip"),
    (138, "manet"),
    (139, "hip"),
    (140, "shim6"),
    (141, "wesp"),
    (142, "rohc"),
    (143, "ethernet"),
];

/// Protocol numbers of the transport headers this model knows.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// SCTP.
pub const PROTO_SCTP: u8 = 132;

pub(crate) const CT_STATES: &[(u32, &str)] = &[
    (1, "invalid"),
    (2, "established"),
    (4, "related"),
    (8, "new"),
    (64, "untracked"),
];
pub(crate) const CT_STATUSES: &[(u32, &str)] = &[
    (1, "expected"),
    (2, "seen-reply"),
    (4, "assured"),
    (8, "confirmed"),
    (16, "snat"),
    (32, "dnat"),
    (512, "dying"),
];
pub(crate) const FIB_TYPES: &[(u32, &str)] = &[
    (0, "unspec"),
    (1, "unicast"),
    (2, "local"),
    (3, "broadcast"),
    (4, "anycast"),
    (5, "multicast"),
    (6, "blackhole"),
    (7, "unreachable"),
    (8, "prohibit"),
];

/// The name of protocol `n` as `nft list` prints it.
pub fn proto_name(n: u8) -> Option<&'static str> {
    PROTOCOLS.iter().find(|(p, _)| *p == n).map(|(_, s)| *s)
}

pub(crate) fn flag(table: &[(u32, &str)], token: &str) -> Option<u32> {
    table.iter().find(|(_, s)| *s == token).map(|(n, _)| *n)
}

pub(crate) fn write_flags(
    f: &mut fmt::Formatter<'_>,
    table: &[(u32, &str)],
    bits: u32,
) -> fmt::Result {
    let mut first = true;
    let mut rest = bits;
    for (bit, name) in table {
        if bits & bit != 0 {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
            rest &= !bit;
        }
    }
    if rest != 0 || first {
        if !first {
            f.write_str(",")?;
        }
        write!(f, "0x{rest:x}")?;
    }
    Ok(())
}
