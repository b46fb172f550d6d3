//! Prometheus metrics of the server (`GET /metrics`). Names: `flotilla_<area>_<noun>_<unit>`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `in` (agent to server) or `out`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `anonymous` (no client certificate from our CA) or `agent`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The listener's figures, cloned into the accept loop.
#[derive(Clone, Default)]
pub struct ListenerMetrics {
    /// Open connections, by kind.
    pub connections: Family<KindLabels, Gauge>,
    /// Connections closed to make room or refused, by the limit reached (`per_address`,
    /// `anonymous`, `total`).
    pub shed: Family<ReasonLabels, Counter>,
    /// Connections closed by a timeout (`handshake`, `header_read`, `idle`).
    pub timed_out: Family<ReasonLabels, Counter>,
}

pub struct Metrics {
    registry: Registry,
    pub listener: ListenerMetrics,
    pub connected_agents: Gauge,
    pub api_requests: Family<ApiLabels, Counter>,
    pub channel_messages: Family<ChannelLabels, Counter>,
    pub enrollments: Counter,
    /// Invocation status changes, by the status entered.
    pub invocation_transitions: Family<StatusLabels, Counter>,
    /// Command status changes, by the status entered.
    pub command_transitions: Family<StatusLabels, Counter>,
    /// Inventory reports received, and the bytes of item data they carried (changed types).
    pub inventory_reports: Counter,
    pub inventory_item_bytes: Counter,
    /// Time to apply one report (validation, history, the store transaction).
    pub inventory_ingest_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let connected_agents = Gauge::default();
        let api_requests = Family::<ApiLabels, Counter>::default();
        let channel_messages = Family::<ChannelLabels, Counter>::default();
        let enrollments = Counter::default();
        let invocation_transitions = Family::<StatusLabels, Counter>::default();
        let command_transitions = Family::<StatusLabels, Counter>::default();
        registry.register(
            "flotilla_agent_connected",
            "Agents with an open stream to this server",
            connected_agents.clone(),
        );
        registry.register("flotilla_api_requests", "HTTP requests served, by method and status", api_requests.clone());
        registry.register(
            "flotilla_channel_messages",
            "Agent channel messages, by direction",
            channel_messages.clone(),
        );
        registry.register("flotilla_enrollments", "Nodes enrolled", enrollments.clone());
        registry.register(
            "flotilla_command_invocation_transitions",
            "Invocation status changes, by new status",
            invocation_transitions.clone(),
        );
        registry.register(
            "flotilla_command_transitions",
            "Command status changes, by new status",
            command_transitions.clone(),
        );
        let inventory_reports = Counter::default();
        let inventory_item_bytes = Counter::default();
        registry.register(
            "flotilla_inventory_reports",
            "Inventory reports received from agents",
            inventory_reports.clone(),
        );
        registry.register(
            "flotilla_inventory_item_bytes",
            "Bytes of inventory items received (only types that changed travel)",
            inventory_item_bytes.clone(),
        );
        let inventory_ingest_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "flotilla_inventory_ingest_seconds",
            "Time to apply one inventory report",
            inventory_ingest_seconds.clone(),
        );
        let listener = ListenerMetrics::default();
        registry.register(
            "flotilla_listener_connections",
            "Open connections on the TLS port, by kind (anonymous or agent)",
            listener.connections.clone(),
        );
        registry.register(
            "flotilla_listener_connections_shed",
            "Connections closed to make room, or refused, by the limit reached",
            listener.shed.clone(),
        );
        registry.register(
            "flotilla_listener_connections_timed_out",
            "Connections closed by the handshake, header-read or idle timeout",
            listener.timed_out.clone(),
        );
        Metrics {
            listener,
            inventory_ingest_seconds,
            inventory_reports,
            inventory_item_bytes,
            registry,
            connected_agents,
            api_requests,
            channel_messages,
            enrollments,
            invocation_transitions,
            command_transitions,
        }
    }

    pub fn channel(&self, direction: &'static str) {
        self.channel_messages.get_or_create(&ChannelLabels { direction }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}
