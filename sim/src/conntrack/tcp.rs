//! TCP connection tracking: the state machine of
//! `net/netfilter/nf_conntrack_proto_tcp.c`.
//!
//! Models: the kernel's `tcp_conntracks[2][6][10]` transition table (by
//! direction, by the packet's flag class SYN/SYN-ACK/FIN/ACK/RST/none, by
//! state), the creation rule of `tcp_new` (a SYN opens SYN_SENT; a bare ACK
//! picks up an ESTABLISHED connection mid-stream when `tcp_loose` is on;
//! anything else is INVALID and creates nothing), reopening a connection in
//! TIME_WAIT/CLOSE with a new SYN (the old entry is killed and the SYN
//! starts a new one), the timeout chosen after each packet, ASSURED on the
//! ACK that completes the handshake, and killing an entry whose only reply
//! is a RST.
//!
//! Must never: pretend to track sequence numbers or windows. This model
//! has no window tracking (every segment is in window, as with
//! `nf_conntrack_tcp_be_liberal=1`), no retransmission counting (so the
//! `retrans` timeout never applies) and no handling of the kernel's
//! "ignored SYN/SYN-ACK" resynchronisation, which needs sequence numbers.
//!
//! Error contract: none; every packet gets a [`TcpVerdict`].

use std::time::Duration;

use super::config::ConntrackConfig;
use super::Dir;
use crate::packet::TcpFlags;

/// A TCP conntrack state, as `conntrack -L` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    /// `NONE`: before the first packet.
    None,
    /// `SYN_SENT`: SYN seen.
    SynSent,
    /// `SYN_RECV`: SYN-ACK seen.
    SynRecv,
    /// `ESTABLISHED`: handshake completed (or picked up mid-stream).
    Established,
    /// `FIN_WAIT`: FIN seen.
    FinWait,
    /// `CLOSE_WAIT`: ACK of the first FIN seen.
    CloseWait,
    /// `LAST_ACK`: FINs seen both ways.
    LastAck,
    /// `TIME_WAIT`: last ACK seen.
    TimeWait,
    /// `CLOSE`: reset.
    Close,
    /// `SYN_SENT2`: simultaneous open.
    SynSent2,
}

impl TcpState {
    const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name `conntrack -L` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }
}

/// The flag class of a segment (`enum tcp_bit_set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl Index {
    /// `get_conntrack_index`.
    pub(crate) fn of(flags: TcpFlags) -> Index {
        if flags.contains(TcpFlags::RST) {
            Index::Rst
        } else if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) {
                Index::SynAck
            } else {
                Index::Syn
            }
        } else if flags.contains(TcpFlags::FIN) {
            Index::Fin
        } else if flags.contains(TcpFlags::ACK) {
            Index::Ack
        } else {
            Index::None
        }
    }
}

// Table cells: a state index 0-9, IV (invalid) or IG (ignore).
const IV: u8 = 10;
const IG: u8 = 11;
const SS: u8 = 1;
const SR: u8 = 2;
const ES: u8 = 3;
const FW: u8 = 4;
const CW: u8 = 5;
const LA: u8 = 6;
const TW: u8 = 7;
const CL: u8 = 8;
const S2: u8 = 9;

/// `tcp_conntracks[dir][index][state]`, transcribed from the kernel.
#[rustfmt::skip]
const TABLE: [[[u8; 10]; 6]; 2] = [
    [
        //        sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2
        /*syn*/    [SS,  SS,  IG,  IG,  IG,  IG,  IG,  SS,  SS,  S2],
        /*synack*/ [IV,  IV,  SR,  IV,  IV,  IV,  IV,  IV,  IV,  SR],
        /*fin*/    [IV,  IV,  FW,  FW,  LA,  LA,  LA,  TW,  CL,  IV],
        /*ack*/    [ES,  IV,  ES,  ES,  CW,  CW,  TW,  TW,  CL,  IV],
        /*rst*/    [IV,  CL,  CL,  CL,  CL,  CL,  CL,  CL,  CL,  CL],
        /*none*/   [IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV],
    ],
    [
        /*syn*/    [IV,  S2,  IV,  IV,  IV,  IV,  IV,  SS,  IV,  S2],
        /*synack*/ [IV,  SR,  IG,  IG,  IG,  IG,  IG,  IG,  IG,  SR],
        /*fin*/    [IV,  IV,  FW,  FW,  LA,  LA,  LA,  TW,  CL,  IV],
        /*ack*/    [IV,  IG,  SR,  ES,  CW,  CW,  TW,  TW,  CL,  IG],
        /*rst*/    [IV,  CL,  CL,  CL,  CL,  CL,  CL,  CL,  CL,  CL],
        /*none*/   [IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV,  IV],
    ],
];

fn next(dir: Dir, index: Index, state: TcpState) -> u8 {
    let d = match dir {
        Dir::Original => 0,
        Dir::Reply => 1,
    };
    TABLE[d][index as usize][state as usize]
}

/// Per-connection TCP tracking state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpTrack {
    pub state: TcpState,
    last_index: Option<(Index, Dir)>,
}

/// What the TCP tracker decided for one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpVerdict {
    /// In state: new state applied; refresh the timeout to `timeout` (if
    /// any), set ASSURED if asked, kill the entry after this packet if asked.
    Accept {
        timeout: Option<Duration>,
        assured: bool,
        kill: bool,
    },
    /// Ignored by the state machine (the packet passes, nothing changes).
    Ignore,
    /// Invalid: the packet gets no conntrack (ctstate INVALID).
    Invalid,
    /// A SYN reopening a closed connection: kill the entry, start anew.
    Reopen,
}

impl TcpTrack {
    /// Whether a first segment with these flags may create an entry
    /// (`tcp_new`).
    pub(crate) fn can_create(flags: TcpFlags, cfg: &ConntrackConfig) -> bool {
        match next(Dir::Original, Index::of(flags), TcpState::None) {
            SS => true,
            ES => cfg.tcp_loose,
            _ => false,
        }
    }

    /// A fresh tracker in state NONE.
    pub(crate) fn new() -> TcpTrack {
        TcpTrack {
            state: TcpState::None,
            last_index: None,
        }
    }

    /// Track one segment of direction `dir` (`nf_conntrack_tcp_packet`
    /// without window checks). `seen_reply`/`assured` are the entry's
    /// status bits before this packet.
    pub(crate) fn packet(
        &mut self,
        dir: Dir,
        flags: TcpFlags,
        seen_reply: bool,
        assured: bool,
        cfg: &ConntrackConfig,
    ) -> TcpVerdict {
        let index = Index::of(flags);
        let old = self.state;
        let cell = next(dir, index, old);
        let new = match cell {
            IV => return TcpVerdict::Invalid,
            IG => {
                self.last_index = Some((index, dir));
                return TcpVerdict::Ignore;
            }
            n => TcpState::ALL[usize::from(n)],
        };
        if new == TcpState::SynSent
            && dir == Dir::Original
            && matches!(old, TcpState::TimeWait | TcpState::Close)
        {
            return TcpVerdict::Reopen;
        }
        self.last_index = Some((index, dir));
        self.state = new;
        let t = &cfg.timeouts;
        let mut timeout = if index == Index::Rst {
            t.tcp_close
        } else {
            t.tcp(new)
        };
        if !seen_reply {
            if index == Index::Rst {
                return TcpVerdict::Accept {
                    timeout: Some(timeout),
                    assured: false,
                    kill: true,
                };
            }
            if index == Index::Syn && old == TcpState::SynSent {
                // A retransmitted SYN does not renew the timeout.
                return TcpVerdict::Accept {
                    timeout: None,
                    assured: false,
                    kill: false,
                };
            }
            if new == TcpState::Established {
                timeout = timeout.min(t.tcp_unacknowledged);
            }
            return TcpVerdict::Accept {
                timeout: Some(timeout),
                assured: false,
                kill: false,
            };
        }
        let assure = !assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established;
        TcpVerdict::Accept {
            timeout: Some(timeout),
            assured: assure,
            kill: false,
        }
    }
}
