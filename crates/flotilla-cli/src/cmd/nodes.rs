//! `flotilla nodes ls | show | tag | untag | deregister`.

use flotilla_api::{Client, Node, TagNode, UntagNode};

use crate::output::outln;
use crate::output::{Format, print, printable, tags_cell};

#[derive(clap::Subcommand)]
pub enum Nodes {
    /// List nodes, optionally only those matching targets (a union).
    ///
    /// Example: flotilla nodes ls --target 'tag:env=prod&tag:role=web' --target tag:role=db
    Ls {
        /// A node id, tag:KEY=VALUE (VALUE may be a comma list), tag:KEY, group:NAME or all;
        /// join terms with & (all must hold), prefix one with ! (must not hold).
        #[arg(long = "target")]
        targets: Vec<String>,
    },
    /// Show one node.
    ///
    /// Example: flotilla nodes show n-0123456789abcdef0
    Show { node: String },
    /// Add or overwrite tags.
    ///
    /// Example: flotilla nodes tag n-0123456789abcdef0 env=prod "Patch Group=web"
    Tag {
        node: String,
        #[arg(required = true, value_parser = super::key_value)]
        tags: Vec<(String, String)>,
    },
    /// Remove tags by key.
    ///
    /// Example: flotilla nodes untag n-0123456789abcdef0 env
    Untag {
        node: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Revoke a node's credential; its agent is refused from then on.
    ///
    /// Example: flotilla nodes deregister n-0123456789abcdef0
    Deregister { node: String },
}

pub const HEADERS: &[&str] = &["ID", "HOSTNAME", "STATUS", "PLATFORM", "LAST SEEN", "TAGS"];

pub fn rows(nodes: &[Node]) -> Vec<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                n.hostname.clone(),
                n.status.clone(),
                format!("{} {}", n.platform.name, n.platform.version).trim().to_owned(),
                n.last_seen.clone().unwrap_or_else(|| "-".into()),
                tags_cell(&n.tags),
            ]
        })
        .collect()
}

fn show(format: Format, node: &Node) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let fields = [
                ("id", node.id.clone()),
                ("hostname", node.hostname.clone()),
                ("status", node.status.clone()),
                ("platform", format!("{} {} ({})", node.platform.name, node.platform.version, node.platform.id)),
                ("kernel", node.kernel.clone()),
                ("arch", node.arch.clone()),
                ("agent", node.agent_version.clone()),
                ("addresses", node.addresses.join(", ")),
                ("tags", tags_cell(&node.tags)),
                ("last seen", node.last_seen.clone().unwrap_or_else(|| "-".into())),
                ("registered", node.registered_at.clone()),
                ("activation", node.activation_id.clone()),
            ];
            for (k, v) in fields {
                outln!("{:<11} {}", format!("{k}:"), printable(&v))?;
            }
            Ok(())
        }
        _ => print(format, node, HEADERS, rows(std::slice::from_ref(node))),
    }
}

impl Nodes {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Nodes::Ls { targets } => {
                let nodes = client.list_nodes(&targets).await?;
                print(format, &nodes, HEADERS, rows(&nodes))
            }
            Nodes::Show { node } => show(format, &client.get_node(&node).await?),
            Nodes::Tag { node, tags } => {
                show(format, &client.tag_node(&node, &TagNode { tags: tags.into_iter().collect() }).await?)
            }
            Nodes::Untag { node, keys } => show(format, &client.untag_node(&node, &UntagNode { keys }).await?),
            Nodes::Deregister { node } => show(format, &client.deregister_node(&node).await?),
        }
    }
}
