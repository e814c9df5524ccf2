//! The resolver of record (`dns:` in the policy): devices ask the router, the router asks
//! `dns.upstream`, and before the answer is relayed to device D each A/AAAA address in it is bound
//! to D for every name rule of D's the question matches (`BINDINGS`, `enforcer_common::names`).
//! So D's first packet to the address already finds its binding. Only this exchange teaches the
//! datapath anything: DNS seen elsewhere binds nothing.
//!
//! Bounded: at most [`MAX_INFLIGHT`] queries are forwarded at once (more are dropped, and the
//! client retries), at most [`MAX_TCP`] TCP connections, each message at most 64 KiB.

mod answer;
mod holder;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
};
use tracing::{debug, info, warn};

use self::answer::{Question, addresses, clamp_ttl, parse_query};
use crate::{
    datapath::{self, names::Bindings},
    policy::{
        CompiledPolicy,
        names::{Listen, NamePattern},
    },
};

/// Queries forwarded at once (UDP and TCP together).
pub const MAX_INFLIGHT: usize = 512;
/// TCP connections from devices at once.
pub const MAX_TCP: usize = 64;
/// How long the upstream has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a device's TCP connection may sit idle.
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error(
        "cannot listen for DNS on {addr}: the port is held by {holder}; the enforcer's resolver must be the devices' first hop (move it to another port, e.g. dnsmasq `port=5353`, and name it in dns.upstream; see docs/names.md)"
    )]
    PortTaken { addr: SocketAddr, holder: String },
    #[error("cannot listen for DNS on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the bindings map")]
    Map(#[source] datapath::DatapathError),
}

/// What a query came to, as the metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryResult {
    Relayed,
    Malformed,
    UpstreamFailed,
    Dropped,
}

impl QueryResult {
    pub const ALL: [Self; 4] = [
        Self::Relayed,
        Self::Malformed,
        Self::UpstreamFailed,
        Self::Dropped,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Relayed => "relayed",
            Self::Malformed => "malformed",
            Self::UpstreamFailed => "upstream_failed",
            Self::Dropped => "dropped",
        }
    }
}

/// The resolver's counters, read by the metrics.
#[derive(Debug, Default)]
pub struct Stats {
    queries: [AtomicU64; 4],
}

impl Stats {
    fn count(&self, r: QueryResult) {
        self.queries[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Queries so far, by result.
    #[must_use]
    pub fn queries(&self) -> [(QueryResult, u64); 4] {
        QueryResult::ALL.map(|r| (r, self.queries[r as usize].load(Ordering::Relaxed)))
    }
}

/// The policy as the resolver needs it.
#[derive(Debug, Default)]
struct Index {
    /// Device id and class by address.
    devices: HashMap<IpAddr, (u32, u16)>,
    unknown_class: u16,
    /// Name patterns with their id and class.
    names: Vec<(NamePattern, u32, u16)>,
    /// (source class, name class) pairs some rule decides.
    pairs: HashSet<(u16, u16)>,
    ttl: (u32, u32),
    generation: u64,
}

impl Index {
    fn of(p: &CompiledPolicy, generation: u64) -> Self {
        let names: Vec<_> = p
            .names
            .iter()
            .map(|n| (n.pattern.clone(), n.id, n.class))
            .collect();
        let name_classes: HashSet<u16> = names.iter().map(|n| n.2).collect();
        Self {
            devices: p
                .devices
                .iter()
                .flat_map(|d| d.addresses.iter().map(move |a| (*a, (d.id, d.class))))
                .collect(),
            unknown_class: p.unknown_class,
            pairs: p
                .maps
                .pairs
                .iter()
                .filter(|(k, _)| name_classes.contains(&k.dst))
                .map(|(k, _)| (k.src, k.dst))
                .collect(),
            names,
            ttl: p
                .dns
                .as_ref()
                .map_or((30, 3600), |d| (d.ttl_min_s, d.ttl_max_s)),
            generation,
        }
    }

    /// The asking device, and the ids of its name rules that `qname` matches.
    fn rules_for(&self, from: IpAddr, qname: &str) -> (u32, Vec<(u32, String)>) {
        let (device, class) = self
            .devices
            .get(&from)
            .copied()
            .unwrap_or((enforcer_common::UNKNOWN_DEVICE, self.unknown_class));
        let ids = self
            .names
            .iter()
            .filter(|(p, _, c)| self.pairs.contains(&(class, *c)) && p.matches(qname))
            .map(|(p, id, _)| (*id, p.to_string()))
            .collect();
        (device, ids)
    }
}

/// The running resolver's shared parts.
struct Shared {
    index: RwLock<Index>,
    bindings: Mutex<Bindings>,
    upstream: Vec<SocketAddr>,
    inflight: Semaphore,
    stats: Arc<Stats>,
}

/// The running resolver: its tasks end when this is dropped.
pub struct Resolver {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where to listen: `dns.listen`, or port 53 on the router's addresses on the enforced interfaces
/// that are not uplinks (IPv6 link-local addresses left out: they need a scope).
#[must_use]
pub fn listen_addrs(listen: &Listen, host: &crate::daemon::host::HostContext) -> Vec<SocketAddr> {
    match listen {
        Listen::Addrs(a) => a.clone(),
        Listen::Router => host
            .addresses
            .iter()
            .filter(|(iface, _)| !host.uplinks.contains(iface))
            .map(|(_, net)| net.addr())
            .filter(|a| !matches!(a, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
            .map(|a| SocketAddr::new(a, 53))
            .collect(),
    }
}

fn listen_error(addr: SocketAddr, source: std::io::Error) -> ResolverError {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        let holder = holder::holder(addr.port()).unwrap_or_else(|| "another process".to_owned());
        return ResolverError::PortTaken { addr, holder };
    }
    ResolverError::Listen { addr, source }
}

impl Resolver {
    /// Binds every listening socket (failing, with the holder named, when the port is taken) and
    /// starts serving.
    ///
    /// # Errors
    /// When a socket cannot be bound or the bindings map cannot be opened.
    pub async fn start(
        policy: &CompiledPolicy,
        generation: u64,
        listen: &[SocketAddr],
        bindings: Bindings,
        stats: Arc<Stats>,
    ) -> Result<Self, ResolverError> {
        let upstream = policy
            .dns
            .as_ref()
            .map(|d| d.upstream.clone())
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            index: RwLock::new(Index::of(policy, generation)),
            bindings: Mutex::new(bindings),
            upstream,
            inflight: Semaphore::new(MAX_INFLIGHT),
            stats,
        });
        let mut tasks = Vec::new();
        for addr in listen {
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(|e| listen_error(*addr, e))?;
            let tcp = TcpListener::bind(addr)
                .await
                .map_err(|e| listen_error(*addr, e))?;
            info!(%addr, "resolver listening (udp and tcp)");
            tasks.push(tokio::spawn(serve_udp(Arc::new(udp), Arc::clone(&shared))).abort_handle());
            tasks.push(tokio::spawn(serve_tcp(tcp, Arc::clone(&shared))).abort_handle());
        }
        Ok(Self { shared, tasks })
    }

    /// The generation of the policy the resolver binds for.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.shared.index.read().map_or(0, |i| i.generation)
    }

    /// Binds for `policy` from now on (after a reload).
    pub fn update(&self, policy: &CompiledPolicy, generation: u64) {
        if let Ok(mut index) = self.shared.index.write() {
            *index = Index::of(policy, generation);
        }
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(permit) = Arc::clone(&shared).inflight_owned() else {
            shared.stats.count(QueryResult::Dropped);
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, shared) = (Arc::clone(&sock), Arc::clone(&shared));
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(answer) = resolve(&shared, from.ip(), &query, false).await {
                let _lost = sock.send_to(&answer, from).await;
            }
        });
    }
}

impl Shared {
    fn inflight_owned(self: Arc<Self>) -> Result<InflightPermit, ()> {
        if self.inflight.try_acquire().map(std::mem::forget).is_err() {
            return Err(());
        }
        Ok(InflightPermit(self))
    }
}

/// One forwarded query's place in [`MAX_INFLIGHT`].
struct InflightPermit(Arc<Shared>);

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.0.inflight.add_permits(1);
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let conns = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            serve_tcp_conn(stream, from, &shared).await;
        });
    }
}

async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> Option<()> {
    let len = u16::try_from(msg.len()).ok()?;
    stream.write_u16(len).await.ok()?;
    stream.write_all(msg).await.ok()
}

async fn serve_tcp_conn(mut stream: TcpStream, from: SocketAddr, shared: &Arc<Shared>) {
    loop {
        let Ok(Some(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await else {
            return;
        };
        let Ok(permit) = Arc::clone(shared).inflight_owned() else {
            shared.stats.count(QueryResult::Dropped);
            return;
        };
        let answer = resolve(shared, from.ip(), &query, true).await;
        drop(permit);
        let Some(answer) = answer else {
            return;
        };
        if write_framed(&mut stream, &answer).await.is_none() {
            return;
        }
    }
}

/// Forwards `query` from `from` upstream, binds what the answer gives, and returns the answer to
/// relay (unchanged); `None` when there is nothing to relay.
async fn resolve(shared: &Shared, from: IpAddr, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let Ok(q) = parse_query(query) else {
        shared.stats.count(QueryResult::Malformed);
        return None;
    };
    let mut answer = None;
    for upstream in &shared.upstream {
        let got = if tcp {
            ask_tcp(*upstream, query).await
        } else {
            ask_udp(*upstream, &q, query).await
        };
        if let Some(a) = got {
            answer = Some(a);
            break;
        }
    }
    let Some(answer) = answer else {
        shared.stats.count(QueryResult::UpstreamFailed);
        return None;
    };
    match addresses(&q, &answer) {
        Ok(addrs) => bind(shared, from, &q, &addrs),
        Err(e) => {
            debug!(error = %e, name = %q.name, "upstream answer refused");
            shared.stats.count(QueryResult::UpstreamFailed);
            return None;
        }
    }
    shared.stats.count(QueryResult::Relayed);
    Some(answer)
}

/// Writes the bindings of one answer, before it is relayed.
fn bind(shared: &Shared, from: IpAddr, q: &Question, addrs: &[(IpAddr, u32)]) {
    let Ok(index) = shared.index.read() else {
        return;
    };
    let (device, rules) = index.rules_for(from, &q.name);
    if rules.is_empty() || addrs.is_empty() {
        return;
    }
    let (min, max) = index.ttl;
    drop(index);
    let now = datapath::monotonic_ns();
    let Ok(mut map) = shared.bindings.lock() else {
        return;
    };
    for (addr, ttl) in addrs {
        let expires = now + u64::from(clamp_ttl(*ttl, min, max)) * 1_000_000_000;
        for (id, _) in &rules {
            if let Err(e) = map.bind(device, *addr, *id, expires) {
                warn!(error = %crate::daemon::error_chain(&e), %addr, "cannot write a name binding");
            }
        }
    }
}

async fn ask_udp(upstream: SocketAddr, q: &Question, query: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await.ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = sock.recv(&mut buf).await.ok()?;
            // A datagram with another id is not this answer (a late or forged one): keep waiting.
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == q.id {
                return Some(buf[..n].to_vec());
            }
        }
    })
    .await
    .ok()
    .flatten()
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut stream = TcpStream::connect(upstream).await.ok()?;
        write_framed(&mut stream, query).await?;
        read_framed(&mut stream).await
    })
    .await
    .ok()
    .flatten()
}

/// Starts the resolver when the running policy has a `dns:` section (a section added later takes
/// a restart).
///
/// # Errors
/// As [`Resolver::start`].
pub(crate) async fn start_for(
    inner: &super::Inner,
    metrics: &super::metrics::Metrics,
) -> Result<Option<Arc<Resolver>>, ResolverError> {
    let Some(dns) = &inner.policy.dns else {
        return Ok(None);
    };
    let listen = listen_addrs(&dns.listen, &inner.host);
    let bindings = inner.dp.bindings().map_err(ResolverError::Map)?;
    let resolver = Resolver::start(
        &inner.policy,
        inner.generation,
        &listen,
        bindings,
        Arc::clone(&metrics.dns.stats),
    )
    .await?;
    Ok(Some(Arc::new(resolver)))
}

/// Keeps the resolver on the running policy: after a reload, binds for the new one.
pub(crate) async fn follow_policy(resolver: Arc<Resolver>, inner: Arc<Mutex<super::Inner>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Ok(inner) = inner.try_lock()
            && inner.generation != resolver.generation()
        {
            resolver.update(&inner.policy, inner.generation);
        }
    }
}
