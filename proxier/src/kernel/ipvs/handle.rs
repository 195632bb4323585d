//! [`KernelIpvs`]: the [`Ipvs`] trait over generic netlink, one request per
//! call, as upstream's `utilipvs` does over moby/ipvs.
//!
//! The socket is opened on first use and kept (shared by the handle's
//! clones); a failed exchange drops it, so the next call opens a fresh one.
//! `get_virtual_server` maps the kernel's `ESRCH` ("no such service") to
//! `None`; everything else the kernel refuses is an error. Every write is
//! recorded in the [`Journal`].
//!
//! **Error contract:** a [`DataplaneError`] whose `operation` names the
//! netlink command and its target (`ipvs netlink add virtual server
//! 10.96.0.10:80/TCP`) and whose `message` is the errno's text, or
//! [`NO_IPVS`](super::socket::NO_IPVS) when the kernel has no IPVS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::message::*;
use super::socket::{IpvsSocket, NlError};
use super::wire::{cmd, CmdAttr};
use crate::dataplane::{DataplaneError, Ipvs, RealServer, VirtualServer};
use crate::kernel::exec::{Journal, KernelWrite};

const ESRCH: i32 = 3;

/// The IPVS table of the host (or a namespace).
#[derive(Debug, Clone)]
pub struct KernelIpvs {
    netns: Option<String>,
    journal: Journal,
    socket: Arc<Mutex<Option<IpvsSocket>>>,
}

impl KernelIpvs {
    pub fn new(netns: Option<String>, journal: Journal) -> Self {
        KernelIpvs {
            netns,
            journal,
            socket: Arc::default(),
        }
    }

    /// Whether this kernel has IPVS (opens the socket if needed).
    pub fn probe(&self) -> Result<(), DataplaneError> {
        self.with_socket("ipvs netlink resolve family IPVS", |_| Ok(()))
    }

    fn with_socket<T>(
        &self,
        operation: &str,
        f: impl FnOnce(&mut IpvsSocket) -> Result<T, NlError>,
    ) -> Result<T, DataplaneError> {
        let mut guard = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let socket = IpvsSocket::open(self.netns.as_deref())
                .map_err(|e| DataplaneError::new(operation, e.to_string()))?;
            *guard = Some(socket);
        }
        let socket = guard.as_mut().expect("opened above");
        let result = f(socket);
        if let Err(NlError::Other(_)) = &result {
            *guard = None;
        }
        result.map_err(|e| DataplaneError::new(operation, e.to_string()))
    }

    /// A new or changed virtual server, with all its attributes.
    fn write_service(
        &self,
        verb: &str,
        command: u8,
        vs: &VirtualServer,
    ) -> Result<(), DataplaneError> {
        self.write(
            format!(
                "ipvs netlink {verb} virtual server {vs} {}{}",
                vs.scheduler,
                persistence(vs)
            ),
            service_message(command, vs, true),
        )
    }

    /// A write: sent, acknowledged, recorded.
    fn write(&self, operation: String, message: IpvsMessage) -> Result<(), DataplaneError> {
        let result = self.with_socket(&operation, |s| s.request(message).map(|_| ()));
        self.journal.record(KernelWrite {
            command: operation,
            input: None,
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }
}

fn service_message(command: u8, vs: &VirtualServer, full: bool) -> IpvsMessage {
    let attrs = if full {
        service_attrs(vs)
    } else {
        service_key_attrs(vs)
    };
    IpvsMessage::new(command, vec![CmdAttr::Service(attrs)])
}

fn dest_message(command: u8, vs: &VirtualServer, dest: Vec<super::wire::DestAttr>) -> IpvsMessage {
    IpvsMessage::new(
        command,
        vec![CmdAttr::Service(service_key_attrs(vs)), CmdAttr::Dest(dest)],
    )
}

fn decode<T>(operation: &str, r: Result<T, String>) -> Result<T, DataplaneError> {
    r.map_err(|e| DataplaneError::new(operation, format!("unexpected reply: {e}")))
}

impl Ipvs for KernelIpvs {
    fn flush(&mut self) -> Result<(), DataplaneError> {
        self.write(
            "ipvs netlink flush".into(),
            IpvsMessage::new(cmd::FLUSH, vec![]),
        )
    }

    fn add_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        self.write_service("add", cmd::NEW_SERVICE, vs)
    }

    fn update_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        self.write_service("update", cmd::SET_SERVICE, vs)
    }

    fn delete_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError> {
        self.write(
            format!("ipvs netlink delete virtual server {vs}"),
            service_message(cmd::DEL_SERVICE, vs, false),
        )
    }

    fn get_virtual_server(
        &mut self,
        vs: &VirtualServer,
    ) -> Result<Option<VirtualServer>, DataplaneError> {
        let op = format!("ipvs netlink get virtual server {vs}");
        let replies = match self.with_socket(&op, |s| {
            match s.request(service_message(cmd::GET_SERVICE, vs, false)) {
                Err(NlError::Errno(ESRCH)) => Ok(None),
                other => other.map(Some),
            }
        })? {
            None => return Ok(None),
            Some(r) => r,
        };
        for m in &replies {
            if let Some(attrs) = m.service() {
                if let Some(found) = decode(&op, virtual_server_of(attrs))? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    fn get_virtual_servers(&mut self) -> Result<Vec<VirtualServer>, DataplaneError> {
        let op = "ipvs netlink list virtual servers";
        let replies =
            self.with_socket(op, |s| s.dump(IpvsMessage::new(cmd::GET_SERVICE, vec![])))?;
        let mut out = Vec::new();
        for m in &replies {
            if let Some(attrs) = m.service() {
                out.extend(decode(op, virtual_server_of(attrs))?);
            }
        }
        Ok(out)
    }

    fn add_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        self.write(
            format!(
                "ipvs netlink add real server {vs} -> {rs} weight {}",
                rs.weight
            ),
            dest_message(cmd::NEW_DEST, vs, dest_attrs(rs)),
        )
    }

    fn get_real_servers(&mut self, vs: &VirtualServer) -> Result<Vec<RealServer>, DataplaneError> {
        let op = format!("ipvs netlink list real servers of {vs}");
        let replies = self.with_socket(&op, |s| {
            s.dump(IpvsMessage::new(
                cmd::GET_DEST,
                vec![CmdAttr::Service(service_key_attrs(vs))],
            ))
        })?;
        let af = service_af(&service_key_attrs(vs));
        let mut out = Vec::new();
        for m in &replies {
            if let Some(attrs) = m.dest() {
                out.push(decode(&op, real_server_of(attrs, af))?);
            }
        }
        Ok(out)
    }

    fn delete_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        self.write(
            format!("ipvs netlink delete real server {vs} -> {rs}"),
            dest_message(cmd::DEL_DEST, vs, dest_key_attrs(rs)),
        )
    }

    fn update_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError> {
        self.write(
            format!(
                "ipvs netlink update real server {vs} -> {rs} weight {}",
                rs.weight
            ),
            dest_message(cmd::SET_DEST, vs, dest_attrs(rs)),
        )
    }

    fn configure_timeouts(
        &mut self,
        tcp: Duration,
        tcp_fin: Duration,
        udp: Duration,
    ) -> Result<(), DataplaneError> {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        self.write(
            format!(
                "ipvs netlink set timeouts tcp {} tcpfin {} udp {}",
                secs(tcp),
                secs(tcp_fin),
                secs(udp)
            ),
            IpvsMessage::new(
                cmd::SET_CONFIG,
                vec![
                    CmdAttr::TimeoutTcp(secs(tcp)),
                    CmdAttr::TimeoutTcpFin(secs(tcp_fin)),
                    CmdAttr::TimeoutUdp(secs(udp)),
                ],
            ),
        )
    }
}

fn persistence(vs: &VirtualServer) -> String {
    if vs
        .flags
        .contains(crate::dataplane::ServiceFlags::PERSISTENT)
    {
        format!(" persistent {}", vs.timeout)
    } else {
        String::new()
    }
}
