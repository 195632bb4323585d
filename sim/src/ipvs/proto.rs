//! Per-protocol connection state: the TCP, UDP and SCTP state machines of
//! `ip_vs_proto_tcp.c`, `ip_vs_proto_udp.c` and `ip_vs_proto_sctp.c`, with
//! their state names, timeout tables and which states count as "active".
//!
//! Models: `tcp_states[]` (INPUT, OUTPUT, INPUT-ONLY × syn/fin/ack/rst ×
//! state, the non-`secure_tcp` table), `tcp_timeouts[]`,
//! `tcp_state_active_table[]`, `sctp_states[][][]` with `sctp_events[]`,
//! `sctp_timeouts[]`, and UDP's single state. A TCP packet without SYN, FIN,
//! ACK or RST moves the connection to CLOSE, as `set_tcp_state` does.
//!
//! Must never: keep state of its own (the connection table holds it).
//!
//! Error contract: pure functions over valid enum values; nothing fails.

use std::time::Duration;

/// IPVS TCP states (`IP_VS_TCP_S_*`), in kernel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    None,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 11] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// `tcp_state_name_table`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// `tcp_state_active_table`: counted in ActiveConn rather than InActConn.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// IPVS SCTP states (`IP_VS_SCTP_S_*`), in kernel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SctpState {
    None,
    Init1,
    Init,
    CookieSent,
    CookieReplied,
    CookieWait,
    Cookie,
    CookieEchoed,
    Established,
    ShutdownSent,
    ShutdownReceived,
    ShutdownAckSent,
    Rejected,
    Closed,
}

impl SctpState {
    /// Every state, in kernel order.
    pub const ALL: [SctpState; 14] = [
        SctpState::None,
        SctpState::Init1,
        SctpState::Init,
        SctpState::CookieSent,
        SctpState::CookieReplied,
        SctpState::CookieWait,
        SctpState::Cookie,
        SctpState::CookieEchoed,
        SctpState::Established,
        SctpState::ShutdownSent,
        SctpState::ShutdownReceived,
        SctpState::ShutdownAckSent,
        SctpState::Rejected,
        SctpState::Closed,
    ];

    /// `sctp_state_name_table`.
    pub fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Init1 => "INIT1",
            SctpState::Init => "INIT",
            SctpState::CookieSent => "C-SENT",
            SctpState::CookieReplied => "C-REPLIED",
            SctpState::CookieWait => "C-WAIT",
            SctpState::Cookie => "COOKIE",
            SctpState::CookieEchoed => "C-ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "S-SENT",
            SctpState::ShutdownReceived => "S-RECEIVED",
            SctpState::ShutdownAckSent => "S-ACK-SENT",
            SctpState::Rejected => "REJECTED",
            SctpState::Closed => "CLOSED",
        }
    }
}

/// The state of one IPVS connection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnState {
    Tcp(TcpState),
    /// UDP has one state, `IP_VS_UDP_S_NORMAL`, named "UDP".
    Udp,
    Sctp(SctpState),
    /// A persistence template: `IP_VS_CTPL_S_NONE` or `_ASSURED` (set once a
    /// controlled connection is established or replied to).
    Template {
        assured: bool,
    },
}

impl ConnState {
    /// `ip_vs_state_name`, as `/proc/net/ip_vs_conn` and `ipvsadm -Lnc` show it.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Tcp(s) => s.name(),
            ConnState::Udp => "UDP",
            ConnState::Sctp(s) => s.name(),
            ConnState::Template { assured: false } => "NONE",
            ConnState::Template { assured: true } => "ASSURED",
        }
    }

    /// Whether the connection counts in ActiveConn (TCP active states and
    /// SCTP ESTABLISHED; UDP and templates never).
    pub fn is_active(self) -> bool {
        match self {
            ConnState::Tcp(s) => s.is_active(),
            ConnState::Sctp(s) => s == SctpState::Established,
            ConnState::Udp | ConnState::Template { .. } => false,
        }
    }

    /// Whether this is an ESTABLISHED state (assures a controlling template).
    pub(crate) fn is_established(self) -> bool {
        matches!(
            self,
            ConnState::Tcp(TcpState::Established) | ConnState::Sctp(SctpState::Established)
        )
    }
}

/// Packet direction as the state tables see it (`IP_VS_DIR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Client to real server.
    Input,
    /// Real server to client (seen only with NAT).
    Output,
    /// Client to server on a connection that sees no output (DR, tunnel).
    InputOnly,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Input => 0,
            Dir::Output => 1,
            Dir::InputOnly => 2,
        }
    }
}

use SctpState as Sc;
use TcpState as T;

/// `tcp_states[]`: [direction*4 + event][state], events syn, fin, ack, rst.
#[rustfmt::skip]
const TCP_TABLE: [[TcpState; 11]; 12] = [
    // INPUT      sNO            sES            sSS         sSR            sFW          sTW          sCL       sCW           sLA          sLI        sSA
    /*syn*/ [T::SynRecv, T::Established, T::Established, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv],
    /*fin*/ [T::Close, T::CloseWait, T::SynSent, T::TimeWait, T::TimeWait, T::TimeWait, T::Close, T::CloseWait, T::LastAck, T::Listen, T::TimeWait],
    /*ack*/ [T::Established, T::Established, T::SynSent, T::Established, T::FinWait, T::TimeWait, T::Close, T::CloseWait, T::Close, T::Listen, T::Established],
    /*rst*/ [T::Close, T::Close, T::Close, T::SynRecv, T::Close, T::Close, T::Close, T::Close, T::LastAck, T::Listen, T::SynRecv],
    // OUTPUT
    /*syn*/ [T::SynSent, T::Established, T::SynSent, T::SynRecv, T::SynSent, T::SynSent, T::SynSent, T::SynSent, T::SynSent, T::Listen, T::SynRecv],
    /*fin*/ [T::TimeWait, T::FinWait, T::SynSent, T::TimeWait, T::FinWait, T::TimeWait, T::Close, T::TimeWait, T::LastAck, T::Listen, T::TimeWait],
    /*ack*/ [T::Established, T::Established, T::SynSent, T::Established, T::FinWait, T::TimeWait, T::Close, T::CloseWait, T::LastAck, T::Established, T::Established],
    /*rst*/ [T::Close, T::Close, T::SynSent, T::Close, T::Close, T::TimeWait, T::Close, T::Close, T::Close, T::Close, T::Close],
    // INPUT-ONLY
    /*syn*/ [T::SynRecv, T::Established, T::Established, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv, T::SynRecv],
    /*fin*/ [T::Close, T::FinWait, T::SynSent, T::TimeWait, T::FinWait, T::TimeWait, T::Close, T::CloseWait, T::LastAck, T::Listen, T::TimeWait],
    /*ack*/ [T::Established, T::Established, T::SynSent, T::Established, T::FinWait, T::TimeWait, T::Close, T::CloseWait, T::Close, T::Listen, T::Established],
    /*rst*/ [T::Close, T::Close, T::Close, T::SynRecv, T::Close, T::Close, T::Close, T::Close, T::LastAck, T::Listen, T::Close],
];

/// TCP flag bits as they appear in the header.
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

/// `set_tcp_state`: the next state for a segment with `flags` in `dir`.
pub(crate) fn tcp_next(state: TcpState, dir: Dir, flags: u8) -> TcpState {
    // tcp_state_idx: rst, then syn, then fin, then ack; none of them: CLOSE.
    let event = if flags & TCP_RST != 0 {
        3
    } else if flags & TCP_SYN != 0 {
        0
    } else if flags & TCP_FIN != 0 {
        1
    } else if flags & TCP_ACK != 0 {
        2
    } else {
        return TcpState::Close;
    };
    TCP_TABLE[dir.index() * 4 + event][state.index()]
}

/// SCTP chunk types (RFC 4960 §3.2) the state machine distinguishes.
pub(crate) const SCTP_INIT: u8 = 1;
pub(crate) const SCTP_ABORT: u8 = 6;

/// `sctp_events[]`: chunk type to event row (DATA for anything else).
fn sctp_event(chunk: u8) -> usize {
    match chunk {
        1 => 1,  // INIT
        2 => 2,  // INIT_ACK
        10 => 3, // COOKIE_ECHO
        11 => 4, // COOKIE_ACK
        7 => 5,  // SHUTDOWN
        8 => 6,  // SHUTDOWN_ACK
        14 => 7, // SHUTDOWN_COMPLETE
        9 => 8,  // ERROR
        6 => 9,  // ABORT
        _ => 0,  // DATA, SACK, HEARTBEAT(_ACK), ECNE, CWR, unknown
    }
}

#[rustfmt::skip]
const SCTP_TABLE: [[[SctpState; 14]; 10]; 3] = [
    [ // INPUT: sNO sI1 sIN sCS sCR sCW sCO sCE sES sSS sSR sSA sRJ sCL
    /* d   */ [Sc::Established, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* i   */ [Sc::Init1, Sc::Init, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Init, Sc::Init],
    /* i_a */ [Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieSent, Sc::CookieReplied, Sc::Cookie, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* c_e */ [Sc::CookieReplied, Sc::Init, Sc::Init, Sc::CookieReplied, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* c_a */ [Sc::Established, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::Established, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s   */ [Sc::ShutdownReceived, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::ShutdownReceived, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s_a */ [Sc::Closed, Sc::Init, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::Closed, Sc::ShutdownReceived, Sc::Closed, Sc::Rejected, Sc::Closed],
    /* s_c */ [Sc::Closed, Sc::Closed, Sc::Closed, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::Closed, Sc::Rejected, Sc::Closed],
    /* err */ [Sc::Closed, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::Closed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* ab  */ [Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Rejected, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed],
    ],
    [ // OUTPUT
    /* d   */ [Sc::Established, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* i   */ [Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::Established, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait, Sc::CookieWait],
    /* i_a */ [Sc::CookieSent, Sc::CookieSent, Sc::CookieSent, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* c_e */ [Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* c_a */ [Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s   */ [Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s_a */ [Sc::ShutdownAckSent, Sc::ShutdownAckSent, Sc::ShutdownAckSent, Sc::ShutdownAckSent, Sc::ShutdownAckSent, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownAckSent, Sc::ShutdownAckSent, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s_c */ [Sc::Closed, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* err */ [Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* ab  */ [Sc::Closed, Sc::Rejected, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed],
    ],
    [ // INPUT-ONLY
    /* d   */ [Sc::Established, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::Established, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* i   */ [Sc::Init1, Sc::Init, Sc::Init, Sc::Init, Sc::Init, Sc::Init, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Init, Sc::Init],
    /* i_a */ [Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::CookieEchoed, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* c_e */ [Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Established, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* c_a */ [Sc::Established, Sc::Init1, Sc::Init, Sc::Established, Sc::Established, Sc::CookieWait, Sc::Established, Sc::Established, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s   */ [Sc::ShutdownReceived, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::ShutdownReceived, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* s_a */ [Sc::Closed, Sc::Init, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Closed, Sc::Closed, Sc::ShutdownReceived, Sc::Closed, Sc::Rejected, Sc::Closed],
    /* s_c */ [Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::Closed, Sc::Closed, Sc::Rejected, Sc::Closed],
    /* err */ [Sc::Closed, Sc::Init1, Sc::Init, Sc::CookieSent, Sc::CookieReplied, Sc::CookieWait, Sc::Cookie, Sc::CookieEchoed, Sc::Established, Sc::ShutdownSent, Sc::ShutdownReceived, Sc::ShutdownAckSent, Sc::Rejected, Sc::Closed],
    /* ab  */ [Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Rejected, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed, Sc::Closed],
    ],
];

/// `set_sctp_state`: the next state for a packet whose first chunk is
/// `chunk` (`abort_follows`: a COOKIE_ECHO/ACK bundled before an ABORT).
pub(crate) fn sctp_next(state: SctpState, dir: Dir, chunk: u8, abort_follows: bool) -> SctpState {
    let chunk = if (chunk == 10 || chunk == 11) && abort_follows {
        SCTP_ABORT
    } else {
        chunk
    };
    SCTP_TABLE[dir.index()][sctp_event(chunk)][state as usize]
}

/// The per-protocol timeout tables (`pd->timeout_table`), with the
/// kernel's defaults; `ipvsadm --set` rewrites three entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Indexed by [`TcpState`] (`tcp_timeouts[]`).
    pub tcp: [Duration; 11],
    /// `udp_timeouts[IP_VS_UDP_S_NORMAL]` (300 s).
    pub udp: Duration,
    /// Indexed by [`SctpState`] (`sctp_timeouts[]`).
    pub sctp: [Duration; 14],
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        let max_rto = s(61);
        Timeouts {
            tcp: [
                s(2),       // NONE
                s(15 * 60), // ESTABLISHED
                s(2 * 60),  // SYN_SENT
                s(60),      // SYN_RECV
                s(2 * 60),  // FIN_WAIT
                s(2 * 60),  // TIME_WAIT
                s(10),      // CLOSE
                s(60),      // CLOSE_WAIT
                s(30),      // LAST_ACK
                s(2 * 60),  // LISTEN
                s(120),     // SYNACK
            ],
            udp: s(5 * 60),
            sctp: [
                s(2),       // NONE
                s(4),       // INIT1
                max_rto,    // INIT
                max_rto,    // COOKIE_SENT
                max_rto,    // COOKIE_REPLIED
                max_rto,    // COOKIE_WAIT
                max_rto,    // COOKIE
                max_rto,    // COOKIE_ECHOED
                s(15 * 60), // ESTABLISHED
                max_rto,    // SHUTDOWN_SENT
                max_rto,    // SHUTDOWN_RECEIVED
                max_rto,    // SHUTDOWN_ACK_SENT
                s(4),       // REJECTED
                max_rto,    // CLOSED
            ],
        }
    }
}

impl Timeouts {
    /// The timeout a connection gets on entering `state` (templates keep
    /// their own, the service's persistence timeout).
    pub fn of(&self, state: ConnState) -> Duration {
        match state {
            ConnState::Tcp(s) => self.tcp[s.index()],
            ConnState::Udp => self.udp,
            ConnState::Sctp(s) => self.sctp[s as usize],
            ConnState::Template { .. } => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_indexed_in_kernel_order() {
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        for (i, s) in SctpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn nat_handshake_and_close() {
        let syn = TCP_SYN;
        let ack = TCP_ACK;
        let s = tcp_next(TcpState::None, Dir::Input, syn);
        assert_eq!(s, TcpState::SynRecv);
        let s = tcp_next(s, Dir::Output, syn | ack);
        assert_eq!(s, TcpState::SynRecv);
        let s = tcp_next(s, Dir::Input, ack);
        assert_eq!(s, TcpState::Established);
        let s = tcp_next(s, Dir::Input, TCP_FIN | ack);
        assert_eq!(s, TcpState::CloseWait);
        let s = tcp_next(s, Dir::Output, TCP_FIN | ack);
        assert_eq!(s, TcpState::TimeWait);
        assert_eq!(tcp_next(s, Dir::Input, 0x08), TcpState::Close);
    }
}
