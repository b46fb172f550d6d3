//! Compliance across types (Association, Patch, Vulnerability): each node's current items,
//! fleet summaries and a node's history. Read-only: State Manager, assessments and Patch
//! Manager write the items with their results, through the store.

pub mod http;

use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::compliance::{ComplianceSeverity, ComplianceStatus, ComplianceType};
use flotilla_store::ComplianceItem;

use crate::app::AppState;
use crate::fleet;
use crate::platform::ServiceError;

/// The most history entries one request returns.
pub const MAX_HISTORY: u32 = 1000;

/// One type across the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub kind: ComplianceType,
    pub compliant: u64,
    pub non_compliant: u64,
    pub non_compliant_by_severity: BTreeMap<ComplianceSeverity, u64>,
    pub items: u64,
}

pub fn parse_type(text: Option<&str>) -> Result<Option<ComplianceType>, ServiceError> {
    text.map(|t| t.parse::<ComplianceType>().map_err(|e| ServiceError::Invalid(e.to_string()))).transpose()
}

/// Current items of the nodes matching `targets` (every node when none).
pub async fn list(
    state: &AppState,
    targets: &[String],
    kind: Option<ComplianceType>,
) -> Result<Vec<ComplianceItem>, ServiceError> {
    let items = state.store.list_compliance(kind).await?;
    if targets.is_empty() {
        return Ok(items);
    }
    let nodes: BTreeSet<String> = fleet::list_nodes(state, targets).await?.iter().map(|n| n.id.to_string()).collect();
    Ok(items.into_iter().filter(|i| nodes.contains(&i.node_id)).collect())
}

pub async fn summary(state: &AppState, kind: Option<ComplianceType>) -> Result<Vec<Summary>, ServiceError> {
    Ok(summarize(&state.store.list_compliance(kind).await?))
}

/// Nodes counted once per type: non-compliant when any of their items of the type is, under
/// the worst severity among those items.
pub fn summarize(items: &[ComplianceItem]) -> Vec<Summary> {
    let mut per_node: BTreeMap<(ComplianceType, &str), Option<ComplianceSeverity>> = BTreeMap::new();
    let mut counts: BTreeMap<ComplianceType, u64> = BTreeMap::new();
    for item in items {
        *counts.entry(item.kind).or_default() += 1;
        let worst = per_node.entry((item.kind, item.node_id.as_str())).or_default();
        if item.status == ComplianceStatus::NonCompliant {
            *worst = Some(worst.map_or(item.severity, |w| w.min(item.severity)));
        }
    }
    counts
        .into_iter()
        .map(|(kind, items)| {
            let mut s =
                Summary { kind, compliant: 0, non_compliant: 0, non_compliant_by_severity: BTreeMap::new(), items };
            for (_, worst) in per_node.range((kind, "")..).take_while(|((k, _), _)| *k == kind) {
                match worst {
                    None => s.compliant += 1,
                    Some(severity) => {
                        s.non_compliant += 1;
                        *s.non_compliant_by_severity.entry(*severity).or_default() += 1;
                    }
                }
            }
            s
        })
        .collect()
}

pub async fn history(
    state: &AppState,
    node: &str,
    kind: Option<ComplianceType>,
    limit: Option<u32>,
) -> Result<Vec<ComplianceItem>, ServiceError> {
    fleet::get_node(state, node).await?;
    let limit = limit.unwrap_or(100).clamp(1, MAX_HISTORY);
    Ok(state.store.compliance_history(node, kind, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(node: &str, kind: ComplianceType, id: &str, ok: bool, severity: ComplianceSeverity) -> ComplianceItem {
        ComplianceItem {
            node_id: node.into(),
            kind,
            item_id: id.into(),
            title: id.into(),
            status: if ok { ComplianceStatus::Compliant } else { ComplianceStatus::NonCompliant },
            severity,
            detail: String::new(),
            execution_id: "c-1".into(),
            time: 0,
        }
    }

    #[test]
    fn a_node_counts_once_per_type_under_its_worst_failing_item() {
        use ComplianceSeverity::*;
        use ComplianceType::*;
        let items = [
            item("n1", Association, "a1", true, High),
            item("n1", Association, "a2", false, Low),
            item("n1", Association, "a3", false, Critical),
            item("n2", Association, "a1", true, High),
            item("n2", Vulnerability, "assessment", false, Medium),
            item("n3", Vulnerability, "assessment", true, Unspecified),
        ];
        let got = summarize(&items);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].kind, got[0].compliant, got[0].non_compliant, got[0].items), (Association, 1, 1, 4));
        assert_eq!(got[0].non_compliant_by_severity, BTreeMap::from([(Critical, 1)]));
        assert_eq!((got[1].kind, got[1].compliant, got[1].non_compliant), (Vulnerability, 1, 1));
        assert_eq!(got[1].non_compliant_by_severity, BTreeMap::from([(Medium, 1)]));
    }
}
