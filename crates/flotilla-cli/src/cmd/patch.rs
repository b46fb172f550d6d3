//! `flotilla patch ...`: patch baselines, each OS family's default, patch groups, a node's
//! patch states and the fleet's patch compliance. BASE is a baseline's id (`pb-...`) or name.
//! Scans and installs run as commands: `flotilla run Flotilla-RunPatchBaseline --param Operation=Scan`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flotilla_api::{BaselineSpec, Client, PatchBaseline, PatchCompliance, PatchGroup, PatchStateRow};

use crate::output::{Format, out, outln, print};

#[derive(clap::Subcommand)]
pub enum Patch {
    /// Patch baselines: which updates are approved for an OS family.
    #[command(subcommand)]
    Baselines(Baselines),
    /// Patch groups: the `Patch Group` tag value that maps nodes to a baseline.
    #[command(subcommand)]
    Groups(Groups),
    /// Every installed package's patch state on a node, from its last Scan or Install.
    ///
    /// Example: flotilla patch states n-0123abcd --state MISSING
    States {
        node: String,
        /// Only rows in this state (INSTALLED, INSTALLED_OTHER, INSTALLED_PENDING_REBOOT,
        /// INSTALLED_REJECTED, MISSING, FAILED, NOT_APPLICABLE).
        #[arg(long)]
        state: Option<String>,
    },
    /// Per node: counts by state, baseline, status and the last operation.
    ///
    /// Example: flotilla patch compliance --target tag:env=prod
    Compliance {
        /// Only nodes matching these targets (a union); all nodes when none.
        #[arg(long)]
        target: Vec<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum Baselines {
    /// List baselines: the predefined Flotilla-* ones and yours.
    Ls,
    /// A baseline's rules and lists.
    Show { baseline: String },
    /// Create a baseline from a YAML or JSON file.
    ///
    /// Example file:
    ///   name: web-servers
    ///   os: ubuntu
    ///   approval_rules:
    ///     - filters: [{key: PRIORITY, values: [required, important]}]
    ///       approve_after_days: 0
    ///       compliance_level: HIGH
    ///   rejected_patches: ["telnet*"]
    ///   rejected_patches_action: BLOCK
    Create {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace a baseline's rules and lists from a file (its OS family stays).
    Update {
        baseline: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove a baseline (not a default, not one a patch group names, not a predefined one).
    Rm { baseline: String },
    /// Make BASE the default for an OS family: nodes without a patch group use it.
    ///
    /// Example: flotilla patch baselines default --os ubuntu web-servers
    Default {
        /// debian, ubuntu, rhel or alpine.
        #[arg(long = "os", value_name = "OS_FAMILY")]
        os: String,
        baseline: String,
    },
}

#[derive(clap::Subcommand)]
pub enum Groups {
    /// List patch groups and their baselines.
    Ls,
    /// Map a patch group (a `Patch Group` tag value) to a baseline.
    ///
    /// Example: flotilla patch groups set web web-servers
    Set { group: String, baseline: String },
}

/// Reads a baseline file, YAML or JSON, naming the file and the field when it does not read.
fn read_spec(path: &Path) -> anyhow::Result<BaselineSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a patch baseline: {e} (see `flotilla patch baselines create --help`)",
            path.display()
        )
    })
}

const BASELINE_HEADERS: &[&str] = &["ID", "NAME", "OS", "DEFAULT", "PREDEFINED", "RULES", "PATCH GROUPS"];

fn baseline_rows(list: &[PatchBaseline]) -> Vec<Vec<String>> {
    list.iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.name.clone(),
                b.os.clone(),
                b.default.to_string(),
                b.predefined.to_string(),
                b.spec.approval_rules.len().to_string(),
                if b.patch_groups.is_empty() { "-".into() } else { b.patch_groups.join(",") },
            ]
        })
        .collect()
}

fn show_baseline(format: Format, b: &PatchBaseline) -> anyhow::Result<()> {
    if format != Format::Table {
        return print(format, b, &[], Vec::new());
    }
    print(format, b, BASELINE_HEADERS, baseline_rows(std::slice::from_ref(b)))?;
    out!("{}", serde_yaml::to_string(&b.spec)?)?;
    Ok(())
}

const STATE_HEADERS: &[&str] = &["NAME", "STATE", "INSTALLED", "AVAILABLE", "SEVERITY", "CVES"];

fn state_rows(list: &[PatchStateRow]) -> Vec<Vec<String>> {
    list.iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.state.clone(),
                p.installed_version.clone(),
                p.available_version.clone().unwrap_or_else(|| "-".into()),
                p.severity.clone(),
                if p.cves.is_empty() { "-".into() } else { p.cves.join(",") },
            ]
        })
        .collect()
}

const COMPLIANCE_HEADERS: &[&str] = &["NODE", "BASELINE", "STATUS", "SEVERITY", "COUNTS", "OPERATION", "TIME"];

fn compliance_rows(list: &[PatchCompliance]) -> Vec<Vec<String>> {
    list.iter()
        .map(|c| {
            let counts: Vec<String> = c.counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
            vec![
                c.node_id.clone(),
                c.baseline.clone(),
                c.status.clone(),
                c.severity.clone(),
                counts.join(" "),
                c.operation.clone(),
                c.time.clone(),
            ]
        })
        .collect()
}

const GROUP_HEADERS: &[&str] = &["GROUP", "BASELINE", "OS"];

fn group_rows(list: &[PatchGroup]) -> Vec<Vec<String>> {
    list.iter().map(|g| vec![g.group.clone(), g.baseline.clone(), g.os.clone()]).collect()
}

impl Patch {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Patch::Baselines(b) => match b {
                Baselines::Ls => {
                    let list = client.list_patch_baselines().await?;
                    print(format, &list, BASELINE_HEADERS, baseline_rows(&list))
                }
                Baselines::Show { baseline } => show_baseline(format, &client.get_patch_baseline(&baseline).await?),
                Baselines::Create { file } => {
                    let spec = read_spec(&file)?;
                    show_baseline(format, &client.create_patch_baseline(&spec).await?)
                }
                Baselines::Update { baseline, file } => {
                    let spec = read_spec(&file)?;
                    show_baseline(format, &client.update_patch_baseline(&baseline, &spec).await?)
                }
                Baselines::Rm { baseline } => {
                    client.delete_patch_baseline(&baseline).await?;
                    outln!("removed {baseline}")?;
                    Ok(())
                }
                Baselines::Default { os, baseline } => {
                    show_baseline(format, &client.set_default_patch_baseline(&os, &baseline).await?)
                }
            },
            Patch::Groups(g) => match g {
                Groups::Ls => {
                    let list = client.list_patch_groups().await?;
                    print(format, &list, GROUP_HEADERS, group_rows(&list))
                }
                Groups::Set { group, baseline } => {
                    let g = client.set_patch_group(&group, &baseline).await?;
                    print(format, &g, GROUP_HEADERS, group_rows(std::slice::from_ref(&g)))
                }
            },
            Patch::States { node, state } => {
                let mut list = client.patch_states(&node).await?;
                if let Some(want) = state {
                    let want: flotilla_core::patch::PatchState = want.parse()?;
                    list.retain(|p| p.state == want.as_str());
                }
                print(format, &list, STATE_HEADERS, state_rows(&list))
            }
            Patch::Compliance { target } => {
                let list = client.patch_compliance(&target).await?;
                print(format, &list, COMPLIANCE_HEADERS, compliance_rows(&list))
            }
        }
    }
}
