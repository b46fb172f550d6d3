//! `flotilla documents ls | show | create | update | import-ssm`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use flotilla_api::{Client, PutDocument};

use crate::output::outln;
use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Documents {
    /// List documents.
    ///
    /// Example: flotilla documents ls
    Ls,
    /// Show a document version (the default one unless --version).
    ///
    /// Example: flotilla documents show Flotilla-RunShellScript
    Show {
        name: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Create a document from a YAML or JSON file (its name defaults to the file name).
    ///
    /// Example: flotilla documents create --file restart-nginx.yaml
    Create {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a version to a document; the default version does not change.
    ///
    /// Example: flotilla documents update restart-nginx --file restart-nginx.yaml
    Update {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Import an AWS SSM Command document (schema 1.2, 2.0 or 2.2; JSON or YAML) unchanged.
    ///
    /// Example: flotilla documents import-ssm --file AWS-RunShellScript.json --name Ops-RunShellScript
    ImportSsm {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn name_from(file: &Path, name: Option<String>) -> anyhow::Result<String> {
    match name {
        Some(name) => Ok(name),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("cannot derive a document name from the file name: pass --name"),
    }
}

impl Documents {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        let show = |d: flotilla_api::Document| -> anyhow::Result<()> {
            match format {
                Format::Table => {
                    outln!(
                        "name:     {} (version {}, default {}, latest {})",
                        d.name,
                        d.version,
                        d.default_version,
                        d.latest_version
                    )?;
                    outln!("format:   {}", d.format)?;
                    outln!("created:  {}", d.created_at)?;
                    outln!("---\n{}", d.content.trim_end())?;
                    Ok(())
                }
                _ => print(format, &d, &[], vec![]),
            }
        };
        match self {
            Documents::Ls => {
                let list = client.list_documents().await?;
                let rows = list
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.default_version.to_string(),
                            d.latest_version.to_string(),
                            d.description.clone(),
                        ]
                    })
                    .collect();
                print(format, &list, &["NAME", "DEFAULT", "LATEST", "DESCRIPTION"], rows)
            }
            Documents::Show { name, version } => show(client.get_document(&name, version).await?),
            Documents::Create { file, name } => {
                let req = PutDocument { name: name_from(&file, name)?, content: read(&file)?, format: None };
                show(client.create_document(&req).await?)
            }
            Documents::Update { name, file } => {
                let req = PutDocument { name, content: read(&file)?, format: None };
                show(client.update_document(&req).await?)
            }
            Documents::ImportSsm { file, name } => {
                let req =
                    PutDocument { name: name_from(&file, name)?, content: read(&file)?, format: Some("ssm".into()) };
                show(client.create_document(&req).await?)
            }
        }
    }
}
