//! Encode/decode checks of the IPVS messages against byte layouts written
//! out by hand from `include/uapi/linux/ip_vs.h` (attribute numbers, `struct
//! ip_vs_flags`, big-endian ports) and netlink's 4-byte attribute
//! alignment. Little-endian hosts only (the host-order fields are written
//! out for x86).

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;

use super::*;

fn vs(persistent: bool) -> VirtualServer {
    VirtualServer {
        address: "10.96.0.10".parse().unwrap(),
        protocol: Protocol::Tcp,
        port: 80,
        scheduler: "rr".into(),
        flags: if persistent {
            ServiceFlags::PERSISTENT
        } else {
            ServiceFlags::NONE
        },
        timeout: if persistent { 10800 } else { 0 },
    }
}

fn emit(attrs: &[CmdAttr]) -> Vec<u8> {
    let mut buf = vec![0; attrs.buffer_len()];
    attrs.emit(&mut buf);
    buf
}

/// `IPVS_CMD_ATTR_SERVICE` holding AF, PROTOCOL, ADDR, PORT, SCHED_NAME,
/// FLAGS, TIMEOUT, NETMASK for 10.96.0.10:80/TCP rr persistent 10800.
const NEW_SERVICE_ATTRS: &[u8] = &[
    0x48, 0x00, 0x01, 0x00, // nested IPVS_CMD_ATTR_SERVICE, 72 bytes
    0x06, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, // AF = AF_INET, padded
    0x06, 0x00, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, // PROTOCOL = 6
    0x08, 0x00, 0x03, 0x00, 10, 96, 0, 10, // ADDR, 4 bytes
    0x06, 0x00, 0x04, 0x00, 0x00, 0x50, 0x00, 0x00, // PORT 80, big-endian
    0x07, 0x00, 0x06, 0x00, b'r', b'r', 0x00, 0x00, // SCHED_NAME "rr\0"
    0x0c, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, // FLAGS
    0x08, 0x00, 0x08, 0x00, 0x30, 0x2a, 0x00, 0x00, // TIMEOUT 10800
    0x08, 0x00, 0x09, 0x00, 0xff, 0xff, 0xff, 0xff, // NETMASK
];

#[test]
#[cfg(target_endian = "little")]
fn a_new_service_has_ip_vs_h_layout() {
    let attrs = [CmdAttr::Service(service_attrs(&vs(true)))];
    assert_eq!(emit(&attrs), NEW_SERVICE_ATTRS);
    let back = parse_all(NEW_SERVICE_ATTRS, |n| CmdAttr::parse(n)).unwrap();
    assert_eq!(back, attrs);
}

#[test]
#[cfg(target_endian = "little")]
fn a_new_destination_has_ip_vs_h_layout() {
    let rs = RealServer::new("10.244.1.5".parse().unwrap(), 8080, 1);
    let attrs = [
        CmdAttr::Service(service_key_attrs(&vs(false))),
        CmdAttr::Dest(dest_attrs(&rs)),
    ];
    let bytes = emit(&attrs);
    let dest: &[u8] = &[
        0x34, 0x00, 0x02, 0x00, // nested IPVS_CMD_ATTR_DEST, 52 bytes
        0x08, 0x00, 0x01, 0x00, 10, 244, 1, 5, // ADDR
        0x06, 0x00, 0x02, 0x00, 0x1f, 0x90, 0x00, 0x00, // PORT 8080 big-endian
        0x08, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, // FWD_METHOD masq
        0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, // WEIGHT 1
        0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, // U_THRESH
        0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, // L_THRESH
    ];
    // The service key: AF, PROTOCOL, ADDR, PORT (36 bytes with its header).
    assert_eq!(&bytes[..4], &[0x24, 0x00, 0x01, 0x00]);
    assert_eq!(&bytes[36..], dest);
}

#[test]
fn a_dumped_service_strips_hashed_and_reads_the_16_byte_address() {
    // What ip_vs_genl_fill_service sends: a 16-byte nf_inet_addr, flags
    // with HASHED set and mask ~0, and statistics (kept raw).
    let mut addr = vec![10, 96, 0, 10];
    addr.resize(16, 0);
    let reply = [CmdAttr::Service(vec![
        SvcAttr::Af(AF_INET),
        SvcAttr::Protocol(17),
        SvcAttr::Addr(addr),
        SvcAttr::Port(53),
        SvcAttr::SchedName("rr".into()),
        SvcAttr::Flags {
            flags: 0x3,
            mask: u32::MAX,
        },
        SvcAttr::Timeout(10800),
        SvcAttr::Netmask(u32::MAX),
        SvcAttr::Other(netlink_packet_core::DefaultNla::new(10, vec![0; 8])),
    ])];
    let bytes = emit(&reply);
    let parsed = parse_all(&bytes, |n| CmdAttr::parse(n)).unwrap();
    let msg = IpvsMessage::new(cmd::NEW_SERVICE, parsed);
    let got = virtual_server_of(msg.service().unwrap()).unwrap().unwrap();
    assert_eq!(
        got,
        VirtualServer {
            protocol: Protocol::Udp,
            port: 53,
            flags: ServiceFlags::PERSISTENT,
            timeout: 10800,
            ..vs(false)
        }
    );
}

#[test]
fn a_dumped_destination_keeps_its_connection_counts() {
    let v6: IpAddr = "fd00::5".parse().unwrap();
    let attrs = vec![
        DestAttr::Addr(addr_bytes(v6)),
        DestAttr::Port(8080),
        DestAttr::FwdMethod(CONN_F_MASQ),
        DestAttr::Weight(0),
        DestAttr::ActiveConns(3),
        DestAttr::InactiveConns(7),
        DestAttr::PersistConns(1),
        DestAttr::AddrFamily(AF_INET6),
    ];
    let bytes = emit(&[CmdAttr::Dest(attrs)]);
    let parsed = parse_all(&bytes, |n| CmdAttr::parse(n)).unwrap();
    let msg = IpvsMessage::new(cmd::NEW_DEST, parsed);
    // The service was IPv4; the destination's own family wins.
    let rs = real_server_of(msg.dest().unwrap(), AF_INET).unwrap();
    assert_eq!(
        rs,
        RealServer {
            active_conn: 3,
            inactive_conn: 7,
            ..RealServer::new(v6, 8080, 0)
        }
    );
}

#[test]
fn whole_message_has_the_genl_header_and_resolved_family() {
    let mut genl = GenlMessage::from_payload(IpvsMessage::new(cmd::FLUSH, vec![]));
    genl.set_resolved_family_id(0x1234);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(genl));
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    assert_eq!(buf.len(), 20, "nlmsghdr + genlmsghdr, no attributes");
    assert_eq!(
        &buf[4..6],
        &0x1234u16.to_ne_bytes(),
        "nlmsg_type = family id"
    );
    assert_eq!(&buf[16..20], &[cmd::FLUSH, FAMILY_VERSION, 0, 0]);
    let back = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(&buf).unwrap();
    match back.payload {
        NetlinkPayload::InnerMessage(m) => assert_eq!(m.payload.cmd, cmd::FLUSH),
        other => panic!("{other:?}"),
    }
}

#[test]
fn replies_kube_proxy_cannot_have_made_are_skipped_or_refused() {
    let fwmark = [SvcAttr::Af(AF_INET), SvcAttr::Fwmark(7)];
    assert_eq!(virtual_server_of(&fwmark), Ok(None));
    let icmp = [
        SvcAttr::Af(AF_INET),
        SvcAttr::Protocol(1),
        SvcAttr::Addr(vec![1, 2, 3, 4]),
        SvcAttr::Port(0),
    ];
    assert_eq!(virtual_server_of(&icmp), Ok(None));
    assert!(addr_from(&[1, 2, 3], AF_INET).is_err());
    assert!(virtual_server_of(&[SvcAttr::Protocol(6)]).is_err());
    // A short flags attribute is a decode error, not a panic.
    let bad: &[u8] = &[0x0c, 0x00, 0x01, 0x00, 0x08, 0x00, 0x07, 0x00, 1, 0, 0, 0];
    assert!(parse_all(bad, |n| CmdAttr::parse(n)).is_err());
}
