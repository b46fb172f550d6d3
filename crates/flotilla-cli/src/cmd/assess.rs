//! `flotilla assess run | ls | show` and `flotilla findings ls`: vulnerability assessment.

use std::time::Duration;

use flotilla_api::{AssessmentRun, Client, CreateAssessment, FindingView};

use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Assess {
    /// Start an assessment run over the target nodes.
    ///
    /// Example: flotilla assess run --target tag:env=prod --rules cve,security-best-practices --wait
    Run {
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Comma-separated rules packages (default: cve,security-best-practices,network-reachability).
        #[arg(long, value_delimiter = ',')]
        rules: Vec<String>,
        /// The lowest severity that makes a node non-compliant (default High).
        #[arg(long)]
        noncompliant_at: Option<String>,
        /// Wait until the run has completed and print it.
        #[arg(long)]
        wait: bool,
    },
    /// List assessment runs.
    Ls,
    /// A run with its per-node progress.
    ///
    /// Example: flotilla assess show ar-0123456789abcdef
    Show { run: String },
}

#[derive(clap::Subcommand)]
pub enum Findings {
    /// Findings, most severe first: each node's latest, or one run's.
    ///
    /// Example: flotilla findings ls --severity High
    Ls {
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long)]
        run: Option<String>,
    },
}

const RUN_HEADERS: &[&str] = &["RUN", "STATUS", "NODES", "FINDINGS", "RULES", "CREATED"];

fn run_rows(runs: &[AssessmentRun]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            let counts: Vec<String> = ["High", "Medium", "Low", "Informational"]
                .iter()
                .filter_map(|s| r.finding_counts.get(*s).map(|n| format!("{s}={n}")))
                .collect();
            vec![
                r.id.clone(),
                r.status.clone(),
                r.node_count.to_string(),
                if counts.is_empty() { "-".into() } else { counts.join(" ") },
                r.rules.join(","),
                r.created_at.clone(),
            ]
        })
        .collect()
}

fn finished(status: &str) -> bool {
    matches!(status, "Completed" | "Failed")
}

impl Assess {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Assess::Run { targets, rules, noncompliant_at, wait } => {
                let mut run = client.create_assessment(&CreateAssessment { targets, rules, noncompliant_at }).await?;
                if wait {
                    while !finished(&run.status) {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        run = client.get_assessment(&run.id).await?;
                    }
                    run = client.get_assessment(&run.id).await?;
                }
                print(format, &run, RUN_HEADERS, run_rows(std::slice::from_ref(&run)))?;
                if run.status == "Failed" {
                    anyhow::bail!("assessment run {} failed: {}", run.id, run.detail);
                }
                Ok(())
            }
            Assess::Ls => {
                let runs = client.list_assessments().await?;
                print(format, &runs, RUN_HEADERS, run_rows(&runs))
            }
            Assess::Show { run } => {
                let run = client.get_assessment(&run).await?;
                let rows = run
                    .nodes
                    .iter()
                    .flatten()
                    .map(|n| vec![n.node_id.clone(), n.status.clone(), n.detail.clone()])
                    .collect();
                if matches!(format, Format::Table) {
                    print!("{}", crate::output::table(RUN_HEADERS, &run_rows(std::slice::from_ref(&run))));
                    println!();
                }
                print(format, &run, &["NODE", "STATUS", "DETAIL"], rows)
            }
        }
    }
}

impl Findings {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        let Findings::Ls { node, severity, run } = self;
        let list: Vec<FindingView> = client.list_findings(node.as_deref(), severity.as_deref(), run.as_deref()).await?;
        let rows = list
            .iter()
            .map(|f| {
                vec![
                    f.node_id.clone(),
                    f.severity.clone(),
                    f.score.clone().unwrap_or_else(|| "-".into()),
                    f.rule.clone(),
                    f.advisory_id.clone(),
                    f.package.clone(),
                    f.installed_version.clone(),
                    f.fixed_version.clone().unwrap_or_else(|| "-".into()),
                    f.title.chars().take(60).collect(),
                ]
            })
            .collect();
        print(
            format,
            &list,
            &["NODE", "SEVERITY", "SCORE", "RULE", "ADVISORY", "PACKAGE", "INSTALLED", "FIXED", "TITLE"],
            rows,
        )
    }
}
