//! Real traffic from a host's namespace: TCP connect + one request line and
//! its answer, UDP datagrams on a connected socket, with short timeouts,
//! classified the way the simulator classifies exchanges.
//!
//! | what the socket says | outcome | simulator |
//! |---|---|---|
//! | an answer line `POD ADDR:PORT` | answered | `Answered` |
//! | `ECONNREFUSED`, `ECONNRESET`, `EHOSTUNREACH`, `ENETUNREACH` (a REJECT's ICMP error or reset) | rejected | `Refused`, `Unreachable` |
//! | a timeout (a local UDP send refused with `EPERM` waits for a REJECT's ICMP error) | dropped | `Dropped`, `NoAnswer` |
//!
//! Sockets are created on threads that joined the client's namespace
//! ([`in_netns`]); a socket stays in its namespace, so kept-open ones are
//! used later from any thread. A step's connections run first one alone
//! (so state it creates — an affinity entry — exists before the rest), then
//! the rest in parallel, so timeouts overlap instead of adding up.
//!
//! Must never: report an answer it did not parse from the pod.
//!
//! Error contract: only entering the namespace can fail ([`DataplaneError`]);
//! everything the network does is an [`Outcome`].

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use proxier::dataplane::DataplaneError;
use proxier::kernel::netns::in_netns;

use super::servers::parse_answer;

/// How long a SYN may go unanswered before the connection counts as
/// dropped (no retransmission happens before it: the first is at 1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(600);
/// How long an answer may take once connected (the pod's thread must run).
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a UDP datagram may go unanswered.
pub const UDP_TIMEOUT: Duration = Duration::from_millis(800);
/// At most this many connections of one step run at once.
pub const PARALLEL: usize = 16;

/// What one exchange experienced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pod answered: its name and the source it saw.
    Answered { pod: String, seen: SocketAddr },
    /// Nothing came back in time (or the kernel refused to send it).
    Dropped(String),
    /// A reset or an ICMP error came back.
    Rejected(String),
}

/// One exchange and the client's own address for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub local: Option<SocketAddr>,
    pub outcome: Outcome,
}

/// A kept-open connection or flow.
#[derive(Debug)]
pub enum Held {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

impl Held {
    /// Sends another request and reads the answer.
    pub fn ask(&self) -> Attempt {
        match self {
            Held::Tcp(s) => Attempt {
                local: s.local_addr().ok(),
                outcome: tcp_ask(s),
            },
            Held::Udp(s) => Attempt {
                local: s.local_addr().ok(),
                outcome: udp_ask(s),
            },
        }
    }
}

fn classify(what: &str, e: &std::io::Error) -> Outcome {
    let text = format!("{what}: {e}");
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED)
        | Some(libc::ECONNRESET)
        | Some(libc::EHOSTUNREACH)
        | Some(libc::ENETUNREACH)
        | Some(libc::EHOSTDOWN)
        | Some(libc::EPIPE) => Outcome::Rejected(text),
        _ => Outcome::Dropped(text),
    }
}

fn answered(buf: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(buf);
    match parse_answer(&text) {
        Some((pod, seen)) => Outcome::Answered { pod, seen },
        None => Outcome::Dropped(format!("an answer that does not parse: {text:?}")),
    }
}

/// Sends one request line on `s` and reads the answer line.
pub fn tcp_ask(s: &TcpStream) -> Outcome {
    let mut s = s;
    if let Err(e) = s.write_all(b"request\n") {
        return classify("sending the request", &e);
    }
    let mut buf = Vec::new();
    let mut byte = [0u8; 256];
    while !buf.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => return Outcome::Rejected("closed without an answer".into()),
            Ok(n) => buf.extend_from_slice(&byte[..n]),
            Err(e) => return classify("waiting for the answer", &e),
        }
    }
    answered(&buf)
}

/// Connects to `to` and asks once; returns the stream when it answered.
/// Call on a thread inside the client's namespace.
pub fn tcp_exchange(to: SocketAddr) -> (Attempt, Option<TcpStream>) {
    let s = match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            return (
                Attempt {
                    local: None,
                    outcome: classify("connecting", &e),
                },
                None,
            )
        }
    };
    let _ = s.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = s.set_write_timeout(Some(ANSWER_TIMEOUT));
    let outcome = tcp_ask(&s);
    let local = s.local_addr().ok();
    let keep = matches!(outcome, Outcome::Answered { .. }).then_some(s);
    (Attempt { local, outcome }, keep)
}

/// Local UDP ports a client has used: a new flow never reuses one, or it
/// could ride an old conntrack entry and not be new at all.
pub type UsedPorts = Mutex<BTreeSet<u16>>;

/// A UDP socket connected to `to` (so ICMP errors come back as errors), on
/// a local port not in `used` (then recorded there). Call on a thread
/// inside the client's namespace.
pub fn udp_socket(to: SocketAddr, used: &UsedPorts) -> std::io::Result<UdpSocket> {
    let any = if to.is_ipv6() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    // Every socket tried stays bound until one is fresh, so the kernel
    // cannot hand out the same used port twice.
    let mut tried = Vec::new();
    loop {
        let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
        let port = s.local_addr()?.port();
        if used.lock().expect("used ports lock").insert(port) {
            s.connect(to)?;
            s.set_read_timeout(Some(UDP_TIMEOUT))?;
            return Ok(s);
        }
        tried.push(s);
    }
}

/// Sends one datagram on `s` and waits for the answer.
pub fn udp_ask(s: &UdpSocket) -> Outcome {
    if let Err(e) = s.send(b"request\n") {
        // A local datagram that netfilter's OUTPUT chain refused fails
        // with EPERM whether the rule dropped or rejected it; a REJECT's
        // ICMP error then arrives on the socket, so wait for it.
        if e.raw_os_error() != Some(libc::EPERM) {
            return classify("sending the datagram", &e);
        }
    }
    let mut buf = [0u8; 512];
    match s.recv(&mut buf) {
        Ok(n) => answered(&buf[..n]),
        Err(e) => classify("waiting for the answer", &e),
    }
}

/// A new UDP flow to `to`: one datagram and its answer; the socket when
/// it answered. Call on a thread inside the client's namespace.
pub fn udp_exchange(to: SocketAddr, used: &UsedPorts) -> (Attempt, Option<UdpSocket>) {
    let s = match udp_socket(to, used) {
        Ok(s) => s,
        Err(e) => {
            return (
                Attempt {
                    local: None,
                    outcome: classify("opening the socket", &e),
                },
                None,
            )
        }
    };
    let outcome = udp_ask(&s);
    let local = s.local_addr().ok();
    let keep = matches!(outcome, Outcome::Answered { .. }).then_some(s);
    (Attempt { local, outcome }, keep)
}

/// Runs `f(0)`, then `f(1..n)` on up to [`PARALLEL`] threads, all inside
/// the namespace `netns`; results in index order.
pub fn run_in_netns<T, F>(netns: &str, n: usize, f: F) -> Result<Vec<T>, DataplaneError>
where
    T: Send,
    F: Fn(usize) -> T + Sync,
{
    if n == 0 {
        return Ok(Vec::new());
    }
    let first = in_netns(Some(netns), || f(0))?;
    if n == 1 {
        return Ok(vec![first]);
    }
    let rest: Vec<usize> = (1..n).collect();
    let workers = rest.len().clamp(1, PARALLEL);
    let chunks: Vec<Vec<usize>> = (0..workers)
        .map(|w| rest.iter().copied().skip(w).step_by(workers).collect())
        .collect();
    let f = &f;
    let results: Vec<Result<Vec<(usize, T)>, DataplaneError>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(move || {
                    in_netns(Some(netns), || chunk.iter().map(|i| (*i, f(*i))).collect())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("traffic worker panicked"))
            .collect()
    });
    let mut all: Vec<(usize, T)> = vec![(0, first)];
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Asks every held connection once more, in parallel (they are already in
/// their namespaces); results in order.
pub fn ask_all(held: &[&Held]) -> Vec<Attempt> {
    let workers = held.len().clamp(1, PARALLEL);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (w..held.len())
                        .step_by(workers)
                        .map(|i| (i, held[i].ask()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Attempt)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("ask worker panicked"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, a)| a).collect()
    })
}
