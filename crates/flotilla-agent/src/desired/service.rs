//! `service:ensure`: a systemd unit enabled or disabled (`systemctl --root=ROOT enable|disable`
//! when the root is not `/`, the live `systemctl` when it is), and running or stopped (live
//! only: a unit's running state exists only on the running system).

use flotilla_core::desired::RunState;

use super::{Node, Report, tool, tool_ok};

/// `systemctl`'s arguments, `--root=ROOT` first when the root is not the live system.
fn args(node: &Node, rest: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    if !node.live {
        args.push(format!("--root={}", node.root.display()));
    }
    args.extend(rest.iter().map(|s| (*s).to_owned()));
    args
}

async fn systemctl(node: &Node, rest: &[&str], must: bool) -> Result<crate::exec::ToolOutput, String> {
    let args = args(node, rest);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    if must { tool_ok(node, "systemctl", &refs, &[]).await } else { tool(node, "systemctl", &refs, &[]).await }
}

pub async fn ensure(node: &Node, unit: &str, state: Option<RunState>, enabled: Option<bool>) -> Result<Report, String> {
    let subject = format!("service {unit}");
    if state.is_some() && !node.live {
        return Err(format!(
            "{subject}: `state` (running/stopped) needs the agent's --root to be /: a unit runs only on the live \
             system, and this agent's root is {}; keep only `enabled` here, or run the agent with --root /",
            node.root.display()
        ));
    }
    // `is-enabled` answers for any unit file and fails for a unit that does not exist.
    let query = systemctl(node, &["is-enabled", unit], false).await?;
    let enablement = query.stdout.trim().to_owned();
    if enablement.is_empty() {
        let said = query.stderr.trim();
        if said.contains("No such file") || said.contains("not found") || said.contains("does not exist") {
            return Err(format!("{subject}: the unit {unit} does not exist on the node ({said})"));
        }
        return Err(format!("{subject}: {}", query.failure("systemctl is-enabled")));
    }
    let mut changes = Vec::new();
    if let Some(want) = enabled {
        let is_enabled = matches!(enablement.as_str(), "enabled" | "enabled-runtime");
        if want != is_enabled {
            match enablement.as_str() {
                "masked" | "masked-runtime" => {
                    return Err(format!("{subject}: the unit is masked; unmask it (systemctl unmask) before enabling"));
                }
                "static" | "indirect" | "generated" | "transient" | "alias" if want => {
                    return Err(format!(
                        "{subject}: the unit is {enablement} (it has no [Install] section of its own) and cannot be \
                         enabled"
                    ));
                }
                _ => {}
            }
            systemctl(node, &[if want { "enable" } else { "disable" }, unit], true).await?;
            changes.push(if want { "enabled".to_owned() } else { "disabled".to_owned() });
        }
    }
    if let Some(state) = state {
        let active = systemctl(node, &["is-active", unit], false).await?;
        let running = active.stdout.trim() == "active";
        match (state, running) {
            (RunState::Running, false) => {
                systemctl(node, &["start", unit], true).await?;
                changes.push("started".to_owned());
            }
            (RunState::Stopped, true) => {
                systemctl(node, &["stop", unit], true).await?;
                changes.push("stopped".to_owned());
            }
            _ => {}
        }
    }
    if changes.is_empty() {
        return Ok(Report::unchanged(&subject));
    }
    Ok(Report::changed(&subject, changes.join(", ")))
}
