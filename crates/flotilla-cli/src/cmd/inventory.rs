//! `flotilla inventory show | query | settings`: what is on the nodes.

use flotilla_api::{Client, InventoryQuery, InventoryRow, InventorySettings};
use flotilla_inventory::InventoryType;
use serde_json::Value;

use crate::output::{Format, print};

#[derive(clap::Subcommand)]
pub enum Inventory {
    /// A node's inventory: every type, or one type's items.
    ///
    /// Example: flotilla inventory show n-0123456789abcdef0 --type Application
    Show {
        node: String,
        #[arg(long = "type")]
        type_name: Option<String>,
    },
    /// Nodes whose items of a type match every filter (FIELD OP VALUE; OP: = != < <= > >= ~).
    /// Versions compare with each package manager's own ordering.
    ///
    /// Example: flotilla inventory query --type Application --filter 'name=openssl' --filter 'version<3.0.11'
    Query {
        #[arg(long = "type")]
        type_name: String,
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// Collection settings per node group.
    #[command(subcommand)]
    Settings(Settings),
}

#[derive(clap::Subcommand)]
pub enum Settings {
    /// Set how often a group's nodes collect, and which files they watch.
    ///
    /// Example: flotilla inventory settings set web --interval 15m --file /etc/ssh/sshd_config --file '/etc/nginx/*.conf'
    Set {
        group: String,
        /// How often (e.g. 15m, 1h); the default is 30m.
        #[arg(long, value_parser = humantime::parse_duration)]
        interval: Option<std::time::Duration>,
        /// Absolute path or glob whose files become File items (repeatable).
        #[arg(long = "file")]
        files: Vec<String>,
    },
    /// List settings.
    Ls,
    /// Remove a group's settings.
    Rm { group: String },
}

/// Table columns per type: the scalar fields people scan for.
fn columns(kind: &InventoryType, items: &[&Value]) -> Vec<String> {
    match kind.as_str() {
        "Application" => ["name", "version", "arch", "source_name", "package_manager"].map(String::from).to_vec(),
        _ => match kind.fields() {
            Some(fields) => fields
                .iter()
                .filter(|(_, k)| *k != flotilla_inventory::FieldKind::Nested)
                .map(|(n, _)| (*n).to_owned())
                .collect(),
            None => {
                let mut keys: Vec<String> =
                    items.iter().filter_map(|i| i.as_object()).flat_map(|o| o.keys().cloned()).collect();
                keys.sort();
                keys.dedup();
                keys
            }
        },
    }
}

fn cell(item: &Value, field: &str) -> String {
    match item.get(field) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

impl Inventory {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Inventory::Show { node, type_name } => {
                let types = client.node_inventory(&node, type_name.as_deref()).await?;
                match type_name {
                    Some(name) => {
                        let kind = InventoryType::parse(&name)?;
                        let items: Vec<&Value> = types.iter().flat_map(|t| &t.items).collect();
                        let cols = columns(&kind, &items);
                        let headers: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
                        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                        let rows = items.iter().map(|i| cols.iter().map(|c| cell(i, c)).collect()).collect();
                        print(format, &types, &headers, rows)
                    }
                    None => {
                        let rows = types
                            .iter()
                            .map(|t| {
                                vec![
                                    t.type_name.clone(),
                                    t.item_count.to_string(),
                                    t.collected_at.clone(),
                                    t.content_hash.chars().take(16).collect(),
                                ]
                            })
                            .collect();
                        print(format, &types, &["TYPE", "ITEMS", "COLLECTED", "HASH"], rows)
                    }
                }
            }
            Inventory::Query { type_name, filters } => {
                let kind = InventoryType::parse(&type_name)?;
                let mut query = InventoryQuery { type_name, filters, limit: Some(1000), after: None };
                let mut all: Vec<InventoryRow> = Vec::new();
                loop {
                    let page = client.query_inventory(&query).await?;
                    all.extend(page.rows);
                    match page.next {
                        Some(next) => query.after = Some(next),
                        None => break,
                    }
                }
                let items: Vec<&Value> = all.iter().flat_map(|r| &r.items).collect();
                let cols = columns(&kind, &items);
                let mut headers = vec!["NODE".to_owned(), "HOSTNAME".to_owned()];
                headers.extend(cols.iter().map(|c| c.to_uppercase()));
                let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                let rows = all
                    .iter()
                    .flat_map(|r| {
                        r.items.iter().map(|i| {
                            let mut row = vec![r.node_id.clone(), r.hostname.clone()];
                            row.extend(cols.iter().map(|c| cell(i, c)));
                            row
                        })
                    })
                    .collect();
                print(format, &all, &headers, rows)
            }
            Inventory::Settings(Settings::Set { group, interval, files }) => {
                let interval_seconds = interval
                    .map(|d| u32::try_from(d.as_secs()))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--interval is too long"))?;
                let saved = client
                    .put_inventory_settings(
                        &group,
                        &InventorySettings { group: group.clone(), interval_seconds, files },
                    )
                    .await?;
                print(format, &saved, &["GROUP", "INTERVAL", "FILES"], settings_rows(std::slice::from_ref(&saved)))
            }
            Inventory::Settings(Settings::Ls) => {
                let list = client.list_inventory_settings().await?;
                print(format, &list, &["GROUP", "INTERVAL", "FILES"], settings_rows(&list))
            }
            Inventory::Settings(Settings::Rm { group }) => {
                client.delete_inventory_settings(&group).await?;
                eprintln!("removed inventory settings of group {group}");
                Ok(())
            }
        }
    }
}

fn settings_rows(list: &[InventorySettings]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| {
            vec![
                s.group.clone(),
                s.interval_seconds.map_or_else(|| "default".into(), |i| format!("{i}s")),
                s.files.join(" "),
            ]
        })
        .collect()
}
