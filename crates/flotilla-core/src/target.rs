//! Target expressions: which nodes an operation applies to.
//!
//! Syntax (CLI.md): a node id; `tag:KEY=VALUE` (VALUE may be a comma list, any one matches);
//! `tag:KEY` (any value); `group:NAME` (a saved target query); `all`. Several targets are a
//! union. Deregistered nodes are never targeted.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::{Node, NodeId, NodeStatus, tag};

/// One target expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(NodeId),
    /// `values` empty means any value.
    Tag {
        key: String,
        values: Vec<String>,
    },
    Group(String),
    All,
}

/// Why a target expression was refused or could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid target `{input}`: {reason}; use a node id, tag:KEY=VALUE, tag:KEY, group:NAME or all")]
    Invalid { input: String, reason: String },
    #[error("unknown group `{0}`: list groups with `flotilla groups ls`")]
    UnknownGroup(String),
    #[error("group `{0}` refers to itself through its targets")]
    GroupCycle(String),
}

fn invalid(input: &str, reason: impl Into<String>) -> TargetError {
    TargetError::Invalid { input: input.to_owned(), reason: reason.into() }
}

/// Valid group names: 1..=64 of letters, digits, `_ . -`.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a group name has 1 to 64 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err("a group name uses letters, digits, _ . and - only".into());
    }
    Ok(())
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Target::All);
        }
        if let Some(rest) = s.strip_prefix("tag:") {
            let (key, values) = match rest.split_once('=') {
                Some((k, v)) => {
                    let values: Vec<String> = v.split(',').map(str::to_owned).collect();
                    for value in &values {
                        tag::validate(k, value).map_err(|e| invalid(s, e.to_string()))?;
                    }
                    (k, values)
                }
                None => (rest, Vec::new()),
            };
            if key.is_empty() {
                return Err(invalid(s, "the tag key is empty"));
            }
            tag::validate_key(key).map_err(|e| invalid(s, e.to_string()))?;
            return Ok(Target::Tag { key: key.to_owned(), values });
        }
        if let Some(name) = s.strip_prefix("group:") {
            validate_group_name(name).map_err(|reason| invalid(s, reason))?;
            return Ok(Target::Group(name.to_owned()));
        }
        if s.starts_with("n-") {
            return s.parse().map(Target::Node).map_err(|e: crate::NodeIdError| invalid(s, e.to_string()));
        }
        Err(invalid(s, "not a recognised form"))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(id) => write!(f, "{id}"),
            Target::Tag { key, values } if values.is_empty() => write!(f, "tag:{key}"),
            Target::Tag { key, values } => write!(f, "tag:{key}={}", values.join(",")),
            Target::Group(name) => write!(f, "group:{name}"),
            Target::All => f.write_str("all"),
        }
    }
}

/// Resolves a union of targets against the known nodes. `group` looks up a saved group's
/// targets; groups may nest, cycles are refused. Deregistered nodes never match.
pub fn resolve<'n>(
    targets: &[Target],
    nodes: &'n [Node],
    group: &dyn Fn(&str) -> Option<Vec<Target>>,
) -> Result<Vec<&'n Node>, TargetError> {
    let mut flat = Vec::new();
    let mut seen_groups = Vec::new();
    flatten(targets, group, &mut seen_groups, &mut flat)?;
    let mut picked = BTreeSet::new();
    for (index, node) in nodes.iter().enumerate() {
        if node.status != NodeStatus::Deregistered && flat.iter().any(|t| matches(t, node)) {
            picked.insert(index);
        }
    }
    Ok(picked.into_iter().map(|i| &nodes[i]).collect())
}

fn flatten(
    targets: &[Target],
    group: &dyn Fn(&str) -> Option<Vec<Target>>,
    path: &mut Vec<String>,
    out: &mut Vec<Target>,
) -> Result<(), TargetError> {
    for target in targets {
        match target {
            Target::Group(name) => {
                if path.contains(name) {
                    return Err(TargetError::GroupCycle(name.clone()));
                }
                let members = group(name).ok_or_else(|| TargetError::UnknownGroup(name.clone()))?;
                path.push(name.clone());
                flatten(&members, group, path, out)?;
                path.pop();
            }
            other => out.push(other.clone()),
        }
    }
    Ok(())
}

fn matches(target: &Target, node: &Node) -> bool {
    match target {
        Target::All => true,
        Target::Node(id) => &node.id == id,
        Target::Tag { key, values } => match node.tags.get(key) {
            Some(value) => values.is_empty() || values.iter().any(|v| v == value),
            None => false,
        },
        // Groups are flattened before matching.
        Target::Group(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Platform, Tags};

    fn node(n: u8, status: NodeStatus, tags: &[(&str, &str)]) -> Node {
        Node {
            id: NodeId::from_random([n; 9]),
            hostname: format!("host{n}"),
            status,
            last_seen: None,
            platform: Platform::default(),
            kernel: String::new(),
            arch: String::new(),
            agent_version: String::new(),
            addresses: vec![],
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Tags>(),
            activation_id: String::new(),
            registered_at: 0,
            cert_fingerprint: String::new(),
        }
    }

    #[test]
    fn parse_table() {
        let ok = [
            ("all", Target::All),
            ("tag:env=prod", Target::Tag { key: "env".into(), values: vec!["prod".into()] }),
            ("tag:env=prod,staging", Target::Tag { key: "env".into(), values: vec!["prod".into(), "staging".into()] }),
            ("tag:env", Target::Tag { key: "env".into(), values: vec![] }),
            ("tag:Patch Group=web", Target::Tag { key: "Patch Group".into(), values: vec!["web".into()] }),
            ("group:web-servers", Target::Group("web-servers".into())),
            ("n-0123456789abcdef0", Target::Node("n-0123456789abcdef0".parse().expect("valid id"))),
        ];
        for (input, want) in ok {
            let got: Target = input.parse().expect(input);
            assert_eq!(got, want, "{input}");
            assert_eq!(got.to_string(), input, "round trip");
        }
        for bad in ["", "everything", "tag:", "tag:=prod", "group:", "group:a b", "n-xyz", "tag:env=pr;od", "i-0123"] {
            let err = bad.parse::<Target>().expect_err(bad);
            assert!(err.to_string().contains("invalid target"), "{bad}: {err}");
        }
    }

    #[test]
    fn resolution() {
        let nodes = vec![
            node(1, NodeStatus::Online, &[("env", "prod"), ("role", "web")]),
            node(2, NodeStatus::ConnectionLost, &[("env", "staging"), ("role", "web")]),
            node(3, NodeStatus::Online, &[("env", "prod"), ("role", "db")]),
            node(4, NodeStatus::Deregistered, &[("env", "prod")]),
        ];
        let groups = |name: &str| match name {
            "webs" => Some(vec!["tag:role=web".parse().expect("valid")]),
            "loop" => Some(vec![Target::Group("loop".into())]),
            _ => None,
        };
        let ids = |targets: &[&str]| -> Result<Vec<String>, TargetError> {
            let parsed: Vec<Target> = targets.iter().map(|t| t.parse().expect("valid")).collect();
            Ok(resolve(&parsed, &nodes, &groups)?.iter().map(|n| n.hostname.clone()).collect())
        };
        assert_eq!(ids(&["all"]), Ok(vec!["host1".into(), "host2".into(), "host3".into()]));
        assert_eq!(ids(&["tag:env=prod"]), Ok(vec!["host1".into(), "host3".into()]));
        assert_eq!(
            ids(&["tag:env=prod,staging", "tag:role=db"]),
            Ok(vec!["host1".into(), "host2".into(), "host3".into()])
        );
        assert_eq!(ids(&["tag:role"]), Ok(vec!["host1".into(), "host2".into(), "host3".into()]));
        assert_eq!(ids(&["group:webs"]), Ok(vec!["host1".into(), "host2".into()]));
        assert_eq!(ids(&[nodes[2].id.as_str()]), Ok(vec!["host3".into()]));
        assert_eq!(ids(&[nodes[3].id.as_str()]), Ok(vec![]), "deregistered nodes are never targeted");
        assert_eq!(ids(&["group:nope"]), Err(TargetError::UnknownGroup("nope".into())));
        assert_eq!(ids(&["group:loop"]), Err(TargetError::GroupCycle("loop".into())));
    }
}
