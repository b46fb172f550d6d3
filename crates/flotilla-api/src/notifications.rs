//! Notifications on the REST surface: topics, subscriptions and their deliveries, and event
//! rules (../shared/CLI.md, "Notifications").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// Body of `POST /api/v1/topics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// 1 to 128 of `a-z A-Z 0-9 _ . -`.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Topic {
    pub name: String,
    pub subscriptions: u64,
    pub created_at: String,
}

/// Body of `POST /api/v1/subscriptions`: exactly one of `webhook`, `email`, `run_document`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    pub topic: String,
    /// An `https://` URL (or `http://`) to POST each event to.
    #[serde(default)]
    pub webhook: Option<String>,
    /// The webhook's signing secret (at least 16 bytes); generated and returned once when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM of the CA certificates that sign the receiver's certificate (instead of the system's).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Seconds one attempt may take (default 10).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub email: Option<String>,
    /// A document to run for each event.
    #[serde(default)]
    pub run_document: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    pub id: String,
    pub topic: String,
    /// `webhook` | `email` | `run-document`
    pub kind: String,
    /// The URL, the address or the document.
    pub endpoint: String,
    /// Only in the reply to create, and only when the server generated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub timeout_seconds: u64,
    /// Whether a CA file was given.
    pub custom_ca: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Deliveries by status.
    pub counts: BTreeMap<String, u64>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub event_id: String,
    pub seq: i64,
    /// `Pending` | `Retrying` | `Delivered` | `DeadLettered`
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When it last changed.
    pub time: String,
    /// The next attempt, while it is Pending or Retrying.
    pub next_attempt: Option<String>,
}

/// Reply of `POST /api/v1/subscriptions/{id}/redrive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Redrive {
    pub subscription: String,
    /// Dead letters made Pending again.
    pub redriven: u64,
}

/// Body of `POST /api/v1/rules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    pub name: String,
    /// An EventBridge-style event pattern (a JSON object).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub pattern: serde_json::Value,
    /// `topic:NAME`, `assessment:TEMPLATE` or `run:DOC`.
    pub target: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<String>>,
    /// For `run:DOC`: nodes to run on (default: the nodes the event names).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub pattern: serde_json::Value,
    pub target: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub enabled: bool,
    /// Why the rule could not act on its last match (its topic or template is gone).
    pub problem: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Client {
    pub async fn create_topic(&self, req: &CreateTopic) -> Result<Topic, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/topics", Some(req)).await
    }

    pub async fn list_topics(&self) -> Result<Vec<Topic>, ClientError> {
        self.get("/api/v1/topics").await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/topics/{}", enc(name)), None).await
    }

    pub async fn create_subscription(&self, req: &CreateSubscription) -> Result<Subscription, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/subscriptions", Some(req)).await
    }

    pub async fn list_subscriptions(&self, topic: Option<&str>) -> Result<Vec<Subscription>, ClientError> {
        match topic {
            Some(t) => self.get(&format!("/api/v1/subscriptions?topic={}", enc(t))).await,
            None => self.get("/api/v1/subscriptions").await,
        }
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/subscriptions/{}", enc(id)), None).await
    }

    pub async fn list_deliveries(&self, id: &str) -> Result<Vec<Delivery>, ClientError> {
        self.get(&format!("/api/v1/subscriptions/{}/deliveries", enc(id))).await
    }

    pub async fn redrive_subscription(&self, id: &str) -> Result<Redrive, ClientError> {
        self.call::<(), _>(reqwest::Method::POST, &format!("/api/v1/subscriptions/{}/redrive", enc(id)), None).await
    }

    pub async fn create_rule(&self, req: &CreateRule) -> Result<Rule, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/rules", Some(req)).await
    }

    pub async fn list_rules(&self) -> Result<Vec<Rule>, ClientError> {
        self.get("/api/v1/rules").await
    }

    pub async fn get_rule(&self, id: &str) -> Result<Rule, ClientError> {
        self.get(&format!("/api/v1/rules/{}", enc(id))).await
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/rules/{}", enc(id)), None).await
    }

    /// Enables (`true`) or disables a rule.
    pub async fn set_rule_enabled(&self, id: &str, enabled: bool) -> Result<Rule, ClientError> {
        let verb = if enabled { "enable" } else { "disable" };
        self.call::<(), _>(reqwest::Method::POST, &format!("/api/v1/rules/{}/{verb}", enc(id)), None).await
    }
}
