//! `flotilla assess run | ls | show` and `flotilla findings ls`: vulnerability assessment.

use std::time::Duration;

use flotilla_api::{AssessmentRun, Client, CreateAssessment, FindingView};

use crate::output::{Format, print};
use crate::output::{out, outln};

#[derive(clap::Subcommand)]
pub enum Assess {
    /// Start an assessment run over the target nodes.
    ///
    /// Example: flotilla assess run --target 'tag:env=prod&!tag:canary' --rules cve,security-best-practices --wait
    Run {
        /// Targets as for `flotilla run` (default all); repeatable: a union.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Comma-separated rules packages (default: cve,security-best-practices,network-reachability).
        #[arg(long, value_delimiter = ',')]
        rules: Vec<String>,
        /// The lowest severity that makes a node non-compliant (default High).
        #[arg(long)]
        noncompliant_at: Option<String>,
        /// Take targets, rules, threshold and duration from this template.
        #[arg(long)]
        template: Option<String>,
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
    /// Assessment templates: targets, rules packages, duration and an optional cron schedule.
    #[command(subcommand)]
    Templates(Templates),
}

#[derive(clap::Subcommand)]
pub enum Templates {
    /// Create or replace a template.
    ///
    /// Example: flotilla assess templates put nightly --target tag:env=prod --rules cve --schedule '0 3 * * *'
    Put {
        name: String,
        /// Targets as for `flotilla run` (default all); repeatable: a union.
        #[arg(long = "target")]
        targets: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        rules: Vec<String>,
        #[arg(long)]
        noncompliant_at: Option<String>,
        /// How long node-side checks may take to be delivered (e.g. 10m; default 10m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// A schedule: 'cron(0 3 * * *)' (or bare '0 3 * * *'), 'rate(12 hours)' or
        /// 'at(2026-12-24T18:00:00)'; at most every 5 minutes.
        #[arg(long)]
        schedule: Option<String>,
        /// The IANA time zone for a cron or at schedule, e.g. Europe/Berlin (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// How late a run missed while the server was down may still start (e.g. 2h; default 1h).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// List templates with their next scheduled run.
    Ls,
    /// Delete a template.
    Rm { name: String },
}

const TEMPLATE_HEADERS: &[&str] = &["NAME", "TARGETS", "RULES", "SCHEDULE", "NEXT RUN"];

fn template_rows(list: &[flotilla_api::AssessmentTemplate]) -> Vec<Vec<String>> {
    list.iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.targets.join(" "),
                t.rules.join(","),
                t.schedule.clone().unwrap_or_else(|| "-".into()),
                t.next_run_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
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
            Assess::Run { targets, rules, noncompliant_at, template, wait } => {
                let mut run =
                    client.create_assessment(&CreateAssessment { targets, rules, noncompliant_at, template }).await?;
                if wait {
                    while !finished(&run.status) {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        run = client.get_assessment(&run.id).await?;
                    }
                    run = client.get_assessment(&run.id).await?;
                }
                print(format, &run, RUN_HEADERS, run_rows(std::slice::from_ref(&run)))?;
                caveats(&run);
                if run.status == "Failed" {
                    anyhow::bail!("assessment run {} failed: {}", run.id, run.detail);
                }
                Ok(())
            }
            Assess::Ls => {
                let runs = client.list_assessments().await?;
                print(format, &runs, RUN_HEADERS, run_rows(&runs))
            }
            Assess::Templates(Templates::Put {
                name,
                targets,
                rules,
                noncompliant_at,
                duration,
                schedule,
                timezone,
                grace,
            }) => {
                let grace_seconds = grace
                    .map(|d| u32::try_from(d.as_secs()))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--grace is too long: at most 7 days"))?;
                let duration_seconds = duration
                    .map(|d| u32::try_from(d.as_secs()))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--duration is too long"))?;
                let template = flotilla_api::AssessmentTemplate {
                    name,
                    targets,
                    rules,
                    noncompliant_at,
                    duration_seconds,
                    schedule,
                    timezone,
                    grace_seconds,
                    ..Default::default()
                };
                let saved = client.put_assessment_template(&template).await?;
                print(format, &saved, TEMPLATE_HEADERS, template_rows(std::slice::from_ref(&saved)))
            }
            Assess::Templates(Templates::Ls) => {
                let list = client.list_assessment_templates().await?;
                print(format, &list, TEMPLATE_HEADERS, template_rows(&list))
            }
            Assess::Templates(Templates::Rm { name }) => {
                client.delete_assessment_template(&name).await?;
                eprintln!("deleted assessment template {name}");
                Ok(())
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
                    out!("{}", crate::output::table(RUN_HEADERS, &run_rows(std::slice::from_ref(&run))))?;
                    outln!()?;
                }
                print(format, &run, &["NODE", "STATUS", "DETAIL"], rows)?;
                caveats(&run);
                Ok(())
            }
        }
    }
}

/// A completed run's caveats (stale advisories, nodes not assessable) go to stderr, so they
/// reach the operator without changing `-o json` output.
fn caveats(run: &AssessmentRun) {
    if run.status == "Completed" && !run.detail.is_empty() {
        eprintln!("note: {}", run.detail);
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
        )?;
        if let Some(days) = list.iter().filter_map(|f| f.advisories_age_days).max() {
            eprintln!(
                "warning: these findings come from advisories up to {days} days old: recent vulnerabilities may be \
                 missing; import fresh advisories with `flotilla vulndb import` and assess again"
            );
        }
        Ok(())
    }
}
