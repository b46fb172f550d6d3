//! Step actions: the closed set of things a step can do (`run:shell`, `run:document`, the
//! input-less agent actions, the desired-state actions of `flotilla_core::desired` and
//! `state:apply`, a JSON list of those) and the rules for their inputs.
//!
//! Invariants, checked when a document is parsed:
//! - Only the inputs listed for an action are accepted; anything else is named and refused.
//! - Every `{{ name }}` in an input refers to a declared parameter.
//! - A `StringList` parameter appears only as a whole list element (`- "{{ name }}"`) of
//!   `commands` or of a `documentParameters` value; mixed into text, or where one value is
//!   expected, it has no single meaning and is refused.
//! - Inputs without references are already valid: a literal `workingDirectory` is absolute and
//!   NUL-free, a literal `timeoutSeconds` is a whole number in 5..=172800, `env` names are
//!   shell variable names outside the reserved `FLOTILLA_` prefix; a literal desired-state
//!   input (and every element of a literal `state:apply` list) passes
//!   `flotilla_core::desired::check_inputs`. Values holding a reference are checked again
//!   after substitution, when the plan is made.
//!
//! Inputs keep their text with references in it; substitution happens when a plan is made,
//! because only then are values known (see the `plan` module for the rules).

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::document::{DocumentError, Position};
use crate::parameter::{ParameterSpec, ParameterType};
use crate::source::{FieldPath, tree};
use crate::template;

/// The action that runs a shell script.
pub const RUN_SHELL: &str = "run:shell";
/// The action that runs another document.
pub const RUN_DOCUMENT: &str = "run:document";

/// The action that collects the node's inventory now and uploads what changed.
pub const INVENTORY_COLLECT: &str = "inventory:collect";
/// Actions the agent performs itself, without a script and without inputs: inventory
/// collection and the node-side checks of the assessment rules packages.
pub const AGENT_ACTIONS: &[&str] = &[INVENTORY_COLLECT, "assess:best-practices", "assess:network-reachability"];
/// The action that applies a JSON list of desired-state resources, one planned step each
/// (`Flotilla-DesiredState`).
pub const STATE_APPLY: &str = "state:apply";
const STATE_APPLY_INPUTS: &[&str] = &["resources"];
/// The action that scans or patches the node against its patch baseline
/// (`Flotilla-RunPatchBaseline`); its inputs are `flotilla_core::patch::STEP_INPUTS`.
pub const PATCH_BASELINE: &str = flotilla_core::patch::ACTION;

/// Seconds a script may run when the step does not say (as SSM's `executionTimeout`).
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 3600;
pub const MIN_TIMEOUT_SECONDS: u32 = 5;
pub const MAX_TIMEOUT_SECONDS: u32 = 172_800;

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Shell(ShellAction),
    RunDocument(RunDocumentAction),
    /// An action the agent performs itself, without a script (`inventory:collect`).
    Agent(&'static str),
    /// A desired-state action (`file:write`, `service:ensure`, ...) with its inputs.
    Resource(ResourceAction),
    /// `state:apply`: a list of desired-state resources, given as JSON text.
    StateApply(StateApplyAction),
    /// `patch:baseline`, with its inputs as written.
    Patch(PatchAction),
}

impl Action {
    /// The action's name as written in documents.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Shell(_) => RUN_SHELL,
            Self::RunDocument(_) => RUN_DOCUMENT,
            Self::Agent(name) => name,
            Self::Resource(resource) => resource.action,
            Self::StateApply(_) => STATE_APPLY,
            Self::Patch(_) => PATCH_BASELINE,
        }
    }
}

/// `run:shell` inputs, as written (references not yet substituted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellAction {
    /// Script lines (`commands`, or its SSM spelling `runCommand`).
    pub commands: Vec<String>,
    pub working_directory: Option<String>,
    pub timeout_seconds: Option<String>,
    pub env: BTreeMap<String, String>,
}

/// `run:document` inputs, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDocumentAction {
    pub document_name: String,
    pub document_version: Option<String>,
    pub document_parameters: BTreeMap<String, ParameterArgument>,
}

/// A desired-state action's inputs, as written (references not yet substituted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAction {
    /// One of `flotilla_core::desired::ACTIONS`.
    pub action: &'static str,
    pub inputs: BTreeMap<String, String>,
}

/// `state:apply` inputs, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateApplyAction {
    /// A JSON list of resources, each an object with `action` and that action's inputs.
    pub resources: String,
}

/// `patch:baseline` inputs, as written (references not yet substituted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchAction {
    pub inputs: BTreeMap<String, String>,
}

/// One element of a resource list: the action and its inputs.
pub type ResourceItem = (&'static str, BTreeMap<String, String>);

/// Reads a JSON list of desired-state resources (`[{"action":"file:write","path":...}]`) and
/// checks each with the action's rules; values `skip` says are not final are only checked for
/// presence. Returns (action, inputs) per element, or the reason naming the element's index
/// and field (`resources[1].mode: "999" is not an octal mode ...`).
pub fn parse_resources(text: &str, skip: &dyn Fn(&str) -> bool) -> Result<Vec<ResourceItem>, String> {
    use flotilla_core::desired::{self, InputError};
    let list: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!("resources is not JSON ({e}); give a list such as [{{\"action\":\"file:absent\",\"path\":\"/tmp/x\"}}]")
    })?;
    let serde_json::Value::Array(items) = list else {
        return Err("resources is not a JSON list; give a list of resource objects".into());
    };
    let names = || desired::ACTIONS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ");
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let serde_json::Value::Object(fields) = item else {
            return Err(format!("resources[{i}] is not an object; write {{\"action\": ..., inputs...}}"));
        };
        let action = match fields.get("action") {
            None => return Err(format!("resources[{i}] has no `action`; use one of: {}", names())),
            Some(serde_json::Value::String(a)) => a.as_str(),
            Some(_) => return Err(format!("resources[{i}].action is not a string; use one of: {}", names())),
        };
        let Some(spec) = desired::spec(action) else {
            return Err(format!(
                "resources[{i}].action `{action}` is not a desired-state action; use one of: {}",
                names()
            ));
        };
        let mut inputs = BTreeMap::new();
        for (key, value) in fields {
            if key == "action" {
                continue;
            }
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(list) if key == "groups" => {
                    let mut names = Vec::new();
                    for g in list {
                        match g {
                            serde_json::Value::String(g) => names.push(g.clone()),
                            _ => return Err(format!("resources[{i}].groups: each group is a string")),
                        }
                    }
                    names.join(",")
                }
                _ => return Err(format!("resources[{i}].{key} is not a string, number or boolean")),
            };
            inputs.insert(key.clone(), text);
        }
        desired::check_inputs(spec.name, &inputs, skip).map_err(|e| match e {
            InputError::Invalid { ref input, .. } => {
                let reason = e.to_string();
                let reason = reason.strip_prefix(&format!("`{input}` ")).unwrap_or(&reason).to_owned();
                format!("resources[{i}].{input}: {reason}")
            }
            other => format!("resources[{i}] ({action}): {other}"),
        })?;
        out.push((spec.name, inputs));
    }
    Ok(out)
}

/// True when `text` holds a value known only later: a `{{ name }}` parameter reference (until
/// the plan) or a Parameter Store reference (until the server sends the step).
pub(crate) fn deferred(text: &str) -> bool {
    !template::references(text).is_empty() || flotilla_core::parameter::mentions_reference(text)
}

/// A value passed to a child document's parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterArgument {
    One(String),
    List(Vec<String>),
}

const SHELL_INPUTS: &[&str] = &["commands", "runCommand", "workingDirectory", "timeoutSeconds", "env"];
const RUN_DOCUMENT_INPUTS: &[&str] = &["documentName", "documentVersion", "documentParameters"];

/// Checks a working directory after substitution: empty means none.
pub(crate) fn working_directory(value: &str) -> Result<Option<String>, &'static str> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.contains('\0') {
        return Err("contains a NUL character");
    }
    if !value.starts_with('/') {
        return Err("is not an absolute path");
    }
    Ok(Some(value.to_owned()))
}

/// Checks a timeout after substitution: empty means the default.
pub(crate) fn timeout(value: &str) -> Result<u32, &'static str> {
    if value.is_empty() {
        return Ok(DEFAULT_TIMEOUT_SECONDS);
    }
    match value.parse::<u32>() {
        Ok(seconds) if (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&seconds) => Ok(seconds),
        Ok(_) => Err("is outside 5..=172800 seconds"),
        Err(_) => Err("is not a whole number of seconds"),
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.to_ascii_uppercase().starts_with("FLOTILLA_")
}

/// Reads and checks the inputs of a step whose action is `action`.
pub(crate) fn read_action(
    step: &str,
    action: &str,
    action_path: &FieldPath,
    inputs: Option<&Value>,
    inputs_path: &FieldPath,
    parameters: &BTreeMap<String, ParameterSpec>,
) -> Result<Action, DocumentError> {
    let empty = Value::Mapping(serde_yaml::Mapping::new());
    let inputs = inputs.unwrap_or(&empty);
    let reader = |action: &'static str| Inputs { step, action, path: inputs_path, parameters };
    if let Some(spec) = flotilla_core::desired::spec(action) {
        return reader(spec.name).resource(spec, inputs).map(Action::Resource);
    }
    match action {
        RUN_SHELL => reader(RUN_SHELL).shell(inputs).map(Action::Shell),
        RUN_DOCUMENT => reader(RUN_DOCUMENT).run_document(inputs).map(Action::RunDocument),
        STATE_APPLY => reader(STATE_APPLY).state_apply(inputs).map(Action::StateApply),
        PATCH_BASELINE => reader(PATCH_BASELINE).patch(inputs).map(Action::Patch),
        agent if AGENT_ACTIONS.contains(&agent) => {
            let name = AGENT_ACTIONS.iter().copied().find(|a| *a == agent).unwrap_or(INVENTORY_COLLECT);
            reader(name).entries(inputs, &[]).map(|_| Action::Agent(name))
        }
        other => Err(DocumentError::UnknownAction {
            at: Position::at(action_path),
            step: step.to_owned(),
            action: other.to_owned(),
            hint: if other.starts_with("aws:") {
                "; this is an AWS SSM action: convert AWS documents with import_ssm"
            } else {
                ""
            },
        }),
    }
}

struct Inputs<'a> {
    step: &'a str,
    action: &'static str,
    path: &'a FieldPath,
    parameters: &'a BTreeMap<String, ParameterSpec>,
}

impl Inputs<'_> {
    fn entries<'v>(
        &self,
        inputs: &'v Value,
        allowed: &'static [&'static str],
    ) -> Result<Vec<(&'v str, &'v Value)>, DocumentError> {
        let entries = tree::entries(inputs, self.path)?;
        if let Some((input, _)) = entries.iter().find(|(key, _)| !allowed.contains(key)) {
            return Err(DocumentError::UnknownInput {
                at: Position::at(&self.path.key(input)),
                step: self.step.to_owned(),
                action: self.action,
                input: (*input).to_owned(),
                allowed,
            });
        }
        Ok(entries)
    }

    fn missing(&self, input: &'static str) -> DocumentError {
        DocumentError::MissingInput {
            at: Position::at(self.path),
            step: self.step.to_owned(),
            action: self.action,
            input,
        }
    }

    /// Checks the references in `text`; `list_element` says a whole StringList reference is
    /// allowed here.
    fn references(&self, text: &str, path: &FieldPath, list_element: bool) -> Result<(), DocumentError> {
        for name in template::references(text) {
            let Some(spec) = self.parameters.get(name) else {
                let declared = if self.parameters.is_empty() {
                    "none".to_owned()
                } else {
                    self.parameters.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                };
                return Err(DocumentError::UnknownParameterReference {
                    at: Position::at(path),
                    name: name.to_owned(),
                    declared,
                });
            };
            let whole = template::whole_reference(text) == Some(name);
            if spec.kind == ParameterType::StringList && !(list_element && whole) {
                return Err(DocumentError::ListOutOfPlace { at: Position::at(path), name: name.to_owned() });
            }
        }
        Ok(())
    }

    /// A single-valued input: its text, references checked.
    fn one(&self, value: &Value, path: &FieldPath) -> Result<String, DocumentError> {
        let text = tree::scalar(value, path)?;
        self.references(&text, path, false)?;
        Ok(text)
    }

    /// A list input whose elements may be whole StringList references.
    fn list(&self, value: &Value, path: &FieldPath) -> Result<Vec<String>, DocumentError> {
        let items = tree::scalar_list(value, path)?;
        let single = !matches!(value, Value::Sequence(_));
        for (i, item) in items.iter().enumerate() {
            let item_path = if single { path.clone() } else { path.index(i) };
            self.references(item, &item_path, true)?;
        }
        Ok(items)
    }

    fn shell(&self, inputs: &Value) -> Result<ShellAction, DocumentError> {
        let entries = self.entries(inputs, SHELL_INPUTS)?;
        let commands = match (tree::get(&entries, "commands"), tree::get(&entries, "runCommand")) {
            (Some(_), Some(_)) => {
                return Err(DocumentError::ConflictingInputs {
                    at: Position::at(&self.path.key("runCommand")),
                    step: self.step.to_owned(),
                });
            }
            (Some(v), None) => self.list(v, &self.path.key("commands"))?,
            (None, Some(v)) => self.list(v, &self.path.key("runCommand"))?,
            (None, None) => return Err(self.missing("commands")),
        };
        let working_directory = match tree::get(&entries, "workingDirectory") {
            None => None,
            Some(v) => {
                let path = self.path.key("workingDirectory");
                let text = self.one(v, &path)?;
                if template::references(&text).is_empty() {
                    working_directory(&text).map_err(|reason| DocumentError::InvalidWorkingDirectory {
                        at: Position::at(&path),
                        value: text.clone(),
                        reason,
                    })?;
                }
                Some(text)
            }
        };
        let timeout_seconds = match tree::get(&entries, "timeoutSeconds") {
            None => None,
            Some(v) => {
                let path = self.path.key("timeoutSeconds");
                let text = self.one(v, &path)?;
                if template::references(&text).is_empty() {
                    timeout(&text).map_err(|reason| DocumentError::InvalidTimeout {
                        at: Position::at(&path),
                        value: text.clone(),
                        reason,
                    })?;
                }
                Some(text)
            }
        };
        let mut env = BTreeMap::new();
        if let Some(v) = tree::get(&entries, "env") {
            let env_path = self.path.key("env");
            for (name, value) in tree::entries(v, &env_path)? {
                let path = env_path.key(name);
                if !valid_env_name(name) {
                    return Err(DocumentError::InvalidEnvName { at: Position::at(&path), name: name.to_owned() });
                }
                let text = self.one(value, &path)?;
                if text.contains('\0') {
                    return Err(DocumentError::NulInEnv { at: Position::at(&path) });
                }
                env.insert(name.to_owned(), text);
            }
        }
        Ok(ShellAction { commands, working_directory, timeout_seconds, env })
    }

    fn invalid(&self, at: FieldPath, problem: String) -> DocumentError {
        DocumentError::InvalidInput { at: Position::at(&at), step: self.step.to_owned(), action: self.action, problem }
    }

    fn resource(
        &self,
        spec: &'static flotilla_core::desired::ActionSpec,
        inputs: &Value,
    ) -> Result<ResourceAction, DocumentError> {
        use flotilla_core::desired::{InputError, check_inputs};
        let entries = self.entries(inputs, spec.inputs)?;
        let mut values = BTreeMap::new();
        for (input, value) in entries {
            let text = self.one(value, &self.path.key(input))?;
            values.insert(input.to_owned(), text);
        }
        check_inputs(spec.name, &values, &deferred).map_err(|e| match e {
            InputError::Missing { input } => self.missing(input),
            InputError::Invalid { ref input, .. } | InputError::Unknown { ref input, .. } => {
                self.invalid(self.path.key(input), e.to_string())
            }
            InputError::Conflict { .. } => self.invalid(self.path.clone(), e.to_string()),
        })?;
        Ok(ResourceAction { action: spec.name, inputs: values })
    }

    fn state_apply(&self, inputs: &Value) -> Result<StateApplyAction, DocumentError> {
        let entries = self.entries(inputs, STATE_APPLY_INPUTS)?;
        let value = tree::get(&entries, "resources").ok_or_else(|| self.missing("resources"))?;
        let path = self.path.key("resources");
        let resources = self.one(value, &path)?;
        if template::references(&resources).is_empty() {
            parse_resources(&resources, &|v| flotilla_core::parameter::mentions_reference(v))
                .map_err(|reason| DocumentError::InvalidResources { at: Position::at(&path), reason })?;
        }
        Ok(StateApplyAction { resources })
    }

    fn patch(&self, inputs: &Value) -> Result<PatchAction, DocumentError> {
        let entries = self.entries(inputs, flotilla_core::patch::STEP_INPUTS)?;
        let mut values = BTreeMap::new();
        for (input, value) in entries {
            values.insert(input.to_owned(), self.one(value, &self.path.key(input))?);
        }
        flotilla_core::patch::StepInputs::parse(&values, &|v| !template::references(v).is_empty())
            .map_err(|problem| self.invalid(self.path.clone(), problem))?;
        Ok(PatchAction { inputs: values })
    }

    fn run_document(&self, inputs: &Value) -> Result<RunDocumentAction, DocumentError> {
        let entries = self.entries(inputs, RUN_DOCUMENT_INPUTS)?;
        let name_value = tree::get(&entries, "documentName").ok_or_else(|| self.missing("documentName"))?;
        let name_path = self.path.key("documentName");
        let document_name = self.one(name_value, &name_path)?;
        if document_name.trim().is_empty() {
            return Err(DocumentError::EmptyDocumentName { at: Position::at(&name_path) });
        }
        let document_version = tree::get(&entries, "documentVersion")
            .map(|v| self.one(v, &self.path.key("documentVersion")))
            .transpose()?;
        let mut document_parameters = BTreeMap::new();
        if let Some(v) = tree::get(&entries, "documentParameters") {
            let parameters_path = self.path.key("documentParameters");
            for (name, value) in tree::entries(v, &parameters_path)? {
                let path = parameters_path.key(name);
                let argument = match value {
                    Value::Sequence(_) => ParameterArgument::List(self.list(value, &path)?),
                    _ => {
                        let text = tree::scalar(value, &path)?;
                        self.references(&text, &path, true)?;
                        ParameterArgument::One(text)
                    }
                };
                document_parameters.insert(name.to_owned(), argument);
            }
        }
        Ok(RunDocumentAction { document_name, document_version, document_parameters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directories() {
        let cases = [
            ("", Ok(None)),
            ("/var/tmp", Ok(Some("/var/tmp".to_owned()))),
            ("/", Ok(Some("/".to_owned()))),
            ("tmp", Err("is not an absolute path")),
            ("./x", Err("is not an absolute path")),
            ("/a\0b", Err("contains a NUL character")),
        ];
        for (value, expected) in cases {
            assert_eq!(working_directory(value), expected, "{value:?}");
        }
    }

    #[test]
    fn timeouts() {
        let cases = [
            ("", Ok(3600)),
            ("5", Ok(5)),
            ("600", Ok(600)),
            ("172800", Ok(172_800)),
            ("4", Err("is outside 5..=172800 seconds")),
            ("172801", Err("is outside 5..=172800 seconds")),
            ("0", Err("is outside 5..=172800 seconds")),
            ("-1", Err("is not a whole number of seconds")),
            ("1h", Err("is not a whole number of seconds")),
            ("99999999999", Err("is not a whole number of seconds")),
        ];
        for (value, expected) in cases {
            assert_eq!(timeout(value), expected, "{value:?}");
        }
    }

    #[test]
    fn env_names() {
        for good in ["A", "_x", "PATH_2", "lower"] {
            assert!(valid_env_name(good), "{good}");
        }
        for bad in ["", "2A", "A-B", "A B", "FLOTILLA_PARAM_x", "flotilla_x", "é"] {
            assert!(!valid_env_name(bad), "{bad}");
        }
    }
}
