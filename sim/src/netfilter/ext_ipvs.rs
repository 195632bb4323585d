//! The `ipvs` and `physdev` matches: their options, how iptables-save
//! prints them, and how they decide for a packet.
//!
//! Models: `xt_ipvs` — `--ipvs` alone tests `skb->ipvs_property` (the
//! packet was handled by IPVS); any other option first requires that
//! property, then looks the packet up in the IPVS connection table the
//! way `conn_out_get` does (the node hands the connection it found in
//! [`IpvsSkb`]) and compares `--vproto` with the packet's protocol and
//! `--vaddr`/`--vport`/`--vmethod` with the connection's virtual address,
//! virtual port and forwarding method; `xt_physdev`'s flag options —
//! `--physdev-is-in` (the packet entered through a bridge port),
//! `--physdev-is-out` and `--physdev-is-bridged` (it leaves through a port
//! of the bridge it came in on) — including the rule that a packet that
//! did not enter through a bridge matches only options given with `!`.
//! Saved as libxt_ipvs and libxt_physdev print them (`--vproto` as a
//! number, `--vaddr` without `/32`; physdev flags in the order in, out,
//! bridged).
//!
//! Not modelled (refused as unknown options): `--vdir`, `--vportctl`,
//! `--physdev-in NAME`, `--physdev-out NAME`.
//!
//! Must never: match an IPVS option for a packet IPVS did not handle.
//!
//! Error contract: parsing returns [`ErrorKind`] naming the option;
//! evaluation cannot fail.

use std::fmt::Write;
use std::net::IpAddr;

use super::addr::{Cidr, Family, Negatable};
use super::error::ErrorKind;
use super::eval::{AddrTypeLookup, IpvsSkb, PacketCtx};
use super::ext_common::{Opt, OptSpec};
use super::l4::{parse_port, Protocol};
use super::matches::neg;

pub(crate) const IPVS: &[OptSpec] = &[
    OptSpec::new(&["--ipvs"], 0, true),
    OptSpec::new(&["--vproto"], 1, true),
    OptSpec::new(&["--vaddr"], 1, true),
    OptSpec::new(&["--vport"], 1, true),
    OptSpec::new(&["--vmethod"], 1, true),
];

pub(crate) const PHYSDEV: &[OptSpec] = &[
    OptSpec::new(&["--physdev-is-in"], 0, true),
    OptSpec::new(&["--physdev-is-out"], 0, true),
    OptSpec::new(&["--physdev-is-bridged"], 0, true),
];

/// An IPVS forwarding method (`--vmethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpvsMethod {
    /// `GATE` (direct routing; printed `ROUTE`).
    Route,
    /// `IPIP` (printed `TUNNEL`).
    Tunnel,
    /// `MASQ`.
    Masq,
}

/// `-m ipvs`: each field is one option, `None` when not given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct IpvsMatch {
    /// `[!] --ipvs`: the value is whether `!` was given.
    pub ipvs: Option<bool>,
    /// `[!] --vproto N`.
    pub vproto: Option<Negatable<u8>>,
    /// `[!] --vaddr ADDR[/MASK]`.
    pub vaddr: Option<Negatable<Cidr>>,
    /// `[!] --vport PORT`.
    pub vport: Option<Negatable<u16>>,
    /// `[!] --vmethod GATE|IPIP|MASQ`.
    pub vmethod: Option<Negatable<IpvsMethod>>,
}

/// `-m physdev` flag options: the value is whether `!` was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PhysdevMatch {
    /// `[!] --physdev-is-in`.
    pub is_in: Option<bool>,
    /// `[!] --physdev-is-out`.
    pub is_out: Option<bool>,
    /// `[!] --physdev-is-bridged`.
    pub is_bridged: Option<bool>,
}

fn get<'a>(opts: &'a [Opt], name: &str) -> Option<&'a Opt> {
    opts.iter().find(|o| o.spec.canonical() == name)
}

/// Build `-m ipvs` from its options (libxt_ipvs's parse and check).
pub(crate) fn parse_ipvs(opts: &[Opt], family: Family) -> Result<IpvsMatch, ErrorKind> {
    let mut m = IpvsMatch {
        ipvs: get(opts, "--ipvs").map(|o| o.negated),
        ..IpvsMatch::default()
    };
    if let Some(o) = get(opts, "--vproto") {
        let text = &o.values[0];
        let proto = Protocol::parse(text)
            .map_err(|_| ErrorKind::bad_value("--vproto", text, "unknown protocol"))?;
        m.vproto = Some(Negatable::new(proto.map_or(0, Protocol::number), o.negated));
    }
    if let Some(o) = get(opts, "--vaddr") {
        m.vaddr = Some(Negatable::new(
            Cidr::parse("--vaddr", &o.values[0], family)?,
            o.negated,
        ));
    }
    if let Some(o) = get(opts, "--vport") {
        m.vport = Some(Negatable::new(
            parse_port("--vport", &o.values[0])?,
            o.negated,
        ));
    }
    if let Some(o) = get(opts, "--vmethod") {
        let method = match o.values[0].to_ascii_uppercase().as_str() {
            "GATE" => IpvsMethod::Route,
            "IPIP" => IpvsMethod::Tunnel,
            "MASQ" => IpvsMethod::Masq,
            _ => {
                return Err(ErrorKind::bad_value(
                    "--vmethod",
                    &o.values[0],
                    "methods are GATE, IPIP and MASQ",
                ))
            }
        };
        m.vmethod = Some(Negatable::new(method, o.negated));
    }
    if m == IpvsMatch::default() {
        return Err(ErrorKind::MissingOption {
            module: "ipvs",
            option: "--ipvs, --vproto, --vaddr, --vport or --vmethod",
        });
    }
    Ok(m)
}

/// Build `-m physdev` from its options.
pub(crate) fn parse_physdev(opts: &[Opt]) -> Result<PhysdevMatch, ErrorKind> {
    let m = PhysdevMatch {
        is_in: get(opts, "--physdev-is-in").map(|o| o.negated),
        is_out: get(opts, "--physdev-is-out").map(|o| o.negated),
        is_bridged: get(opts, "--physdev-is-bridged").map(|o| o.negated),
    };
    if m == PhysdevMatch::default() {
        return Err(ErrorKind::MissingOption {
            module: "physdev",
            option: "--physdev-is-in, --physdev-is-out or --physdev-is-bridged",
        });
    }
    Ok(m)
}

impl IpvsMatch {
    /// Whether only `--ipvs` was given (the kernel's property-only test).
    fn property_only(&self) -> bool {
        self.vproto.is_none()
            && self.vaddr.is_none()
            && self.vport.is_none()
            && self.vmethod.is_none()
    }

    /// libxt_ipvs's save: `--ipvs` only when it is the sole option, then
    /// proto, vaddr, vport, vmethod.
    pub(crate) fn save(&self, out: &mut String) {
        if let (Some(n), true) = (self.ipvs, self.property_only()) {
            neg(out, n);
            out.push_str(" --ipvs");
        }
        if let Some(p) = &self.vproto {
            neg(out, p.negated);
            let _ = write!(out, " --vproto {}", p.value);
        }
        if let Some(a) = &self.vaddr {
            neg(out, a.negated);
            let _ = write!(out, " --vaddr {}", a.value.addr());
            if a.value.prefix() != a.value.family().bits() {
                let _ = write!(out, "/{}", a.value.prefix());
            }
        }
        if let Some(p) = &self.vport {
            neg(out, p.negated);
            let _ = write!(out, " --vport {}", p.value);
        }
        if let Some(m) = &self.vmethod {
            neg(out, m.negated);
            out.push_str(match m.value {
                IpvsMethod::Route => " --vmethod ROUTE",
                IpvsMethod::Tunnel => " --vmethod TUNNEL",
                IpvsMethod::Masq => " --vmethod MASQ",
            });
        }
    }

    /// `ipvs_mt`.
    pub(crate) fn matches(&self, ctx: &PacketCtx<'_>) -> bool {
        if self.property_only() {
            return ctx.ipvs.is_some() != self.ipvs.unwrap_or(false);
        }
        let Some(skb) = &ctx.ipvs else {
            return false;
        };
        if let Some(p) = &self.vproto {
            if !p.holds(ctx.pkt.protocol().number() == p.value) {
                return false;
            }
        }
        let Some(conn) = skb.conn else {
            return false;
        };
        self.vport.is_none_or(|p| p.holds(conn.vport == p.value))
            && self
                .vaddr
                .is_none_or(|a| a.holds(a.value.contains(conn.vaddr)))
            && self.vmethod.is_none_or(|m| m.holds(conn.method == m.value))
    }
}

impl PhysdevMatch {
    /// libxt_physdev's save order.
    pub(crate) fn save(&self, out: &mut String) {
        for (flag, name) in [
            (self.is_in, " --physdev-is-in"),
            (self.is_out, " --physdev-is-out"),
            (self.is_bridged, " --physdev-is-bridged"),
        ] {
            if let Some(n) = flag {
                neg(out, n);
                out.push_str(name);
            }
        }
    }

    /// `physdev_mt`: a packet that entered through a bridge has bridge
    /// info (`physindev`); it has a `physoutdev` only when it leaves
    /// through the same bridge (bridged, not routed).
    pub(crate) fn matches(&self, ctx: &PacketCtx<'_>, addrs: &dyn AddrTypeLookup) -> bool {
        let in_bridge = ctx.in_iface.filter(|i| addrs.is_bridge(i));
        let Some(bridge) = in_bridge else {
            // No bridge info: only options given with `!` match.
            return [self.is_in, self.is_out, self.is_bridged]
                .iter()
                .all(|f| f.is_none_or(|negated| negated));
        };
        let outdev = ctx.out_iface == Some(bridge);
        let holds = |flag: Option<bool>, present: bool| flag.is_none_or(|n| present != n);
        holds(self.is_bridged, outdev) && holds(self.is_in, true) && holds(self.is_out, outdev)
    }
}

/// What the node knows about the IPVS connection of a packet, for
/// [`IpvsSkb::conn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpvsConnFacts {
    /// The connection's virtual address.
    pub vaddr: IpAddr,
    /// Its virtual port.
    pub vport: u16,
    /// Its forwarding method.
    pub method: IpvsMethod,
}

impl IpvsSkb {
    /// A packet IPVS handled, with the connection `conn_out_get` finds for
    /// it (if any).
    pub fn new(conn: Option<IpvsConnFacts>) -> IpvsSkb {
        IpvsSkb { conn }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::{Rule, TableId, Variant};

    fn save(line: &str) -> String {
        Rule::parse(line, TableId::Filter, Family::Ipv4, Variant::Nft)
            .unwrap()
            .to_save_args(Family::Ipv4)
            .trim_start()
            .to_string()
    }

    #[test]
    fn saved_like_iptables() {
        assert_eq!(
            save("-s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 443 -j DROP"),
            "-s 1.2.3.4/32 -m ipvs --vproto 6 --vaddr 1.2.3.4 --vport 443 -j DROP"
        );
        assert_eq!(
            save("-m ipvs ! --ipvs -j ACCEPT"),
            "-m ipvs ! --ipvs -j ACCEPT"
        );
        assert_eq!(
            save("-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"),
            "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"
        );
    }

    #[test]
    fn refused_without_options_or_with_unmodelled_ones() {
        for line in [
            "-m ipvs -j DROP",
            "-m physdev -j DROP",
            "-m ipvs --vdir ORIGINAL -j DROP",
            "-m physdev --physdev-in veth0 -j DROP",
            "-m ipvs --vmethod NAT -j DROP",
        ] {
            assert!(
                Rule::parse(line, TableId::Filter, Family::Ipv4, Variant::Nft).is_err(),
                "{line}"
            );
        }
    }
}
