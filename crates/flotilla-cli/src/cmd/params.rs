//! `flotilla params put | get | ls | history | label | rm` (the Parameter Store) and
//! `flotilla keys rotate | ls` (master key versions, never their material).

use flotilla_api::{Client, KeyVersion, LabelParameter, Parameter, PutParameter};

use crate::output::outln;
use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Params {
    /// Store a parameter (a new version with --overwrite).
    ///
    /// Example: flotilla params put /app/prod/db-password 's3cr3t' --type SecureString --description 'DB password'
    Put {
        name: String,
        value: String,
        /// String, StringList (comma-separated) or SecureString (stored encrypted). Default:
        /// String for a new parameter, the current type on --overwrite.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Store a new version of an existing parameter.
        #[arg(long)]
        overwrite: bool,
        /// Standard (values up to 4 KB) or Advanced (up to 8 KB).
        #[arg(long)]
        tier: Option<String>,
    },
    /// Show a parameter: its latest version, or one by version or label.
    ///
    /// Example: flotilla params get /app/prod/db-password --label prod --decrypt
    Get {
        name: String,
        #[arg(long, conflicts_with = "label")]
        version: Option<i64>,
        #[arg(long)]
        label: Option<String>,
        /// Show a SecureString value in clear.
        #[arg(long)]
        decrypt: bool,
    },
    /// List parameters under a path (one level, or every level with --recursive).
    ///
    /// Example: flotilla params ls --path /app --recursive
    Ls {
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long)]
        recursive: bool,
        /// Show SecureString values in clear.
        #[arg(long)]
        decrypt: bool,
    },
    /// Every kept version of a parameter, oldest first.
    ///
    /// Example: flotilla params history /app/prod/db-password
    History {
        name: String,
        #[arg(long)]
        decrypt: bool,
    },
    /// Put labels on a version (a label already elsewhere moves here).
    ///
    /// Example: flotilla params label /app/prod/db-password 3 prod stable
    Label {
        name: String,
        version: i64,
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Delete a parameter and all its versions.
    ///
    /// Example: flotilla params rm /app/prod/db-password
    Rm { name: String },
}

#[derive(clap::Subcommand)]
pub enum Keys {
    /// Make a new master key version current; data under older versions stays readable.
    ///
    /// Example: flotilla keys rotate
    Rotate,
    /// List master key versions (ids and versions only, never key material).
    ///
    /// Example: flotilla keys ls
    Ls,
}

const HEADERS: &[&str] = &["NAME", "TYPE", "VERSION", "LABELS", "LAST MODIFIED", "VALUE"];

fn rows(params: &[Parameter]) -> Vec<Vec<String>> {
    params
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.kind.clone(),
                p.version.to_string(),
                p.labels.join(","),
                p.last_modified.clone(),
                p.value.clone().unwrap_or_else(|| "(encrypted: add --decrypt)".into()),
            ]
        })
        .collect()
}

impl Params {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Params::Put { name, value, kind, description, overwrite, tier } => {
                let p = client.put_parameter(&PutParameter { name, value, kind, description, overwrite, tier }).await?;
                match format {
                    Format::Table => {
                        outln!("{} version {}", p.name, p.version)?;
                        Ok(())
                    }
                    _ => print(format, &p, HEADERS, rows(std::slice::from_ref(&p))),
                }
            }
            Params::Get { name, version, label, decrypt } => {
                let p = client.get_parameter(&name, version, label.as_deref(), decrypt).await?;
                print(format, &p, HEADERS, rows(std::slice::from_ref(&p)))
            }
            Params::Ls { path, recursive, decrypt } => {
                let list = client.list_parameters(&path, recursive, decrypt).await?;
                print(format, &list, HEADERS, rows(&list))
            }
            Params::History { name, decrypt } => {
                let list = client.parameter_history(&name, decrypt).await?;
                print(format, &list, HEADERS, rows(&list))
            }
            Params::Label { name, version, labels } => {
                let p = client.label_parameter(&LabelParameter { name, version, labels }).await?;
                print(format, &p, HEADERS, rows(std::slice::from_ref(&p)))
            }
            Params::Rm { name } => {
                client.delete_parameter(&name).await?;
                eprintln!("deleted parameter {name}");
                Ok(())
            }
        }
    }
}

fn key_rows(keys: &[KeyVersion]) -> Vec<Vec<String>> {
    keys.iter()
        .map(|k| {
            vec![
                k.key_id.clone(),
                k.version.to_string(),
                k.created_at.clone().unwrap_or_else(|| "-".into()),
                if k.current { "yes".into() } else { String::new() },
            ]
        })
        .collect()
}

impl Keys {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        let headers = &["KEY ID", "VERSION", "CREATED", "CURRENT"];
        match self {
            Keys::Rotate => {
                let k = client.rotate_key().await?;
                print(format, &k, headers, key_rows(std::slice::from_ref(&k)))
            }
            Keys::Ls => {
                let list = client.list_keys().await?;
                print(format, &list, headers, key_rows(&list))
            }
        }
    }
}
