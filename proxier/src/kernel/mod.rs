//! The real kernel behind the dataplane traits: [`HostKernel`] implements
//! [`Kernel`] for the host's network namespace or a named one.
//!
//! | trait | how |
//! |---|---|
//! | [`Iptables`](crate::dataplane::Iptables) | `iptables-{legacy,nft}-restore`/`-save` and rule commands ([`iptables`]); the variant is detected like kube-proxy's image wrapper does |
//! | [`Nftables`](crate::dataplane::Nftables) | `nft -f -`, `nft list` ([`nftables`]) |
//! | [`Conntrack`](crate::dataplane::Conntrack) | ctnetlink dump and delete ([`conntrack`]) |
//! | [`Nfacct`](crate::dataplane::Nfacct) | `nfacct get`/`add` ([`misc`]) |
//! | [`Sysctl`](crate::dataplane::Sysctl) | `/proc/sys` ([`misc`]) |
//! | [`Ipvs`](crate::dataplane::Ipvs) | generic netlink, family `IPVS` ([`ipvs`]) |
//! | [`Ipset`](crate::dataplane::Ipset) | `ipset restore`, `ipset list` ([`ipset`]) |
//! | [`Addresses`](crate::dataplane::Addresses) | iproute2 `ip` ([`addresses`]) |
//!
//! **Namespaces:** with [`KernelOptions::netns`] set, tools run through
//! `ip netns exec NAME …` and in-process work (netlink sockets, `/proc/sys`)
//! runs on a helper thread that joined the namespace with `setns(2)`
//! ([`netns`]); the calling threads never change namespace.
//!
//! Every write is recorded in a [`Journal`]; [`HostKernel::take_writes`]
//! returns what was written since the last call (what `kpsim apply` prints).
//!
//! **Error contract:** every tool failure is a
//! [`DataplaneError`] whose `operation` is the command line that ran and
//! whose `message` is what the tool said; a missing tool names its Debian
//! package; a refused restore names the payload line and its text, and
//! leaves nothing of its payload applied.
//! **Invariant:** never reads the wall clock (callers time what they need).

pub mod addresses;
pub mod cleanup;
pub mod conntrack;
pub mod exec;
pub mod ipset;
pub mod iptables;
pub mod ipvs;
pub mod misc;
pub mod netns;
pub mod nftables;

pub use self::addresses::KernelAddresses;
pub use self::conntrack::KernelConntrack;
pub use self::exec::{Journal, KernelWrite, Runner};
pub use self::ipset::KernelIpset;
pub use self::iptables::{Detection, IptablesVariant, KernelIptables, RestoreStrategy};
pub use self::ipvs::KernelIpvs;
pub use self::misc::{KernelNfacct, KernelSysctl};
pub use self::netns::OwnedNetns;
pub use self::nftables::KernelNftables;

use crate::dataplane::{
    Addresses, Conntrack, DataplaneError, Ipset, Iptables, Ipvs, Kernel, Nfacct, Nftables, Sysctl,
};
use crate::k8s::IpFamily;

/// Where and how to reach the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// A namespace made with `ip netns add`; `None` for the caller's own.
    pub netns: Option<String>,
    /// Forces an iptables variant instead of detecting it.
    pub iptables_variant: Option<IptablesVariant>,
    pub restore_strategy: RestoreStrategy,
}

/// One node's kernel: the host, or a named network namespace.
#[derive(Debug, Clone)]
pub struct HostKernel {
    options: KernelOptions,
    detection: Detection,
    pub iptables_v4: KernelIptables,
    pub iptables_v6: KernelIptables,
    pub nftables: KernelNftables,
    pub conntrack: KernelConntrack,
    pub nfacct: KernelNfacct,
    pub sysctl: KernelSysctl,
    pub ipvs: KernelIpvs,
    pub ipset: KernelIpset,
    pub addresses: KernelAddresses,
    journal: Journal,
}

impl HostKernel {
    /// Binds to the kernel, detecting the iptables variant unless one is
    /// forced. Fails only if the namespace does not exist.
    pub fn new(options: KernelOptions) -> Result<Self, DataplaneError> {
        if let Some(ns) = &options.netns {
            netns::check_exists(ns)?;
        }
        let runner = Runner::new(options.netns.clone());
        let detection = match options.iptables_variant {
            Some(variant) => Detection {
                variant,
                reason: "chosen by the caller".into(),
            },
            None => iptables::detect(&runner),
        };
        let journal = Journal::default();
        let ipt = |family| {
            KernelIptables::new(
                runner.clone(),
                family,
                detection.variant,
                options.restore_strategy,
                journal.clone(),
            )
        };
        Ok(HostKernel {
            iptables_v4: ipt(IpFamily::V4),
            iptables_v6: ipt(IpFamily::V6),
            nftables: KernelNftables::new(runner.clone(), journal.clone()),
            conntrack: KernelConntrack::new(options.netns.clone(), journal.clone()),
            nfacct: KernelNfacct::new(runner.clone(), journal.clone()),
            sysctl: KernelSysctl::new(options.netns.clone(), journal.clone()),
            ipvs: KernelIpvs::new(options.netns.clone(), journal.clone()),
            ipset: KernelIpset::new(runner.clone(), journal.clone()),
            addresses: KernelAddresses::new(runner, journal.clone()),
            detection,
            options,
            journal,
        })
    }

    pub fn netns(&self) -> Option<&str> {
        self.options.netns.as_deref()
    }

    /// The iptables variant in use and why it was chosen.
    pub fn detection(&self) -> &Detection {
        &self.detection
    }

    /// The concrete iptables handle of a family (for what the trait lacks:
    /// deleting rules and chains, saving with counters).
    pub fn kernel_iptables(&mut self, family: IpFamily) -> &mut KernelIptables {
        match family {
            IpFamily::V4 => &mut self.iptables_v4,
            IpFamily::V6 => &mut self.iptables_v6,
        }
    }

    /// The writes made since the last call, in order.
    pub fn take_writes(&self) -> Vec<KernelWrite> {
        self.journal.take()
    }
}

impl Kernel for HostKernel {
    fn iptables(&mut self, family: IpFamily) -> &mut dyn Iptables {
        self.kernel_iptables(family)
    }
    fn nftables(&mut self) -> &mut dyn Nftables {
        &mut self.nftables
    }
    fn conntrack(&mut self) -> &mut dyn Conntrack {
        &mut self.conntrack
    }
    fn nfacct(&mut self) -> &mut dyn Nfacct {
        &mut self.nfacct
    }
    fn sysctl(&mut self) -> &mut dyn Sysctl {
        &mut self.sysctl
    }
    fn ipvs(&mut self) -> &mut dyn Ipvs {
        &mut self.ipvs
    }
    fn ipset(&mut self) -> &mut dyn Ipset {
        &mut self.ipset
    }
    fn addresses(&mut self) -> &mut dyn Addresses {
        &mut self.addresses
    }
}
