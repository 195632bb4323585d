//! A generic-netlink socket bound to the IPVS family: resolves the family
//! id (`CTRL_CMD_GETFAMILY` for `"IPVS"`), sends one request at a time and
//! collects its replies until the acknowledgement (requests) or `DONE`
//! (dumps).
//!
//! The socket is opened inside the target namespace (see
//! [`super::super::netns::in_netns`]); IPVS tables are per namespace.
//!
//! **Error contract:** a missing family is [`NlError::NoIpvs`] (the kernel
//! lacks IPVS: `modprobe ip_vs`, or a kernel with `CONFIG_IP_VS`); a kernel
//! refusal is [`NlError::Errno`] with the errno; anything else (socket,
//! undecodable reply) is [`NlError::Other`]. Never panics on what the
//! kernel sends.

use std::fmt;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use super::message::IpvsMessage;
use super::wire::FAMILY_NAME;
use crate::kernel::netns::in_netns;

const ENOENT: i32 = 2;

/// Why a netlink exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NlError {
    /// The kernel has no generic-netlink family "IPVS".
    NoIpvs,
    /// The kernel refused the request with this errno.
    Errno(i32),
    Other(String),
}

/// What to tell a user whose kernel has no IPVS.
pub const NO_IPVS: &str = "the kernel has no IPVS: the generic netlink family \"IPVS\" is absent (load it with `modprobe ip_vs`, or use a kernel built with CONFIG_IP_VS)";

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NlError::NoIpvs => f.write_str(NO_IPVS),
            NlError::Errno(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
            NlError::Other(s) => f.write_str(s),
        }
    }
}

/// A socket talking to the IPVS family of one namespace.
pub struct IpvsSocket {
    socket: Socket,
    family_id: u16,
    seq: u32,
}

impl fmt::Debug for IpvsSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpvsSocket")
            .field("family_id", &self.family_id)
            .finish_non_exhaustive()
    }
}

fn other(what: &str, e: impl fmt::Display) -> NlError {
    NlError::Other(format!("{what}: {e}"))
}

/// Sends `payload` and collects the inner messages of the replies. Reads
/// until `DONE` (dumps) or the acknowledgement (requests with `NLM_F_ACK`).
fn exchange<P>(socket: &Socket, seq: u32, flags: u16, payload: P) -> Result<Vec<P>, NlError>
where
    P: netlink_packet_core::NetlinkSerializable
        + netlink_packet_core::NetlinkDeserializable
        + fmt::Debug,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map_err(|e| other("send", e))?;
    let mut out = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full().map_err(|e| other("receive", e))?;
        let mut offset = 0;
        while offset < buf.len() {
            let msg = NetlinkMessage::<P>::deserialize(&buf[offset..])
                .map_err(|e| other("undecodable reply", e))?;
            let len = msg.header.length as usize;
            let ours = msg.header.sequence_number == seq;
            match msg.payload {
                NetlinkPayload::Done(_) if ours => return Ok(out),
                NetlinkPayload::Error(e) if ours => {
                    return match e.code {
                        None => Ok(out),
                        Some(c) => Err(NlError::Errno(-c.get())),
                    };
                }
                NetlinkPayload::InnerMessage(m) if ours => {
                    out.push(m);
                    // A single reply without NLM_F_ACK ends the exchange.
                    if flags & (NLM_F_ACK | NLM_F_DUMP) == 0 {
                        return Ok(out);
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

impl IpvsSocket {
    /// Opens a socket in `netns` (the caller's namespace for `None`) and
    /// resolves the IPVS family.
    pub fn open(netns: Option<&str>) -> Result<IpvsSocket, NlError> {
        let socket = in_netns(netns, || -> std::io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_GENERIC)?;
            socket.bind_auto()?;
            socket.connect(&SocketAddr::new(0, 0))?;
            Ok(socket)
        })
        .map_err(|e| NlError::Other(e.to_string()))?
        .map_err(|e| other("generic netlink socket", e))?;
        let request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_string())],
        });
        let replies = match exchange(&socket, 1, NLM_F_REQUEST | NLM_F_ACK, request) {
            Err(NlError::Errno(ENOENT)) => return Err(NlError::NoIpvs),
            other => other?,
        };
        let family_id = replies
            .iter()
            .flat_map(|m| &m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(NlError::NoIpvs)?;
        Ok(IpvsSocket {
            socket,
            family_id,
            seq: 1,
        })
    }

    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    fn send(&mut self, message: IpvsMessage, flags: u16) -> Result<Vec<IpvsMessage>, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let mut genl = GenlMessage::from_payload(message);
        genl.set_resolved_family_id(self.family_id);
        Ok(exchange(&self.socket, self.seq, flags, genl)?
            .into_iter()
            .map(|m| m.payload)
            .collect())
    }

    /// A request acknowledged by the kernel; returns its replies (a get).
    pub fn request(&mut self, message: IpvsMessage) -> Result<Vec<IpvsMessage>, NlError> {
        self.send(message, NLM_F_REQUEST | NLM_F_ACK)
    }

    /// A dump: every reply until `DONE`.
    pub fn dump(&mut self, message: IpvsMessage) -> Result<Vec<IpvsMessage>, NlError> {
        self.send(message, NLM_F_REQUEST | NLM_F_DUMP)
    }
}
