//! The one listening socket: TLS (rustls) in front of HTTP/1.1 and HTTP/2 (hyper), serving
//! the axum router that carries the REST API and the gRPC agent channel alike; and the
//! connection table that keeps that port usable under idle, slow and numerous clients.
//!
//! Invariants: a failed or slow handshake (garbage bytes, plain HTTP, a certificate from
//! another CA) costs one task and a debug line, never the server; the verified client
//! certificate, if any, travels with each request as a [`PeerCertificate`] extension.
//!
//! The connection rule (README, "The TLS port"): a connection is *anonymous* from accept until
//! its TLS handshake presents a client certificate from this server's CA, and an *agent*
//! connection after. Anonymous connections have their own budget (`max_anonymous_connections`)
//! and a budget per source IP (`max_anonymous_per_address`); agent connections count only
//! against `max_connections`. A new connection never waits for room: when a budget is full it
//! closes the idlest anonymous connection of that budget (no request in flight, idle longest,
//! past its handshake first; else the oldest), so strangers can delay each other but never keep
//! an agent out. Only when `max_connections` is reached with no anonymous connection left to
//! close is a new one refused.
//! Timeouts: the handshake (`tls_handshake_timeout`), the first request and each HTTP/1 header
//! block (`http_header_read_timeout`), and no request in flight (`connection_idle_timeout`;
//! an agent's channel is one long request, so it is never idle).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::HttpBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::config::ServerConfig;
use super::metrics::{KindLabels, ListenerMetrics, ReasonLabels};

/// The DER of the client certificate that the TLS layer verified against our CA.
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);

/// The listener's timeouts and connection budgets (from [`ServerConfig`]).
#[derive(Clone, Debug)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_anonymous: usize,
    pub max_anonymous_per_address: usize,
}

impl Limits {
    pub fn from_config(config: &ServerConfig) -> Self {
        Limits {
            handshake_timeout: config.tls_handshake_timeout,
            header_read_timeout: config.http_header_read_timeout,
            idle_timeout: config.connection_idle_timeout,
            max_connections: config.max_connections,
            max_anonymous: config.max_anonymous_connections,
            max_anonymous_per_address: config.max_anonymous_per_address,
        }
    }
}

/// A limit-reached WARN at most this often; the lines in between are counted, not printed.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What a connection is doing, read by its supervisor and by victim selection.
struct Activity {
    in_flight: AtomicUsize,
    /// Whether the TLS handshake has completed.
    handshaken: AtomicBool,
    /// Whether any request has begun (its headers were read).
    started: AtomicBool,
    /// When the connection last became idle (accept, handshake, end of a request), in ms since
    /// the table's epoch.
    idle_since_ms: AtomicU64,
}

/// Counts a request in flight for as long as its response body is alive.
struct InFlight {
    activity: Arc<Activity>,
    table: Arc<Table>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.idle_since_ms.store(self.table.now_ms(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn begin(activity: &Arc<Activity>, table: &Arc<Table>) -> InFlight {
    activity.started.store(true, Ordering::Relaxed);
    activity.in_flight.fetch_add(1, Ordering::Relaxed);
    InFlight { activity: activity.clone(), table: table.clone() }
}

/// A response body that keeps its request counted as in flight until it is finished or dropped.
struct Tracked {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Anonymous {
    addr: IpAddr,
    accepted_ms: u64,
    activity: Arc<Activity>,
    shed: CancellationToken,
}

#[derive(Default)]
struct TableInner {
    next_id: u64,
    anonymous: HashMap<u64, Anonymous>,
    per_address: HashMap<IpAddr, usize>,
    agents: usize,
    last_warn: Option<Instant>,
    unwarned: u64,
}

/// Every open connection on the port, by kind (see the module doc for the rule).
pub struct Table {
    limits: Limits,
    metrics: ListenerMetrics,
    epoch: Instant,
    inner: Mutex<TableInner>,
}

/// One admitted connection's place in the [`Table`]; dropping it frees the place.
struct Slot {
    id: u64,
    table: Arc<Table>,
    activity: Arc<Activity>,
    shed: CancellationToken,
    agent: AtomicBool,
}

impl Table {
    pub fn new(limits: Limits, metrics: ListenerMetrics) -> Arc<Self> {
        Arc::new(Table { limits, metrics, epoch: Instant::now(), inner: Mutex::new(TableInner::default()) })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        // The table holds only counters: a panic elsewhere cannot leave it inconsistent in a
        // way worth refusing connections for.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, inner: &TableInner) {
        let gauge = |kind| self.metrics.connections.get_or_create(&KindLabels { kind }).clone();
        gauge("anonymous").set(i64::try_from(inner.anonymous.len()).unwrap_or(i64::MAX));
        gauge("agent").set(i64::try_from(inner.agents).unwrap_or(i64::MAX));
    }

    /// The anonymous connection to close first: idle (no request in flight) and idle longest,
    /// past its handshake before one still shaking hands (likely an agent reconnecting); when
    /// every one is busy, the oldest.
    fn idlest(inner: &TableInner, only: Option<IpAddr>) -> Option<u64> {
        inner
            .anonymous
            .iter()
            .filter(|(_, a)| only.is_none_or(|addr| a.addr == addr))
            .min_by_key(|(id, a)| {
                let busy = a.activity.in_flight.load(Ordering::Relaxed) > 0;
                let since = if busy { a.accepted_ms } else { a.activity.idle_since_ms.load(Ordering::Relaxed) };
                let handshaking = !a.activity.handshaken.load(Ordering::Relaxed);
                // Ids grow with accept order: among equals the older goes first.
                (busy, handshaking, since, **id)
            })
            .map(|(id, _)| *id)
    }

    fn remove_anonymous(inner: &mut TableInner, id: u64) -> Option<Anonymous> {
        let gone = inner.anonymous.remove(&id)?;
        if let Some(count) = inner.per_address.get_mut(&gone.addr) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                inner.per_address.remove(&gone.addr);
            }
        }
        Some(gone)
    }

    fn warn(&self, inner: &mut TableInner, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if inner.last_warn.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            inner.unwarned += 1;
            return;
        }
        tracing::warn!(
            "{what} ({} more since the last such warning); if these are legitimate clients, raise the limit in \
             the server config",
            inner.unwarned
        );
        inner.last_warn = Some(now);
        inner.unwarned = 0;
    }

    /// Makes room for a new anonymous connection from `addr`, closing the idlest one of the
    /// budget that is full; `None` when every place is held by an agent.
    fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Slot> {
        let mut inner = self.lock();
        let limits = &self.limits;
        let (victim, reason, limit) =
            if inner.per_address.get(&addr).copied().unwrap_or(0) >= limits.max_anonymous_per_address {
                (Self::idlest(&inner, Some(addr)), "per_address", "max_anonymous_per_address")
            } else if inner.anonymous.len() >= limits.max_anonymous {
                (Self::idlest(&inner, None), "anonymous", "max_anonymous_connections")
            } else if inner.anonymous.len() + inner.agents >= limits.max_connections {
                (Self::idlest(&inner, None), "total", "max_connections")
            } else {
                (None, "", "")
            };
        if !reason.is_empty() {
            self.metrics.shed.get_or_create(&ReasonLabels { reason }).inc();
            match victim.and_then(|id| Self::remove_anonymous(&mut inner, id)) {
                Some(gone) => {
                    gone.shed.cancel();
                    self.warn(
                        &mut inner,
                        format_args!("{limit} reached: closed the idlest anonymous connection from {}", gone.addr),
                    );
                }
                None => {
                    self.warn(&mut inner, format_args!("{limit} reached: refused a new connection from {addr}"));
                    self.publish(&inner);
                    return None;
                }
            }
        }
        let now = self.now_ms();
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            handshaken: AtomicBool::new(false),
            started: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(now),
        });
        let shed = CancellationToken::new();
        inner.next_id += 1;
        let id = inner.next_id;
        inner
            .anonymous
            .insert(id, Anonymous { addr, accepted_ms: now, activity: activity.clone(), shed: shed.clone() });
        *inner.per_address.entry(addr).or_insert(0) += 1;
        self.publish(&inner);
        Some(Slot { id, table: self.clone(), activity, shed, agent: AtomicBool::new(false) })
    }
}

impl Slot {
    /// The handshake presented a certificate from our CA: from now on an agent connection,
    /// outside the anonymous budgets. False if it was closed to make room meanwhile.
    fn became_agent(&self) -> bool {
        let mut inner = self.table.lock();
        if Table::remove_anonymous(&mut inner, self.id).is_none() {
            return false;
        }
        inner.agents += 1;
        self.agent.store(true, Ordering::Relaxed);
        self.table.publish(&inner);
        true
    }

    /// Why the connection should be closed now (`Ok`), or how long until it could be (`Err`):
    /// the supervisor sleeps exactly that long, so a busy agent stream wakes it once per idle
    /// timeout, not on a short tick.
    fn expired(&self) -> Result<&'static str, Duration> {
        let activity = &self.activity;
        let limits = &self.table.limits;
        if activity.in_flight.load(Ordering::Relaxed) > 0 {
            // A request ending now makes the connection closable one idle timeout later.
            return Err(limits.idle_timeout);
        }
        let idle =
            Duration::from_millis(self.table.now_ms().saturating_sub(activity.idle_since_ms.load(Ordering::Relaxed)));
        let (reason, limit) = if activity.started.load(Ordering::Relaxed) {
            ("idle", limits.idle_timeout)
        } else {
            ("header_read", limits.header_read_timeout)
        };
        if idle >= limit { Ok(reason) } else { Err((limit - idle).max(Duration::from_millis(50))) }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        if self.agent.load(Ordering::Relaxed) {
            inner.agents = inner.agents.saturating_sub(1);
        } else {
            Table::remove_anonymous(&mut inner, self.id);
        }
        self.table.publish(&inner);
    }
}

/// The accept loop, run as the `listener` worker. It borrows the socket (shared) so that a
/// restarted loop accepts on the same port; connections already accepted live in their own
/// tasks and are not affected by a restart.
pub async fn serve(
    listener: Arc<TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    table: Arc<Table>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!("accept failed: {e}: raise the open-file limit (ulimit -n) above max_connections");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = table.admit(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let limits = table.limits.clone();
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                _ = slot.shed.cancelled() => return,
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        table.metrics.timed_out.get_or_create(&ReasonLabels { reason: "handshake" }).inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            let peer_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| PeerCertificate(Arc::new(cert.to_vec())));
            // rustls accepted the certificate only if our CA issued it.
            if peer_cert.is_some() && !slot.became_agent() {
                return;
            }
            slot.activity.idle_since_ms.store(table.now_ms(), Ordering::Relaxed);
            slot.activity.handshaken.store(true, Ordering::Relaxed);
            let activity = slot.activity.clone();
            let service_table = table.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                if let Some(cert) = &peer_cert {
                    req.extensions_mut().insert(cert.clone());
                }
                let in_flight = begin(&activity, &service_table);
                let app = app.clone();
                async move {
                    let response = app.oneshot(req.map(axum::body::Body::new)).await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|inner| axum::body::Body::new(Tracked { inner, _in_flight: in_flight })),
                    )
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(60)))
                .keep_alive_timeout(Duration::from_secs(20));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let mut next_check = limits.header_read_timeout;
            let linger = loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, "connection ended with an error: {e}");
                        }
                        return;
                    }
                    _ = shutdown.cancelled() => break Duration::from_secs(5),
                    _ = slot.shed.cancelled() => break Duration::from_secs(1),
                    _ = tokio::time::sleep(next_check) => match slot.expired() {
                        Ok(reason) => {
                            table.metrics.timed_out.get_or_create(&ReasonLabels { reason }).inc();
                            tracing::debug!(%peer, "closing the connection: {reason} timeout");
                            break Duration::from_secs(1);
                        }
                        Err(wait) => next_check = wait,
                    },
                }
            };
            // A polite close (GOAWAY, or the end of keep-alive); a client that does not finish
            // in `linger` is dropped.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(linger, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_connections: usize, max_anonymous: usize, per_address: usize) -> Arc<Table> {
        let limits = Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections,
            max_anonymous,
            max_anonymous_per_address: per_address,
        };
        Table::new(limits, ListenerMetrics::default())
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_full_address_sheds_its_own_idlest_connection_not_another_address() {
        let t = table(100, 10, 2);
        let other = t.admit(ip(9)).expect("admitted");
        let first = t.admit(ip(1)).expect("admitted");
        let second = t.admit(ip(1)).expect("admitted");
        // `first` is busy: the idle `second` goes, though it is younger.
        let _busy = begin(&first.activity, &t);
        let third = t.admit(ip(1)).expect("admitted");
        assert!(second.shed.is_cancelled() && !first.shed.is_cancelled() && !other.shed.is_cancelled());
        assert!(!third.shed.is_cancelled());
        assert_eq!(t.metrics.shed.get_or_create(&ReasonLabels { reason: "per_address" }).get(), 1);
    }

    #[test]
    fn a_busy_connection_never_expires_and_an_idle_one_does() {
        let mut limits = table(10, 10, 10).limits.clone();
        limits.header_read_timeout = Duration::ZERO;
        limits.idle_timeout = Duration::ZERO;
        let t = Table::new(limits, ListenerMetrics::default());
        let slot = t.admit(ip(1)).expect("admitted");
        assert_eq!(slot.expired(), Ok("header_read"), "no request yet");
        let request = begin(&slot.activity, &t);
        assert!(slot.expired().is_err(), "a request in flight (an agent's stream) is never idle");
        drop(request);
        assert_eq!(slot.expired(), Ok("idle"));
    }

    #[test]
    fn a_connection_still_shaking_hands_outlives_an_idle_one() {
        let t = table(100, 2, 2);
        let shaking = t.admit(ip(1)).expect("admitted");
        let idle = t.admit(ip(1)).expect("admitted");
        idle.activity.handshaken.store(true, Ordering::Relaxed);
        let _new = t.admit(ip(1)).expect("admitted");
        assert!(idle.shed.is_cancelled() && !shaking.shed.is_cancelled());
    }

    #[test]
    fn agents_are_outside_the_anonymous_budgets_and_only_agents_fill_the_total() {
        let t = table(3, 2, 2);
        let agent = t.admit(ip(1)).expect("admitted");
        assert!(agent.became_agent());
        let a = t.admit(ip(1)).expect("admitted");
        let b = t.admit(ip(1)).expect("admitted");
        assert!(!a.shed.is_cancelled(), "the agent does not count against the per-address cap");
        // Total full (1 agent + 2 anonymous): a newcomer, perhaps an agent, closes the idlest stranger.
        let c = t.admit(ip(2)).expect("admitted");
        assert!(a.shed.is_cancelled() && !b.shed.is_cancelled() && !c.shed.is_cancelled());
        drop((a, b, c));
        let agents: Vec<Slot> = (0..2)
            .map(|i| {
                let s = t.admit(ip(10 + i)).expect("admitted");
                assert!(s.became_agent());
                s
            })
            .collect();
        assert!(t.admit(ip(3)).is_none(), "every place is an agent's: refused");
        assert!(!agents.iter().any(|s| s.shed.is_cancelled()) && !agent.shed.is_cancelled());
        drop(agents);
        assert!(t.admit(ip(3)).is_some(), "places come back when agents leave");
    }
}
