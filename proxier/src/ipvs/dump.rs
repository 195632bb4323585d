//! Human-readable dumps of IPVS mode's kernel state, in the style of the
//! tools people know, for the recording fakes (upstream replays and unit
//! tests; `kpsim rules --mode ipvs` reads the simulated node instead, with
//! the simulator's own `ipvsadm` and `ipset` printers):
//!
//! - [`ipvsadm_ln`]: `ipvsadm -Ln` — the header, then virtual servers sorted
//!   as ipvsadm sorts them (family, protocol, address, port), each with its
//!   destinations (`Masq`, weight, active and inactive connections) in
//!   ipvsadm's column widths;
//! - [`addresses`]: the addresses bound to a device, like `ip addr show DEV`;
//! - [`ipset_list`]: `ipset list` — name, type, header, entry count and
//!   members (sorted) of every set. The kernel-internal lines (`Revision`,
//!   `Size in memory`, `References`) are left out: no fake knows them.
//!
//! [`render`] puts the three together in the order issue 4 asks the CLI to
//! print them (ipvsadm, then addresses, then ipsets); the CLI appends the
//! iptables-restore payload ([`super::Proxier::last_payload`]).
//!
//! **Never:** changes the state it prints, or depends on map order.
//!
//! **Errors:** none; rendering cannot fail.

use std::cmp::Ordering;
use std::fmt::Write;
use std::net::IpAddr;

use crate::dataplane::recording::{RecordingAddresses, RecordingIpset, RecordingIpvs};
use crate::dataplane::{join_host_port, RealServer, ServiceFlags, VirtualServer};
use crate::k8s::Protocol;

use super::DEFAULT_DUMMY_DEVICE;

fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// ipvsadm's order: IPv4 before IPv6, then protocol number, address, port.
fn cmp_services(a: &VirtualServer, b: &VirtualServer) -> Ordering {
    (
        a.address.is_ipv6(),
        protocol_number(a.protocol),
        a.address,
        a.port,
    )
        .cmp(&(
            b.address.is_ipv6(),
            protocol_number(b.protocol),
            b.address,
            b.port,
        ))
}

fn scheduler_flags(vs: &VirtualServer) -> String {
    let mut names = Vec::new();
    let prefix = match vs.scheduler.as_str() {
        "sh" | "mh" => Some(vs.scheduler.as_str()),
        _ => None,
    };
    for (bit, n) in [(0x8u32, 1), (0x10, 2), (0x20, 3)] {
        if vs.flags.0 & bit == 0 {
            continue;
        }
        names.push(match (prefix, n) {
            (Some(s), 1) => format!("{s}-fallback"),
            (Some(s), 2) => format!("{s}-port"),
            _ => format!("flag-{n}"),
        });
    }
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(","))
    }
}

/// `ipvsadm -Ln` for the fake's table.
pub fn ipvsadm_ln(ipvs: &RecordingIpvs) -> String {
    let mut out = String::from(
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    );
    let mut services: Vec<(&VirtualServer, &[RealServer])> = ipvs.virtual_servers().collect();
    services.sort_by(|a, b| cmp_services(a.0, b.0));
    for (vs, dests) in services {
        let _ = write!(
            out,
            "{}  {} {}{}",
            vs.protocol.api_name(),
            join_host_port(vs.address, vs.port),
            vs.scheduler,
            scheduler_flags(vs)
        );
        if vs.flags.contains(ServiceFlags::PERSISTENT) {
            let _ = write!(out, " persistent {}", vs.timeout);
        }
        out.push('\n');
        let mut dests: Vec<&RealServer> = dests.iter().collect();
        dests.sort_by_key(|d| (d.address, d.port));
        for d in dests {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                join_host_port(d.address, d.port),
                "Masq",
                d.weight,
                d.active_conn,
                d.inactive_conn
            );
        }
    }
    out
}

/// The addresses bound to `dev`, like `ip addr show DEV` (`/32` and `/128`,
/// as kube-proxy binds them).
pub fn addresses(addrs: &RecordingAddresses, dev: &str) -> String {
    let Some(bound) = addrs.devices().get(dev) else {
        return format!("Device \"{dev}\" does not exist.\n");
    };
    let mut out = format!("{dev}: <BROADCAST,NOARP> mtu 1500 state DOWN\n");
    for ip in bound {
        let _ = match ip {
            IpAddr::V4(v4) => writeln!(out, "    inet {v4}/32 scope global {dev}"),
            IpAddr::V6(v6) => writeln!(out, "    inet6 {v6}/128 scope global"),
        };
    }
    out
}

/// `ipset list` for every set of the fake.
pub fn ipset_list(ipset: &RecordingIpset) -> String {
    let mut out = String::new();
    for (i, (spec, entries)) in ipset.sets().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let header = if spec.set_type.is_hash() {
            format!(
                "family {} hashsize {} maxelem {}",
                spec.hash_family, spec.hash_size, spec.max_elem
            )
        } else {
            format!("range {}", spec.port_range)
        };
        let _ = write!(
            out,
            "Name: {}\nType: {}\nHeader: {header}\nNumber of entries: {}\nMembers:\n",
            spec.name,
            spec.set_type,
            entries.len()
        );
        for e in entries {
            out.push_str(e);
            out.push('\n');
        }
    }
    out
}

/// The three dumps, in the CLI's order, each under a `# command` title.
pub fn render(ipvs: &RecordingIpvs, addrs: &RecordingAddresses, ipset: &RecordingIpset) -> String {
    format!(
        "# ipvsadm -Ln\n{}\n# ip addr show {DEFAULT_DUMMY_DEVICE}\n{}\n# ipset list\n{}",
        ipvsadm_ln(ipvs),
        addresses(addrs, DEFAULT_DUMMY_DEVICE),
        ipset_list(ipset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{IpSetSpec, Ipset, Ipvs, SetType};
    use crate::k8s::IpFamily;

    #[test]
    fn ipvsadm_style() {
        let mut ipvs = RecordingIpvs::default();
        let vs = |addr: &str, proto, port, flags, timeout| VirtualServer {
            address: addr.parse().unwrap(),
            protocol: proto,
            port,
            scheduler: "rr".into(),
            flags,
            timeout,
        };
        let dns = vs("10.0.0.10", Protocol::Udp, 53, ServiceFlags::NONE, 0);
        let api = vs(
            "10.0.0.1",
            Protocol::Tcp,
            443,
            ServiceFlags::PERSISTENT,
            10800,
        );
        ipvs.add_virtual_server(&dns).unwrap();
        ipvs.add_virtual_server(&api).unwrap();
        ipvs.add_real_server(
            &api,
            &RealServer::new("192.168.0.1".parse().unwrap(), 6443, 1),
        )
        .unwrap();
        ipvs.add_real_server(&dns, &RealServer::new("172.17.0.2".parse().unwrap(), 53, 1))
            .unwrap();
        ipvs.set_connections(&api.key(), "192.168.0.1".parse().unwrap(), 6443, 1, 0);
        assert_eq!(
            ipvsadm_ln(&ipvs),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  10.0.0.1:443 rr persistent 10800\n  \
             -> 192.168.0.1:6443             Masq    1      1          0         \n\
             UDP  10.0.0.10:53 rr\n  \
             -> 172.17.0.2:53                Masq    1      0          0         \n"
        );
    }

    #[test]
    fn ipset_and_address_style() {
        let mut ipset = RecordingIpset::default();
        let spec = IpSetSpec::new("KUBE-NODE-PORT-TCP", SetType::BitmapPort, IpFamily::V4, "c");
        ipset.create_set(&spec, true).unwrap();
        ipset.add_entry("30080", &spec, true).unwrap();
        assert_eq!(
            ipset_list(&ipset),
            "Name: KUBE-NODE-PORT-TCP\nType: bitmap:port\nHeader: range 0-65535\nNumber of entries: 1\nMembers:\n30080\n"
        );
        let mut addrs = RecordingAddresses::default();
        addrs.set_local_addresses("kube-ipvs0", &["10.0.0.1".parse().unwrap()]);
        assert_eq!(
            addresses(&addrs, "kube-ipvs0"),
            "kube-ipvs0: <BROADCAST,NOARP> mtu 1500 state DOWN\n    inet 10.0.0.1/32 scope global kube-ipvs0\n"
        );
    }
}
