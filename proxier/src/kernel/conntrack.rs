//! [`Conntrack`] over ctnetlink (`NETLINK_NETFILTER`, the conntrack
//! subsystem), as upstream's `pkg/proxy/conntrack` does through
//! vishvananda/netlink.
//!
//! Listing is a dump (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`) filtered to one
//! L3 family by the request header and to one protocol here; deletion sends
//! one `IPCTNL_MSG_CT_DELETE` per flow, naming its original tuple, and reads
//! the acknowledgement (`ENOENT` means the flow was already gone). The
//! messages come from `netlink-packet-netfilter`, which models exactly
//! these: tuples (addresses, protocol, ports) for dump replies and delete
//! requests.
//!
//! The socket is opened inside the target namespace (see
//! [`super::netns::in_netns`]); conntrack tables are per namespace.
//!
//! **Error contract:** a socket that cannot be opened, a kernel error other
//! than `ENOENT`, or an undecodable reply is a [`DataplaneError`] naming the
//! operation and the errno.

use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as NlProtocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::exec::{Journal, KernelWrite};
use super::netns::in_netns;
use crate::dataplane::{Conntrack, ConntrackFlow, DataplaneError};
use crate::k8s::{IpFamily, Protocol};

const ENOENT: i32 = 2;

fn nl_family(family: IpFamily) -> NetfilterProtoFamily {
    match family {
        IpFamily::V4 => NetfilterProtoFamily::IPv4,
        IpFamily::V6 => NetfilterProtoFamily::IPv6,
    }
}

fn nl_protocol(protocol: Protocol) -> NlProtocol {
    match protocol {
        Protocol::Tcp => NlProtocol::Tcp,
        Protocol::Udp => NlProtocol::Udp,
        Protocol::Sctp => NlProtocol::Sctp,
    }
}

fn k8s_protocol(protocol: NlProtocol) -> Option<Protocol> {
    match protocol {
        NlProtocol::Tcp => Some(Protocol::Tcp),
        NlProtocol::Udp => Some(Protocol::Udp),
        NlProtocol::Sctp => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The fields of one direction's tuple.
#[derive(Default)]
struct Parsed {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<NlProtocol>,
    sport: Option<u16>,
    dport: Option<u16>,
}

fn parse_tuple(tuples: &[Tuple]) -> Parsed {
    let mut p = Parsed::default();
    for t in tuples {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => p.src = Some(*a),
                        IPTuple::DestinationAddress(a) => p.dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(parts) => {
                for part in parts {
                    match part {
                        ProtoTuple::Protocol(n) => p.proto = Some(*n),
                        ProtoTuple::SourcePort(n) => p.sport = Some(*n),
                        ProtoTuple::DestinationPort(n) => p.dport = Some(*n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    p
}

/// A dumped entry as a [`ConntrackFlow`] (`None` for entries without ports,
/// e.g. ICMP, or with missing tuples).
fn flow_of(attributes: &[ConntrackAttribute]) -> Option<ConntrackFlow> {
    let mut orig = None;
    let mut reply = None;
    for a in attributes {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = Some(parse_tuple(t)),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(parse_tuple(t)),
            _ => {}
        }
    }
    let (orig, reply) = (orig?, reply?);
    Some(ConntrackFlow {
        protocol: k8s_protocol(orig.proto?)?,
        orig_src: orig.src?,
        orig_dst: orig.dst?,
        orig_src_port: orig.sport?,
        orig_dst_port: orig.dport?,
        reply_src: reply.src?,
        reply_src_port: reply.sport?,
    })
}

/// The delete request's attributes: the flow's original tuple.
fn delete_attributes(flow: &ConntrackFlow) -> Vec<ConntrackAttribute> {
    vec![ConntrackAttribute::CtaTupleOrig(vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(flow.orig_src),
            IPTuple::DestinationAddress(flow.orig_dst),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(nl_protocol(flow.protocol)),
            ProtoTuple::SourcePort(flow.orig_src_port),
            ProtoTuple::DestinationPort(flow.orig_dst_port),
        ]),
    ])]
}

/// The conntrack table of the host (or a namespace).
#[derive(Debug, Clone)]
pub struct KernelConntrack {
    netns: Option<String>,
    journal: Journal,
}

fn nl_error(op: &str, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::new(format!("conntrack netlink {op}"), e.to_string())
}

impl KernelConntrack {
    pub fn new(netns: Option<String>, journal: Journal) -> Self {
        KernelConntrack { netns, journal }
    }

    fn socket(&self) -> Result<Socket, DataplaneError> {
        in_netns(self.netns.as_deref(), || -> std::io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_NETFILTER)?;
            socket.bind_auto()?;
            socket.connect(&SocketAddr::new(0, 0))?;
            Ok(socket)
        })?
        .map_err(|e| nl_error("socket", e))
    }

    fn send(
        socket: &Socket,
        flags: u16,
        seq: u32,
        family: NetfilterProtoFamily,
        message: ConntrackMessage,
    ) -> Result<(), DataplaneError> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                message,
            )),
        );
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        socket.send(&buf, 0).map_err(|e| nl_error("send", e))?;
        Ok(())
    }

    /// Reads replies until the dump ends (`Done`) or, for a request with
    /// `NLM_F_ACK`, until its acknowledgement; returns the conntrack
    /// messages and the acknowledgement's errno (0 for success).
    fn receive(socket: &Socket, op: &str) -> Result<(Vec<ConntrackMessage>, i32), DataplaneError> {
        let mut messages = Vec::new();
        loop {
            let (buf, _) = socket.recv_from_full().map_err(|e| nl_error(op, e))?;
            let mut offset = 0;
            while offset < buf.len() {
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..])
                    .map_err(|e| nl_error(op, format!("undecodable reply: {e}")))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok((messages, 0)),
                    NetlinkPayload::Error(e) => {
                        return Ok((messages, e.code.map_or(0, |c| -c.get())));
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        if let NetfilterMessageInner::Conntrack(c) = m.inner {
                            messages.push(c);
                        }
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }
}

impl Conntrack for KernelConntrack {
    fn list_flows(
        &mut self,
        family: IpFamily,
        protocol: Protocol,
    ) -> Result<Vec<ConntrackFlow>, DataplaneError> {
        let socket = self.socket()?;
        Self::send(
            &socket,
            NLM_F_REQUEST | NLM_F_DUMP,
            1,
            nl_family(family),
            ConntrackMessage::Get(vec![]),
        )?;
        let (messages, errno) = Self::receive(&socket, "dump")?;
        if errno != 0 {
            return Err(nl_error("dump", std::io::Error::from_raw_os_error(errno)));
        }
        let mut flows: Vec<ConntrackFlow> = messages
            .iter()
            .filter_map(|m| match m {
                ConntrackMessage::New(attrs) => flow_of(attrs),
                _ => None,
            })
            .filter(|f| f.protocol == protocol && IpFamily::of(&f.orig_dst) == family)
            .collect();
        flows.sort();
        Ok(flows)
    }

    fn delete_flows(&mut self, flows: &[ConntrackFlow]) -> Result<usize, DataplaneError> {
        if flows.is_empty() {
            return Ok(0);
        }
        let socket = self.socket()?;
        let mut deleted = 0;
        for (i, flow) in flows.iter().enumerate() {
            let family = nl_family(IpFamily::of(&flow.orig_dst));
            Self::send(
                &socket,
                NLM_F_REQUEST | NLM_F_ACK,
                i as u32 + 1,
                family,
                ConntrackMessage::Delete(delete_attributes(flow)),
            )?;
            let (_, errno) = Self::receive(&socket, "delete")?;
            let command = format!(
                "conntrack netlink delete {:?} {}:{} -> {}:{}",
                flow.protocol, flow.orig_src, flow.orig_src_port, flow.orig_dst, flow.orig_dst_port
            );
            match errno {
                0 => {
                    deleted += 1;
                    self.journal.record(KernelWrite {
                        command,
                        input: None,
                        outcome: Ok(()),
                    });
                }
                ENOENT => {}
                e => {
                    let err = DataplaneError::new(
                        command,
                        std::io::Error::from_raw_os_error(e).to_string(),
                    );
                    self.journal.record(KernelWrite {
                        command: err.operation.clone(),
                        input: None,
                        outcome: Err(err.to_string()),
                    });
                    return Err(err);
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dumped_entry_becomes_a_flow_and_back() {
        let flow = ConntrackFlow {
            protocol: Protocol::Udp,
            orig_src: "10.0.0.1".parse().unwrap(),
            orig_dst: "172.30.0.1".parse().unwrap(),
            orig_src_port: 40000,
            orig_dst_port: 53,
            reply_src: "10.128.0.5".parse().unwrap(),
            reply_src_port: 5353,
        };
        let mut attrs = delete_attributes(&flow);
        attrs.push(ConntrackAttribute::CtaTupleReply(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(flow.reply_src),
                IPTuple::DestinationAddress(flow.orig_src),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(NlProtocol::Udp),
                ProtoTuple::SourcePort(5353),
                ProtoTuple::DestinationPort(40000),
            ]),
        ]));
        assert_eq!(flow_of(&attrs), Some(flow));
        // ICMP entries have no ports: skipped.
        let icmp = vec![ConntrackAttribute::CtaTupleOrig(vec![Tuple::Proto(vec![
            ProtoTuple::Protocol(NlProtocol::Icmp),
        ])])];
        assert_eq!(flow_of(&icmp), None);
    }
}
