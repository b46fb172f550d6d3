//! Documents every Flotilla installation has, embedded as YAML so they are versioned with the
//! code that runs them.
//!
//! Invariant: each embedded text parses with [`Document::parse`](crate::Document::parse); a test
//! holds every release to it.

/// Name of the built-in document that runs an operator-given shell script (the Flotilla
/// counterpart of AWS-RunShellScript).
pub const RUN_SHELL_SCRIPT: &str = "Flotilla-RunShellScript";

/// Collects the node's inventory now (the scheduled collection, on demand).
pub const COLLECT_INVENTORY: &str = "Flotilla-CollectInventory";
const COLLECT_INVENTORY_YAML: &str = include_str!("builtin/Flotilla-CollectInventory.yaml");
/// The node-side checks of the `security-best-practices` rules package.
pub const ASSESS_BEST_PRACTICES: &str = "Flotilla-AssessBestPractices";
/// The node-side checks of the `network-reachability` rules package.
pub const ASSESS_NETWORK_REACHABILITY: &str = "Flotilla-AssessNetworkReachability";
/// Keeps a list of resources on the node as described (files, services, packages, users,
/// kernel parameters); each element of its [`DESIRED_STATE_PARAMETER`] becomes one step.
pub const DESIRED_STATE: &str = "Flotilla-DesiredState";
/// `Flotilla-DesiredState`'s parameter: a JSON list of resource objects, each with `action`
/// and that action's inputs, e.g. `[{"action":"file:write","path":"/etc/motd","content":"hi\n"}]`.
pub const DESIRED_STATE_PARAMETER: &str = "resources";
/// Scans the node against its patch baseline, or installs what it approves
/// (AWS-RunPatchBaseline): parameters `Operation`, `RebootOption`, `InstallOverrideList`.
pub const RUN_PATCH_BASELINE: &str = "Flotilla-RunPatchBaseline";
const RUN_SHELL_SCRIPT_YAML: &str = include_str!("builtin/Flotilla-RunShellScript.yaml");

/// The built-in documents as (name, YAML text).
pub fn builtin_documents() -> Vec<(&'static str, &'static str)> {
    vec![
        (RUN_SHELL_SCRIPT, RUN_SHELL_SCRIPT_YAML),
        (COLLECT_INVENTORY, COLLECT_INVENTORY_YAML),
        (ASSESS_BEST_PRACTICES, include_str!("builtin/Flotilla-AssessBestPractices.yaml")),
        (ASSESS_NETWORK_REACHABILITY, include_str!("builtin/Flotilla-AssessNetworkReachability.yaml")),
        (DESIRED_STATE, include_str!("builtin/Flotilla-DesiredState.yaml")),
        (RUN_PATCH_BASELINE, include_str!("builtin/Flotilla-RunPatchBaseline.yaml")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    #[test]
    fn every_builtin_parses() {
        for (name, text) in builtin_documents() {
            assert!(Document::parse(text).is_ok(), "{name}: {:?}", Document::parse(text));
        }
    }
}
