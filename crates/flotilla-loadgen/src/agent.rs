//! The simulated agent and the fleet of them.
//!
//! Each agent is one task that owns its state and, like `flotilla-agent`'s `channel`, dials
//! the server with its client certificate (bound to one of several 127.0.0.x source addresses
//! so the fleet is not limited by one address's ephemeral ports), opens `AgentChannel.Open`,
//! says Hello, heartbeats at the interval Welcome gives, and reconnects with the real agent's
//! jittered backoff (`flotilla_core::backoff`, first retry within a second).
//!
//! Invocations: `RunInvocation` → `InvocationAccepted`, then after `delay` an optional
//! `OutputChunk` and the `InvocationResult` (failed with probability `fail_rate`), re-sent at
//! every Welcome until `ResultAck`. An id seen before and not yet acknowledged is never
//! executed again; after the ack it is forgotten, as the real agent deletes its spool
//! directory then. Executions are counted per id so tests can check none ran twice.
//! Desired-state steps (`file:write`, `service:ensure`, ...) report a `StepState` each:
//! changed the first time the node is asked for a resource as given, unchanged on later
//! identical runs (each simulated node remembers the last inputs per resource).
//!
//! Inventory: uploads by type with the content hash, sending only what differs from the hashes
//! the server announced (Welcome, then every `InventoryAck`), and again in full what the ack
//! asks to `resend`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use flotilla_proto::v1::agent_channel_client::AgentChannelClient;
use flotilla_proto::v1::{
    AgentMessage, Heartbeat, Hello, InventoryAck, InventoryReport, InventoryTypeData, InvocationAccepted,
    InvocationOutcome, InvocationResult, NodeInfo, OutputChunk, OutputStream, RunInvocation, StepState, agent_message,
    server_message,
};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::credentials::Credential;
use crate::now_ms;
use crate::packages::{self, FleetShape};

/// Heartbeat interval until Welcome says otherwise (as the real agent).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// TLS handshakes in flight at once from this process, so that a fleet starting together
/// queues here instead of timing out against a busy server.
const MAX_CONNECTING: usize = 256;

/// How the simulated agents behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Like the real agent.
    Normal,
    /// Connects (TLS, stream, Hello) and then never sends anything: no heartbeat, no reply.
    Silent,
    /// After Welcome, sends heartbeats as fast as the stream takes them and never reads.
    Flood,
}

/// Settings shared by every agent of a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub server_url: String,
    pub ca_pem: Vec<u8>,
    /// Source addresses 127.0.0.1 ..= 127.0.0.K are used in turn (0 or 1: the OS chooses).
    pub source_addresses: u8,
    /// How long a simulated invocation "runs".
    pub delay: Duration,
    /// Probability in [0, 1] that an invocation fails (exit code 1).
    pub fail_rate: f64,
    /// Bytes of stdout each invocation sends (0: no OutputChunk); shared, so that a benchmark
    /// can change it between runs over the same connected fleet.
    pub output_bytes: Arc<AtomicUsize>,
    /// The nodes' packages: how many, over how many images, varied how much.
    pub fleet: FleetShape,
    /// Upload inventory at every Welcome, as the real agent does.
    pub upload_at_connect: bool,
    pub behaviour: Behaviour,
}

impl FleetOptions {
    pub fn new(server_url: &str, ca_pem: &[u8]) -> Self {
        FleetOptions {
            server_url: server_url.trim_end_matches('/').to_owned(),
            ca_pem: ca_pem.to_vec(),
            source_addresses: 8,
            delay: Duration::ZERO,
            fail_rate: 0.0,
            output_bytes: Arc::new(AtomicUsize::new(0)),
            fleet: FleetShape::realistic(0),
            upload_at_connect: false,
            behaviour: Behaviour::Normal,
        }
    }
}

/// Counters over the whole fleet.
#[derive(Debug, Default)]
pub struct Stats {
    /// Agents whose current stream has been welcomed.
    pub connected: AtomicUsize,
    /// Welcomes received, over all sessions.
    pub sessions: AtomicU64,
    /// Dials or stream opens that failed.
    pub connect_failures: AtomicU64,
    /// `RunInvocation` messages received (re-deliveries included).
    pub deliveries: AtomicU64,
    /// `RunInvocation` for an id this agent had already seen.
    pub duplicate_deliveries: AtomicU64,
    /// Invocations executed (each id once).
    pub executions: AtomicU64,
    /// `ResultAck`s received for a result this agent was holding.
    pub results_acked: AtomicU64,
    /// Inventory acknowledgements without a rejected type.
    pub inventory_acks: AtomicU64,
    /// Inventory acknowledgements with a rejected type.
    pub inventory_rejected: AtomicU64,
    /// Bytes of inventory items sent (changed types only).
    pub inventory_item_bytes: AtomicU64,
    /// Encoded size of the inventory reports sent.
    pub inventory_report_bytes: AtomicU64,
    /// Messages a flooding agent got onto its stream.
    pub flood_messages: AtomicU64,
    /// Executions per invocation id.
    executed: Mutex<HashMap<String, u32>>,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Executions per invocation id so far.
    pub fn executions_by_id(&self) -> HashMap<String, u32> {
        self.executed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn executed(&self, id: &str) {
        self.executions.fetch_add(1, Ordering::Relaxed);
        *self.executed.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_owned()).or_default() += 1;
    }
}

struct Shared {
    opts: FleetOptions,
    stats: Arc<Stats>,
    stop: CancellationToken,
    collect: watch::Receiver<u64>,
    connecting: Semaphore,
}

#[derive(Default)]
struct Control {
    drop: Notify,
}

/// A running fleet of simulated agents.
pub struct Fleet {
    stats: Arc<Stats>,
    stop: CancellationToken,
    collect: watch::Sender<u64>,
    controls: Vec<Arc<Control>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    output_bytes: Arc<AtomicUsize>,
}

impl Fleet {
    /// Starts one agent per credential. `first_index` numbers them (source address, package
    /// variation) so that two fleets against one server do not look alike.
    pub fn start(opts: FleetOptions, creds: Vec<Credential>, first_index: usize) -> Fleet {
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let (collect_tx, collect_rx) = watch::channel(0u64);
        let output_bytes = opts.output_bytes.clone();
        let shared = Arc::new(Shared {
            opts,
            stats: stats.clone(),
            stop: stop.clone(),
            collect: collect_rx,
            connecting: Semaphore::new(MAX_CONNECTING),
        });
        let mut controls = Vec::with_capacity(creds.len());
        let mut tasks = Vec::with_capacity(creds.len());
        for (i, cred) in creds.into_iter().enumerate() {
            let control = Arc::new(Control::default());
            controls.push(control.clone());
            let agent = Agent::new(first_index + i, cred, shared.clone(), control);
            tasks.push(tokio::spawn(agent.run()));
        }
        Fleet { stats, stop, collect: collect_tx, controls, tasks, output_bytes }
    }

    /// Bytes of stdout every invocation sends from now on.
    pub fn set_output_bytes(&self, bytes: usize) {
        self.output_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.controls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.controls.is_empty()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Agents currently connected and welcomed.
    pub fn connected(&self) -> usize {
        self.stats.connected.load(Ordering::Relaxed)
    }

    /// Every agent collects and uploads its inventory now (connected agents at once, the
    /// others when they next connect).
    pub fn collect_inventory(&self) {
        self.collect.send_modify(|g| *g += 1);
    }

    /// Agent `i` closes its connection; it reconnects after its backoff.
    pub fn drop_connection(&self, i: usize) {
        if let Some(c) = self.controls.get(i) {
            c.drop.notify_one();
        }
    }

    /// Stops every agent and waits for them.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// An invocation "running": its id, when it ends, when it started, its desired-state steps.
struct Running {
    id: String,
    due: Instant,
    started_ms: u64,
    resources: Vec<(String, String, BTreeMap<String, String>)>,
}

/// What a simulated node's desired-state step reports: `changed` the first time a resource
/// (a path, a unit, a package, a user, a kernel parameter) is asked to be as given, unchanged
/// when it already was (the node's memory, `applied`, remembers the last inputs per resource).
fn desired_state(
    applied: &mut HashMap<String, String>,
    step: &str,
    action: &str,
    inputs: &BTreeMap<String, String>,
) -> StepState {
    let get = |k: &str| inputs.get(k).map(String::as_str).unwrap_or("");
    let (key, subject) = match action {
        "file:write" | "file:absent" => (format!("file {}", get("path")), get("path").to_owned()),
        "service:ensure" => (format!("service {}", get("name")), format!("service {}", get("name"))),
        "package:ensure" => (format!("package {}", get("name")), format!("package {}", get("name"))),
        "user:ensure" => (format!("user {}", get("name")), format!("user {}", get("name"))),
        _ => (format!("sysctl {}", get("name")), format!("sysctl {}", get("name"))),
    };
    let wanted = format!("{action}{inputs:?}");
    let changed = applied.get(&key) != Some(&wanted);
    applied.insert(key, wanted);
    let detail = match (changed, action) {
        (false, _) => format!("{subject}: unchanged"),
        (true, "file:write") => format!("{subject}: content differed, rewritten"),
        (true, "file:absent") => format!("{subject}: removed"),
        (true, _) => format!("{subject}: changed"),
    };
    StepState { step: step.to_owned(), action: action.to_owned(), changed, detail }
}

/// A finished invocation waiting for its ResultAck.
struct Finished {
    result: InvocationResult,
}

enum Ended {
    Retry,
    /// Welcomed at least once: the connection was healthy, reset the backoff.
    RetryHealthy,
    Stop,
}

struct Agent {
    index: usize,
    cred: Credential,
    shared: Arc<Shared>,
    control: Arc<Control>,
    seq: u64,
    running: Vec<Running>,
    unacked: HashMap<String, Finished>,
    seen: HashSet<String>,
    server_hashes: HashMap<String, String>,
    /// Our own types' hashes once computed (the synthetic inventory never changes).
    own_hashes: Option<Vec<(&'static str, String)>>,
    collected_generation: u64,
    /// An inventory report sent on a stream that ended before its acknowledgement: sent
    /// again after reconnecting (the real agent's next collection does the same), so a run
    /// waiting for every acknowledgement does not wait forever.
    inventory_unacked: bool,
    /// Desired-state resources as last applied on this simulated node (see [`desired_state`]).
    applied: HashMap<String, String>,
}

impl Agent {
    fn new(index: usize, cred: Credential, shared: Arc<Shared>, control: Arc<Control>) -> Self {
        let collected_generation = *shared.collect.borrow();
        Agent {
            index,
            cred,
            shared,
            control,
            seq: 0,
            running: Vec::new(),
            unacked: HashMap::new(),
            seen: HashSet::new(),
            server_hashes: HashMap::new(),
            own_hashes: None,
            collected_generation,
            inventory_unacked: false,
            applied: HashMap::new(),
        }
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            match self.session().await {
                Ended::Stop => return,
                Ended::RetryHealthy => backoff.reset(),
                Ended::Retry => {
                    self.shared.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            let delay = backoff.next_delay(rand::random::<f64>());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shared.stop.cancelled() => return,
            }
        }
    }

    fn endpoint(&self) -> Result<Endpoint, tonic::transport::Error> {
        let opts = &self.shared.opts;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&opts.ca_pem))
            .identity(Identity::from_pem(&self.cred.cert_pem, &self.cred.key_pem));
        let k = opts.source_addresses;
        let local = if k > 1 {
            let last = u8::try_from(1 + self.index % usize::from(k)).unwrap_or(1);
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        } else {
            None
        };
        Ok(Endpoint::from_shared(opts.server_url.clone())?
            .tls_config(tls)?
            .local_address(local)
            .connect_timeout(Duration::from_secs(20))
            .http2_keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20)))
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn message(&mut self, body: agent_message::Body) -> AgentMessage {
        AgentMessage { seq: self.next_seq(), body: Some(body) }
    }

    fn hello(&self) -> Hello {
        Hello {
            info: Some(NodeInfo {
                hostname: self.cred.hostname.clone(),
                os_name: packages::OS_NAME.into(),
                os_version: packages::OS_VERSION.into(),
                os_id: packages::OS_ID.into(),
                kernel: packages::KERNEL.into(),
                arch: packages::ARCH.into(),
                agent_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).into(),
                addresses: Vec::new(),
            }),
        }
    }

    /// One connection, from dial to its end.
    async fn session(&mut self) -> Ended {
        let shared = self.shared.clone();
        let channel = {
            let permit = tokio::select! {
                permit = shared.connecting.acquire() => permit,
                () = shared.stop.cancelled() => return Ended::Stop,
            };
            let Ok(_permit) = permit else { return Ended::Stop };
            let Ok(endpoint) = self.endpoint() else { return Ended::Retry };
            tokio::select! {
                channel = endpoint.connect() => match channel {
                    Ok(channel) => channel,
                    Err(e) => {
                        tracing::debug!(node = %self.cred.node_id, "cannot connect: {e:?}");
                        return Ended::Retry;
                    }
                },
                () = shared.stop.cancelled() => return Ended::Stop,
            }
        };
        let mut client = AgentChannelClient::new(channel).max_decoding_message_size(64 << 20);
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        let hello = self.message(agent_message::Body::Hello(self.hello()));
        if tx.send(hello).await.is_err() {
            return Ended::Retry;
        }
        let mut inbound = tokio::select! {
            opened = client.open(ReceiverStream::new(rx)) => match opened {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::debug!(node = %self.cred.node_id, "stream refused: {status}");
                    return Ended::Retry;
                }
            },
            () = shared.stop.cancelled() => return Ended::Stop,
        };
        let mut welcomed = false;
        let ended = self.serve(&mut inbound, &tx, &mut welcomed).await;
        if welcomed {
            shared.stats.connected.fetch_sub(1, Ordering::Relaxed);
        }
        match ended {
            Ended::Retry if welcomed => Ended::RetryHealthy,
            other => other,
        }
    }

    // An `.await` cannot move into a match guard, so the arms keep their inner `if`s.
    #[allow(clippy::collapsible_match)]
    async fn serve(
        &mut self,
        inbound: &mut tonic::Streaming<flotilla_proto::v1::ServerMessage>,
        tx: &mpsc::Sender<AgentMessage>,
        welcomed: &mut bool,
    ) -> Ended {
        let shared = self.shared.clone();
        let control = self.control.clone();
        let mut collect = shared.collect.clone();
        let mut heartbeat = tokio::time::interval(DEFAULT_HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.reset();
        let normal = shared.opts.behaviour == Behaviour::Normal;
        loop {
            let next_due = self.running.iter().map(|r| r.due).min();
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => match message.body {
                        Some(server_message::Body::Welcome(welcome)) => {
                            if !*welcomed {
                                *welcomed = true;
                                shared.stats.connected.fetch_add(1, Ordering::Relaxed);
                                shared.stats.sessions.fetch_add(1, Ordering::Relaxed);
                            }
                            let every = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(100)));
                            heartbeat = tokio::time::interval(every);
                            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            heartbeat.reset();
                            self.server_hashes = welcome.inventory_hashes;
                            match shared.opts.behaviour {
                                Behaviour::Silent => {}
                                Behaviour::Flood => return self.flood(tx).await,
                                Behaviour::Normal => {
                                    self.finish_due();
                                    if !self.resend_results(tx).await {
                                        return Ended::Retry;
                                    }
                                    let generation = *collect.borrow_and_update();
                                    let pending_collection = generation != self.collected_generation;
                                    if shared.opts.upload_at_connect || pending_collection || self.inventory_unacked {
                                        self.collected_generation = generation;
                                        if !self.upload(tx, &[]).await {
                                            return Ended::Retry;
                                        }
                                    }
                                }
                            }
                        }
                        Some(server_message::Body::Run(run)) if normal => {
                            if !self.run_invocation(run, tx).await {
                                return Ended::Retry;
                            }
                        }
                        Some(server_message::Body::ResultAck(ack)) => {
                            if self.unacked.remove(&ack.invocation_id).is_some() {
                                // As the real agent, which deletes the spool on ack: the id is
                                // forgotten, so a later re-delivery would run (and count) again.
                                self.seen.remove(&ack.invocation_id);
                                shared.stats.results_acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(server_message::Body::InventoryAck(ack)) => {
                            if !self.inventory_acked(ack, tx).await {
                                return Ended::Retry;
                            }
                        }
                        _ => {}
                    },
                    Ok(None) | Err(_) => return Ended::Retry,
                },
                _ = heartbeat.tick(), if normal && *welcomed => {
                    let beat = self.message(agent_message::Body::Heartbeat(Heartbeat { sent_at_unix_ms: now_ms() }));
                    if tx.send(beat).await.is_err() {
                        return Ended::Retry;
                    }
                }
                () = sleep_until_opt(next_due) => {
                    self.finish_due();
                    if !self.resend_results(tx).await {
                        return Ended::Retry;
                    }
                }
                changed = collect.changed(), if normal && *welcomed => {
                    if changed.is_err() {
                        return Ended::Stop;
                    }
                    let generation = *collect.borrow_and_update();
                    if generation != self.collected_generation {
                        self.collected_generation = generation;
                        if !self.upload(tx, &[]).await {
                            return Ended::Retry;
                        }
                    }
                }
                () = control.drop.notified() => return Ended::Retry,
                () = shared.stop.cancelled() => return Ended::Stop,
            }
        }
    }

    /// Floods the stream with heartbeats until stopped; never reads what the server sends.
    async fn flood(&mut self, tx: &mpsc::Sender<AgentMessage>) -> Ended {
        let stop = self.shared.stop.clone();
        let drop = self.control.clone();
        loop {
            let beat = self.message(agent_message::Body::Heartbeat(Heartbeat { sent_at_unix_ms: now_ms() }));
            tokio::select! {
                sent = tx.send(beat) => {
                    if sent.is_err() {
                        return Ended::Retry;
                    }
                    self.shared.stats.flood_messages.fetch_add(1, Ordering::Relaxed);
                }
                () = drop.drop.notified() => return Ended::Retry,
                () = stop.cancelled() => return Ended::Stop,
            }
        }
    }

    async fn run_invocation(&mut self, run: RunInvocation, tx: &mpsc::Sender<AgentMessage>) -> bool {
        let stats = &self.shared.stats;
        stats.deliveries.fetch_add(1, Ordering::Relaxed);
        let id = run.invocation_id;
        if self.seen.contains(&id) {
            stats.duplicate_deliveries.fetch_add(1, Ordering::Relaxed);
            // As the real agent: a finished one re-sends its result, a running one is left alone.
            return self.resend_results(tx).await;
        }
        self.seen.insert(id.clone());
        stats.executed(&id);
        let started_ms = now_ms();
        let accepted = self.message(agent_message::Body::Accepted(InvocationAccepted {
            invocation_id: id.clone(),
            started_at_unix_ms: started_ms,
        }));
        if tx.send(accepted).await.is_err() {
            return false;
        }
        let resources = run
            .steps
            .into_iter()
            .filter(|s| flotilla_core::desired::spec(&s.agent_action).is_some())
            .map(|s| (s.name, s.agent_action, s.agent_inputs.into_iter().collect()))
            .collect();
        self.running.push(Running { id, due: Instant::now() + self.shared.opts.delay, started_ms, resources });
        if self.shared.opts.delay.is_zero() {
            self.finish_due();
            return self.resend_results(tx).await;
        }
        true
    }

    /// Moves invocations whose time has come to `unacked`, with their results.
    fn finish_due(&mut self) {
        let now = Instant::now();
        let opts = &self.shared.opts;
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].due > now {
                i += 1;
                continue;
            }
            let done = self.running.swap_remove(i);
            let failed = opts.fail_rate > 0.0 && rand::random::<f64>() < opts.fail_rate;
            // A failed run changed nothing the node remembers.
            let state = if failed {
                Vec::new()
            } else {
                done.resources
                    .iter()
                    .map(|(step, action, inputs)| desired_state(&mut self.applied, step, action, inputs))
                    .collect()
            };
            let result = InvocationResult {
                invocation_id: done.id.clone(),
                outcome: if failed { InvocationOutcome::Failed } else { InvocationOutcome::Success } as i32,
                exit_code: i32::from(failed),
                stdout_bytes: opts.output_bytes.load(Ordering::Relaxed) as u64,
                stderr_bytes: 0,
                started_at_unix_ms: done.started_ms,
                ended_at_unix_ms: now_ms(),
                detail: String::new(),
                state,
                ..Default::default()
            };
            self.unacked.insert(done.id, Finished { result });
        }
    }

    /// Sends every unacknowledged result (output first, as the real agent does).
    async fn resend_results(&mut self, tx: &mpsc::Sender<AgentMessage>) -> bool {
        let results: Vec<InvocationResult> = self.unacked.values().map(|f| f.result.clone()).collect();
        let output_bytes = self.shared.opts.output_bytes.load(Ordering::Relaxed);
        for result in results {
            if output_bytes > 0 {
                let chunk = self.message(agent_message::Body::Output(OutputChunk {
                    invocation_id: result.invocation_id.clone(),
                    stream: OutputStream::Stdout as i32,
                    offset: 0,
                    data: output_line(output_bytes),
                }));
                if tx.send(chunk).await.is_err() {
                    return false;
                }
            }
            let message = self.message(agent_message::Body::Result(result));
            if tx.send(message).await.is_err() {
                return false;
            }
        }
        true
    }

    /// One collection: every type listed, items only for those the server does not hold
    /// (or that it asked to have again).
    async fn upload(&mut self, tx: &mpsc::Sender<AgentMessage>, resend: &[String]) -> bool {
        let opts = &self.shared.opts;
        let hashes = match &self.own_hashes {
            Some(h) => h.clone(),
            None => {
                let encoded = packages::encoded(self.index, &self.cred.hostname, &opts.fleet);
                let h: Vec<(&'static str, String)> = encoded.iter().map(|t| (t.name, t.hash.clone())).collect();
                self.own_hashes = Some(h.clone());
                h
            }
        };
        let stale = |name: &str, hash: &str| {
            self.server_hashes.get(name).map(String::as_str) != Some(hash) || resend.iter().any(|r| r == name)
        };
        let any_stale = hashes.iter().any(|(name, hash)| stale(name, hash));
        // Encoding 1,000 packages costs about a millisecond: only when something must travel.
        let encoded =
            if any_stale { packages::encoded(self.index, &self.cred.hostname, &opts.fleet) } else { Vec::new() };
        let mut types = Vec::with_capacity(hashes.len());
        let mut item_bytes = 0u64;
        for (name, hash) in &hashes {
            let unchanged = !stale(name, hash);
            let items_json = if unchanged {
                Vec::new()
            } else {
                encoded.iter().find(|t| t.name == *name).map(|t| t.bytes.clone()).unwrap_or_default()
            };
            item_bytes += items_json.len() as u64;
            types.push(InventoryTypeData {
                name: (*name).to_owned(),
                content_hash: hash.clone(),
                items_json,
                unchanged,
            });
        }
        let seq = self.next_seq();
        let report_id = format!("{}-{seq}", self.index);
        let report = InventoryReport { report_id, collected_at_unix_ms: now_ms(), types };
        let size = prost::Message::encoded_len(&report) as u64;
        let stats = &self.shared.stats;
        stats.inventory_item_bytes.fetch_add(item_bytes, Ordering::Relaxed);
        stats.inventory_report_bytes.fetch_add(size, Ordering::Relaxed);
        let message = self.message(agent_message::Body::Inventory(report));
        self.inventory_unacked = true;
        tx.send(message).await.is_ok()
    }

    async fn inventory_acked(&mut self, ack: InventoryAck, tx: &mpsc::Sender<AgentMessage>) -> bool {
        self.server_hashes = ack.hashes;
        if !ack.resend.is_empty() {
            return self.upload(tx, &ack.resend).await;
        }
        self.inventory_unacked = false;
        let stats = &self.shared.stats;
        if ack.rejected.is_empty() {
            stats.inventory_acks.fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::warn!(node = %self.cred.node_id, "inventory rejected: {:?}", ack.rejected);
            stats.inventory_rejected.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// `bytes` of stdout shaped like a command's: numbered lines of text (so compression and
/// encryption see real-looking output, not one repeated byte).
fn output_line(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 64);
    let mut line = 0u32;
    while out.len() < bytes {
        out.extend_from_slice(
            format!("{line:05} ok: checked /etc/flotilla/item-{line} in {}us\n", 17 * line % 997).as_bytes(),
        );
        line += 1;
    }
    out.truncate(bytes);
    out
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod desired_tests {
    use super::*;

    #[test]
    fn a_resource_changes_once_per_set_of_inputs() {
        let mut applied = HashMap::new();
        let motd: BTreeMap<String, String> =
            [("path".to_owned(), "/etc/motd".to_owned()), ("content".to_owned(), "hi\n".to_owned())].into();
        let first = desired_state(&mut applied, "d.0", "file:write", &motd);
        assert!(first.changed);
        assert_eq!(first.detail, "/etc/motd: content differed, rewritten");
        let again = desired_state(&mut applied, "d.0", "file:write", &motd);
        assert_eq!((again.changed, again.detail.as_str()), (false, "/etc/motd: unchanged"));
        let absent: BTreeMap<String, String> = [("path".to_owned(), "/etc/motd".to_owned())].into();
        assert!(desired_state(&mut applied, "d.1", "file:absent", &absent).changed, "another want, same path");
        assert!(!desired_state(&mut applied, "d.1", "file:absent", &absent).changed);
    }
}
