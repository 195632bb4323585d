//! The proxier's [`Ipvs`] trait over a simulated node's IPVS table.
//!
//! Translates upstream's `utilipvs` calls into the table's control plane
//! (`ipvsadm -A/-E/-D/-a/-e/-d/-C/--set`), at the kernel's virtual time:
//! a virtual server's `PERSISTENT` flag becomes persistence with the
//! affinity timeout and a host netmask, `SCHED1..3` the scheduler flags,
//! `ONEPACKET` one-packet scheduling; real servers are NAT (`Masq`)
//! destinations. Reading real servers first lets time pass, so their
//! connection counts are what the kernel would report at that moment.
//!
//! **Invariant:** translates only; the table decides.
//!
//! **Errors:** the table's refusals become [`DataplaneError`]s whose message
//! starts with the errno text Go's netlink library reports (`file exists`,
//! `no such process`, `no such file or directory`, `invalid argument`,
//! `numerical result out of range`), then the model's explanation.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use proxier::dataplane::{DataplaneError, Ipvs, RealServer, ServiceFlags, VirtualServer};
use proxier::k8s::Protocol;
use sim::ipvs::{
    DestSpec, IpvsError, Persistence, SchedFlags, Scheduler, Service, ServiceKey, ServiceSpec,
    TimeoutUser,
};
use sim::netfilter::{Family, Protocol as SimProtocol};

use super::{sim_protocol, SimKernel};

/// `IP_VS_SVC_F_ONEPACKET`.
const ONE_PACKET: u32 = 0x4;
const SCHED1: u32 = 0x8;
const SCHED2: u32 = 0x10;
const SCHED3: u32 = 0x20;

fn errno(e: &IpvsError) -> &'static str {
    match e {
        IpvsError::ServiceExists(_) | IpvsError::DestExists { .. } => "file exists",
        IpvsError::NoSuchService(_) => "no such process",
        IpvsError::NoSuchDest { .. } | IpvsError::UnknownScheduler(_) => {
            "no such file or directory"
        }
        IpvsError::WeightOutOfRange(_) | IpvsError::ThresholdOrder { .. } => {
            "numerical result out of range"
        }
        IpvsError::UnsupportedProtocol(_) => "protocol not supported",
        _ => "invalid argument",
    }
}

fn err(op: &str, e: IpvsError) -> DataplaneError {
    DataplaneError::new(format!("ipvs {op}"), format!("{}: {e}", errno(&e)))
}

fn key(vs: &VirtualServer) -> ServiceKey {
    ServiceKey::Addr {
        protocol: sim_protocol(vs.protocol),
        addr: SocketAddr::new(vs.address, vs.port),
    }
}

/// `toIPVSService`: what the netlink call asks the kernel for.
fn spec(vs: &VirtualServer) -> Result<ServiceSpec, IpvsError> {
    let scheduler = Scheduler::from_str(&vs.scheduler)?;
    let flags = vs.flags.0;
    let mut spec = ServiceSpec::new(key(vs), scheduler);
    if vs.flags.contains(ServiceFlags::PERSISTENT) {
        spec.persistence = Some(Persistence::new(vs.timeout, Family::of(vs.address)));
    }
    spec.one_packet = flags & ONE_PACKET != 0;
    spec.sched_flags = SchedFlags {
        flag1: flags & SCHED1 != 0,
        flag2: flags & SCHED2 != 0,
        flag3: flags & SCHED3 != 0,
    };
    Ok(spec)
}

/// `toVirtualServer`: the kernel's service as utilipvs returns it (the
/// `HASHED` flag stripped).
fn virtual_server(svc: &Service) -> Option<VirtualServer> {
    let ServiceKey::Addr { protocol, addr } = svc.spec.key else {
        return None;
    };
    let protocol = match protocol {
        SimProtocol::Tcp => Protocol::Tcp,
        SimProtocol::Udp => Protocol::Udp,
        SimProtocol::Sctp => Protocol::Sctp,
        _ => return None,
    };
    let s = &svc.spec;
    let mut flags = 0;
    if s.persistence.is_some() {
        flags |= ServiceFlags::PERSISTENT.0;
    }
    for (on, bit) in [
        (s.one_packet, ONE_PACKET),
        (s.sched_flags.flag1, SCHED1),
        (s.sched_flags.flag2, SCHED2),
        (s.sched_flags.flag3, SCHED3),
    ] {
        if on {
            flags |= bit;
        }
    }
    Some(VirtualServer {
        address: addr.ip(),
        protocol,
        port: addr.port(),
        scheduler: s.scheduler.name().to_string(),
        flags: ServiceFlags(flags),
        timeout: s.persistence.map_or(0, |p| p.timeout_secs),
    })
}

fn dest_spec(rs: &RealServer) -> Result<DestSpec, IpvsError> {
    let weight = u32::try_from(rs.weight).map_err(|_| IpvsError::WeightOutOfRange(0))?;
    Ok(DestSpec::masq(SocketAddr::new(rs.address, rs.port), weight))
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Ipvs for SimKernel<'_> {
    fn flush(&mut self) -> Result<(), DataplaneError> {
        self.node.ipvs_mut().flush(self.now);
        Ok(())
    }

    fn add_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        let op = "NewService";
        let spec = spec(vs).map_err(|e| err(op, e))?;
        self.node
            .ipvs_mut()
            .add_service(self.now, spec)
            .map_err(|e| err(op, e))
    }

    fn update_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        let op = "UpdateService";
        let spec = spec(vs).map_err(|e| err(op, e))?;
        self.node
            .ipvs_mut()
            .edit_service(self.now, spec)
            .map_err(|e| err(op, e))
    }

    fn delete_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        self.node
            .ipvs_mut()
            .del_service(self.now, &key(vs))
            .map_err(|e| err("DelService", e))
    }

    fn get_virtual_server(
        &mut self,
        vs: &VirtualServer,
    ) -> Result<Option<VirtualServer>, DataplaneError> {
        Ok(self.node.ipvs().service(&key(vs)).and_then(virtual_server))
    }

    fn get_virtual_servers(&mut self) -> Result<Vec<VirtualServer>, DataplaneError> {
        Ok(self
            .node
            .ipvs()
            .services()
            .filter_map(virtual_server)
            .collect())
    }

    fn add_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        let op = "NewDestination";
        let d = dest_spec(rs).map_err(|e| err(op, e))?;
        self.node
            .ipvs_mut()
            .add_dest(self.now, &key(vs), d)
            .map_err(|e| err(op, e))
    }

    fn get_real_servers(&mut self, vs: &VirtualServer) -> Result<Vec<RealServer>, DataplaneError> {
        let now = self.now;
        self.node.ipvs_mut().advance(now);
        let k = key(vs);
        let dests = self
            .node
            .ipvs()
            .dests(&k)
            .ok_or_else(|| err("GetDestinations", IpvsError::NoSuchService(k)))?;
        Ok(dests
            .into_iter()
            .map(|d| RealServer {
                address: d.addr.ip(),
                port: d.addr.port(),
                weight: i32::try_from(d.weight).unwrap_or(i32::MAX),
                active_conn: d.active_conns,
                inactive_conn: d.inact_conns,
            })
            .collect())
    }

    fn delete_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        self.node
            .ipvs_mut()
            .del_dest(self.now, &key(vs), SocketAddr::new(rs.address, rs.port))
            .map_err(|e| err("DelDestination", e))
    }

    fn update_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        let op = "UpdateDestination";
        let d = dest_spec(rs).map_err(|e| err(op, e))?;
        self.node
            .ipvs_mut()
            .edit_dest(self.now, &key(vs), d)
            .map_err(|e| err(op, e))
    }

    fn configure_timeouts(
        &mut self,
        tcp: Duration,
        tcp_fin: Duration,
        udp: Duration,
    ) -> Result<(), DataplaneError> {
        self.node
            .ipvs_mut()
            .set_timeout(TimeoutUser {
                tcp: secs(tcp),
                tcp_fin: secs(tcp_fin),
                udp: secs(udp),
            })
            .map_err(|e| err("SetConfig", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simkernel::KernelSide;
    use proxier::dataplane::Kernel;
    use sim::netfilter::Variant;
    use sim::node::Node;
    use sim::time::Instant;

    fn vs(flags: ServiceFlags) -> VirtualServer {
        VirtualServer {
            address: "10.96.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
            scheduler: "mh".into(),
            flags,
            timeout: 10800,
        }
    }

    #[test]
    fn services_and_destinations_round_trip_with_kernel_errors() {
        let mut node = Node::new("n", 1, Variant::Nft);
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let ipvs = k.ipvs();
        let v = vs(ServiceFlags::PERSISTENT | ServiceFlags::SOURCE_HASH);
        let rs = RealServer::new("10.244.1.2".parse().unwrap(), 8080, 1);
        let e = ipvs.add_real_server(&v, &rs).unwrap_err();
        assert!(e.message.starts_with("no such process"), "{e}");
        ipvs.add_virtual_server(&v).unwrap();
        let e = ipvs.add_virtual_server(&v).unwrap_err();
        assert!(e.message.starts_with("file exists"), "{e}");
        assert_eq!(ipvs.get_virtual_server(&v).unwrap(), Some(v.clone()));
        ipvs.add_real_server(&v, &rs).unwrap();
        assert!(ipvs.add_real_server(&v, &rs).is_err());
        ipvs.update_real_server(&v, &RealServer::new(rs.address, 8080, 0))
            .unwrap();
        let got = ipvs.get_real_servers(&v).unwrap();
        assert_eq!((got[0].address, got[0].weight), (rs.address, 0));
        let e = ipvs
            .delete_real_server(&v, &RealServer::new(rs.address, 9, 1))
            .unwrap_err();
        assert!(e.message.starts_with("no such file or directory"), "{e}");
        let mut bad = v.clone();
        bad.scheduler = "lblc".into();
        bad.port = 81;
        assert!(ipvs.add_virtual_server(&bad).is_err());
        ipvs.delete_virtual_server(&v).unwrap();
        assert!(ipvs.get_virtual_servers().unwrap().is_empty());
    }
}
