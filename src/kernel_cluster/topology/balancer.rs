//! A cloud load balancer's namespace, as [`super::Topology`] wires it:
//! passthrough balancers route the VIP to the healthy nodes (ECMP, policy
//! routing so only TCP/UDP arriving on `eth0` bypass local delivery);
//! NodePort balancers DNAT to a random healthy `node:NodePort` and SNAT to
//! the VIP. Either way, ports the balancer does not serve are dropped.
//!
//! Must never: touch anything but the balancer's own namespace; it is
//! rewritten whole (one `nft -f` replacing the `kpsim-lb` table) whenever
//! the set of healthy nodes changes.

use proxier::kernel::exec::Runner;

use super::{ip, nft, proto_name, sysctls, LbKind, Topology};
use crate::kernel_cluster::ClusterError;

impl Topology {
    /// (Re)writes a balancer's forwarding for the nodes that are up.
    pub(super) fn setup_lb(&self, i: usize) -> Result<(), ClusterError> {
        let lb = &self.lbs[i];
        let up: Vec<String> = self
            .healthy_nodes()
            .iter()
            .map(|n| n.ip.to_string())
            .collect();
        let vip = lb.vip;
        let n = lb.ns.name();
        let mut script =
            String::from("table ip kpsim-lb {}\ndelete table ip kpsim-lb\ntable ip kpsim-lb {\n");
        match lb.kind {
            LbKind::Passthrough => {
                sysctls(
                    n,
                    &[
                        ("net/ipv4/ip_forward", 1),
                        ("net/ipv4/conf/all/send_redirects", 0),
                        ("net/ipv4/conf/eth0/send_redirects", 0),
                        ("net/ipv4/fib_multipath_hash_policy", 1),
                    ],
                )?;
                // TCP and UDP arriving on eth0 are routed by table 100
                // before the local table would deliver the VIP locally.
                // (Only those: ARP's own route lookup must still find the
                // VIP local, or the balancer would not answer for it.)
                let rules = Runner::new(None).check("ip", &["-n", n, "rule", "show"], None)?;
                if !rules.contains("lookup 100") {
                    for proto in ["tcp", "udp"] {
                        ip(
                            n,
                            &[
                                "rule", "add", "pref", "10", "iif", "eth0", "ipproto", proto,
                                "lookup", "100",
                            ],
                        )?;
                    }
                    ip(n, &["rule", "add", "pref", "20", "lookup", "local"])?;
                    ip(n, &["rule", "del", "pref", "0"])?;
                }
                let dst = format!("{vip}/32");
                let mut args: Vec<String> = ["route", "replace", &dst, "table", "100"]
                    .map(String::from)
                    .to_vec();
                match up.len() {
                    0 => args.insert(2, "blackhole".into()),
                    1 => args.extend(["via", &up[0], "dev", "eth0", "onlink"].map(String::from)),
                    _ => {
                        for node in &up {
                            args.extend(
                                ["nexthop", "via", node, "dev", "eth0", "onlink"].map(String::from),
                            );
                        }
                    }
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                ip(n, &args)?;
                // Forward only the ports the balancer serves.
                script.push_str(
                    "  chain forward {\n    type filter hook forward priority 0; policy accept;\n",
                );
                for (proto, port, _) in &lb.ports {
                    script.push_str(&format!(
                        "    ip daddr {vip} {} dport {port} accept\n",
                        proto_name(*proto)
                    ));
                }
                script.push_str(&format!("    ip daddr {vip} drop\n  }}\n"));
            }
            LbKind::NodePort => {
                sysctls(n, &[("net/ipv4/ip_forward", 1)])?;
                script.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n");
                for (proto, port, node_port) in &lb.ports {
                    let to = match up.len() {
                        0 => continue,
                        1 => up[0].clone(),
                        k => {
                            let entries: Vec<String> = up
                                .iter()
                                .enumerate()
                                .map(|(j, a)| format!("{j} : {a}"))
                                .collect();
                            format!("numgen random mod {k} map {{ {} }}", entries.join(", "))
                        }
                    };
                    script.push_str(&format!(
                        "    ip daddr {vip} {} dport {port} dnat to {to} : {node_port}\n",
                        proto_name(*proto)
                    ));
                }
                script.push_str("  }\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
                script.push_str(&format!(
                    "    oifname \"eth0\" ct status dnat snat to {vip}\n  }}\n"
                ));
                // What is not forwarded (no healthy node, a port not
                // served) is dropped, not answered by the balancer itself.
                script.push_str(&format!(
                    "  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip daddr {vip} drop\n  }}\n"
                ));
            }
        }
        script.push_str("}\n");
        nft(&lb.ns, &script)
    }
}
