//! `flotilla topics | subscriptions | rules`: where events go. Rules match events from the
//! durable event log and route them to topics (or start an assessment or a document run);
//! each subscription of a topic gets every routed event, retried until delivered or
//! dead-lettered (../shared/CLI.md, "Notifications").

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use flotilla_api::{Client, CreateRule, CreateSubscription, CreateTopic, Delivery, Rule, Subscription, Topic};

use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Topics {
    /// Create a topic.
    ///
    /// Example: flotilla topics create assessments
    Create { name: String },
    /// List topics with their number of subscriptions.
    ///
    /// Example: flotilla topics ls -o json
    Ls,
    /// Delete a topic, its subscriptions and their deliveries (rules routing to it report it).
    ///
    /// Example: flotilla topics rm assessments
    Rm { name: String },
}

const TOPIC_HEADERS: &[&str] = &["NAME", "SUBSCRIPTIONS", "CREATED"];

fn topic_rows(list: &[Topic]) -> Vec<Vec<String>> {
    list.iter().map(|t| vec![t.name.clone(), t.subscriptions.to_string(), t.created_at.clone()]).collect()
}

impl Topics {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Topics::Create { name } => {
                let t = client.create_topic(&CreateTopic { name }).await?;
                print(format, &t, TOPIC_HEADERS, topic_rows(std::slice::from_ref(&t)))
            }
            Topics::Ls => {
                let list = client.list_topics().await?;
                print(format, &list, TOPIC_HEADERS, topic_rows(&list))
            }
            Topics::Rm { name } => {
                client.delete_topic(&name).await?;
                eprintln!("deleted topic {name}");
                Ok(())
            }
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Subscriptions {
    /// Subscribe a webhook, an email address or a document run to a topic.
    ///
    /// Example: flotilla subscriptions add assessments --webhook https://hooks.example/flotilla --secret-file hook.secret --ca hooks-ca.pem
    Add(AddArgs),
    /// List subscriptions (of one topic), with their deliveries by status.
    ///
    /// Example: flotilla subscriptions ls assessments -o json
    Ls { topic: Option<String> },
    /// Delete a subscription and its deliveries.
    ///
    /// Example: flotilla subscriptions rm sub-0123456789abcdef
    Rm { subscription: String },
    /// A subscription's deliveries, newest event first: status, attempts, last error.
    ///
    /// Example: flotilla subscriptions deliveries sub-0123456789abcdef
    Deliveries { subscription: String },
    /// Send a subscription's dead letters again.
    ///
    /// Example: flotilla subscriptions redrive sub-0123456789abcdef
    Redrive { subscription: String },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("endpoint").required(true).args(["webhook", "email", "run_document"])))]
pub struct AddArgs {
    topic: String,
    /// POST each event to this https:// (or http://) URL, signed with the secret.
    #[arg(long)]
    webhook: Option<String>,
    /// A file holding the webhook's signing secret (at least 16 bytes; a trailing newline is
    /// dropped). Without it the server generates one and prints it once.
    #[arg(long, requires = "webhook")]
    secret_file: Option<PathBuf>,
    /// PEM CA certificates to trust for the webhook's HTTPS certificate (instead of the
    /// system's). Also spelled `--ca` after `subscriptions add` (then give the Flotilla
    /// server's own CA before the subcommand, in FLOTILLA_CA or the login profile).
    #[arg(long, value_name = "FILE", requires = "webhook")]
    webhook_ca: Option<PathBuf>,
    /// Seconds one webhook attempt may take (default 10).
    #[arg(long, requires = "webhook")]
    timeout: Option<u64>,
    /// Send each event to this email address.
    #[arg(long)]
    email: Option<String>,
    /// Run this document for each event.
    #[arg(long)]
    run_document: Option<String>,
    /// NAME=VALUE for the document; repeat a StringList parameter to add items.
    #[arg(long = "param", value_parser = super::key_value, requires = "run_document")]
    params: Vec<(String, String)>,
    /// Where the document runs (as for `flotilla run`); repeatable: a union.
    #[arg(long = "target", requires = "run_document")]
    targets: Vec<String>,
}

fn params(list: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in list {
        out.entry(name).or_default().push(value);
    }
    out
}

const SUB_HEADERS: &[&str] = &["ID", "TOPIC", "KIND", "ENDPOINT", "DELIVERIES"];

fn sub_rows(list: &[Subscription]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| {
            let counts: Vec<String> = s.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            vec![s.id.clone(), s.topic.clone(), s.kind.clone(), s.endpoint.clone(), counts.join(",")]
        })
        .collect()
}

const DELIVERY_HEADERS: &[&str] = &["EVENT", "STATUS", "ATTEMPTS", "TIME", "LAST ERROR"];

fn delivery_rows(list: &[Delivery]) -> Vec<Vec<String>> {
    list.iter()
        .map(|d| {
            vec![
                d.event_id.clone(),
                d.status.clone(),
                d.attempts.to_string(),
                d.time.clone(),
                d.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

fn read_text(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

impl Subscriptions {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Subscriptions::Add(a) => {
                let secret = match &a.secret_file {
                    Some(path) => Some(read_text(path, "secret")?.trim_end_matches(['\r', '\n']).to_owned()),
                    None => None,
                };
                let ca_pem = match &a.webhook_ca {
                    Some(path) => Some(read_text(path, "CA")?),
                    None => None,
                };
                let req = CreateSubscription {
                    topic: a.topic,
                    webhook: a.webhook,
                    secret,
                    ca_pem,
                    timeout_seconds: a.timeout,
                    email: a.email,
                    run_document: a.run_document,
                    parameters: params(a.params),
                    targets: a.targets,
                };
                let s = client.create_subscription(&req).await?;
                if format == Format::Table
                    && let Some(secret) = &s.secret
                {
                    eprintln!("generated webhook secret (shown only now; keep it for verifying signatures): {secret}");
                }
                print(format, &s, SUB_HEADERS, sub_rows(std::slice::from_ref(&s)))
            }
            Subscriptions::Ls { topic } => {
                let list = client.list_subscriptions(topic.as_deref()).await?;
                print(format, &list, SUB_HEADERS, sub_rows(&list))
            }
            Subscriptions::Rm { subscription } => {
                client.delete_subscription(&subscription).await?;
                eprintln!("deleted subscription {subscription}");
                Ok(())
            }
            Subscriptions::Deliveries { subscription } => {
                let list = client.list_deliveries(&subscription).await?;
                print(format, &list, DELIVERY_HEADERS, delivery_rows(&list))
            }
            Subscriptions::Redrive { subscription } => {
                let r = client.redrive_subscription(&subscription).await?;
                let rows = vec![vec![r.subscription.clone(), r.redriven.to_string()]];
                print(format, &r, &["SUBSCRIPTION", "REDRIVEN"], rows)
            }
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Rules {
    /// Route events matching a pattern to a topic, an assessment template or a document run.
    ///
    /// Example: flotilla rules create completed --pattern '{"type": ["Assessment.Completed"]}' --to topic:assessments
    Create {
        name: String,
        /// An event pattern (EventBridge's form) over type, source, resources and detail:
        /// lists of exact values, {"prefix": ...}, {"anything-but": ...}, {"numeric": [">", 0]},
        /// {"exists": true}.
        #[arg(long)]
        pattern: String,
        /// topic:NAME, assessment:TEMPLATE or run:DOC.
        #[arg(long = "to")]
        to: String,
        /// NAME=VALUE for a run:DOC target.
        #[arg(long = "param", value_parser = super::key_value)]
        params: Vec<(String, String)>,
        /// For run:DOC: where it runs (default: the nodes the event names).
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List rules.
    ///
    /// Example: flotilla rules ls -o json
    Ls,
    /// Show a rule, with any problem it met (a deleted topic or template).
    ///
    /// Example: flotilla rules show completed
    Show { rule: String },
    /// Delete a rule.
    ///
    /// Example: flotilla rules rm completed
    Rm { rule: String },
    /// Stop a rule from matching.
    ///
    /// Example: flotilla rules disable completed
    Disable { rule: String },
    /// Let a disabled rule match again (events from then on).
    ///
    /// Example: flotilla rules enable completed
    Enable { rule: String },
}

const RULE_HEADERS: &[&str] = &["ID", "NAME", "PATTERN", "TARGET", "ENABLED", "PROBLEM"];

fn rule_rows(list: &[Rule]) -> Vec<Vec<String>> {
    list.iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.name.clone(),
                r.pattern.to_string(),
                r.target.clone(),
                r.enabled.to_string(),
                r.problem.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

impl Rules {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        let one = |r: Rule| print(format, &r, RULE_HEADERS, rule_rows(std::slice::from_ref(&r)));
        match self {
            Rules::Create { name, pattern, to, params: p, targets, disabled } => {
                let pattern: serde_json::Value = serde_json::from_str(&pattern).map_err(|e| {
                    anyhow::anyhow!(
                        "--pattern is not JSON (line {}, column {}: {e}); write it like '{{\"type\": [\"Assessment.Completed\"]}}'",
                        e.line(),
                        e.column()
                    )
                })?;
                let req =
                    CreateRule { name, pattern, target: to, parameters: params(p), targets, enabled: Some(!disabled) };
                one(client.create_rule(&req).await?)
            }
            Rules::Ls => {
                let list = client.list_rules().await?;
                print(format, &list, RULE_HEADERS, rule_rows(&list))
            }
            Rules::Show { rule } => one(client.get_rule(&rule).await?),
            Rules::Rm { rule } => {
                client.delete_rule(&rule).await?;
                eprintln!("deleted rule {rule}");
                Ok(())
            }
            Rules::Disable { rule } => one(client.set_rule_enabled(&rule, false).await?),
            Rules::Enable { rule } => one(client.set_rule_enabled(&rule, true).await?),
        }
    }
}
