//! The document model ([`Document`]) and reading it from YAML or JSON text.
//!
//! Invariants of every `Document` value (there is no way to build one except by parsing):
//! - `schemaVersion` is "2.2" and the type is `Command`; the 1.2 `runtimeConfig` layout is
//!   refused with a pointer to the AWS import (which reads 1.2, 2.0 and 2.2 into this model).
//! - Which parameters are script text where a whole script line names them is fixed when the
//!   document is read, by its dialect: Flotilla's (`commands` StringList) or AWS's (see
//!   [`Document::is_script_parameter`]).
//! - Top-level keys, parameter attributes, step keys and action inputs are closed sets: an
//!   unknown one is named in the error, never silently ignored.
//! - Parameters obey the `parameter` module's invariants; steps are non-empty, in order, with
//!   unique names of 1..=128 characters from `[A-Za-z0-9_.-]`, and their inputs obey the
//!   `action` module's invariants.
//! - A failed rule reports the field path and, where the parser can tell, the line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_yaml::Value;

use crate::action::{self, Action, ParameterArgument};
use crate::parameter::{self, BoundParameters, ParameterError, ParameterSpec, ParameterType};
use crate::plan::COMMANDS_PARAMETER;
use crate::source::{self, FieldPath, Format, Location, tree};

/// The only schema version Flotilla reads (and writes).
pub const SCHEMA_VERSION: &str = "2.2";

/// The kinds of document Flotilla runs. Only command documents so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentType {
    Command,
}

/// The platforms a step's precondition can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    Linux,
    MacOS,
    Windows,
}

impl Platform {
    /// The name used in `StringEquals: [platformType, ...]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "Linux",
            Self::MacOS => "MacOS",
            Self::Windows => "Windows",
        }
    }
}

/// One entry of `mainSteps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// The step runs only on this platform.
    pub precondition: Option<Platform>,
    pub action: Action,
}

/// A parsed, checked command document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    description: Option<String>,
    document_type: DocumentType,
    parameters: BTreeMap<String, ParameterSpec>,
    steps: Vec<Step>,
    /// Parameters whose value is script text where a whole script line references them.
    script_parameters: BTreeSet<String>,
}

/// Whose rules decide which parameters are script text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Flotilla's own: only a StringList named `commands` (the operator hands over a script).
    Flotilla,
    /// AWS's: substitution is textual, so any String or StringList parameter that forms a whole
    /// `runCommand` line is script text, unless it is `interpolationType: ENV_VAR`.
    Ssm,
}

/// Where in a document a rule failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub path: FieldPath,
    pub location: Option<Location>,
}

impl Position {
    pub(crate) fn at(path: &FieldPath) -> Self {
        Self { path: path.clone(), location: None }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(location) = self.location {
            write!(f, " ({location})")?;
        }
        Ok(())
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document is {size} bytes; the limit is {limit} bytes: split it into documents joined by run:document")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "document is not valid {format}{}: {message}; fix the syntax (text starting with `{{` is read as JSON, \
         anything else as YAML)",
        location_suffix(.location)
    )]
    Syntax { format: &'static str, location: Option<Location>, message: String },
    #[error("{at}: expected {expected}, found {found}")]
    WrongType { at: Position, expected: &'static str, found: &'static str },
    #[error("{at}: key `{key}` appears twice in the same mapping; keep one")]
    DuplicateKey { at: Position, key: String },
    #[error("{at}: a key is {found}; keys must be strings")]
    NonStringKey { at: Position, found: &'static str },
    #[error("{at}: unknown key `{key}`; allowed here: {}", .allowed.join(", "))]
    UnknownKey { at: Position, key: String, allowed: &'static [&'static str] },
    #[error("{at}: `{key}` is required here; add it")]
    MissingKey { at: Position, key: &'static str },
    #[error(
        "{at}: `runtimeConfig` is the AWS schema 1.2 layout; import the document as an AWS one \
         (`flotilla documents import-ssm`), or set schemaVersion to \"2.2\" and write each plugin as a step under \
         `mainSteps` (id becomes name, properties become inputs)"
    )]
    RuntimeConfig { at: Position },
    #[error("{at}: schemaVersion `{found}` is not supported; Flotilla command documents use schemaVersion \"2.2\"")]
    UnsupportedSchemaVersion { at: Position, found: String },
    #[error("{at}: documentType `{found}` is not supported; only `Command` documents can be run (or leave it out)")]
    UnsupportedDocumentType { at: Position, found: String },
    #[error(
        "{at}: parameter name `{name}` is not allowed; use 1 to 128 ASCII letters, digits and `_` \
         (the name becomes part of an environment variable name)"
    )]
    InvalidParameterName { at: Position, name: String },
    #[error("{at}: parameter type `{found}` is not supported; use String, StringList, Integer or Boolean")]
    UnsupportedParameterType { at: Position, found: String },
    #[error("{at}: displayType `{found}` is not supported; use textarea or textfield, or leave it out")]
    UnsupportedDisplayType { at: Position, found: String },
    #[error("{at}: allowedPattern `{pattern}` is not a valid regular expression ({reason}); fix the expression")]
    InvalidPattern { at: Position, pattern: String, reason: String },
    #[error("{at}: `{attribute}` does not apply to a {kind} parameter; remove it")]
    AttributeNotForType { at: Position, attribute: &'static str, kind: ParameterType },
    #[error("{at}: {min_key} ({min}) is greater than {max_key} ({max}); no value could pass, so fix one of them")]
    MinAboveMax { at: Position, min_key: &'static str, min: usize, max_key: &'static str, max: usize },
    #[error("{at}: allowedValues is empty, so no value could pass; list the allowed values or remove it")]
    EmptyAllowedValues { at: Position },
    #[error("{at}: the default is not valid: {problem}; fix the default or the parameter's rules")]
    InvalidDefault { at: Position, problem: ParameterError },
    #[error("{at}: mainSteps is empty; add at least one step")]
    NoSteps { at: Position },
    #[error("{at}: step name `{name}` is not allowed; use 1 to 128 characters from A-Z a-z 0-9 _ . -")]
    InvalidStepName { at: Position, name: String },
    #[error("{at}: step name `{name}` is already used by mainSteps[{first}]; step names must be unique")]
    DuplicateStepName { at: Position, name: String, first: usize },
    #[error(
        "{at}: step `{step}` uses unknown action `{action}`; Flotilla actions are run:shell and run:document{hint}"
    )]
    UnknownAction { at: Position, step: String, action: String, hint: &'static str },
    #[error(
        "{at}: step `{step}` uses `{action}`, which cannot be imported; only aws:runShellScript, \
         aws:runDocument and aws:softwareInventory convert to Flotilla actions (steps for another platform are \
         skipped), so rewrite this step as a shell script"
    )]
    UnsupportedAwsAction { at: Position, step: String, action: String },
    #[error(
        "{at}: AWS documents with schemaVersion `{found}` cannot be imported; command documents use schema \
         1.2, 2.0 or 2.2, so set one of those (2.2 is AWS's current one)"
    )]
    UnsupportedAwsSchemaVersion { at: Position, found: String },
    #[error(
        "{at}: step `{step}` uses `{action}`, which runs only on Windows, and {why}; Flotilla nodes run Linux, \
         so remove the step{fix}"
    )]
    WindowsOnlyPlugin { at: Position, step: String, action: String, why: &'static str, fix: &'static str },
    #[error(
        "{at}: a precondition needs schemaVersion 2.2 (AWS evaluates preconditions only from 2.2); set \
         schemaVersion to \"2.2\" or remove the precondition"
    )]
    PreconditionBefore22 { at: Position },
    #[error(
        "{at}: no step of this document runs on Linux (skipped as for another platform: {skipped}); Flotilla \
         nodes run Linux, so there is nothing to run: add a Linux step"
    )]
    NoLinuxSteps { at: Position, skipped: String },
    #[error("{at}: interpolationType `{found}` is not supported; the only value is ENV_VAR (or leave it out)")]
    UnsupportedInterpolation { at: Position, found: String },
    #[error(
        "{at}: step `{step}` runs a document from `{found}`; only documentType SSMDocument with a plain \
         document name can be imported (create that document in Flotilla and name it here)"
    )]
    UnsupportedDocumentSource { at: Position, step: String, found: String },
    #[error("{at}: step `{step}` ({action}) has unknown input `{input}`; its inputs are: {}", .allowed.join(", "))]
    UnknownInput { at: Position, step: String, action: &'static str, input: String, allowed: &'static [&'static str] },
    #[error("{at}: step `{step}` ({action}) needs the input `{input}`; add it")]
    MissingInput { at: Position, step: String, action: &'static str, input: &'static str },
    #[error("{at}: step `{step}` gives both `commands` and `runCommand`; they are the same input, keep one")]
    ConflictingInputs { at: Position, step: String },
    #[error(
        "{at}: `{{{{ {name} }}}}` refers to a parameter the document does not declare (declared: {declared}); \
         declare it under `parameters` or fix the name"
    )]
    UnknownParameterReference { at: Position, name: String, declared: String },
    #[error(
        "{at}: StringList parameter `{name}` can only be a whole list element (`- \"{{{{ {name} }}}}\"`) of \
         commands or documentParameters; here it is mixed with text or used where one value is expected"
    )]
    ListOutOfPlace { at: Position, name: String },
    #[error("{at}: workingDirectory `{value}` {reason}; give an absolute path such as /var/tmp, or leave it out")]
    InvalidWorkingDirectory { at: Position, value: String, reason: &'static str },
    #[error("{at}: timeoutSeconds `{value}` {reason}; give a whole number of seconds from 5 to 172800")]
    InvalidTimeout { at: Position, value: String, reason: &'static str },
    #[error(
        "{at}: environment variable name `{name}` is not allowed; use letters, digits and `_`, not starting \
         with a digit, and not starting with the reserved FLOTILLA_"
    )]
    InvalidEnvName { at: Position, name: String },
    #[error("{at}: the value contains a NUL character, which no process environment can carry; remove it")]
    NulInEnv { at: Position },
    #[error("{at}: step `{step}` ({action}): {problem}; fix the value")]
    InvalidInput { at: Position, step: String, action: &'static str, problem: String },
    #[error("{at}: {reason}")]
    InvalidResources { at: Position, reason: String },
    #[error("{at}: documentName is empty; name the document to run")]
    EmptyDocumentName { at: Position },
    #[error("{at}: {reason}; write `precondition: {{StringEquals: [platformType, Linux]}}` (Linux, MacOS or Windows)")]
    InvalidPrecondition { at: Position, reason: String },
}

fn location_suffix(location: &Option<Location>) -> String {
    location.map(|l| format!(" at {l}")).unwrap_or_default()
}

/// Matches every variant that carries a position, binding it as `$at`; the one list of those
/// variants, used for reading and for rewriting the position.
macro_rules! with_at {
    ($error:expr, $at:ident => $found:expr, none => $none:expr) => {
        match $error {
            DocumentError::TooLarge { .. } | DocumentError::Syntax { .. } => $none,
            DocumentError::WrongType { at: $at, .. }
            | DocumentError::DuplicateKey { at: $at, .. }
            | DocumentError::NonStringKey { at: $at, .. }
            | DocumentError::UnknownKey { at: $at, .. }
            | DocumentError::MissingKey { at: $at, .. }
            | DocumentError::RuntimeConfig { at: $at, .. }
            | DocumentError::UnsupportedSchemaVersion { at: $at, .. }
            | DocumentError::UnsupportedDocumentType { at: $at, .. }
            | DocumentError::InvalidParameterName { at: $at, .. }
            | DocumentError::UnsupportedParameterType { at: $at, .. }
            | DocumentError::UnsupportedDisplayType { at: $at, .. }
            | DocumentError::InvalidPattern { at: $at, .. }
            | DocumentError::AttributeNotForType { at: $at, .. }
            | DocumentError::MinAboveMax { at: $at, .. }
            | DocumentError::EmptyAllowedValues { at: $at, .. }
            | DocumentError::InvalidDefault { at: $at, .. }
            | DocumentError::NoSteps { at: $at, .. }
            | DocumentError::InvalidStepName { at: $at, .. }
            | DocumentError::DuplicateStepName { at: $at, .. }
            | DocumentError::UnknownAction { at: $at, .. }
            | DocumentError::UnsupportedAwsAction { at: $at, .. }
            | DocumentError::UnsupportedAwsSchemaVersion { at: $at, .. }
            | DocumentError::WindowsOnlyPlugin { at: $at, .. }
            | DocumentError::PreconditionBefore22 { at: $at, .. }
            | DocumentError::NoLinuxSteps { at: $at, .. }
            | DocumentError::UnsupportedInterpolation { at: $at, .. }
            | DocumentError::UnsupportedDocumentSource { at: $at, .. }
            | DocumentError::UnknownInput { at: $at, .. }
            | DocumentError::MissingInput { at: $at, .. }
            | DocumentError::ConflictingInputs { at: $at, .. }
            | DocumentError::UnknownParameterReference { at: $at, .. }
            | DocumentError::ListOutOfPlace { at: $at, .. }
            | DocumentError::InvalidWorkingDirectory { at: $at, .. }
            | DocumentError::InvalidTimeout { at: $at, .. }
            | DocumentError::InvalidEnvName { at: $at, .. }
            | DocumentError::NulInEnv { at: $at, .. }
            | DocumentError::EmptyDocumentName { at: $at, .. }
            | DocumentError::InvalidInput { at: $at, .. }
            | DocumentError::InvalidResources { at: $at, .. }
            | DocumentError::InvalidPrecondition { at: $at, .. } => $found,
        }
    };
}

impl DocumentError {
    /// Where the rule failed; `None` for the size limit and syntax errors, which carry their own
    /// location.
    pub fn position(&self) -> Option<&Position> {
        with_at!(self, at => Some(at), none => None)
    }

    /// Fills in the line and column of the failing field from the source text. `rename` maps
    /// the path back to the text's own names when the tree was rewritten (AWS import) before
    /// the rule ran.
    pub(crate) fn located(mut self, text: &str, format: Format, rename: impl Fn(&FieldPath) -> FieldPath) -> Self {
        with_at!(&mut self, at => {
            let path = rename(&at.path);
            let location = at.location.or_else(|| source::locate(text, format, &path));
            *at = Position { path, location };
        }, none => ());
        self
    }
}

const TOP_LEVEL_KEYS: &[&str] = &["schemaVersion", "description", "documentType", "parameters", "mainSteps"];
const STEP_KEYS: &[&str] = &["action", "name", "inputs", "precondition"];

impl Document {
    /// Parses and checks a document written in YAML or JSON.
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        let (tree, format) = source::load(text)?;
        Self::from_tree(&tree, Dialect::Flotilla).map_err(|e| e.located(text, format, FieldPath::clone))
    }

    /// Checks values given for the document's parameters and fills in defaults.
    pub fn bind(&self, given: &BTreeMap<String, Vec<String>>) -> Result<BoundParameters, ParameterError> {
        parameter::bind(&self.parameters, given)
    }

    pub fn schema_version(&self) -> &'static str {
        SCHEMA_VERSION
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    pub fn document_type(&self) -> DocumentType {
        self.document_type
    }

    /// Declared parameters by name.
    pub fn parameters(&self) -> &BTreeMap<String, ParameterSpec> {
        &self.parameters
    }

    /// `mainSteps`, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether a whole script line `{{ name }}` is script text (the value's lines become lines
    /// of the script) rather than a value kept in the environment. Flotilla documents: only a
    /// StringList named `commands`. Imported AWS documents: every String or StringList
    /// parameter used as a whole `runCommand` line, except `interpolationType: ENV_VAR` ones.
    pub fn is_script_parameter(&self, name: &str) -> bool {
        self.script_parameters.contains(name)
    }

    pub(crate) fn from_tree(tree: &Value, dialect: Dialect) -> Result<Self, DocumentError> {
        let root = FieldPath::root();
        let entries = tree::entries(tree, &root)?;
        if tree::get(&entries, "runtimeConfig").is_some() {
            return Err(DocumentError::RuntimeConfig { at: Position::at(&root.key("runtimeConfig")) });
        }
        tree::only_keys(&entries, TOP_LEVEL_KEYS, &root)?;

        let version_path = root.key("schemaVersion");
        let version = tree::scalar(tree::required(&entries, "schemaVersion", &root)?, &version_path)?;
        if version != SCHEMA_VERSION {
            return Err(DocumentError::UnsupportedSchemaVersion { at: Position::at(&version_path), found: version });
        }
        let description =
            tree::get(&entries, "description").map(|v| tree::scalar(v, &root.key("description"))).transpose()?;
        if let Some(v) = tree::get(&entries, "documentType") {
            let path = root.key("documentType");
            let found = tree::scalar(v, &path)?;
            if found != "Command" {
                return Err(DocumentError::UnsupportedDocumentType { at: Position::at(&path), found });
            }
        }
        let parameters = match tree::get(&entries, "parameters") {
            Some(v) => parameter::read_parameters(v, &root.key("parameters"))?,
            None => BTreeMap::new(),
        };
        let steps_path = root.key("mainSteps");
        let steps_value = tree::required(&entries, "mainSteps", &root)?;
        let Value::Sequence(items) = steps_value else {
            return Err(tree::wrong_type(&steps_path, "a list of steps", steps_value));
        };
        if items.is_empty() {
            return Err(DocumentError::NoSteps { at: Position::at(&steps_path) });
        }
        let mut steps: Vec<Step> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let step = read_step(item, &steps_path.index(i), &parameters)?;
            if let Some(first) = steps.iter().position(|s| s.name == step.name) {
                return Err(DocumentError::DuplicateStepName {
                    at: Position::at(&steps_path.index(i).key("name")),
                    name: step.name,
                    first,
                });
            }
            steps.push(step);
        }
        let script_parameters = script_parameters(dialect, &parameters, &steps);
        Ok(Self { description, document_type: DocumentType::Command, parameters, steps, script_parameters })
    }
}

fn script_parameters(
    dialect: Dialect,
    parameters: &BTreeMap<String, ParameterSpec>,
    steps: &[Step],
) -> BTreeSet<String> {
    let textual = |name: &str| {
        parameters
            .get(name)
            .is_some_and(|spec| !spec.env_var && matches!(spec.kind, ParameterType::String | ParameterType::StringList))
    };
    match dialect {
        Dialect::Flotilla => parameters
            .iter()
            .filter(|(name, spec)| name.as_str() == COMMANDS_PARAMETER && spec.kind == ParameterType::StringList)
            .map(|(name, _)| name.clone())
            .collect(),
        // Forwarded whole to another document, a value is what the child makes of it: script
        // text only where the child's own rules say so.
        Dialect::Ssm => steps
            .iter()
            .flat_map(|step| -> Vec<&String> {
                match &step.action {
                    Action::Shell(shell) => shell.commands.iter().collect(),
                    Action::RunDocument(run) => run
                        .document_parameters
                        .values()
                        .flat_map(|argument| match argument {
                            ParameterArgument::One(text) => std::slice::from_ref(text),
                            ParameterArgument::List(items) => items.as_slice(),
                        })
                        .collect(),
                    Action::Agent(_) | Action::Resource(_) | Action::StateApply(_) | Action::Patch(_) => Vec::new(),
                }
            })
            .filter_map(|line| crate::template::whole_reference(line))
            .filter(|name| textual(name))
            .map(str::to_owned)
            .collect(),
    }
}

fn valid_step_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn read_step(
    value: &Value,
    path: &FieldPath,
    parameters: &BTreeMap<String, ParameterSpec>,
) -> Result<Step, DocumentError> {
    let entries = tree::entries(value, path)?;
    tree::only_keys(&entries, STEP_KEYS, path)?;
    let name_path = path.key("name");
    let name = tree::scalar(tree::required(&entries, "name", path)?, &name_path)?;
    if !valid_step_name(&name) {
        return Err(DocumentError::InvalidStepName { at: Position::at(&name_path), name });
    }
    let action_path = path.key("action");
    let action_name = tree::scalar(tree::required(&entries, "action", path)?, &action_path)?;
    let precondition =
        tree::get(&entries, "precondition").map(|v| read_precondition(v, &path.key("precondition"))).transpose()?;
    let action = action::read_action(
        &name,
        &action_name,
        &action_path,
        tree::get(&entries, "inputs"),
        &path.key("inputs"),
        parameters,
    )?;
    Ok(Step { name, precondition, action })
}

pub(crate) fn read_precondition(value: &Value, path: &FieldPath) -> Result<Platform, DocumentError> {
    let entries = tree::entries(value, path)?;
    tree::only_keys(&entries, &["StringEquals"], path)?;
    let operands_path = path.key("StringEquals");
    let operands = tree::scalar_list(tree::required(&entries, "StringEquals", path)?, &operands_path)?;
    let invalid = |reason: String| DocumentError::InvalidPrecondition { at: Position::at(&operands_path), reason };
    match operands.as_slice() {
        [subject, platform] if subject == "platformType" => [Platform::Linux, Platform::MacOS, Platform::Windows]
            .into_iter()
            .find(|p| p.as_str() == platform)
            .ok_or_else(|| {
                invalid(format!("platform `{platform}` is not one of Linux, MacOS, Windows (case matters)"))
            }),
        [subject, _] => Err(invalid(format!("only platformType can be compared, not `{subject}`"))),
        other => Err(invalid(format!("StringEquals takes exactly two values, not {}", other.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
schemaVersion: '2.2'
description: Say hello.
parameters:
  greeting:
    type: String
    default: hello
mainSteps:
  - action: run:shell
    name: hello
    precondition:
      StringEquals: [platformType, Linux]
    inputs:
      commands:
        - echo {{ greeting }}
      workingDirectory: /tmp
      timeoutSeconds: 60
      env:
        LANG: C.UTF-8
  - action: run:document
    name: nested
    inputs:
      documentName: Other
      documentVersion: '2'
      documentParameters:
        words: ['{{ greeting }}', world]
";

    #[test]
    fn parses_a_document_in_yaml_and_json() {
        let yaml = Document::parse(MINIMAL).expect("valid");
        assert_eq!(yaml.description(), Some("Say hello."));
        assert_eq!(yaml.steps().len(), 2);
        assert_eq!(yaml.steps()[0].precondition, Some(Platform::Linux));
        let Action::Shell(shell) = &yaml.steps()[0].action else { panic!("shell step") };
        assert_eq!(shell.commands, ["echo {{ greeting }}"]);
        assert_eq!(shell.timeout_seconds.as_deref(), Some("60"));
        assert_eq!(shell.env["LANG"], "C.UTF-8");
        let Action::RunDocument(run) = &yaml.steps()[1].action else { panic!("run:document step") };
        assert_eq!(run.document_version.as_deref(), Some("2"));

        let tree: Value = serde_yaml::from_str(MINIMAL).expect("yaml");
        let json = serde_json::to_string_pretty(&tree).expect("json");
        assert_eq!(Document::parse(&json), Ok(yaml));
    }

    /// (document text, field path, line, message fragment).
    const REFUSED: &[(&str, &str, Option<u32>, &str)] = &[
        ("schemaVersion: '1.2'\nmainSteps: []\n", "schemaVersion", Some(1), "schemaVersion `1.2` is not supported"),
        ("schemaVersion: '2.2'\nruntimeConfig: {}\n", "runtimeConfig", Some(2), "set schemaVersion to \"2.2\""),
        ("schemaVersion: '2.2'\nmainSteps: []\nfoo: 1\n", "foo", Some(3), "unknown key `foo`; allowed here:"),
        ("schemaVersion: '2.2'\n", "(document)", Some(1), "`mainSteps` is required"),
        ("schemaVersion: '2.2'\nmainSteps: []\n", "mainSteps", Some(2), "mainSteps is empty"),
        ("schemaVersion: '2.2'\ndocumentType: Automation\nmainSteps: []\n", "documentType", Some(2), "only `Command`"),
        ("schemaVersion: '2.2'\nmainSteps: {}\n", "mainSteps", Some(2), "expected a list of steps, found a mapping"),
        ("[1, 2]", "(document)", Some(1), "expected a mapping, found a list"),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: a\n  inputs: {commands: [x]}\n\
             - action: run:shell\n  name: a\n  inputs: {commands: [y]}\n",
            "mainSteps[1].name",
            Some(7),
            "step name `a` is already used by mainSteps[0]",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: a b\n  inputs: {commands: [x]}\n",
            "mainSteps[0].name",
            Some(4),
            "step name `a b` is not allowed",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  inputs: {commands: [x]}\n",
            "mainSteps[0]",
            Some(3),
            "`name` is required",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:powershell\n  name: ps\n",
            "mainSteps[0].action",
            Some(3),
            "step `ps` uses unknown action `run:powershell`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runShellScript\n  name: s\n",
            "mainSteps[0].action",
            Some(3),
            "convert AWS documents with import_ssm",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs:\n    commands: [x]\n    shell: bash\n",
            "mainSteps[0].inputs.shell",
            Some(7),
            "step `s` (run:shell) has unknown input `shell`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs: {}\n",
            "mainSteps[0].inputs",
            Some(5),
            "needs the input `commands`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs: {commands: [a], runCommand: [b]}\n",
            "mainSteps[0].inputs.runCommand",
            Some(5),
            "both `commands` and `runCommand`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs:\n    runCommand:\n      - echo {{ nme }}\n",
            "mainSteps[0].inputs.runCommand[0]",
            Some(7),
            "`{{ nme }}` refers to a parameter the document does not declare (declared: none)",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  l: {type: StringList}\nmainSteps:\n- action: run:shell\n  name: s\n  \
             inputs:\n    commands: ['echo {{ l }}']\n",
            "mainSteps[0].inputs.commands[0]",
            Some(8),
            "StringList parameter `l` can only be a whole list element",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  l: {type: StringList}\nmainSteps:\n- action: run:shell\n  name: s\n  \
             inputs:\n    commands: [x]\n    workingDirectory: '{{ l }}'\n",
            "mainSteps[0].inputs.workingDirectory",
            Some(9),
            "StringList parameter `l`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs: {commands: [x], workingDirectory: tmp}\n",
            "mainSteps[0].inputs.workingDirectory",
            Some(5),
            "workingDirectory `tmp` is not an absolute path",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs: {commands: [x], timeoutSeconds: 2}\n",
            "mainSteps[0].inputs.timeoutSeconds",
            Some(5),
            "timeoutSeconds `2` is outside 5..=172800 seconds",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  inputs:\n    commands: [x]\n    env:\n      \
             FLOTILLA_PARAM_x: y\n",
            "mainSteps[0].inputs.env.FLOTILLA_PARAM_x",
            Some(8),
            "reserved FLOTILLA_",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  precondition:\n    StringEquals: \
             [platformType, linux]\n  inputs: {commands: [x]}\n",
            "mainSteps[0].precondition.StringEquals",
            Some(6),
            "platform `linux` is not one of Linux, MacOS, Windows",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: s\n  precondition:\n    StringEquals: \
             ['{{ p }}', x]\n  inputs: {commands: [x]}\n",
            "mainSteps[0].precondition.StringEquals",
            Some(6),
            "only platformType can be compared",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:document\n  name: d\n  inputs: {documentName: ''}\n",
            "mainSteps[0].inputs.documentName",
            Some(5),
            "documentName is empty",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  bad-name: {type: String}\nmainSteps: []\n",
            "parameters.bad-name",
            Some(3),
            "parameter name `bad-name` is not allowed",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p: {type: MapList}\nmainSteps: []\n",
            "parameters.p.type",
            Some(3),
            "parameter type `MapList` is not supported",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: String\n    allowedPattern: '[a-'\nmainSteps: []\n",
            "parameters.p.allowedPattern",
            Some(5),
            "allowedPattern `[a-` is not a valid regular expression",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: String\n    minItems: 1\nmainSteps: []\n",
            "parameters.p.minItems",
            Some(5),
            "`minItems` does not apply to a String parameter",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: StringList\n    minItems: 3\n    maxItems: 1\nmainSteps: []\n",
            "parameters.p.minItems",
            Some(5),
            "minItems (3) is greater than maxItems (1)",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: String\n    default: x\n    allowedValues: [a, b]\n\
             mainSteps: []\n",
            "parameters.p.default",
            Some(5),
            "the default is not valid: value \"x\" is not allowed",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: Integer\n    default: ten\nmainSteps: []\n",
            "parameters.p.default",
            Some(5),
            "must be a whole number",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: String\n    displayType: big\nmainSteps: []\n",
            "parameters.p.displayType",
            Some(5),
            "displayType `big` is not supported",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p:\n    type: String\n    display: x\nmainSteps: []\n",
            "parameters.p.display",
            Some(5),
            "unknown key `display`",
        ),
        (
            "{\n  \"schemaVersion\": \"2.2\",\n  \"mainSteps\": [\n    {\"action\": \"run:shell\", \"name\": \"s\",\n     \
             \"inputs\": {\"commands\": \"x\", \"timeoutSeconds\": \"soon\"}}\n  ]\n}",
            "mainSteps[0].inputs.timeoutSeconds",
            Some(5),
            "timeoutSeconds `soon` is not a whole number of seconds",
        ),
    ];

    #[test]
    fn refuses_bad_documents_saying_where() {
        for (text, path, line, fragment) in REFUSED {
            let error = Document::parse(text).expect_err(fragment);
            let message = error.to_string();
            assert!(message.contains(fragment), "{text}\n=> {message}");
            let position = error.position().expect("a position");
            assert_eq!(position.path.to_string(), *path, "{message}");
            assert_eq!(position.location.map(|l| l.line), *line, "{message}");
            assert!(message.starts_with(path), "{message}");
        }
    }

    #[test]
    fn refuses_text_that_is_not_yaml_or_json() {
        for text in ["{\"schemaVersion\": ", "a: [\n", "\t- x", "a: 1\n---\nb: 2\n", ""] {
            let error = Document::parse(text).expect_err(text);
            assert!(
                matches!(error, DocumentError::Syntax { .. } | DocumentError::WrongType { .. }),
                "{text:?}: {error:?}"
            );
        }
    }

    #[test]
    fn accepts_the_ssm_spelling_and_single_strings() {
        let text =
            "schemaVersion: 2.2\nmainSteps:\n- action: run:shell\n  name: s\n  inputs:\n    runCommand: uptime\n";
        let document = Document::parse(text).expect("valid");
        let Action::Shell(shell) = &document.steps()[0].action else { panic!("shell") };
        assert_eq!(shell.commands, ["uptime"]);
    }
}
