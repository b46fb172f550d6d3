//! Planning: turning a document and its bound parameters into the flat list of shell steps an
//! agent runs, with `run:document` steps expanded in place.
//!
//! # The injection rule
//!
//! A parameter value never becomes shell code the document author did not write.
//!
//! - In `run:shell` `commands`, a `{{ name }}` reference to a String, Integer or Boolean is
//!   replaced by a reference to the environment variable `FLOTILLA_PARAM_<name>`, written as
//!   `"${FLOTILLA_PARAM_<name>}"` in unquoted text (the spelling adapts to quotes and heredocs,
//!   see the `shell` module), and the value travels in [`ShellStep::env`]. The shell never
//!   re-parses an expansion, so `; rm -rf /`, `$(...)`, backticks, quotes and newlines in a value
//!   stay data.
//! - A StringList referenced as a whole `commands` element expands to one line per item. Each
//!   item is a line of script only when the parameter is one of the document's script parameters
//!   ([`Document::is_script_parameter`]: in Flotilla documents the `commands` StringList, the
//!   declared, intended way an operator hands over a script (`Flotilla-RunShellScript`); in
//!   imported AWS documents, as AWS means it, a String or StringList forming a whole `runCommand`
//!   line, whose String value is then script text too). For any other StringList each line is
//!   `"${FLOTILLA_ITEM_<name>_<i>}"`, so an item is at most one command word, never syntax.
//! - An `interpolationType: ENV_VAR` parameter is never script text: its references become
//!   `SSM_<name>` variable references and every shell step of the document carries `SSM_<name>`.
//! - Outside scripts (`workingDirectory`, `timeoutSeconds`, `env` values, `documentName`,
//!   `documentVersion`, `documentParameters`) values are substituted literally, because they are
//!   data there; `workingDirectory` must then be absolute without NUL (empty means none) and
//!   `timeoutSeconds` a whole number in 5..=172800 (empty means 3600).
//! - Desired-state inputs (`file:write` content, a unit or package name, ...) and the
//!   elements of a `state:apply` list are data too: substituted literally, then checked with
//!   `flotilla_core::desired`; the agent hands them to its tools as arguments, never to a shell.
//! - Through `run:document` the rule holds at every level: a parent may fill a child's script
//!   parameter only with text its author wrote or with its own script parameter passed whole;
//!   splicing any other parameter into it is refused, since the child would run it as code.
//! - `{{param:/path}}`-style references are not parameters and are left as written for the
//!   server to resolve; whoever resolves them inside scripts must apply this same rule.
//!
//! Other invariants: nesting is at most [`MAX_NESTING_DEPTH`] documents deep, a document never
//! runs itself through any chain, planned step names (`outer.inner`) are unique, and a nested
//! step whose precondition contradicts its parent's is left out (it could never run there).

use std::collections::{BTreeMap, BTreeSet};

use crate::action::{self, Action, ParameterArgument, RunDocumentAction, ShellAction};
use crate::document::{Document, Platform};
use crate::parameter::{BoundParameters, ENV_VAR_PREFIX, ParameterError, ParameterType, ParameterValue};
use crate::shell::Scanner;
use crate::template::{self, Piece};

/// How many `run:document` levels a plan may go down.
pub const MAX_NESTING_DEPTH: usize = 8;
/// Prefix of the variable carrying a single-valued parameter into a script.
pub const PARAM_ENV_PREFIX: &str = "FLOTILLA_PARAM_";
/// Prefix of the variables carrying StringList items (`FLOTILLA_ITEM_<name>_<index>`). It differs
/// from [`PARAM_ENV_PREFIX`] right after `FLOTILLA_`, so the two families never collide.
pub const ITEM_ENV_PREFIX: &str = "FLOTILLA_ITEM_";
/// The parameter whose items are script lines by design.
pub const COMMANDS_PARAMETER: &str = "commands";

/// What an agent runs for one command, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    /// The step's name, prefixed by the names of the `run:document` steps it came through
    /// (`outer.inner`).
    pub name: String,
    /// The step runs only on this platform.
    pub precondition: Option<Platform>,
    pub action: ShellStep,
}

/// A script ready to hand to a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellStep {
    /// The lines joined with `\n`.
    pub script: String,
    pub working_directory: Option<String>,
    pub timeout_seconds: u32,
    /// The step's `env` plus the `FLOTILLA_PARAM_*`/`FLOTILLA_ITEM_*` variables the script uses.
    pub env: BTreeMap<String, String>,
    /// Set for an action the agent performs itself (then `script` is empty).
    pub agent_action: Option<String>,
    /// The inputs of a desired-state action, substituted (Parameter Store references are left
    /// for the server to resolve at send time); empty otherwise.
    pub agent_inputs: BTreeMap<String, String>,
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "step `{step}`: parameter `{parameter}` has no value; bind the parameters with Document::bind on \
         this same document before planning"
    )]
    Unbound { step: String, parameter: String },
    #[error(
        "step `{step}`: parameter `{parameter}` is a {found} but is used where {expected} is needed; fix the document"
    )]
    WrongKind { step: String, parameter: String, expected: &'static str, found: ParameterType },
    #[error("step `{step}`: parameter `{parameter}` cannot be placed in the script safely: {reason}")]
    UnplaceableReference { step: String, parameter: String, reason: &'static str },
    #[error(
        "step `{step}`: working directory {value} {reason}; pass an absolute path such as /var/tmp, or leave it empty"
    )]
    InvalidWorkingDirectory { step: String, value: String, reason: &'static str },
    #[error("step `{step}`: timeout {value} {reason}; pass a whole number of seconds from 5 to 172800")]
    InvalidTimeout { step: String, value: String, reason: &'static str },
    #[error("step `{step}`: the document name {value} is empty or contains NUL; pass the name of an existing document")]
    InvalidDocumentName { step: String, value: String },
    #[error("step `{step}` runs document `{name}`{}, which does not exist; create it or fix documentName/documentVersion", version_suffix(.version))]
    UnknownDocument { step: String, name: String, version: Option<String> },
    #[error("step `{step}`: documents run each other in a cycle ({chain}); remove one of the run:document steps")]
    Cycle { step: String, chain: String },
    #[error("step `{step}`: run:document nests deeper than {limit} documents ({chain}); flatten the documents")]
    TooDeep { step: String, chain: String, limit: usize },
    #[error(
        "step `{step}`: the parameters passed to document `{document}` are not valid: {problem}; fix documentParameters"
    )]
    ChildParameters { step: String, document: String, problem: Box<ParameterError> },
    #[error(
        "step `{step}`: documentParameters.commands for `{document}` splices parameter `{parameter}` into shell \
         commands, which would run its value as code; declare a separate parameter in `{document}`, pass the \
         value to it, and reference that from its commands"
    )]
    ValueWouldBecomeCode { step: String, document: String, parameter: String },
    #[error(
        "two planned steps are both named `{name}` (a nested step's name is qualified with its parent step's \
         name); rename one of the steps"
    )]
    DuplicateStepName { name: String },
    #[error("step `{step}` ({action}): {reason}; fix the document or the parameter values")]
    InvalidInput { step: String, action: &'static str, reason: String },
}

fn version_suffix(version: &Option<String>) -> String {
    version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default()
}

/// Looks documents up by name and optional version, for `run:document`.
pub type Resolver<'a> = &'a dyn Fn(&str, Option<&str>) -> Option<Document>;

impl Document {
    /// Makes the plan for this document with `bound` (from [`Document::bind`] on this document),
    /// expanding `run:document` steps with documents from `resolve`.
    pub fn plan(&self, bound: &BoundParameters, resolve: Resolver<'_>) -> Result<Plan, PlanError> {
        self.plan_from(bound, resolve, Vec::new())
    }

    /// As [`Document::plan`], for a document stored under `name`, so a child that runs it again
    /// is caught as a cycle one level sooner and the chain names it.
    pub fn plan_named(&self, name: &str, bound: &BoundParameters, resolve: Resolver<'_>) -> Result<Plan, PlanError> {
        self.plan_from(bound, resolve, vec![name.to_owned()])
    }

    fn plan_from(&self, bound: &BoundParameters, resolve: Resolver<'_>, chain: Vec<String>) -> Result<Plan, PlanError> {
        let mut planner = Planner { resolve, steps: Vec::new(), chain, depth: 0 };
        planner.document(self, bound, None, None)?;
        let mut names = BTreeSet::new();
        if let Some(step) = planner.steps.iter().find(|step| !names.insert(step.name.as_str())) {
            return Err(PlanError::DuplicateStepName { name: step.name.clone() });
        }
        Ok(Plan { steps: planner.steps })
    }
}

struct Planner<'r> {
    resolve: Resolver<'r>,
    steps: Vec<PlannedStep>,
    /// Names of the documents being expanded, outermost first.
    chain: Vec<String>,
    /// How many `run:document` levels below the root the current document is.
    depth: usize,
}

/// The values of one document, looked up on behalf of one step.
struct Values<'a> {
    document: &'a Document,
    bound: &'a BoundParameters,
    step: &'a str,
}

impl Values<'_> {
    fn get(&self, name: &str) -> Result<&ParameterValue, PlanError> {
        self.bound
            .get(name)
            .ok_or_else(|| PlanError::Unbound { step: self.step.to_owned(), parameter: name.to_owned() })
    }

    fn scalar(&self, name: &str) -> Result<String, PlanError> {
        let value = self.get(name)?;
        value.scalar_text().ok_or_else(|| PlanError::WrongKind {
            step: self.step.to_owned(),
            parameter: name.to_owned(),
            expected: "a single value",
            found: value.kind(),
        })
    }

    /// Literal substitution, for inputs that are data.
    fn substitute(&self, text: &str) -> Result<String, PlanError> {
        let mut out = String::with_capacity(text.len());
        for piece in template::pieces(text) {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(name) => out.push_str(&self.scalar(name)?),
            }
        }
        Ok(out)
    }

    /// Whether `name` is one of this document's script-text parameters.
    fn is_code(&self, name: &str) -> bool {
        self.document.is_script_parameter(name)
    }

    /// The variable a single value travels in: `SSM_<name>` for an `interpolationType: ENV_VAR`
    /// parameter (AWS's name, so scripts written for AWS find it), else `FLOTILLA_PARAM_<name>`.
    fn variable(&self, name: &str) -> String {
        let env_var = self.document.parameters().get(name).is_some_and(|spec| spec.env_var);
        if env_var { format!("{ENV_VAR_PREFIX}{name}") } else { format!("{PARAM_ENV_PREFIX}{name}") }
    }

    /// `SSM_<name>` for every `interpolationType: ENV_VAR` parameter, as AWS sets them for
    /// every step whether or not its script names them.
    fn env_var_parameters(&self) -> Result<BTreeMap<String, String>, PlanError> {
        let mut env = BTreeMap::new();
        for (name, spec) in self.document.parameters() {
            if spec.env_var {
                env.insert(format!("{ENV_VAR_PREFIX}{name}"), self.scalar(name)?);
            }
        }
        Ok(env)
    }
}

/// Quoted and cut, as parameter errors show values.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(64).collect();
    format!("{cut:?}")
}

impl Planner<'_> {
    fn document(
        &mut self,
        document: &Document,
        bound: &BoundParameters,
        prefix: Option<&str>,
        inherited: Option<Platform>,
    ) -> Result<(), PlanError> {
        for step in document.steps() {
            let name = match prefix {
                Some(prefix) => format!("{prefix}.{}", step.name),
                None => step.name.clone(),
            };
            let precondition = match (inherited, step.precondition) {
                (Some(outer), Some(inner)) if outer != inner => continue,
                (outer, inner) => inner.or(outer),
            };
            let values = Values { document, bound, step: &name };
            match &step.action {
                Action::Shell(shell) => {
                    let action = plan_shell(shell, &values)?;
                    self.steps.push(PlannedStep { name, precondition, action });
                }
                Action::RunDocument(run) => self.run_document(run, &values, precondition)?,
                Action::Agent(agent) => {
                    let action = ShellStep {
                        script: String::new(),
                        working_directory: None,
                        timeout_seconds: crate::action::DEFAULT_TIMEOUT_SECONDS,
                        env: BTreeMap::new(),
                        agent_action: Some((*agent).to_owned()),
                        agent_inputs: BTreeMap::new(),
                    };
                    self.steps.push(PlannedStep { name, precondition, action });
                }
                Action::Resource(resource) => {
                    let mut inputs = BTreeMap::new();
                    for (input, text) in &resource.inputs {
                        inputs.insert(input.clone(), values.substitute(text)?);
                    }
                    flotilla_core::desired::check_inputs(resource.action, &inputs, &|v| {
                        flotilla_core::parameter::mentions_reference(v)
                    })
                    .map_err(|e| PlanError::InvalidInput {
                        step: name.clone(),
                        action: resource.action,
                        reason: e.to_string(),
                    })?;
                    let action = agent_step(resource.action, inputs);
                    self.steps.push(PlannedStep { name, precondition, action });
                }
                Action::Patch(patch) => {
                    let mut inputs = BTreeMap::new();
                    for (input, text) in &patch.inputs {
                        inputs.insert(input.clone(), values.substitute(text)?);
                    }
                    flotilla_core::patch::StepInputs::parse(&inputs, &|_| false).map_err(|reason| {
                        PlanError::InvalidInput { step: name.clone(), action: action::PATCH_BASELINE, reason }
                    })?;
                    let mut action = agent_step(action::PATCH_BASELINE, inputs);
                    // A patch operation refreshes repositories and may install many packages.
                    action.timeout_seconds = PATCH_TIMEOUT_SECONDS;
                    self.steps.push(PlannedStep { name, precondition, action });
                }
                Action::StateApply(apply) => {
                    let text = values.substitute(&apply.resources)?;
                    let resources =
                        action::parse_resources(&text, &|v| flotilla_core::parameter::mentions_reference(v)).map_err(
                            |reason| PlanError::InvalidInput {
                                step: name.clone(),
                                action: action::STATE_APPLY,
                                reason,
                            },
                        )?;
                    for (i, (kind, inputs)) in resources.into_iter().enumerate() {
                        let action = agent_step(kind, inputs);
                        self.steps.push(PlannedStep { name: format!("{name}.{i}"), precondition, action });
                    }
                }
            }
        }
        Ok(())
    }

    fn run_document(
        &mut self,
        run: &RunDocumentAction,
        values: &Values<'_>,
        precondition: Option<Platform>,
    ) -> Result<(), PlanError> {
        let step = values.step;
        let name = values.substitute(&run.document_name)?;
        if name.trim().is_empty() || name.contains('\0') {
            return Err(PlanError::InvalidDocumentName { step: step.to_owned(), value: shown(&name) });
        }
        let version = run.document_version.as_deref().map(|v| values.substitute(v)).transpose()?;
        let version = version.filter(|v| !v.is_empty());
        let chain_with = |chain: &[String]| {
            let mut names: Vec<&str> = chain.iter().map(String::as_str).collect();
            names.push(&name);
            names.join(" → ")
        };
        if self.chain.contains(&name) {
            return Err(PlanError::Cycle { step: step.to_owned(), chain: chain_with(&self.chain) });
        }
        if self.depth >= MAX_NESTING_DEPTH {
            return Err(PlanError::TooDeep {
                step: step.to_owned(),
                chain: chain_with(&self.chain),
                limit: MAX_NESTING_DEPTH,
            });
        }
        let child = (self.resolve)(&name, version.as_deref()).ok_or_else(|| PlanError::UnknownDocument {
            step: step.to_owned(),
            name: name.clone(),
            version: version.clone(),
        })?;
        let mut given = BTreeMap::new();
        for (parameter, argument) in &run.document_parameters {
            let elements: Vec<&String> = match argument {
                ParameterArgument::One(text) => vec![text],
                ParameterArgument::List(items) => items.iter().collect(),
            };
            let into_code = child.is_script_parameter(parameter);
            let mut passed = Vec::new();
            for element in elements {
                let whole = template::whole_reference(element);
                // The parent's own script, passed whole, stays the script the operator gave.
                if let Some(reference) = whole.filter(|r| values.is_code(r)) {
                    match values.get(reference)? {
                        ParameterValue::StringList(items) => passed.extend(items.iter().cloned()),
                        other => passed.extend(other.scalar_text()),
                    }
                    continue;
                }
                if let Some(reference) = whole
                    && let ParameterValue::StringList(items) = values.get(reference)?
                {
                    if into_code {
                        return Err(PlanError::ValueWouldBecomeCode {
                            step: step.to_owned(),
                            document: name.clone(),
                            parameter: reference.to_owned(),
                        });
                    }
                    passed.extend(items.iter().cloned());
                    continue;
                }
                if into_code && let Some(reference) = template::references(element).first() {
                    return Err(PlanError::ValueWouldBecomeCode {
                        step: step.to_owned(),
                        document: name.clone(),
                        parameter: (*reference).to_owned(),
                    });
                }
                passed.push(values.substitute(element)?);
            }
            given.insert(parameter.clone(), passed);
        }
        let child_bound = child.bind(&given).map_err(|problem| PlanError::ChildParameters {
            step: step.to_owned(),
            document: name.clone(),
            problem: Box::new(problem),
        })?;
        self.chain.push(name);
        self.depth += 1;
        let planned = self.document(&child, &child_bound, Some(step), precondition);
        self.depth -= 1;
        self.chain.pop();
        planned
    }
}

/// Writes a script from the author's lines, keeping every parameter value in the environment.
struct Script {
    text: String,
    scanner: Scanner,
    env: BTreeMap<String, String>,
    lines: usize,
}

impl Script {
    fn new_line(&mut self) {
        if self.lines > 0 {
            self.text.push('\n');
            self.scanner.feed("\n");
        }
        self.lines += 1;
    }

    fn code(&mut self, text: &str) {
        self.text.push_str(text);
        self.scanner.feed(text);
    }

    fn value(&mut self, step: &str, parameter: &str, var: String, value: String) -> Result<(), PlanError> {
        let spelled = self.scanner.reference(&var).map_err(|why| PlanError::UnplaceableReference {
            step: step.to_owned(),
            parameter: parameter.to_owned(),
            reason: why.explain(),
        })?;
        self.text.push_str(&spelled);
        self.env.insert(var, value);
        Ok(())
    }
}

fn plan_shell(shell: &ShellAction, values: &Values<'_>) -> Result<ShellStep, PlanError> {
    let step = values.step;
    let mut script = Script { text: String::new(), scanner: Scanner::default(), env: BTreeMap::new(), lines: 0 };
    for element in &shell.commands {
        if let Some(name) = template::whole_reference(element) {
            match values.get(name)? {
                ParameterValue::StringList(items) => {
                    for (i, item) in items.iter().enumerate() {
                        script.new_line();
                        if values.is_code(name) {
                            script.code(item);
                        } else {
                            script.value(step, name, format!("{ITEM_ENV_PREFIX}{name}_{i}"), item.clone())?;
                        }
                    }
                    continue;
                }
                ParameterValue::String(text) if values.is_code(name) => {
                    script.new_line();
                    script.code(text);
                    continue;
                }
                _ => {}
            }
        }
        script.new_line();
        for piece in template::pieces(element) {
            match piece {
                Piece::Text(text) => script.code(text),
                Piece::Param(name) => {
                    let value = values.scalar(name)?;
                    script.value(step, name, values.variable(name), value)?;
                }
            }
        }
    }
    script.env.extend(values.env_var_parameters()?);
    for (name, value) in &shell.env {
        script.env.insert(name.clone(), values.substitute(value)?);
    }
    let working_directory = match &shell.working_directory {
        None => None,
        Some(text) => {
            let value = values.substitute(text)?;
            action::working_directory(&value).map_err(|reason| PlanError::InvalidWorkingDirectory {
                step: step.to_owned(),
                value: shown(&value),
                reason,
            })?
        }
    };
    let timeout_seconds = match &shell.timeout_seconds {
        None => action::DEFAULT_TIMEOUT_SECONDS,
        Some(text) => {
            let value = values.substitute(text)?;
            action::timeout(&value).map_err(|reason| PlanError::InvalidTimeout {
                step: step.to_owned(),
                value: shown(&value),
                reason,
            })?
        }
    };
    Ok(ShellStep {
        script: script.text,
        working_directory,
        timeout_seconds,
        env: script.env,
        agent_action: None,
        agent_inputs: BTreeMap::new(),
    })
}

/// The step of a desired-state action: no script, the agent does the work.
/// Two hours, as AWS-RunPatchBaseline's `executionTimeout` default.
const PATCH_TIMEOUT_SECONDS: u32 = 7200;

fn agent_step(action: &str, inputs: BTreeMap<String, String>) -> ShellStep {
    ShellStep {
        script: String::new(),
        working_directory: None,
        timeout_seconds: action::DEFAULT_TIMEOUT_SECONDS,
        env: BTreeMap::new(),
        agent_action: Some(action.to_owned()),
        agent_inputs: inputs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect()
    }

    fn no_documents(_: &str, _: Option<&str>) -> Option<Document> {
        None
    }

    fn plan(text: &str, params: &[(&str, &[&str])]) -> Result<Plan, PlanError> {
        let document = Document::parse(text).expect("valid document");
        let bound = document.bind(&given(params)).expect("valid parameters");
        document.plan(&bound, &no_documents)
    }

    fn only_step(plan: Result<Plan, PlanError>) -> ShellStep {
        let mut plan = plan.expect("plan");
        assert_eq!(plan.steps.len(), 1);
        plan.steps.remove(0).action
    }

    const GREET: &str = "\
schemaVersion: '2.2'
parameters:
  name: {type: String}
  count: {type: Integer, default: 1}
  loud: {type: Boolean, default: false}
mainSteps:
  - action: run:shell
    name: greet
    inputs:
      commands:
        - echo Hello {{ name }} x{{count}}
        - echo \"Dear {{ name }}, loud={{ loud }}\"
        - echo 'Bye {{name}}'
";

    #[test]
    fn single_values_reach_the_script_only_through_the_environment() {
        let hostile = [
            "; rm -rf /",
            "$(reboot)",
            "`reboot`",
            "\"; reboot; echo \"",
            "'; reboot; echo '",
            "a\nreboot",
            "${PATH}",
            "\\",
            "*",
            "--help",
            "",
        ];
        for value in hostile {
            let step = only_step(plan(GREET, &[("name", &[value])]));
            assert_eq!(
                step.script,
                "echo Hello \"${FLOTILLA_PARAM_name}\" x\"${FLOTILLA_PARAM_count}\"\n\
                 echo \"Dear ${FLOTILLA_PARAM_name}, loud=${FLOTILLA_PARAM_loud}\"\n\
                 echo 'Bye '\"${FLOTILLA_PARAM_name}\"''",
                "{value:?}"
            );
            assert_eq!(step.env["FLOTILLA_PARAM_name"], value);
            assert_eq!(step.env["FLOTILLA_PARAM_count"], "1");
            assert_eq!(step.env["FLOTILLA_PARAM_loud"], "false");
        }
    }

    const LISTS: &str = "\
schemaVersion: '2.2'
parameters:
  commands: {type: StringList}
  packages: {type: StringList, default: []}
mainSteps:
  - action: run:shell
    name: install
    inputs:
      commands:
        - set -e
        - '{{ commands }}'
        - '{{ packages }}'
        - echo done
";

    #[test]
    fn only_the_commands_list_becomes_script_lines() {
        let step = only_step(plan(
            LISTS,
            &[("commands", &["apt-get update", "echo 'a b'"]), ("packages", &["x; reboot", "$(y)"])],
        ));
        assert_eq!(
            step.script,
            "set -e\napt-get update\necho 'a b'\n\"${FLOTILLA_ITEM_packages_0}\"\n\"${FLOTILLA_ITEM_packages_1}\"\necho done"
        );
        assert_eq!(step.env["FLOTILLA_ITEM_packages_0"], "x; reboot");
        assert_eq!(step.env["FLOTILLA_ITEM_packages_1"], "$(y)");
        let empty = only_step(plan(LISTS, &[("commands", &["true"])]));
        assert_eq!(empty.script, "set -e\ntrue\necho done");
        assert!(empty.env.is_empty());
    }

    #[test]
    fn a_list_not_declared_as_commands_stays_data_even_if_named_so_elsewhere() {
        // `commands` as a String is an ordinary value.
        let text = "schemaVersion: '2.2'\nparameters:\n  commands: {type: String}\nmainSteps:\n- action: run:shell\n  \
                    name: s\n  inputs:\n    commands: ['{{ commands }}']\n";
        let step = only_step(plan(text, &[("commands", &["reboot"])]));
        assert_eq!(step.script, "\"${FLOTILLA_PARAM_commands}\"");
    }

    #[test]
    fn data_inputs_take_literal_values_and_are_checked() {
        let text = "\
schemaVersion: '2.2'
parameters:
  dir: {type: String, default: ''}
  timeout: {type: String, default: '3600'}
  who: {type: String, default: me}
mainSteps:
  - action: run:shell
    name: s
    inputs:
      commands: [pwd]
      workingDirectory: '{{ dir }}'
      timeoutSeconds: '{{ timeout }}'
      env: {WHO: 'user-{{ who }}'}
";
        let step = only_step(plan(text, &[("dir", &["/srv/app"]), ("timeout", &["600"]), ("who", &["a b"])]));
        assert_eq!(step.working_directory.as_deref(), Some("/srv/app"));
        assert_eq!(step.timeout_seconds, 600);
        assert_eq!(step.env["WHO"], "user-a b");
        let defaults = only_step(plan(text, &[]));
        assert_eq!((defaults.working_directory, defaults.timeout_seconds), (None, 3600));

        type Params<'a> = &'a [(&'a str, &'a [&'a str])];
        let refused: &[(Params<'_>, &str)] = &[
            (&[("dir", &["relative/dir"])], "working directory \"relative/dir\" is not an absolute path"),
            (&[("dir", &["/a\0b"])], "contains a NUL"),
            (&[("timeout", &["4"])], "timeout \"4\" is outside 5..=172800 seconds"),
            (&[("timeout", &["172801"])], "outside"),
            (&[("timeout", &["ten"])], "is not a whole number of seconds"),
        ];
        let document = Document::parse(text).expect("valid");
        for (params, fragment) in refused {
            let outcome = document
                .bind(&given(params))
                .map_err(|e| e.to_string())
                .and_then(|bound| document.plan(&bound, &no_documents).map_err(|e| e.to_string()));
            let message = outcome.expect_err(fragment);
            assert!(message.contains(fragment), "{params:?}: {message}");
        }
    }

    #[test]
    fn server_references_are_left_for_the_server() {
        let text = "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs:\n    \
                    commands: ['echo {{param:/fleet/greeting}}']\n    env: {DB: '{{ssm:/db/url}}'}\n";
        let step = only_step(plan(text, &[]));
        assert_eq!(step.script, "echo {{param:/fleet/greeting}}");
        assert_eq!(step.env["DB"], "{{ssm:/db/url}}");
    }

    #[test]
    fn references_in_quoted_heredocs_or_after_backslashes_are_refused() {
        let cases = [
            ("cat <<'EOF'\\n{{ p }}\\nEOF", "nothing is expanded"),
            ("echo \\\\{{ p }}", "directly follows a backslash"),
        ];
        for (command, fragment) in cases {
            let text = format!(
                "schemaVersion: '2.2'\nparameters:\n  p: {{type: String}}\nmainSteps:\n- action: run:shell\n  name: s\n  \
                 inputs:\n    commands: [\"{command}\"]\n"
            );
            let error = plan(&text, &[("p", &["v"])]).expect_err(fragment);
            assert!(error.to_string().contains(fragment), "{command}: {error}");
        }
        let text = "schemaVersion: '2.2'\nparameters:\n  p: {type: String}\nmainSteps:\n- action: run:shell\n  name: s\n  \
                    inputs:\n    commands: ['cat <<EOF', 'Hello {{ p }}', 'EOF']\n";
        assert_eq!(only_step(plan(text, &[("p", &["x"])])).script, "cat <<EOF\nHello ${FLOTILLA_PARAM_p}\nEOF");
    }

    fn library(documents: &[(&'static str, &'static str)]) -> impl Fn(&str, Option<&str>) -> Option<Document> + use<> {
        let parsed: BTreeMap<&str, Document> =
            documents.iter().map(|(name, text)| (*name, Document::parse(text).expect(name))).collect();
        move |name, _version| parsed.get(name).cloned()
    }

    const RUN_SCRIPT: &str = "\
schemaVersion: '2.2'
parameters:
  commands: {type: StringList}
  where: {type: String, default: ''}
mainSteps:
  - action: run:shell
    name: run
    inputs: {commands: ['{{ commands }}'], workingDirectory: '{{ where }}'}
";

    #[test]
    fn run_document_expands_nested_steps_with_qualified_names() {
        let outer = "\
schemaVersion: '2.2'
parameters:
  commands: {type: StringList}
  dir: {type: String, default: /srv}
mainSteps:
  - action: run:shell
    name: before
    inputs: {commands: [echo before]}
  - action: run:document
    name: script
    precondition: {StringEquals: [platformType, Linux]}
    inputs:
      documentName: RunScript
      documentParameters:
        commands: [echo fixed, '{{ commands }}']
        where: '{{ dir }}'
";
        let resolve = library(&[("RunScript", RUN_SCRIPT)]);
        let document = Document::parse(outer).expect("valid");
        let bound = document.bind(&given(&[("commands", &["uptime"])])).expect("bound");
        let plan = document.plan(&bound, &resolve).expect("plan");
        let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["before", "script.run"]);
        let nested = &plan.steps[1];
        assert_eq!(nested.precondition, Some(Platform::Linux));
        assert_eq!(nested.action.script, "echo fixed\nuptime");
        assert_eq!(nested.action.working_directory.as_deref(), Some("/srv"));
    }

    #[test]
    fn a_parent_cannot_splice_values_into_a_childs_commands() {
        let cases = [
            ("commands: ['echo {{ msg }}']", "splices parameter `msg`"),
            ("commands: '{{ items }}'", "splices parameter `items`"),
            ("commands: ['{{ items }}']", "splices parameter `items`"),
        ];
        for (arguments, fragment) in cases {
            let outer = format!(
                "schemaVersion: '2.2'\nparameters:\n  msg: {{type: String}}\n  items: {{type: StringList}}\nmainSteps:\n\
                 - action: run:document\n  name: s\n  inputs:\n    documentName: RunScript\n    documentParameters:\n      \
                 {arguments}\n"
            );
            let resolve = library(&[("RunScript", RUN_SCRIPT)]);
            let document = Document::parse(&outer).expect("valid");
            let bound = document.bind(&given(&[("msg", &["; reboot"]), ("items", &["reboot"])])).expect("bound");
            let error = document.plan(&bound, &resolve).expect_err(fragment);
            assert!(error.to_string().contains(fragment), "{arguments}: {error}");
        }
    }

    fn runs(target: &str) -> String {
        format!(
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:document\n  name: go\n  inputs: {{documentName: {target}}}\n"
        )
    }

    #[test]
    fn cycles_depth_and_unknown_documents_are_refused() {
        let a = runs("B");
        let b = runs("A");
        let docs: BTreeMap<String, Document> =
            [("A", &a), ("B", &b)].into_iter().map(|(n, t)| (n.to_owned(), Document::parse(t).expect(n))).collect();
        let resolve = move |name: &str, _: Option<&str>| docs.get(name).cloned();
        let root = Document::parse(&a).expect("valid");
        let bound = root.bind(&BTreeMap::new()).expect("bound");
        let named = root.plan_named("A", &bound, &resolve).expect_err("cycle");
        assert_eq!(
            named.to_string(),
            "step `go.go`: documents run each other in a cycle (A → B → A); remove one of the run:document steps"
        );
        let unnamed = root.plan(&bound, &resolve).expect_err("cycle");
        assert!(unnamed.to_string().contains("(B → A → B)"), "{unnamed}");

        // D0 runs D1 runs ... D9: nine levels below the root is one too many.
        let chain: BTreeMap<String, Document> = (0..10)
            .map(|i| (format!("D{i}"), Document::parse(&runs(&format!("D{}", i + 1))).expect("valid")))
            .collect();
        let last = Document::parse(
            "schemaVersion: '2.2'\nmainSteps:\n- {action: run:shell, name: s, inputs: {commands: [x]}}\n",
        )
        .expect("valid");
        let resolve_chain = |depth: usize| {
            let chain = chain.clone();
            let last = last.clone();
            move |name: &str, _: Option<&str>| {
                if name == format!("D{depth}") { Some(last.clone()) } else { chain.get(name).cloned() }
            }
        };
        let root = Document::parse(&runs("D1")).expect("valid");
        assert!(root.plan(&bound, &resolve_chain(8)).is_ok());
        let too_deep = root.plan(&bound, &resolve_chain(9)).expect_err("too deep");
        assert!(too_deep.to_string().contains("nests deeper than 8 documents"), "{too_deep}");

        let missing = root.plan(&bound, &no_documents).expect_err("unknown");
        assert_eq!(missing, PlanError::UnknownDocument { step: "go".into(), name: "D1".into(), version: None });
    }

    #[test]
    fn contradicting_nested_preconditions_drop_the_step_and_names_must_stay_unique() {
        let child = "\
schemaVersion: '2.2'
mainSteps:
  - {action: run:shell, name: linux, precondition: {StringEquals: [platformType, Linux]}, inputs: {commands: [a]}}
  - {action: run:shell, name: mac, precondition: {StringEquals: [platformType, MacOS]}, inputs: {commands: [b]}}
  - {action: run:shell, name: any, inputs: {commands: [c]}}
";
        let parent = "\
schemaVersion: '2.2'
mainSteps:
  - {action: run:document, name: c, precondition: {StringEquals: [platformType, MacOS]}, inputs: {documentName: Child}}
  - {action: run:shell, name: c.any, inputs: {commands: [d]}}
";
        let resolve = library(&[("Child", child)]);
        let document = Document::parse(parent).expect("valid");
        let bound = document.bind(&BTreeMap::new()).expect("bound");
        let error = document.plan(&bound, &resolve).expect_err("duplicate");
        assert_eq!(error, PlanError::DuplicateStepName { name: "c.any".into() });

        let parent = parent.replace("name: c.any", "name: after");
        let document = Document::parse(&parent).expect("valid");
        let plan = document.plan(&bound, &resolve).expect("plan");
        let steps: Vec<(&str, Option<Platform>)> =
            plan.steps.iter().map(|s| (s.name.as_str(), s.precondition)).collect();
        assert_eq!(steps, [("c.mac", Some(Platform::MacOS)), ("c.any", Some(Platform::MacOS)), ("after", None)]);
    }

    #[test]
    fn child_parameters_are_bound_by_the_child() {
        let outer = "schemaVersion: '2.2'\nmainSteps:\n- action: run:document\n  name: s\n  inputs:\n    \
                     documentName: RunScript\n    documentParameters: {nope: x}\n";
        let resolve = library(&[("RunScript", RUN_SCRIPT)]);
        let document = Document::parse(outer).expect("valid");
        let bound = document.bind(&BTreeMap::new()).expect("bound");
        let error = document.plan(&bound, &resolve).expect_err("unknown child parameter");
        assert!(
            error.to_string().contains("unknown parameter `nope`; this document takes: commands, where"),
            "{error}"
        );
    }

    #[test]
    fn planning_with_values_bound_for_another_document_fails_cleanly() {
        let document = Document::parse(GREET).expect("valid");
        let error = document.plan(&BoundParameters::default(), &no_documents).expect_err("unbound");
        assert!(matches!(error, PlanError::Unbound { .. }), "{error}");
    }
}
