//! A simulated node's kernel behind the proxier's dataplane traits.
//!
//! [`SimKernel`] implements [`proxier::dataplane::Kernel`] with the
//! simulator's models, so the proxier writes into `sim` exactly what it
//! would write into a real kernel. **Invariant:** this module translates; it
//! never decides anything a kernel would not.

mod iptables;

pub use iptables::SimIptables;

use proxier::dataplane::recording::{
    RecordingAddresses, RecordingConntrack, RecordingIpset, RecordingIpvs, RecordingNfacct,
    RecordingNftables, RecordingSysctl,
};
use proxier::dataplane::{
    Addresses, Conntrack, Ipset, Iptables, Ipvs, Kernel, Nfacct, Nftables, Sysctl,
};
use proxier::k8s::IpFamily;
use sim::netfilter::Variant;

/// One simulated node's kernel interfaces.
#[derive(Debug, Clone)]
pub struct SimKernel {
    pub iptables_v4: SimIptables,
    pub iptables_v6: SimIptables,
    /// Recorded until the simulator's nftables model is wired in.
    pub nftables: RecordingNftables,
    pub conntrack: RecordingConntrack,
    pub nfacct: RecordingNfacct,
    pub sysctl: RecordingSysctl,
    /// Recorded until the simulator's IPVS model (sim/src/ipvs) is wired in.
    pub ipvs: RecordingIpvs,
    pub ipset: RecordingIpset,
    pub addresses: RecordingAddresses,
}

impl SimKernel {
    /// A fresh node with the given iptables variant (`nft` like most
    /// current distributions, or `legacy`).
    pub fn new(variant: Variant) -> Self {
        SimKernel {
            iptables_v4: SimIptables::new(IpFamily::V4, variant),
            iptables_v6: SimIptables::new(IpFamily::V6, variant),
            nftables: RecordingNftables::default(),
            conntrack: RecordingConntrack::default(),
            nfacct: RecordingNfacct::default(),
            sysctl: RecordingSysctl::default(),
            ipvs: RecordingIpvs::default(),
            ipset: RecordingIpset::default(),
            addresses: RecordingAddresses::default(),
        }
    }

    pub fn ruleset(&self, family: IpFamily) -> &sim::netfilter::Ruleset {
        match family {
            IpFamily::V4 => &self.iptables_v4.ruleset,
            IpFamily::V6 => &self.iptables_v6.ruleset,
        }
    }
}

impl Kernel for SimKernel {
    fn iptables(&mut self, family: IpFamily) -> &mut dyn Iptables {
        match family {
            IpFamily::V4 => &mut self.iptables_v4,
            IpFamily::V6 => &mut self.iptables_v6,
        }
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
