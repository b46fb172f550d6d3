//! What a desired-state step reports about its resource: whether the run changed it, and what
//! differed. The agent sends one per desired-state step it ran; the server keeps them with the
//! invocation, so compliance can tell "kept as it was" from "had to be corrected".

/// One step's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    /// The planned step's name (`desiredState.0`, `writeMotd`).
    pub step: String,
    /// The action (`file:write`, ...).
    pub action: String,
    /// True when the run had to change the resource.
    pub changed: bool,
    /// What differed and what was done ("content differed, rewritten"), or "unchanged".
    pub detail: String,
}

/// Whether any step changed something: `None` when no step reported a state (a plain
/// `run:shell` invocation, or one that failed before its first desired-state step).
pub fn any_changed(states: &[StepState]) -> Option<bool> {
    if states.is_empty() { None } else { Some(states.iter().any(|s| s.changed)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_is_unknown_without_states() {
        let state =
            |changed| StepState { step: "s".into(), action: "file:write".into(), changed, detail: String::new() };
        assert_eq!(any_changed(&[]), None);
        assert_eq!(any_changed(&[state(false), state(false)]), Some(false));
        assert_eq!(any_changed(&[state(false), state(true)]), Some(true));
    }
}
