//! The servers inside pod namespaces: every listening port of a pod answers
//! each request with the pod's name and the source `address:port` it saw,
//! like the simulator's socket layer (`sim::network::Sockets`).
//!
//! The sockets are created on a thread that joined the pod's namespace with
//! `setns(2)` ([`in_netns`]); a socket stays in the namespace it was made in,
//! so the accept and receive loops then run on ordinary threads. TCP answers
//! one line per request line until the client closes (so a kept-open
//! connection can be asked again later); UDP answers each datagram.
//!
//! Must never: outlive its [`PodServers`] value — dropping it shuts every
//! socket down (which wakes the blocked threads) and joins the threads.
//!
//! Error contract: [`PodServers::start`] fails with a [`ClusterError`] when
//! the namespace cannot be entered or a port cannot be bound.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use proxier::kernel::netns::in_netns;

use super::ClusterError;

/// What a pod answers: `NAME ADDR:PORT\n`.
pub fn answer_line(pod: &str, peer: SocketAddr) -> String {
    format!("{pod} {peer}\n")
}

/// Parses an answer line into (pod name, the source the pod saw).
pub fn parse_answer(line: &str) -> Option<(String, SocketAddr)> {
    let (pod, seen) = line.trim_end().split_once(' ')?;
    Some((pod.to_string(), seen.parse().ok()?))
}

/// Open connections and sockets to shut down on stop: id → fd.
type Registry = Arc<Mutex<BTreeMap<u64, RawFd>>>;

/// The running servers of one pod.
pub struct PodServers {
    stop: Arc<AtomicBool>,
    // The listening sockets, kept so their fds stay valid until the threads
    // are joined.
    tcp: Vec<Arc<TcpListener>>,
    udp: Vec<Arc<UdpSocket>>,
    conns: Registry,
    threads: Vec<JoinHandle<()>>,
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl PodServers {
    /// Binds `tcp` and `udp` ports on every address of the namespace
    /// `netns` and starts answering as `pod`.
    pub fn start(
        pod: &str,
        netns: &str,
        v6: bool,
        tcp: &[u16],
        udp: &[u16],
    ) -> Result<PodServers, ClusterError> {
        let any = unspecified(v6);
        let bound = in_netns(Some(netns), || -> std::io::Result<_> {
            let t = tcp
                .iter()
                .map(|p| TcpListener::bind(SocketAddr::new(any, *p)))
                .collect::<std::io::Result<Vec<_>>>()?;
            let u = udp
                .iter()
                .map(|p| UdpSocket::bind(SocketAddr::new(any, *p)))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok((t, u))
        })?
        .map_err(|e| ClusterError::io(format!("binding pod {pod}'s ports in {netns}"), e))?;
        let mut servers = PodServers {
            stop: Arc::new(AtomicBool::new(false)),
            tcp: bound.0.into_iter().map(Arc::new).collect(),
            udp: bound.1.into_iter().map(Arc::new).collect(),
            conns: Arc::default(),
            threads: Vec::new(),
        };
        for l in servers.tcp.clone() {
            let (stop, conns, name) =
                (servers.stop.clone(), servers.conns.clone(), pod.to_string());
            servers.threads.push(std::thread::spawn(move || {
                accept_loop(&l, &name, &stop, &conns)
            }));
        }
        for s in servers.udp.clone() {
            let (stop, name) = (servers.stop.clone(), pod.to_string());
            servers
                .threads
                .push(std::thread::spawn(move || udp_loop(&s, &name, &stop)));
        }
        Ok(servers)
    }

    /// Stops answering: shuts every socket down and joins the threads.
    pub fn stop(&mut self) {
        {
            // Under the registry lock, so no connection registers after
            // the open ones were shut down (the accept loop checks the flag
            // under the same lock).
            let conns = self.conns.lock().expect("registry lock");
            self.stop.store(true, Ordering::SeqCst);
            self.tcp
                .iter()
                .map(|l| l.as_raw_fd())
                .chain(self.udp.iter().map(|s| s.as_raw_fd()))
                .chain(conns.values().copied())
                .for_each(shutdown);
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for PodServers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn shutdown(fd: RawFd) {
    // SAFETY: `fd` belongs to a socket that is still open (its owner is
    // kept alive until this returns); shutdown(2) only changes its state
    // and wakes threads blocked on it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(0);

fn accept_loop(listener: &TcpListener, pod: &str, stop: &AtomicBool, conns: &Registry) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let accepted = listener.accept();
        let mut registry = conns.lock().expect("registry lock");
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        registry.insert(id, stream.as_raw_fd());
        drop(registry);
        let (name, conns) = (pod.to_string(), conns.clone());
        handlers.push(std::thread::spawn(move || {
            serve_connection(&stream, &name, peer);
            // Deregister before the fd is closed, so `stop` never shuts
            // down a number the kernel has given to another socket.
            conns.lock().expect("registry lock").remove(&id);
            drop(stream);
        }));
        handlers.retain(|h| !h.is_finished());
    }
    // `stop` shut the open connections down; wait for their threads.
    for h in handlers {
        let _ = h.join();
    }
}

fn serve_connection(stream: &TcpStream, pod: &str, peer: SocketAddr) {
    let mut writer = stream;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if writer.write_all(answer_line(pod, peer).as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

fn udp_loop(socket: &UdpSocket, pod: &str, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    loop {
        let got = socket.recv_from(&mut buf);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok((_, peer)) = got {
            let _ = socket.send_to(answer_line(pod, peer).as_bytes(), peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let peer: SocketAddr = "10.244.1.1:40312".parse().unwrap();
        let line = answer_line("web-1", peer);
        assert_eq!(line, "web-1 10.244.1.1:40312\n");
        assert_eq!(parse_answer(&line), Some(("web-1".into(), peer)));
        assert_eq!(parse_answer("garbage"), None);
    }
}
