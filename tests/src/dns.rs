//! An authoritative DNS server for the system tests, and a small client: "the internet's" name
//! servers for the router's resolver (`docs/names.md`) to forward to.
//!
//! The server answers from a fixed table ([`Zone`]: A, AAAA and CNAME records, each with its own
//! TTL) over UDP and TCP, from threads whose sockets were bound inside a network namespace (a
//! socket keeps its namespace). A CNAME chain is answered whole, in one answer, as an
//! authoritative server for every name in it would. Everything on the wire is `hickory-proto`'s
//! `Message`: nothing here parses or builds DNS bytes by hand.

use std::{
    collections::HashMap,
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME},
    },
};

use crate::netns::in_netns;

/// Longest CNAME chain the server follows within one answer.
const MAX_CHAIN: usize = 16;
/// How often the server's threads look whether they should stop.
const POLL: Duration = Duration::from_millis(50);

/// `name` lower case, without the trailing dot: the table's key.
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn fqdn(name: &str) -> Result<Name> {
    let mut n = Name::from_ascii(name).map_err(|e| anyhow!("name {name:?}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// The records the server is authoritative for. Built with [`Zone::a`], [`Zone::aaaa`] and
/// [`Zone::cname`]; a name that does not parse is reported by [`serve`].
#[derive(Clone, Debug, Default)]
pub struct Zone {
    records: HashMap<String, Vec<Record>>,
    error: Option<String>,
}

impl Zone {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, name: &str, ttl: u32, data: RData) -> Self {
        match fqdn(name) {
            Ok(n) => self
                .records
                .entry(key(name))
                .or_default()
                .push(Record::from_rdata(n, ttl, data)),
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    /// `name A ip`, with `ttl` seconds.
    #[must_use]
    pub fn a(self, name: &str, ttl: u32, ip: Ipv4Addr) -> Self {
        self.add(name, ttl, RData::A(A(ip)))
    }

    /// `name AAAA ip`, with `ttl` seconds.
    #[must_use]
    pub fn aaaa(self, name: &str, ttl: u32, ip: Ipv6Addr) -> Self {
        self.add(name, ttl, RData::AAAA(AAAA(ip)))
    }

    /// `name CNAME target`, with `ttl` seconds.
    #[must_use]
    pub fn cname(self, name: &str, ttl: u32, target: &str) -> Self {
        match fqdn(target) {
            Ok(t) => self.add(name, ttl, RData::CNAME(CNAME(t))),
            Err(e) => Self {
                error: self.error.or(Some(e.to_string())),
                ..self
            },
        }
    }

    /// The authoritative answer to `query` (its id and question, `AA` set): the records of the
    /// question's type at its name, after the CNAMEs from that name (all in the answer section);
    /// `NXDOMAIN` when the name is not in the table. `None` for anything that is no query with
    /// exactly one question.
    #[must_use]
    pub fn respond(&self, query: &Message) -> Option<Message> {
        if query.metadata.message_type != MessageType::Query || query.queries.len() != 1 {
            return None;
        }
        let q = &query.queries[0];
        let mut resp = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = query.metadata.recursion_desired;
        resp.add_query(q.clone());
        let mut name = key(&q.name().to_ascii());
        if !self.records.contains_key(&name) {
            resp.metadata.response_code = ResponseCode::NXDomain;
            return Some(resp);
        }
        for _ in 0..MAX_CHAIN {
            let Some(records) = self.records.get(&name) else {
                break;
            };
            let cname = records.iter().find_map(|r| match &r.data {
                RData::CNAME(t) if q.query_type() != RecordType::CNAME => Some((r, t)),
                _ => None,
            });
            if let Some((r, target)) = cname {
                resp.add_answer(r.clone());
                name = key(&target.0.to_ascii());
                continue;
            }
            resp.add_answers(
                records
                    .iter()
                    .filter(|r| r.record_type() == q.query_type())
                    .cloned(),
            );
            break;
        }
        Some(resp)
    }
}

/// A running [`Zone`] server; it stops (and its threads end) when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
}

impl Server {
    /// How many queries it has received (UDP and TCP), answered or not.
    #[must_use]
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Where it listens.
    #[must_use]
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Serves `zone` on each of `addrs` (UDP and TCP), with sockets bound inside the network
/// namespace `ns`; returns once every socket is bound.
///
/// # Errors
/// When the zone holds a name that does not parse, or a socket cannot be bound.
pub fn serve(ns: &str, addrs: &[SocketAddr], zone: Zone) -> Result<Server> {
    if let Some(e) = &zone.error {
        bail!("the zone: {e}");
    }
    let sockets = in_netns(ns, || -> Result<Vec<(UdpSocket, TcpListener)>> {
        addrs
            .iter()
            .map(|a| {
                let udp = UdpSocket::bind(a).with_context(|| format!("bind udp {a} in {ns}"))?;
                let tcp = TcpListener::bind(a).with_context(|| format!("bind tcp {a} in {ns}"))?;
                Ok((udp, tcp))
            })
            .collect()
    })??;
    let zone = Arc::new(zone);
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (udp, tcp) in sockets {
        udp.set_read_timeout(Some(POLL)).context("udp timeout")?;
        tcp.set_nonblocking(true).context("tcp nonblocking")?;
        let (z, s, n) = (Arc::clone(&zone), Arc::clone(&stop), Arc::clone(&queries));
        threads.push(thread::spawn(move || serve_udp(&udp, &z, &s, &n)));
        let (z, s, n) = (Arc::clone(&zone), Arc::clone(&stop), Arc::clone(&queries));
        threads.push(thread::spawn(move || serve_tcp(&tcp, &z, &s, &n)));
    }
    Ok(Server {
        stop,
        queries,
        threads,
        addrs: addrs.to_vec(),
    })
}

/// The answer to the query `bytes`, encoded; `None` for what is no query.
fn answer(zone: &Zone, bytes: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    zone.respond(&query)?.to_vec().ok()
}

fn serve_udp(sock: &UdpSocket, zone: &Zone, stop: &AtomicBool, queries: &AtomicU64) {
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        queries.fetch_add(1, Ordering::Relaxed);
        if let Some(a) = answer(zone, &buf[..n]) {
            let _lost = sock.send_to(&a, from);
        }
    }
}

fn serve_tcp(
    listener: &TcpListener,
    zone: &Arc<Zone>,
    stop: &Arc<AtomicBool>,
    queries: &Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (z, s, n) = (Arc::clone(zone), Arc::clone(stop), Arc::clone(queries));
                // Detached: it ends with its connection, at the latest after a read timeout once
                // `stop` is set.
                thread::spawn(move || serve_tcp_conn(stream, &z, &s, &n));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn serve_tcp_conn(mut stream: TcpStream, zone: &Zone, stop: &AtomicBool, queries: &AtomicU64) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let idle_until = Instant::now() + Duration::from_secs(10);
    while !stop.load(Ordering::Relaxed) && Instant::now() < idle_until {
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .and_then(|()| stream.read_exact(&mut msg))
            .and_then(|()| stream.set_read_timeout(Some(POLL)))
            .is_err()
        {
            return;
        }
        queries.fetch_add(1, Ordering::Relaxed);
        let Some(a) = answer(zone, &msg) else {
            return;
        };
        if write_framed(&mut stream, &a).is_err() {
            return;
        }
    }
}

fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> Result<()> {
    let len = u16::try_from(msg.len()).context("message longer than 64 KiB")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    stream.write_all(&framed).context("write")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The client side

/// A fresh query id (a counter seeded from the clock: ids differ between queries of one run).
fn next_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let _ = NEXT.compare_exchange(0, (seed as u16) | 1, Ordering::Relaxed, Ordering::Relaxed);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A recursive query for `name` (`qtype`) with a fresh id, as a stub resolver sends it.
///
/// # Errors
/// When `name` does not parse.
pub fn query(name: &str, qtype: RecordType) -> Result<Message> {
    let mut m = Message::new(next_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(fqdn(name)?, qtype));
    Ok(m)
}

/// Whether `answer` is the response to `query` (same id and question).
fn answers(query: &Message, answer: &Message) -> bool {
    answer.metadata.id == query.metadata.id
        && answer.metadata.message_type == MessageType::Response
        && answer.queries == query.queries
}

/// Asks `server` for `name` (`qtype`) over UDP from `sock` (bound in the asking device's
/// namespace), once, and waits up to `timeout` for the answer (other datagrams are skipped).
///
/// # Errors
/// When nothing answers in time, or the query cannot be sent.
pub fn ask_udp(
    sock: &UdpSocket,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<Message> {
    let q = query(name, qtype)?;
    sock.send_to(&q.to_vec().context("encode")?, server)
        .with_context(|| format!("send the query for {name} to {server}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no answer for {name} from {server} within {timeout:?}");
        }
        sock.set_read_timeout(Some(left)).context("read timeout")?;
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e).context("receive the answer"),
        };
        if let Ok(a) = Message::from_vec(&buf[..n])
            && answers(&q, &a)
        {
            return Ok(a);
        }
    }
}

/// Asks `server` for `name` (`qtype`) over TCP (one connection, from a socket made inside the
/// network namespace `ns`), waiting up to `timeout`.
///
/// # Errors
/// When the connection fails or nothing answers in time.
pub fn ask_tcp(
    ns: &str,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<Message> {
    let q = query(name, qtype)?;
    let mut stream = in_netns(ns, || TcpStream::connect_timeout(&server, timeout))?
        .with_context(|| format!("connect to {server} from {ns}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .context("read timeout")?;
    write_framed(&mut stream, &q.to_vec().context("encode")?)?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .context("read the answer's length")?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).context("read the answer")?;
    let a = Message::from_vec(&msg).context("decode the answer")?;
    if !answers(&q, &a) {
        bail!("{server} answered another question: {a:?}");
    }
    Ok(a)
}

/// Asks `server` for `name` (`qtype`) over UDP from a socket made inside the network namespace
/// `ns` (see [`ask_udp`]).
///
/// # Errors
/// As [`ask_udp`].
pub fn ask_udp_from(
    ns: &str,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = in_netns(ns, || UdpSocket::bind(local))?.context("bind a udp socket")?;
    ask_udp(&sock, server, name, qtype, timeout)
}

/// The A and AAAA addresses in `answer`'s answer section, in order.
#[must_use]
pub fn addresses(answer: &Message) -> Vec<IpAddr> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}
