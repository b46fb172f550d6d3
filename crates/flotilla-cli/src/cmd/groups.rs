//! `flotilla groups put | ls | rm`: saved target queries (resource groups).

use flotilla_api::{Client, Group};

use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Groups {
    /// Create or replace a group: the union of its targets, each in the `--target` syntax.
    ///
    /// Example: flotilla groups put web-prod --target 'tag:role=web&tag:env=prod'
    Put {
        name: String,
        /// A target as everywhere else (`&` all must hold, `!` must not); repeatable: a union.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
    },
    /// List groups.
    ///
    /// Example: flotilla groups ls
    Ls,
    /// Delete a group.
    ///
    /// Example: flotilla groups rm web-prod
    Rm { name: String },
}

fn rows(groups: &[Group]) -> Vec<Vec<String>> {
    groups.iter().map(|g| vec![g.name.clone(), g.targets.join(" ")]).collect()
}

impl Groups {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Groups::Put { name, targets } => {
                let g = client.put_group(&Group { name, targets }).await?;
                print(format, &g, &["NAME", "TARGETS"], rows(std::slice::from_ref(&g)))
            }
            Groups::Ls => {
                let list = client.list_groups().await?;
                print(format, &list, &["NAME", "TARGETS"], rows(&list))
            }
            Groups::Rm { name } => {
                client.delete_group(&name).await?;
                eprintln!("deleted group {name}");
                Ok(())
            }
        }
    }
}
