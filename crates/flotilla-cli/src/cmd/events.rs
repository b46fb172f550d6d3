//! `flotilla events ls`: recent state changes from the server's event bus.

use flotilla_api::Client;

use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Events {
    /// List recent events, oldest first.
    ///
    /// Example: flotilla events ls --since 120
    Ls {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

impl Events {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Events::Ls { since } => {
                let events = client.list_events(since).await?;
                let rows = events
                    .iter()
                    .map(|e| {
                        vec![
                            e.seq.to_string(),
                            e.time.clone(),
                            e.kind.clone(),
                            e.command_id.clone().unwrap_or_default(),
                            e.node_id.clone().unwrap_or_default(),
                            e.status.clone(),
                        ]
                    })
                    .collect();
                print(format, &events, &["SEQ", "TIME", "TYPE", "COMMAND", "NODE", "STATUS"], rows)
            }
        }
    }
}
