//! `flotilla activations create | ls | rm`.

use std::collections::BTreeMap;

use flotilla_api::{Activation, Client, CreateActivation};

use crate::output::outln;
use crate::output::{Format, print, tags_cell};

#[derive(clap::Subcommand)]
pub enum Activations {
    /// Create an activation; its code is shown once.
    ///
    /// Example: flotilla activations create --limit 50 --expires 7d --tag env=prod
    Create {
        /// How many nodes may enroll with it.
        #[arg(long, default_value_t = 1)]
        limit: u32,
        /// Lifetime, e.g. 24h or 7d (at most 30 days).
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
        /// Tag every enrolled node starts with (repeatable).
        #[arg(long = "tag", value_parser = super::key_value)]
        tags: Vec<(String, String)>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List activations.
    ///
    /// Example: flotilla activations ls -o json
    Ls,
    /// Delete an activation (enrolled nodes stay enrolled).
    ///
    /// Example: flotilla activations rm act-0123456789abcdef
    Rm { id: String },
}

fn rows(list: &[Activation]) -> Vec<Vec<String>> {
    list.iter()
        .map(|a| {
            vec![
                a.id.clone(),
                format!("{}/{}", a.registrations, a.registration_limit),
                if a.expired { format!("{} (expired)", a.expires_at) } else { a.expires_at.clone() },
                tags_cell(&a.tags),
                a.description.clone(),
            ]
        })
        .collect()
}

const HEADERS: &[&str] = &["ID", "USED", "EXPIRES", "TAGS", "DESCRIPTION"];

impl Activations {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Activations::Create { limit, expires, tags, description } => {
                let req = CreateActivation {
                    description,
                    registration_limit: Some(limit),
                    expires_in_seconds: Some(expires.as_secs()),
                    tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
                };
                let a = client.create_activation(&req).await?;
                match format {
                    Format::Table => {
                        outln!("id:   {}", a.id)?;
                        outln!("code: {}", a.code.as_deref().unwrap_or(""))?;
                        eprintln!("The code is shown only now. Enroll a node with:");
                        eprintln!(
                            "  flotilla-agent register --server {} --ca ca.pem --activation-id {} --activation-code {}",
                            client.base_url(),
                            a.id,
                            a.code.as_deref().unwrap_or("")
                        );
                        Ok(())
                    }
                    _ => print(format, &a, HEADERS, rows(std::slice::from_ref(&a))),
                }
            }
            Activations::Ls => {
                let list = client.list_activations().await?;
                print(format, &list, HEADERS, rows(&list))
            }
            Activations::Rm { id } => {
                client.delete_activation(&id).await?;
                eprintln!("deleted activation {id}");
                Ok(())
            }
        }
    }
}
