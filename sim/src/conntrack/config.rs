//! Conntrack tunables: the `net.netfilter.nf_conntrack_*` sysctls this
//! model honours, with the Linux defaults.
//!
//! Models: `nf_conntrack_max`, `nf_conntrack_tcp_loose` and the timeouts
//! `nf_conntrack_tcp_timeout_{syn_sent,syn_recv,established,fin_wait,
//! close_wait,last_ack,time_wait,close}`, `nf_conntrack_udp_timeout`,
//! `nf_conntrack_udp_timeout_stream`, `nf_conntrack_icmp_timeout`,
//! `nf_conntrack_sctp_timeout_{cookie_wait,established}` and
//! `nf_conntrack_generic_timeout`. Defaults are those of
//! `net/netfilter/nf_conntrack_proto_{tcp,udp,icmp,sctp,generic}.c` in
//! current kernels (checked against Linux 6.18: a replied UDP flow shows
//! 120 s once it becomes a stream, an unreplied one 30 s, a half-open TCP
//! flow 120 s).
//!
//! Must never: read the host's `/proc/sys`.
//!
//! Error contract: [`ConntrackConfig::set_sysctl`] returns
//! [`SysctlError`] for a name it does not know or a negative value.

use std::time::Duration;

use super::tcp::TcpState;

/// Per-state timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `nf_conntrack_tcp_timeout_syn_sent` (120 s).
    pub tcp_syn_sent: Duration,
    /// `nf_conntrack_tcp_timeout_syn_recv` (60 s).
    pub tcp_syn_recv: Duration,
    /// `nf_conntrack_tcp_timeout_established` (432000 s, 5 days).
    pub tcp_established: Duration,
    /// `nf_conntrack_tcp_timeout_fin_wait` (120 s).
    pub tcp_fin_wait: Duration,
    /// `nf_conntrack_tcp_timeout_close_wait` (60 s).
    pub tcp_close_wait: Duration,
    /// `nf_conntrack_tcp_timeout_last_ack` (30 s).
    pub tcp_last_ack: Duration,
    /// `nf_conntrack_tcp_timeout_time_wait` (120 s).
    pub tcp_time_wait: Duration,
    /// `nf_conntrack_tcp_timeout_close` (10 s).
    pub tcp_close: Duration,
    /// `nf_conntrack_tcp_timeout_unacknowledged` (300 s): caps a connection
    /// picked up mid-stream until a reply is seen.
    pub tcp_unacknowledged: Duration,
    /// `nf_conntrack_udp_timeout` (30 s).
    pub udp: Duration,
    /// `nf_conntrack_udp_timeout_stream` (120 s).
    pub udp_stream: Duration,
    /// `nf_conntrack_icmp_timeout` / `nf_conntrack_icmpv6_timeout` (30 s).
    pub icmp: Duration,
    /// `nf_conntrack_sctp_timeout_cookie_wait` (3 s): SCTP before a reply.
    pub sctp_unreplied: Duration,
    /// `nf_conntrack_sctp_timeout_established` (210 s).
    pub sctp_established: Duration,
    /// `nf_conntrack_generic_timeout` (600 s).
    pub generic: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            tcp_unacknowledged: s(300),
            udp: s(30),
            udp_stream: s(120),
            icmp: s(30),
            sctp_unreplied: s(3),
            sctp_established: s(210),
            generic: s(600),
        }
    }
}

impl Timeouts {
    /// The timeout of a TCP state.
    pub fn tcp(&self, state: TcpState) -> Duration {
        match state {
            TcpState::None | TcpState::SynSent | TcpState::SynSent2 => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}

/// The conntrack tunables of one network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// `nf_conntrack_max`: entries the table holds (0: unlimited). The
    /// kernel default depends on memory; 262144 is typical of a node (and
    /// kube-proxy's `conntrack.min` of 131072 is below it).
    pub max: usize,
    /// `nf_conntrack_tcp_loose` (1): pick up TCP connections mid-stream.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal` (0). Kept for kube-proxy's
    /// `conntrackTCPLiberal`; without window tracking it changes nothing.
    pub tcp_be_liberal: bool,
    /// The timeouts.
    pub timeouts: Timeouts,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max: 262_144,
            tcp_loose: true,
            tcp_be_liberal: false,
            timeouts: Timeouts::default(),
        }
    }
}

/// A sysctl this model does not have, or a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sysctl `{name}`: {reason}")]
pub struct SysctlError {
    /// The name as given.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl ConntrackConfig {
    /// Set a tunable by its sysctl name, with or without the
    /// `net.netfilter.`/`net/netfilter/` prefix (timeouts in seconds).
    pub fn set_sysctl(&mut self, name: &str, value: i64) -> Result<(), SysctlError> {
        let err = |reason| SysctlError {
            name: name.to_string(),
            reason,
        };
        let v = u64::try_from(value).map_err(|_| err("negative values are refused"))?;
        let short = name
            .trim_start_matches("net.netfilter.")
            .trim_start_matches("net/netfilter/")
            .trim_start_matches("nf_conntrack_");
        let t = &mut self.timeouts;
        let slot: &mut Duration = match short {
            "max" => {
                self.max = usize::try_from(v).map_err(|_| err("value too large"))?;
                return Ok(());
            }
            "tcp_loose" => {
                self.tcp_loose = v != 0;
                return Ok(());
            }
            "tcp_be_liberal" => {
                self.tcp_be_liberal = v != 0;
                return Ok(());
            }
            "tcp_timeout_syn_sent" => &mut t.tcp_syn_sent,
            "tcp_timeout_syn_recv" => &mut t.tcp_syn_recv,
            "tcp_timeout_established" => &mut t.tcp_established,
            "tcp_timeout_fin_wait" => &mut t.tcp_fin_wait,
            "tcp_timeout_close_wait" => &mut t.tcp_close_wait,
            "tcp_timeout_last_ack" => &mut t.tcp_last_ack,
            "tcp_timeout_time_wait" => &mut t.tcp_time_wait,
            "tcp_timeout_close" => &mut t.tcp_close,
            "tcp_timeout_unacknowledged" => &mut t.tcp_unacknowledged,
            "udp_timeout" => &mut t.udp,
            "udp_timeout_stream" => &mut t.udp_stream,
            "icmp_timeout" | "icmpv6_timeout" => &mut t.icmp,
            "sctp_timeout_cookie_wait" => &mut t.sctp_unreplied,
            "sctp_timeout_established" => &mut t.sctp_established,
            "generic_timeout" => &mut t.generic,
            _ => return Err(err("not modelled; hint: see conntrack::ConntrackConfig")),
        };
        *slot = Duration::from_secs(v);
        Ok(())
    }
}
