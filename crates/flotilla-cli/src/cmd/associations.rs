//! `flotilla associations ...` (State Manager) and `flotilla compliance ...`.

use std::collections::BTreeMap;

use flotilla_api::{Association, AssociationRequest, Client, ComplianceItem};

use crate::output::{Format, print};

/// The settings `create` and `update` share; on update an absent flag keeps its value.
#[derive(clap::Args)]
pub struct AssociationArgs {
    /// The document to keep applied (see `flotilla documents ls`), e.g. Flotilla-DesiredState.
    #[arg(long)]
    document: Option<String>,
    /// A fixed document version (default: the document's default version at each run).
    #[arg(long)]
    document_version: Option<i64>,
    /// NAME=VALUE; repeat a StringList parameter to add items. On update, replaces them all.
    #[arg(long = "param", value_parser = super::key_value)]
    params: Vec<(String, String)>,
    /// Targets as for `flotilla run`; repeatable: a union. A target that matches no node yet
    /// is fine: nodes that join later get the association.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// 'cron(0 */2 * * *)', 'rate(1 day)' (at least 30 minutes) or 'at(2026-12-24T18:00:00)';
    /// without one it runs at creation, on edit, on `apply` and on nodes that join.
    #[arg(long)]
    schedule: Option<String>,
    /// The IANA time zone of a cron or at schedule (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    #[arg(long)]
    max_concurrency: Option<String>,
    #[arg(long)]
    max_errors: Option<String>,
    /// The severity a failing node's compliance item carries: CRITICAL, HIGH, MEDIUM, LOW or
    /// UNSPECIFIED (default).
    #[arg(long)]
    compliance_severity: Option<String>,
    /// Do not run at creation: only at the schedule's cron occurrences.
    #[arg(long)]
    apply_only_at_cron_interval: bool,
    /// 3 to 128 of a-z A-Z 0-9 _ . - (default: the id).
    #[arg(long)]
    name: Option<String>,
}

impl AssociationArgs {
    fn request(self, update: bool) -> AssociationRequest {
        let mut parameters: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in self.params {
            parameters.entry(name).or_default().push(value);
        }
        AssociationRequest {
            name: self.name,
            document: self.document,
            document_version: self.document_version,
            parameters: (!update || !parameters.is_empty()).then_some(parameters),
            targets: (!update || !self.targets.is_empty()).then_some(self.targets),
            schedule: self.schedule,
            timezone: self.timezone,
            max_concurrency: self.max_concurrency,
            max_errors: self.max_errors,
            compliance_severity: self.compliance_severity,
            apply_only_at_cron_interval: (!update || self.apply_only_at_cron_interval)
                .then_some(self.apply_only_at_cron_interval),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Associations {
    /// Keep a document applied on the target nodes.
    ///
    /// Example: flotilla associations create --name motd --document Flotilla-DesiredState --param 'resources=[{"action":"file:write","path":"/etc/motd","content":"managed\n"}]' --target all --schedule 'rate(30 minutes)'
    Create(AssociationArgs),
    /// List associations with their node counts and next run.
    Ls,
    /// One association.
    Show { association: String },
    /// Change an association; a changed document, version, parameters or schedule runs it again.
    Update {
        association: String,
        #[command(flatten)]
        args: AssociationArgs,
    },
    /// Delete an association and its compliance items (nothing is undone on the nodes).
    Rm { association: String },
    /// Run it again on every targeted node now.
    Apply { association: String },
    /// Per node: status (Pending, Success, Failed), whether the last run changed anything,
    /// detail and command.
    Status { association: String },
}

const HEADERS: &[&str] = &["ID", "NAME", "DOCUMENT", "TARGETS", "SCHEDULE", "NODES", "NEXT RUN"];

fn rows(list: &[Association]) -> Vec<Vec<String>> {
    list.iter()
        .map(|a| {
            let counts: Vec<String> = a.counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
            vec![
                a.id.clone(),
                a.name.clone(),
                a.document.clone(),
                a.targets.join(" "),
                a.schedule.clone().unwrap_or_else(|| "-".into()),
                if counts.is_empty() { "-".into() } else { counts.join(" ") },
                a.next_run.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

impl Associations {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Associations::Create(args) => {
                let a = client.create_association(&args.request(false)).await?;
                print(format, &a, HEADERS, rows(std::slice::from_ref(&a)))
            }
            Associations::Update { association, args } => {
                let a = client.update_association(&association, &args.request(true)).await?;
                print(format, &a, HEADERS, rows(std::slice::from_ref(&a)))
            }
            Associations::Ls => {
                let list = client.list_associations().await?;
                print(format, &list, HEADERS, rows(&list))
            }
            Associations::Show { association } => {
                let a = client.get_association(&association).await?;
                print(format, &a, HEADERS, rows(std::slice::from_ref(&a)))
            }
            Associations::Apply { association } => {
                let a = client.apply_association(&association).await?;
                print(format, &a, HEADERS, rows(std::slice::from_ref(&a)))
            }
            Associations::Rm { association } => {
                client.delete_association(&association).await?;
                eprintln!("deleted association {association}");
                Ok(())
            }
            Associations::Status { association } => {
                let list = client.association_status(&association).await?;
                let rows = list
                    .iter()
                    .map(|n| {
                        vec![
                            n.node_id.clone(),
                            n.status.clone(),
                            n.changed.map_or("-".into(), |c| if c { "yes".into() } else { "no".into() }),
                            n.last_run.clone(),
                            n.command_id.clone().unwrap_or_else(|| "-".into()),
                            n.detail.clone(),
                        ]
                    })
                    .collect();
                print(format, &list, &["NODE", "STATUS", "CHANGED", "LAST RUN", "COMMAND", "DETAIL"], rows)
            }
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Compliance {
    /// Each node's compliance items.
    ///
    /// Example: flotilla compliance ls --type Association --target tag:env=prod
    Ls {
        /// Targets as for `flotilla run`; repeatable: a union (default: every node).
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Association, Patch or Vulnerability.
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Per type: compliant and non-compliant nodes, the latter by severity.
    Summary {
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// A node's results, newest first: every run that set one of its items.
    ///
    /// Example: flotilla compliance history NODE --type Association
    History {
        node: String,
        #[arg(long = "type")]
        kind: Option<String>,
        /// At most this many (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
    },
}

const ITEM_HEADERS: &[&str] = &["NODE", "TYPE", "ID", "TITLE", "STATUS", "SEVERITY", "TIME", "DETAIL"];

fn item_rows(list: &[ComplianceItem]) -> Vec<Vec<String>> {
    list.iter()
        .map(|i| {
            vec![
                i.node_id.clone(),
                i.kind.clone(),
                i.id.clone(),
                i.title.clone(),
                i.status.clone(),
                i.severity.clone(),
                i.time.clone(),
                i.detail.chars().take(80).collect(),
            ]
        })
        .collect()
}

impl Compliance {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Compliance::Ls { targets, kind } => {
                let list = client.list_compliance(&targets, kind.as_deref()).await?;
                print(format, &list, ITEM_HEADERS, item_rows(&list))
            }
            Compliance::Summary { kind } => {
                let list = client.compliance_summary(kind.as_deref()).await?;
                let rows = list
                    .iter()
                    .map(|s| {
                        let by: Vec<String> =
                            s.non_compliant_by_severity.iter().map(|(k, n)| format!("{k}={n}")).collect();
                        vec![
                            s.kind.clone(),
                            s.compliant.to_string(),
                            s.non_compliant.to_string(),
                            if by.is_empty() { "-".into() } else { by.join(" ") },
                            s.items.to_string(),
                        ]
                    })
                    .collect();
                print(format, &list, &["TYPE", "COMPLIANT", "NON_COMPLIANT", "BY SEVERITY", "ITEMS"], rows)
            }
            Compliance::History { node, kind, limit } => {
                let list = client.compliance_history(&node, kind.as_deref(), limit).await?;
                print(format, &list, ITEM_HEADERS, item_rows(&list))
            }
        }
    }
}
