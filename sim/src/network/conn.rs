//! The traffic driver: TCP connections and UDP datagrams played packet by
//! packet through the network, and what each one experienced.
//!
//! Models: a client (pod, external client or node process) opening a TCP
//! connection to `ip:port` at virtual time `t` from a source port drawn
//! from its seeded stream (Linux's ephemeral range 32768-60999, skipping
//! ports its open connections use): SYN, SYN-ACK, ACK, a request carrying
//! an identifier, the answer (the answering host's name and the addresses
//! it saw), and unless kept open FIN, FIN-ACK, ACK. A kept-open connection
//! can send another request later (proving it survives rule changes) and
//! be closed. UDP sends one datagram and takes one answer; a kept-open UDP
//! flow reuses its source port. The report says which host answered, the
//! source and destination it saw, or where and why the exchange failed
//! (dropped — by which rule —, refused by a reset, unreachable by an ICMP
//! error, or answered from an unexpected address), plus rules evaluated
//! per node for the first packet and for the whole exchange, and every
//! packet's hops (with traces when tracing is on). No retransmissions: a
//! dropped SYN is a failed connection.
//!
//! Must never: report a server the client did not hear from, or draw a
//! port from anything but the client's stream.
//!
//! Error contract: [`NetError`] for unknown hosts/connections, hosts that
//! cannot be clients, and rules that cannot be evaluated.

use std::collections::BTreeMap;
use std::net::IpAddr;

use petgraph::stable_graph::NodeIndex;
use rand_core::Rng;

use super::report::{ConnectionReport, ExchangeStep, Outcome};
use super::sockets::parse_answer;
use super::transit::{End, Transit};
use super::{HostKind, NetError, Network};
use crate::netfilter::Protocol;
use crate::node::RouteResult;
use crate::packet::{Packet, PacketRepr, TcpFlags, Transport};
use crate::rng::stream;
use crate::time::Instant;

/// A kept-open connection's id.
pub type ConnId = u64;

/// A kept-open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenConn {
    /// The client host.
    pub client: String,
    /// TCP or UDP.
    pub proto: Protocol,
    /// The client's address and port.
    pub client_addr: (IpAddr, u16),
    /// Where it connected.
    pub target: (IpAddr, u16),
    /// The host that answered first.
    pub server: Option<String>,
    seq: u32,
    ack: u32,
    requests: u64,
}

/// What came back to the client for one packet.
enum Back {
    Answer(Packet),
    /// A node's REJECT answered (`host: rule`).
    Rejected(String, Packet),
    Nothing,
    Failed(Outcome),
}

impl Network {
    /// The client's source address towards `dst`.
    fn source_for(&self, i: NodeIndex, dst: IpAddr) -> IpAddr {
        match &self.graph[i].kind {
            HostKind::Node(n) => match n.kernel.route(dst) {
                RouteResult::Local => dst,
                RouteResult::Unicast { src: Some(s), .. } => s,
                _ => n.ip,
            },
            HostKind::Pod(e) | HostKind::Client(e) => e.ip,
            _ => dst,
        }
    }

    fn alloc_port(&mut self, client: &str, proto: Protocol) -> u16 {
        let seed = self.seed;
        let used: Vec<u16> = self
            .conns
            .values()
            .filter(|c| c.client == client && c.proto == proto)
            .map(|c| c.client_addr.1)
            .collect();
        let rng = self
            .ports
            .entry(client.to_string())
            .or_insert_with(|| stream(seed, &format!("network/ports/{client}")));
        loop {
            let p = 32768 + (rng.next_u32() % (60999 - 32768 + 1)) as u16;
            if !used.contains(&p) {
                return p;
            }
        }
    }

    fn answer_at(&mut self, host: NodeIndex, pkt: &Packet) -> Option<Packet> {
        let name = self.graph[host].name.clone();
        match &mut self.graph[host].kind {
            HostKind::Node(n) => n.sockets.answer(&name, pkt),
            HostKind::Pod(e) | HostKind::Client(e) => e.sockets.answer(&name, pkt),
            _ => None,
        }
    }

    fn record(&self, report: &mut ConnectionReport, label: &str, tr: &Transit, first: bool) {
        let mut hops = tr.hops.clone();
        let mut t = tr;
        while let End::Rejected { reply, .. } = &t.end {
            hops.extend(reply.hops.iter().cloned());
            t = reply;
        }
        for h in &hops {
            if self.node(&h.host).is_ok() {
                *report.rules_total.entry(h.host.clone()).or_default() += h.rules_evaluated;
                if first {
                    *report.rules_first_packet.entry(h.host.clone()).or_default() +=
                        h.rules_evaluated;
                }
            }
        }
        report.steps.push(ExchangeStep {
            label: label.to_string(),
            hops,
        });
    }

    /// Send `pkt` from `client` and bring back what the other side answers.
    fn round_trip(
        &mut self,
        client: NodeIndex,
        pkt: Packet,
        t: Instant,
        label: &str,
        report: &mut ConnectionReport,
        first: bool,
    ) -> Result<Back, NetError> {
        let tr = self.transmit(client, pkt, t)?;
        self.record(report, label, &tr, first);
        let (server, arrived) = match tr.end {
            End::Socket { host, pkt } => (host, pkt),
            End::Dropped { host, reason, rule } => {
                return Ok(Back::Failed(Outcome::Dropped {
                    at: host,
                    reason,
                    rule,
                }))
            }
            End::Rejected {
                reply,
                host: at,
                by,
                ..
            } => {
                return Ok(match reply.end {
                    End::Socket { host, pkt } if host == client => {
                        Back::Rejected(format!("{at}: {by}"), pkt)
                    }
                    End::Socket { .. } => Back::Failed(Outcome::NoAnswer),
                    End::Dropped { host, reason, rule } => Back::Failed(Outcome::Dropped {
                        at: host,
                        reason,
                        rule,
                    }),
                    End::Rejected { host, rule, .. } => Back::Failed(Outcome::Dropped {
                        at: host,
                        reason: "the rejection was itself rejected".into(),
                        rule,
                    }),
                })
            }
        };
        let Some(answer) = self.answer_at(server, &arrived) else {
            return Ok(Back::Nothing);
        };
        let tr = self.transmit(server, answer, t)?;
        self.record(report, &format!("{label} answer"), &tr, false);
        Ok(match tr.end {
            End::Socket { host, pkt } if host == client => Back::Answer(pkt),
            End::Socket { host, pkt } => Back::Failed(Outcome::Misrouted {
                got: format!("{pkt} at {}", self.graph[host].name),
            }),
            End::Dropped { host, reason, rule } => Back::Failed(Outcome::Dropped {
                at: host,
                reason,
                rule,
            }),
            End::Rejected { host, by, rule, .. } => Back::Failed(Outcome::Dropped {
                at: host,
                reason: format!("answer rejected by {by}"),
                rule,
            }),
        })
    }

    /// Check an answer is from the target to the client, and classify it.
    fn classify(&self, conn: &OpenConn, back: Back) -> Result<Packet, Outcome> {
        let (p, by) = match back {
            Back::Answer(p) => {
                let by = p.src().to_string();
                (p, by)
            }
            Back::Rejected(by, p) => (p, by),
            Back::Nothing => return Err(Outcome::NoAnswer),
            Back::Failed(o) => return Err(o),
        };
        if p.is_icmp_error() {
            return Err(Outcome::Unreachable { by });
        }
        let ok_addrs = (p.src(), p.src_port()) == (conn.target.0, Some(conn.target.1))
            && (p.dst(), p.dst_port()) == (conn.client_addr.0, Some(conn.client_addr.1));
        if !ok_addrs {
            return Err(Outcome::Misrouted { got: p.to_string() });
        }
        if p.tcp_flags().is_some_and(|f| f.contains(TcpFlags::RST)) {
            return Err(Outcome::Refused { by });
        }
        Ok(p)
    }

    fn new_report(conn: &OpenConn) -> ConnectionReport {
        ConnectionReport {
            id: None,
            client: conn.client.clone(),
            proto: conn.proto,
            client_addr: conn.client_addr,
            target: conn.target,
            outcome: Outcome::NoAnswer,
            server: None,
            seen: None,
            rules_first_packet: BTreeMap::new(),
            rules_total: BTreeMap::new(),
            steps: Vec::new(),
            closed: false,
        }
    }

    fn packet(conn: &OpenConn, flags: TcpFlags, payload: Vec<u8>) -> Packet {
        let transport = match conn.proto {
            Protocol::Udp => Transport::Udp {
                src_port: conn.client_addr.1,
                dst_port: conn.target.1,
            },
            _ => Transport::Tcp {
                src_port: conn.client_addr.1,
                dst_port: conn.target.1,
                seq: conn.seq,
                ack: conn.ack,
                flags,
                window: 64240,
            },
        };
        Packet::build(&PacketRepr {
            src: conn.client_addr.0,
            dst: conn.target.0,
            ttl: 64,
            ident: 0,
            transport,
            payload,
        })
        .expect("addresses of one family")
    }

    fn start(
        &mut self,
        from: &str,
        src_port: Option<u16>,
        to: (IpAddr, u16),
        proto: Protocol,
    ) -> Result<(NodeIndex, OpenConn), NetError> {
        let ci = self.idx(from)?;
        if !matches!(
            self.graph[ci].kind,
            HostKind::Node(_) | HostKind::Pod(_) | HostKind::Client(_)
        ) {
            return Err(NetError::WrongKind {
                name: from.into(),
                what: "open connections",
            });
        }
        let src = self.source_for(ci, to.0);
        let port = match src_port {
            Some(p) => p,
            None => self.alloc_port(from, proto),
        };
        Ok((
            ci,
            OpenConn {
                client: from.to_string(),
                proto,
                client_addr: (src, port),
                target: to,
                server: None,
                seq: 1000,
                ack: 0,
                requests: 0,
            },
        ))
    }

    /// Send a request on a connection and read the answer into the report.
    fn request(
        &mut self,
        ci: NodeIndex,
        conn: &mut OpenConn,
        t: Instant,
        report: &mut ConnectionReport,
        first: bool,
    ) -> Result<bool, NetError> {
        conn.requests += 1;
        let body = format!("request id={}", conn.requests).into_bytes();
        let len = body.len() as u32;
        let p = Self::packet(conn, TcpFlags::PSH | TcpFlags::ACK, body);
        let label = if conn.proto == Protocol::Udp {
            "datagram"
        } else {
            "request"
        };
        let back = self.round_trip(ci, p, t, label, report, first)?;
        match self.classify(conn, back) {
            Ok(ans) => {
                conn.seq = conn.seq.wrapping_add(len);
                conn.ack = conn.ack.wrapping_add(ans.payload().len() as u32);
                match parse_answer(ans.payload()) {
                    Some((name, seen)) => {
                        report.server = Some(name);
                        report.seen = Some(seen);
                        report.outcome = Outcome::Answered;
                        Ok(true)
                    }
                    None => {
                        report.outcome = Outcome::NoAnswer;
                        Ok(false)
                    }
                }
            }
            Err(o) => {
                report.outcome = o;
                Ok(false)
            }
        }
    }

    /// Open a TCP connection from host `from` to `to` at `t`; keep it open
    /// or close it after the request.
    pub fn connect_tcp(
        &mut self,
        from: &str,
        to: (IpAddr, u16),
        t: Instant,
        keep_open: bool,
    ) -> Result<ConnectionReport, NetError> {
        self.connect_tcp_from(from, None, to, t, keep_open)
    }

    /// [`Network::connect_tcp`] from source port `src_port` (`None`: an
    /// ephemeral port from the client's stream) — to replay a flow.
    pub fn connect_tcp_from(
        &mut self,
        from: &str,
        src_port: Option<u16>,
        to: (IpAddr, u16),
        t: Instant,
        keep_open: bool,
    ) -> Result<ConnectionReport, NetError> {
        let (ci, mut conn) = self.start(from, src_port, to, Protocol::Tcp)?;
        let mut report = Self::new_report(&conn);
        let syn = Self::packet(&conn, TcpFlags::SYN, Vec::new());
        let back = self.round_trip(ci, syn, t, "SYN", &mut report, true)?;
        let synack = match self.classify(&conn, back) {
            Ok(p) => p,
            Err(o) => {
                report.outcome = o;
                report.closed = true;
                return Ok(report);
            }
        };
        conn.seq = conn.seq.wrapping_add(1);
        let repr = synack.repr();
        if let Transport::Tcp { seq, .. } = repr.transport {
            conn.ack = seq.wrapping_add(1);
        }
        let ack = Self::packet(&conn, TcpFlags::ACK, Vec::new());
        if let Back::Failed(o) = self.round_trip(ci, ack, t, "ACK", &mut report, false)? {
            report.outcome = o;
            report.closed = true;
            return Ok(report);
        }
        if !self.request(ci, &mut conn, t, &mut report, false)? {
            report.closed = true;
            return Ok(report);
        }
        conn.server = report.server.clone();
        if keep_open {
            self.keep_open(conn, &mut report);
        } else {
            self.fin(ci, &mut conn, t, &mut report)?;
        }
        Ok(report)
    }

    /// Keeps `conn` open under a new id, which the report carries.
    fn keep_open(&mut self, conn: OpenConn, report: &mut ConnectionReport) {
        let id = self.next_conn;
        self.next_conn += 1;
        report.id = Some(id);
        self.conns.insert(id, conn);
    }

    fn fin(
        &mut self,
        ci: NodeIndex,
        conn: &mut OpenConn,
        t: Instant,
        report: &mut ConnectionReport,
    ) -> Result<(), NetError> {
        let fin = Self::packet(conn, TcpFlags::FIN | TcpFlags::ACK, Vec::new());
        let back = self.round_trip(ci, fin, t, "FIN", report, false)?;
        report.closed = true;
        match self.classify(conn, back) {
            Ok(p) => {
                conn.seq = conn.seq.wrapping_add(1);
                if p.tcp_flags().is_some_and(|f| f.contains(TcpFlags::FIN)) {
                    conn.ack = conn.ack.wrapping_add(1);
                    let last = Self::packet(conn, TcpFlags::ACK, Vec::new());
                    self.round_trip(ci, last, t, "last ACK", report, false)?;
                }
            }
            Err(o) => report.outcome = o,
        }
        Ok(())
    }

    /// Send one UDP datagram from `from` to `to` at `t`; keep the flow to
    /// send more from the same port.
    pub fn send_udp(
        &mut self,
        from: &str,
        to: (IpAddr, u16),
        t: Instant,
        keep_open: bool,
    ) -> Result<ConnectionReport, NetError> {
        self.send_udp_from(from, None, to, t, keep_open)
    }

    /// [`Network::send_udp`] from source port `src_port` (`None`: an
    /// ephemeral port from the client's stream).
    pub fn send_udp_from(
        &mut self,
        from: &str,
        src_port: Option<u16>,
        to: (IpAddr, u16),
        t: Instant,
        keep_open: bool,
    ) -> Result<ConnectionReport, NetError> {
        let (ci, mut conn) = self.start(from, src_port, to, Protocol::Udp)?;
        let mut report = Self::new_report(&conn);
        let ok = self.request(ci, &mut conn, t, &mut report, true)?;
        conn.server = report.server.clone();
        if keep_open && ok {
            self.keep_open(conn, &mut report);
        } else {
            report.closed = true;
        }
        Ok(report)
    }

    /// Send another request on a kept-open connection at `t`. A connection
    /// whose request fails is forgotten (closed).
    pub fn send_again(&mut self, id: ConnId, t: Instant) -> Result<ConnectionReport, NetError> {
        let mut conn = self
            .conns
            .remove(&id)
            .ok_or(NetError::UnknownConnection { id })?;
        let ci = self.idx(&conn.client)?;
        let mut report = Self::new_report(&conn);
        report.id = Some(id);
        if self.request(ci, &mut conn, t, &mut report, true)? {
            self.conns.insert(id, conn);
        } else {
            report.closed = true;
        }
        Ok(report)
    }

    /// Close a kept-open connection at `t` (FIN exchange for TCP).
    pub fn close(&mut self, id: ConnId, t: Instant) -> Result<ConnectionReport, NetError> {
        let mut conn = self
            .conns
            .remove(&id)
            .ok_or(NetError::UnknownConnection { id })?;
        let ci = self.idx(&conn.client)?;
        let mut report = Self::new_report(&conn);
        report.id = Some(id);
        report.server = conn.server.clone();
        report.outcome = Outcome::Answered;
        if conn.proto == Protocol::Tcp {
            self.fin(ci, &mut conn, t, &mut report)?;
        }
        report.closed = true;
        Ok(report)
    }

    /// The kept-open connections, by id.
    pub fn open_connections(&self) -> impl Iterator<Item = (ConnId, &OpenConn)> {
        self.conns.iter().map(|(id, c)| (*id, c))
    }

    /// `conntrack -L` of a node at `t`.
    pub fn conntrack_listing(&self, node: &str, t: Instant) -> Result<String, NetError> {
        Ok(self.node(node)?.conntrack().list(&Default::default(), t))
    }
}
