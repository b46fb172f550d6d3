//! `flotilla events ls | tail`: the server's durable event log, paged by sequence number or
//! followed live (a long poll that resumes from the last sequence seen, so a server restart or
//! a dropped connection loses nothing).

use std::time::Duration;

use flotilla_api::{Client, ClientError, EVENTS_MAX_LIMIT, EVENTS_MAX_WAIT, Event, EventQuery};
use flotilla_core::{Cursor, EventType};

use crate::output::{Format, out, outln, print, printable};

#[derive(clap::Subcommand)]
pub enum Events {
    /// List events, oldest first.
    ///
    /// Example: flotilla events ls --after 120 --type Command.StatusChanged --limit 50
    Ls {
        /// Only events after this sequence number (0: from the start).
        #[arg(long, alias = "since", value_parser = parse_after, allow_hyphen_values = true, default_value = "0")]
        after: Cursor,
        /// Only events of this type (repeat for several), e.g. Invocation.StatusChanged.
        #[arg(long = "type", value_parser = parse_type)]
        types: Vec<EventType>,
        /// At most this many events (default: all).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Follow new events until Ctrl-C; one JSON object a line with -o json.
    ///
    /// Example: flotilla events tail --type Node.ConnectionLost -o json
    Tail {
        /// Only events of this type (repeat for several).
        #[arg(long = "type", value_parser = parse_type)]
        types: Vec<EventType>,
        /// Start after this sequence number instead of at the newest event.
        #[arg(long, value_parser = parse_after, allow_hyphen_values = true)]
        after: Option<Cursor>,
    },
}

fn parse_after(s: &str) -> Result<Cursor, String> {
    s.parse::<Cursor>().map_err(|e| e.to_string())
}

fn parse_type(s: &str) -> Result<EventType, String> {
    s.parse::<EventType>().map_err(|e| e.to_string())
}

fn names(types: &[EventType]) -> Vec<String> {
    types.iter().map(|t| t.as_str().to_owned()).collect()
}

const HEADERS: [&str; 5] = ["SEQ", "TIME", "TYPE", "RESOURCES", "DETAIL"];

fn row(e: &Event) -> Vec<String> {
    vec![e.seq.to_string(), e.time.clone(), e.kind.clone(), e.resources.join(","), e.detail.to_string()]
}

impl Events {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Events::Ls { after, types, limit } => {
                let events = list(client, after, &names(&types), limit).await?;
                let rows = events.iter().map(row).collect();
                print(format, &events, &HEADERS, rows)
            }
            Events::Tail { types, after } => {
                tokio::select! {
                    result = tail(client, format, names(&types), after) => result,
                    // Ctrl-C is how a tail ends: a success, not an error.
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            }
        }
    }
}

/// Every event after `after` (at most `limit`), paging through the server's maximum page.
async fn list(client: &Client, after: Cursor, types: &[String], limit: Option<u32>) -> anyhow::Result<Vec<Event>> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let want = match limit {
            Some(limit) => (limit - u32::try_from(out.len()).unwrap_or(u32::MAX)).min(EVENTS_MAX_LIMIT),
            None => EVENTS_MAX_LIMIT,
        };
        if want == 0 {
            break;
        }
        let query = EventQuery { after: cursor.0, types: types.to_vec(), limit: Some(want), wait: None };
        let page = client.list_events(&query).await?;
        let full = page.len() == want as usize;
        for event in page {
            cursor = cursor.advance(event.seq);
            out.push(event);
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// Long polls from `after` (default: the newest event now), printing each event as it comes.
/// A lost connection is retried from the last sequence printed.
async fn tail(client: &Client, format: Format, types: Vec<String>, after: Option<Cursor>) -> anyhow::Result<()> {
    let mut cursor = match after {
        Some(after) => after,
        None => Cursor(client.last_event_seq().await?.seq),
    };
    if format == Format::Table {
        outln!("{}", HEADERS.join("\t"))?;
    }
    let mut retry = Duration::from_millis(500);
    loop {
        let query = EventQuery {
            after: cursor.0,
            types: types.clone(),
            limit: Some(EVENTS_MAX_LIMIT),
            wait: Some(EVENTS_MAX_WAIT),
        };
        let page = match client.list_events(&query).await {
            Ok(page) => page,
            Err(e @ ClientError::Unreachable { .. }) => {
                tracing::warn!("{e}; retrying in {retry:?}");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        retry = Duration::from_millis(500);
        for event in page {
            cursor = cursor.advance(event.seq);
            match format {
                Format::Json => outln!("{}", serde_json::to_string(&event)?)?,
                Format::Yaml => out!("---\n{}", serde_yaml::to_string(&event)?)?,
                Format::Table => {
                    outln!("{}", row(&event).iter().map(|c| printable(c).into_owned()).collect::<Vec<_>>().join("\t"))?
                }
            }
        }
    }
}
