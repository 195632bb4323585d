//! A stateful fake of the IPVS table (upstream's `ipvstest.NewFake()`),
//! stricter where the kernel is: adding what exists and updating or
//! deleting what does not are errors. Real servers are kept sorted by their
//! `ip:port` text, as upstream's fake keeps them (its tests rely on it);
//! updating a real server changes its weight and keeps its connection
//! counts, as the kernel does. Tests set connection counts with
//! [`RecordingIpvs::set_connections`]. Every mutating call is logged.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::dataplane::{DataplaneError, Ipvs, RealServer, VirtualServer, VirtualServerKey};

#[derive(Debug, Clone, Default)]
pub struct RecordingIpvs {
    services: BTreeMap<VirtualServerKey, (VirtualServer, Vec<RealServer>)>,
    /// The last `configure_timeouts` call: `(tcp, tcpfin, udp)`.
    pub timeouts: Option<(Duration, Duration, Duration)>,
    /// Every mutating call, in order (`add-vs 10.0.0.1:80/TCP rr …`).
    pub log: Vec<String>,
}

fn err(message: String) -> DataplaneError {
    DataplaneError::new("ipvs", message)
}

impl RecordingIpvs {
    /// Every virtual server with its real servers, ordered by key.
    pub fn virtual_servers(&self) -> impl Iterator<Item = (&VirtualServer, &[RealServer])> {
        self.services.values().map(|(vs, rs)| (vs, rs.as_slice()))
    }

    /// The real servers of one virtual server.
    pub fn real_servers(&self, key: &VirtualServerKey) -> Option<&[RealServer]> {
        self.services.get(key).map(|(_, rs)| rs.as_slice())
    }

    /// Sets the kernel's connection counts of one destination (what traffic
    /// would do); returns whether the destination exists.
    pub fn set_connections(
        &mut self,
        key: &VirtualServerKey,
        address: IpAddr,
        port: u16,
        active: u32,
        inactive: u32,
    ) -> bool {
        let Some((_, dests)) = self.services.get_mut(key) else {
            return false;
        };
        match dests
            .iter_mut()
            .find(|d| d.address == address && d.port == port)
        {
            Some(d) => {
                d.active_conn = active;
                d.inactive_conn = inactive;
                true
            }
            None => false,
        }
    }

    fn dests_mut(&mut self, vs: &VirtualServer) -> Result<&mut Vec<RealServer>, DataplaneError> {
        self.services
            .get_mut(&vs.key())
            .map(|(_, d)| d)
            .ok_or_else(|| err(format!("virtual server {vs} does not exist")))
    }
}

impl Ipvs for RecordingIpvs {
    fn flush(&mut self) -> Result<(), DataplaneError> {
        self.log.push("flush".into());
        self.services.clear();
        Ok(())
    }

    fn add_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        if self.services.contains_key(&vs.key()) {
            return Err(err(format!("virtual server {vs} exists")));
        }
        self.log.push(format!(
            "add-vs {vs} {} flags={:#x} timeout={}",
            vs.scheduler, vs.flags.0, vs.timeout
        ));
        self.services.insert(vs.key(), (vs.clone(), Vec::new()));
        Ok(())
    }

    fn update_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        let (held, _) = self
            .services
            .get_mut(&vs.key())
            .ok_or_else(|| err(format!("virtual server {vs} does not exist")))?;
        *held = vs.clone();
        self.log.push(format!(
            "update-vs {vs} {} flags={:#x} timeout={}",
            vs.scheduler, vs.flags.0, vs.timeout
        ));
        Ok(())
    }

    fn delete_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        self.services
            .remove(&vs.key())
            .ok_or_else(|| err(format!("virtual server {vs} does not exist")))?;
        self.log.push(format!("delete-vs {vs}"));
        Ok(())
    }

    fn get_virtual_server(
        &mut self,
        vs: &VirtualServer,
    ) -> Result<Option<VirtualServer>, DataplaneError> {
        Ok(self.services.get(&vs.key()).map(|(v, _)| v.clone()))
    }

    fn get_virtual_servers(&mut self) -> Result<Vec<VirtualServer>, DataplaneError> {
        Ok(self.services.values().map(|(v, _)| v.clone()).collect())
    }

    fn add_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        let dests = self.dests_mut(vs)?;
        if dests.iter().any(|d| d.same_destination(rs)) {
            return Err(err(format!("real server {rs} of {vs} exists")));
        }
        dests.push(rs.clone());
        dests.sort_by_key(|d| d.to_string());
        self.log
            .push(format!("add-rs {vs} {rs} weight={}", rs.weight));
        Ok(())
    }

    fn get_real_servers(&mut self, vs: &VirtualServer) -> Result<Vec<RealServer>, DataplaneError> {
        Ok(self.dests_mut(vs)?.clone())
    }

    fn delete_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        let dests = self.dests_mut(vs)?;
        let at = dests
            .iter()
            .position(|d| d.same_destination(rs))
            .ok_or_else(|| err(format!("real server {rs} of {vs} does not exist")))?;
        dests.remove(at);
        self.log.push(format!("delete-rs {vs} {rs}"));
        Ok(())
    }

    fn update_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        let dests = self.dests_mut(vs)?;
        let held = dests
            .iter_mut()
            .find(|d| d.same_destination(rs))
            .ok_or_else(|| err(format!("real server {rs} of {vs} does not exist")))?;
        held.weight = rs.weight;
        self.log
            .push(format!("update-rs {vs} {rs} weight={}", rs.weight));
        Ok(())
    }

    fn configure_timeouts(
        &mut self,
        tcp: Duration,
        tcp_fin: Duration,
        udp: Duration,
    ) -> Result<(), DataplaneError> {
        self.timeouts = Some((tcp, tcp_fin, udp));
        self.log.push(format!(
            "set-timeouts {} {} {}",
            tcp.as_secs(),
            tcp_fin.as_secs(),
            udp.as_secs()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ServiceFlags;
    use crate::k8s::Protocol;

    fn vs() -> VirtualServer {
        VirtualServer {
            address: "10.0.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
            scheduler: "rr".into(),
            flags: ServiceFlags::NONE,
            timeout: 0,
        }
    }

    #[test]
    fn refuses_what_the_kernel_refuses_and_keeps_counts_on_update() {
        let mut ipvs = RecordingIpvs::default();
        let rs = RealServer::new("10.1.0.2".parse().unwrap(), 80, 1);
        assert!(ipvs.add_real_server(&vs(), &rs).is_err(), "no such vs");
        ipvs.add_virtual_server(&vs()).unwrap();
        assert!(ipvs.add_virtual_server(&vs()).is_err(), "exists");
        ipvs.add_real_server(&vs(), &rs).unwrap();
        ipvs.add_real_server(&vs(), &RealServer::new("10.1.0.10".parse().unwrap(), 80, 1))
            .unwrap();
        assert!(ipvs.add_real_server(&vs(), &rs).is_err(), "exists");
        assert!(ipvs.set_connections(&vs().key(), rs.address, 80, 3, 1));
        ipvs.update_real_server(&vs(), &RealServer::new(rs.address, 80, 0))
            .unwrap();
        let got = ipvs.get_real_servers(&vs()).unwrap();
        // Sorted by text, like upstream's fake: "10.1.0.10:80" < "10.1.0.2:80".
        assert_eq!(got[0].to_string(), "10.1.0.10:80");
        assert_eq!(
            (got[1].weight, got[1].active_conn, got[1].inactive_conn),
            (0, 3, 1)
        );
        ipvs.delete_virtual_server(&vs()).unwrap();
        assert!(ipvs.get_real_servers(&vs()).is_err());
        assert_eq!(ipvs.log.len(), 5);
    }
}
