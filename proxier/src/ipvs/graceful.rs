//! Graceful termination of IPVS real servers (upstream's
//! `pkg/proxy/ipvs/graceful_termination.go`).
//!
//! A destination that leaves a service is deleted at once when it has no
//! connections, or when its protocol does not drain (UDP, SCTP: the
//! kernel's `expire_nodest_conn` drops their flows). Otherwise it gets
//! weight 0 — the scheduler sends it nothing new while its connections
//! finish — and goes on a list. Every [`RS_CHECK_DELETE_INTERVAL`] the list
//! is retried: a destination whose active and inactive connection counts
//! (read back from the kernel) reach 0 is deleted. A destination that
//! returns to its service meanwhile is taken off the list by the proxier.
//!
//! Upstream runs the retry in a goroutine with a real timer. Here time is
//! the caller's: [`GracefulTermination::poll`] runs the retry when due and
//! [`GracefulTermination::next_check`] says when that is (upstream's
//! `wait.Until`: a check at start, then one per interval after each check).
//!
//! **Never:** reads the wall clock; deletes a draining TCP destination that
//! still has connections.
//!
//! **Errors:** kernel refusals are returned; a destination the kernel no
//! longer has is dropped from the list (upstream treats it as deleted).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::dataplane::{
    is_rs_graceful_termination_needed, DataplaneError, Ipvs, RealServer, VirtualServer,
};

/// How often the drain list is retried (upstream's `rsCheckDeleteInterval`).
pub const RS_CHECK_DELETE_INTERVAL: Duration = Duration::from_secs(60);

/// Upstream's `GetUniqueRSName`: `vs/rs`, e.g. `10.0.0.1:80/TCP/10.1.0.2:8080`.
pub fn unique_rs_name(vs: &VirtualServer, rs: &RealServer) -> String {
    format!("{vs}/{rs}")
}

/// The draining destinations and their retry clock.
#[derive(Debug, Clone)]
pub struct GracefulTermination {
    list: BTreeMap<String, (VirtualServer, RealServer)>,
    next_check: Timestamp,
}

impl GracefulTermination {
    /// A manager started at `now` (its first retry is one interval later;
    /// the check upstream runs at start finds an empty list).
    pub fn new(now: Timestamp) -> Self {
        GracefulTermination {
            list: BTreeMap::new(),
            next_check: now.plus(RS_CHECK_DELETE_INTERVAL),
        }
    }

    /// Whether `unique` (see [`unique_rs_name`]) is draining.
    pub fn in_termination_list(&self, unique: &str) -> bool {
        self.list.contains_key(unique)
    }

    /// The draining destinations' unique names, ordered.
    pub fn draining(&self) -> impl Iterator<Item = &str> {
        self.list.keys().map(String::as_str)
    }

    /// When [`poll`](Self::poll) next has work.
    pub fn next_check(&self) -> Timestamp {
        self.next_check
    }

    /// Upstream's `GracefulDeleteRS`: delete `rs` from `vs` now if it may go,
    /// else set its weight to 0 and put it on the drain list.
    pub fn graceful_delete_rs(
        &mut self,
        ipvs: &mut dyn Ipvs,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        // A failed attempt is only logged upstream; the weight update below
        // then reports the real problem, if any.
        let (deleted, _) = delete_rs(ipvs, vs, rs);
        if deleted {
            return Ok(());
        }
        let quiesced = RealServer {
            weight: 0,
            ..rs.clone()
        };
        ipvs.update_real_server(vs, &quiesced)?;
        self.list
            .entry(unique_rs_name(vs, rs))
            .or_insert_with(|| (vs.clone(), quiesced));
        Ok(())
    }

    /// Upstream's `tryDeleteRs` (`flushList`): retries every draining
    /// destination; returns the failures.
    pub fn try_delete_rs(&mut self, ipvs: &mut dyn Ipvs) -> Vec<DataplaneError> {
        let mut errors = Vec::new();
        let mut done = Vec::new();
        for (name, (vs, rs)) in &self.list {
            let (deleted, err) = delete_rs(ipvs, vs, rs);
            errors.extend(err);
            if deleted {
                done.push(name.clone());
            }
        }
        for name in done {
            self.list.remove(&name);
        }
        errors
    }

    /// Runs the retry if it is due at `now`, then re-arms the timer.
    pub fn poll(&mut self, now: Timestamp, ipvs: &mut dyn Ipvs) -> Vec<DataplaneError> {
        if now < self.next_check {
            return Vec::new();
        }
        let errors = self.try_delete_rs(ipvs);
        self.next_check = now.plus(RS_CHECK_DELETE_INTERVAL);
        errors
    }

    /// Upstream's `MoveRSOutofGracefulDeleteList`: the destination is wanted
    /// again, so delete it now (the caller re-adds it with full weight).
    pub fn move_rs_out_of_graceful_delete_list(
        &mut self,
        unique: &str,
        ipvs: &mut dyn Ipvs,
    ) -> Result<(), DataplaneError> {
        let (vs, rs) = self
            .list
            .get(unique)
            .ok_or_else(|| DataplaneError::new("ipvs", format!("failed to find rs: {unique:?}")))?;
        ipvs.delete_real_server(vs, rs)?;
        self.list.remove(unique);
        Ok(())
    }
}

/// Upstream's `deleteRsFunc`: `(deleted, error)`. A destination that is gone
/// counts as deleted (with an error), so it leaves the list.
fn delete_rs(
    ipvs: &mut dyn Ipvs,
    vs: &VirtualServer,
    target: &RealServer,
) -> (bool, Option<DataplaneError>) {
    let dests = match ipvs.get_real_servers(vs) {
        Ok(d) => d,
        Err(e) => return (false, Some(e)),
    };
    if let Some(rs) = dests.iter().find(|rs| target.same_destination(rs)) {
        if is_rs_graceful_termination_needed(vs.protocol) && rs.active_conn + rs.inactive_conn != 0
        {
            return (false, None);
        }
        return match ipvs.delete_real_server(vs, rs) {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        };
    }
    let message = format!(
        "Failed to delete rs {:?}, can't find the real server",
        unique_rs_name(vs, target)
    );
    (true, Some(DataplaneError::new("ipvs", message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::recording::RecordingIpvs;
    use crate::dataplane::ServiceFlags;
    use crate::k8s::Protocol;

    fn vs() -> VirtualServer {
        VirtualServer {
            address: "1.1.1.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
            scheduler: "rr".into(),
            flags: ServiceFlags::NONE,
            timeout: 0,
        }
    }

    #[test]
    fn a_draining_destination_goes_once_its_connections_end() {
        let mut ipvs = RecordingIpvs::default();
        ipvs.add_virtual_server(&vs()).unwrap();
        let rs = RealServer::new("10.0.0.1".parse().unwrap(), 80, 1);
        ipvs.add_real_server(&vs(), &rs).unwrap();
        ipvs.set_connections(&vs().key(), rs.address, 80, 2, 0);
        let mut g = GracefulTermination::new(Timestamp::ZERO);
        g.graceful_delete_rs(&mut ipvs, &vs(), &rs).unwrap();
        assert_eq!(ipvs.real_servers(&vs().key()).unwrap()[0].weight, 0);
        assert!(g.in_termination_list("1.1.1.1:80/TCP/10.0.0.1:80"));
        // Not due yet, and still busy when due.
        assert!(g.poll(Timestamp::from_secs(59), &mut ipvs).is_empty());
        assert!(g.poll(Timestamp::from_secs(60), &mut ipvs).is_empty());
        assert_eq!(g.next_check(), Timestamp::from_secs(120));
        assert_eq!(ipvs.real_servers(&vs().key()).unwrap().len(), 1);
        ipvs.set_connections(&vs().key(), rs.address, 80, 0, 0);
        g.poll(Timestamp::from_secs(120), &mut ipvs);
        assert!(ipvs.real_servers(&vs().key()).unwrap().is_empty());
        assert_eq!(g.draining().count(), 0);
    }

    #[test]
    fn a_vanished_destination_leaves_the_list() {
        let mut ipvs = RecordingIpvs::default();
        ipvs.add_virtual_server(&vs()).unwrap();
        let rs = RealServer::new("10.0.0.1".parse().unwrap(), 80, 1);
        ipvs.add_real_server(&vs(), &rs).unwrap();
        ipvs.set_connections(&vs().key(), rs.address, 80, 1, 0);
        let mut g = GracefulTermination::new(Timestamp::ZERO);
        g.graceful_delete_rs(&mut ipvs, &vs(), &rs).unwrap();
        ipvs.delete_real_server(&vs(), &rs).unwrap();
        let errors = g.try_delete_rs(&mut ipvs);
        assert_eq!(errors.len(), 1);
        assert_eq!(g.draining().count(), 0);
    }
}
