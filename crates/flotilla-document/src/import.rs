//! Importing AWS SSM command documents (schema 1.2, 2.0 and 2.2, JSON or YAML) as Flotilla
//! documents.
//!
//! The AWS tree is rewritten into a Flotilla tree and then read by the same rules as a native
//! document (in the AWS dialect, see [`Document::is_script_parameter`]), so an imported
//! document obeys every invariant a parsed one does.
//!
//! Invariants:
//! - Meaning is kept or the import fails. `aws:runShellScript` (runCommand, workingDirectory,
//!   timeoutSeconds) becomes `run:shell` with the same inputs; `aws:runDocument` with
//!   documentType `SSMDocument` and a plain document name becomes `run:document`;
//!   `aws:softwareInventory` becomes `inventory:collect` (its inputs are checked by name; which
//!   types are collected is the node's inventory settings). A schema 1.2 `runtimeConfig` entry
//!   becomes one step per `properties` item, its `id` (made a valid step name) the step's name.
//! - A field whose value is `null` is read as absent, as AWS reads it.
//! - Platforms follow AWS: a step whose precondition names another platform never runs on a
//!   Flotilla (Linux) node, so one whose plugin Flotilla cannot run is skipped (left out); a
//!   Windows-only plugin without a precondition is skipped in schema 2.2 (AWS skips plugins
//!   incompatible with the node) and refused in 1.2 and 2.0 (AWS fails them). Any other plugin,
//!   input, document source or schema version is refused, naming the step and what to change.
//!   A document left with no step is refused. Preconditions need schema 2.2, as in AWS.

use serde_yaml::{Mapping, Value};

use crate::action::{INVENTORY_COLLECT, RUN_DOCUMENT, RUN_SHELL};
use crate::document::{self, Dialect, Document, DocumentError, Platform, Position, SCHEMA_VERSION};
use crate::source::{self, FieldPath, Segment, tree};

const AWS_RUN_SHELL_SCRIPT: &str = "aws:runShellScript";
const AWS_RUN_DOCUMENT: &str = "aws:runDocument";
const AWS_SOFTWARE_INVENTORY: &str = "aws:softwareInventory";
const AWS_SHELL_INPUTS: &[&str] = &["runCommand", "workingDirectory", "timeoutSeconds"];
const AWS_RUN_DOCUMENT_INPUTS: &[&str] = &["documentType", "documentPath", "documentParameters"];
/// The gatherer switches and filters of `aws:softwareInventory` (spec §8.1).
const AWS_INVENTORY_INPUTS: &[&str] = &[
    "applications",
    "awsComponents",
    "networkConfig",
    "windowsUpdates",
    "instanceDetailedInformation",
    "services",
    "windowsRoles",
    "customInventory",
    "billingInfo",
    "files",
    "windowsRegistry",
];
/// Plugins the SSM agent runs only on Windows (spec §3.1).
const WINDOWS_ONLY_PLUGINS: &[&str] = &[
    "aws:runPowerShellScript",
    "aws:applications",
    "aws:psModule",
    "aws:domainJoin",
    "aws:cloudWatch",
    "aws:updateAgent",
];
const AWS_STEP_KEYS: &[&str] = &["action", "name", "inputs", "precondition"];

/// The AWS schema versions of command documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    V1_2,
    V2_0,
    V2_2,
}

impl Schema {
    fn top_level_keys(self) -> &'static [&'static str] {
        match self {
            Self::V1_2 => &["schemaVersion", "description", "parameters", "runtimeConfig"],
            Self::V2_0 | Self::V2_2 => &["schemaVersion", "description", "parameters", "mainSteps"],
        }
    }
}

/// Where a step of the Flotilla tree came from, to report errors at the AWS text's own place.
struct Origin {
    path: FieldPath,
    /// A 1.2 `properties` item: inputs sit in the item itself and the name is `id`.
    flat: bool,
}

/// Converts an AWS SSM command document (schemaVersion 1.2, 2.0 or 2.2) into a Flotilla document.
pub fn import_ssm(text: &str) -> Result<Document, DocumentError> {
    let (mut aws, format) = source::load(text)?;
    strip_nulls(&mut aws);
    let (flotilla, origins) = translate(&aws).map_err(|e| e.located(text, format, FieldPath::clone))?;
    Document::from_tree(&flotilla, Dialect::Ssm).map_err(|e| e.located(text, format, |path| back(path, &origins)))
}

/// Removes every mapping entry whose value is `null`, at any depth.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            mapping.retain(|_, v| !v.is_null());
            for (_, v) in mapping.iter_mut() {
                strip_nulls(v);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_nulls),
        Value::Tagged(tagged) => strip_nulls(&mut tagged.value),
        _ => {}
    }
}

/// Maps a path in the Flotilla tree back to the AWS text.
fn back(path: &FieldPath, origins: &[Origin]) -> FieldPath {
    let path = path.rename_key("documentName", "documentPath");
    let [Segment::Key(steps), Segment::Index(i), rest @ ..] = path.segments() else { return path };
    let Some(origin) = origins.get(*i).filter(|_| steps == "mainSteps") else { return path };
    let mut rest = rest.iter();
    let mut out = origin.path.clone();
    if origin.flat {
        match rest.as_slice().first() {
            Some(Segment::Key(key)) if key == "inputs" => {
                rest.next();
            }
            Some(Segment::Key(key)) if key == "name" => {
                rest.next();
                out = out.key("id");
            }
            _ => {}
        }
    }
    for segment in rest {
        out = match segment {
            Segment::Key(key) => out.key(key),
            Segment::Index(index) => out.index(*index),
        };
    }
    out
}

/// One step as the AWS text writes it, before conversion.
struct AwsStep<'a> {
    path: FieldPath,
    flat: bool,
    name: String,
    name_value: Option<&'a Value>,
    action: String,
    action_path: FieldPath,
    inputs: Value,
    inputs_path: FieldPath,
    precondition: Option<&'a Value>,
}

fn translate(aws: &Value) -> Result<(Value, Vec<Origin>), DocumentError> {
    let root = FieldPath::root();
    let entries = tree::entries(aws, &root)?;
    let version_path = root.key("schemaVersion");
    let version = tree::scalar(tree::required(&entries, "schemaVersion", &root)?, &version_path)?;
    let schema = match version.as_str() {
        "1.2" => Schema::V1_2,
        "2.0" => Schema::V2_0,
        "2.2" => Schema::V2_2,
        _ => {
            return Err(DocumentError::UnsupportedAwsSchemaVersion { at: Position::at(&version_path), found: version });
        }
    };
    tree::only_keys(&entries, schema.top_level_keys(), &root)?;
    let (steps_path, aws_steps) = match schema {
        Schema::V1_2 => {
            let path = root.key("runtimeConfig");
            (path.clone(), runtime_config(tree::required(&entries, "runtimeConfig", &root)?, &path)?)
        }
        Schema::V2_0 | Schema::V2_2 => {
            let path = root.key("mainSteps");
            (path.clone(), main_steps(tree::required(&entries, "mainSteps", &root)?, &path)?)
        }
    };
    let mut steps = Vec::new();
    let mut origins = Vec::new();
    let mut skipped = Vec::new();
    for aws_step in aws_steps {
        match convert(schema, &aws_step)? {
            Some(step) => {
                steps.push(step);
                origins.push(Origin { path: aws_step.path, flat: aws_step.flat });
            }
            None => skipped.push(format!("`{}` ({})", aws_step.name, aws_step.action)),
        }
    }
    if steps.is_empty() {
        return Err(if skipped.is_empty() {
            DocumentError::NoSteps { at: Position::at(&steps_path) }
        } else {
            DocumentError::NoLinuxSteps { at: Position::at(&steps_path), skipped: skipped.join(", ") }
        });
    }
    let mut out = Mapping::new();
    out.insert(key("schemaVersion"), Value::String(SCHEMA_VERSION.to_owned()));
    for name in ["description", "parameters"] {
        if let Some(value) = tree::get(&entries, name) {
            out.insert(key(name), value.clone());
        }
    }
    out.insert(key("mainSteps"), Value::Sequence(steps));
    Ok((Value::Mapping(out), origins))
}

fn key(name: &str) -> Value {
    Value::String(name.to_owned())
}

fn main_steps<'a>(value: &'a Value, path: &FieldPath) -> Result<Vec<AwsStep<'a>>, DocumentError> {
    let Value::Sequence(items) = value else {
        return Err(tree::wrong_type(path, "a list of steps", value));
    };
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let step_path = path.index(i);
        let entries = tree::entries(item, &step_path)?;
        tree::only_keys(&entries, AWS_STEP_KEYS, &step_path)?;
        let name_value = tree::get(&entries, "name");
        let name = name_value.and_then(|v| tree::scalar(v, &step_path.key("name")).ok()).unwrap_or_default();
        let action_path = step_path.key("action");
        let action = tree::scalar(tree::required(&entries, "action", &step_path)?, &action_path)?;
        steps.push(AwsStep {
            name,
            name_value,
            action,
            action_path,
            inputs: tree::get(&entries, "inputs").cloned().unwrap_or_else(|| Value::Mapping(Mapping::new())),
            inputs_path: step_path.key("inputs"),
            precondition: tree::get(&entries, "precondition"),
            path: step_path,
            flat: false,
        });
    }
    Ok(steps)
}

/// Schema 1.2: `runtimeConfig: {PLUGIN: {properties: [ {id, INPUT...}, ... ]}}`, in order.
fn runtime_config<'a>(value: &'a Value, path: &FieldPath) -> Result<Vec<AwsStep<'a>>, DocumentError> {
    let mut steps = Vec::new();
    for (plugin, config) in tree::entries(value, path)? {
        let plugin_path = path.key(plugin);
        let config_entries = tree::entries(config, &plugin_path)?;
        tree::only_keys(&config_entries, &["properties"], &plugin_path)?;
        let properties_path = plugin_path.key("properties");
        let properties = tree::required(&config_entries, "properties", &plugin_path)?;
        // A plugin that runs once may write its properties as one mapping instead of a list.
        let items: Vec<(FieldPath, &Value)> = match properties {
            Value::Sequence(items) => items.iter().enumerate().map(|(i, v)| (properties_path.index(i), v)).collect(),
            other => vec![(properties_path.clone(), other)],
        };
        for (item_path, item) in items {
            let entries = tree::entries(item, &item_path)?;
            let id_value = tree::get(&entries, "id");
            let id = match id_value {
                Some(v) => tree::scalar(v, &item_path.key("id"))?,
                None => format!("{}.{plugin}", steps.len()),
            };
            let inputs: Mapping =
                entries.iter().filter(|(k, _)| *k != "id").map(|(k, v)| (key(k), (*v).clone())).collect();
            steps.push(AwsStep {
                name: step_name(&id),
                name_value: None,
                action: plugin.to_owned(),
                action_path: plugin_path.clone(),
                inputs: Value::Mapping(inputs),
                inputs_path: item_path.clone(),
                precondition: None,
                path: item_path,
                flat: true,
            });
        }
    }
    Ok(steps)
}

/// A 1.2 `id` such as `0.aws:runShellScript` as a step name: characters a step name cannot
/// hold become `-`.
fn step_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect()
}

/// The Flotilla step for one AWS step, or `None` when it is skipped as for another platform.
fn convert(schema: Schema, aws: &AwsStep<'_>) -> Result<Option<Value>, DocumentError> {
    let precondition_path = aws.path.key("precondition");
    let precondition = match aws.precondition {
        None => None,
        Some(_) if schema != Schema::V2_2 => {
            return Err(DocumentError::PreconditionBefore22 { at: Position::at(&precondition_path) });
        }
        Some(value) => Some(document::read_precondition(value, &precondition_path)?),
    };
    let runs_on_linux = precondition.is_none_or(|p| p == Platform::Linux);
    let step = aws.name.as_str();
    let converted = match aws.action.as_str() {
        AWS_RUN_SHELL_SCRIPT => (RUN_SHELL, shell_inputs(step, &aws.inputs, &aws.inputs_path)?),
        AWS_RUN_DOCUMENT => (RUN_DOCUMENT, run_document_inputs(step, &aws.inputs, &aws.inputs_path)?),
        AWS_SOFTWARE_INVENTORY => (INVENTORY_COLLECT, inventory_inputs(step, &aws.inputs, &aws.inputs_path)?),
        _ if !runs_on_linux => return Ok(None),
        windows if WINDOWS_ONLY_PLUGINS.contains(&windows) => {
            let (why, fix) = match (schema, precondition) {
                (Schema::V2_2, None) => return Ok(None),
                (Schema::V2_2, _) => ("its precondition says Linux", " or set its precondition to Windows"),
                _ => (
                    "a schema 1.2 or 2.0 document fails on a platform its plugins do not support (as AWS does)",
                    ", or set schemaVersion to 2.2 with precondition Windows on the step",
                ),
            };
            return Err(DocumentError::WindowsOnlyPlugin {
                at: Position::at(&aws.action_path),
                step: step.to_owned(),
                action: aws.action.clone(),
                why,
                fix,
            });
        }
        _ => {
            return Err(DocumentError::UnsupportedAwsAction {
                at: Position::at(&aws.action_path),
                step: step.to_owned(),
                action: aws.action.clone(),
            });
        }
    };
    let (action, inputs) = converted;
    let mut out = Mapping::new();
    out.insert(key("action"), Value::String(action.to_owned()));
    match aws.name_value {
        Some(name) => out.insert(key("name"), name.clone()),
        None if aws.flat => out.insert(key("name"), Value::String(aws.name.clone())),
        None => None,
    };
    out.insert(key("inputs"), inputs);
    if let Some(value) = aws.precondition {
        out.insert(key("precondition"), value.clone());
    }
    Ok(Some(Value::Mapping(out)))
}

fn unknown_input(
    step: &str,
    action: &'static str,
    input: &str,
    allowed: &'static [&'static str],
    path: &FieldPath,
) -> DocumentError {
    DocumentError::UnknownInput {
        at: Position::at(&path.key(input)),
        step: step.to_owned(),
        action,
        input: input.to_owned(),
        allowed,
    }
}

fn shell_inputs(step: &str, inputs: &Value, path: &FieldPath) -> Result<Value, DocumentError> {
    let entries = tree::entries(inputs, path)?;
    if let Some((input, _)) = entries.iter().find(|(key, _)| !AWS_SHELL_INPUTS.contains(key)) {
        return Err(unknown_input(step, AWS_RUN_SHELL_SCRIPT, input, AWS_SHELL_INPUTS, path));
    }
    if tree::get(&entries, "runCommand").is_none() {
        return Err(DocumentError::MissingInput {
            at: Position::at(path),
            step: step.to_owned(),
            action: AWS_RUN_SHELL_SCRIPT,
            input: "runCommand",
        });
    }
    // run:shell reads the SSM input names as they are.
    Ok(inputs.clone())
}

fn inventory_inputs(step: &str, inputs: &Value, path: &FieldPath) -> Result<Value, DocumentError> {
    let entries = tree::entries(inputs, path)?;
    if let Some((input, _)) = entries.iter().find(|(key, _)| !AWS_INVENTORY_INPUTS.contains(key)) {
        return Err(unknown_input(step, AWS_SOFTWARE_INVENTORY, input, AWS_INVENTORY_INPUTS, path));
    }
    // inventory:collect takes no inputs: what it collects is the node's inventory settings.
    Ok(Value::Mapping(Mapping::new()))
}

fn run_document_inputs(step: &str, inputs: &Value, path: &FieldPath) -> Result<Value, DocumentError> {
    let entries = tree::entries(inputs, path)?;
    if let Some((input, _)) = entries.iter().find(|(key, _)| !AWS_RUN_DOCUMENT_INPUTS.contains(key)) {
        return Err(unknown_input(step, AWS_RUN_DOCUMENT, input, AWS_RUN_DOCUMENT_INPUTS, path));
    }
    let missing = |input: &'static str| DocumentError::MissingInput {
        at: Position::at(path),
        step: step.to_owned(),
        action: AWS_RUN_DOCUMENT,
        input,
    };
    let type_path = path.key("documentType");
    let source_type =
        tree::scalar(tree::get(&entries, "documentType").ok_or_else(|| missing("documentType"))?, &type_path)?;
    if source_type != "SSMDocument" {
        return Err(DocumentError::UnsupportedDocumentSource {
            at: Position::at(&type_path),
            step: step.to_owned(),
            found: source_type,
        });
    }
    let name_path = path.key("documentPath");
    let name = tree::scalar(tree::get(&entries, "documentPath").ok_or_else(|| missing("documentPath"))?, &name_path)?;
    // An ARN or a path names a document in another account or place, which Flotilla cannot reach.
    if name.starts_with("arn:") || name.contains('/') {
        return Err(DocumentError::UnsupportedDocumentSource {
            at: Position::at(&name_path),
            step: step.to_owned(),
            found: name,
        });
    }
    let mut out = Mapping::new();
    out.insert(Value::String("documentName".to_owned()), Value::String(name));
    if let Some(parameters) = tree::get(&entries, "documentParameters") {
        let parameters_path = path.key("documentParameters");
        // SSM also accepts the parameters as a JSON object written inside a string.
        let parameters = match parameters {
            Value::String(json) => {
                serde_json::from_str::<Value>(json).ok().filter(Value::is_mapping).ok_or_else(|| {
                    tree::wrong_type(&parameters_path, "a mapping (or a JSON object in a string)", parameters)
                })?
            }
            other => other.clone(),
        };
        out.insert(Value::String("documentParameters".to_owned()), parameters);
    }
    Ok(Value::Mapping(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, ParameterArgument};

    #[test]
    fn converts_run_document_steps() {
        let text = r#"{
  "schemaVersion": "2.2",
  "mainSteps": [
    {
      "action": "aws:runDocument",
      "name": "nested",
      "inputs": {
        "documentType": "SSMDocument",
        "documentPath": "Flotilla-RunShellScript",
        "documentParameters": "{\"commands\": [\"uptime\"]}"
      }
    }
  ]
}"#;
        let document = import_ssm(text).expect("imports");
        let Action::RunDocument(run) = &document.steps()[0].action else { panic!("run:document") };
        assert_eq!(run.document_name, "Flotilla-RunShellScript");
        assert_eq!(run.document_parameters["commands"], ParameterArgument::List(vec!["uptime".into()]));
    }

    fn plan_one(text: &str, given: &[&str]) -> Result<crate::ShellStep, String> {
        let document = import_ssm(text).map_err(|e| e.to_string())?;
        let bound =
            document.bind(&crate::parse_cli_params(given).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let child = "schemaVersion: '2.2'\nparameters:\n  commands: {type: StringList}\nmainSteps:\n- action: run:shell\n  \
                     name: run\n  inputs: {commands: ['{{ commands }}']}\n";
        let resolve = |name: &str, _: Option<&str>| (name == "Child").then(|| Document::parse(child).ok()).flatten();
        let mut plan = document.plan(&bound, &resolve).map_err(|e| e.to_string())?;
        Ok(plan.steps.remove(0).action)
    }

    #[test]
    fn whole_line_parameters_are_script_text_as_aws_means_them() {
        let shell = |commands: &str, parameters: &str| {
            format!(
                "schemaVersion: '2.2'\nparameters:\n{parameters}mainSteps:\n- action: aws:runShellScript\n  name: s\n  \
                 inputs:\n    runCommand: {commands}\n"
            )
        };
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a str);
        let cases: &[Case<'_>] = &[
            // A String forming a whole line is the script, whatever its name; embedded it is a value.
            (
                "['{{ script }}', 'echo {{ script }}']",
                "  script: {type: String}\n",
                &["script=ls; id"],
                "ls; id\necho \"${FLOTILLA_PARAM_script}\"",
            ),
            ("'{{commands}}'", "  commands: {type: StringList}\n", &["commands=a", "commands=b"], "a\nb"),
            // ENV_VAR: never script text, and available to every step as SSM_<name>.
            ("['{{ v }}']", "  v: {type: String, interpolationType: ENV_VAR}\n", &["v=ls; id"], "\"${SSM_v}\""),
        ];
        for (commands, parameters, given, script) in cases {
            let step = plan_one(&shell(commands, parameters), given).expect(commands);
            assert_eq!(step.script, *script, "{commands}");
        }
        let step =
            plan_one(&shell("['true']", "  v: {type: String, interpolationType: ENV_VAR}\n"), &["v=x"]).expect("env");
        assert_eq!(step.env.get("SSM_v").map(String::as_str), Some("x"));

        // Forwarded whole to a child's script it stays the script; spliced into it, it is refused.
        let forward = |argument: &str| {
            format!(
                "schemaVersion: '2.2'\nparameters:\n  script: {{type: String}}\nmainSteps:\n- action: aws:runDocument\n  \
                 name: d\n  inputs:\n    documentType: SSMDocument\n    documentPath: Child\n    documentParameters:\n      \
                 commands: {argument}\n"
            )
        };
        assert_eq!(plan_one(&forward("'{{ script }}'"), &["script=ls; id"]).expect("forwarded").script, "ls; id");
        let error = plan_one(&forward("['echo {{ script }}']"), &["script=ls; id"]).expect_err("spliced");
        assert!(error.contains("splices parameter `script`"), "{error}");
    }

    #[test]
    fn schema_versions_may_be_written_as_numbers() {
        for version in ["1.2", "2.0", "2.2"] {
            let text = if version == "1.2" {
                format!(
                    "schemaVersion: {version}\nruntimeConfig:\n  aws:runShellScript:\n    properties:\n    - runCommand: [uptime]\n"
                )
            } else {
                format!(
                    "schemaVersion: {version}\nmainSteps:\n- {{action: aws:runShellScript, name: s, inputs: {{runCommand: [uptime]}}}}\n"
                )
            };
            let document = import_ssm(&text).unwrap_or_else(|e| panic!("{version}: {e}"));
            let Action::Shell(shell) = &document.steps()[0].action else { panic!("run:shell") };
            assert_eq!(shell.commands, ["uptime"], "{version}");
            if version == "1.2" {
                // Without an `id`, the step is named by its position and plugin.
                assert_eq!(document.steps()[0].name, "0.aws-runShellScript");
            }
        }
    }

    /// (AWS document, path, line, message fragment).
    const REFUSED: &[(&str, &str, Option<u32>, &str)] = &[
        ("schemaVersion: '3.0'\nmainSteps: []\n", "schemaVersion", Some(1), "schemaVersion `3.0` cannot be imported"),
        ("schemaVersion: '1.2'\nruntimeConfig: {}\n", "runtimeConfig", Some(2), "mainSteps is empty"),
        ("schemaVersion: '2.0'\nmainSteps: []\n", "mainSteps", Some(2), "mainSteps is empty"),
        ("schemaVersion: '2.2'\nruntimeConfig: {}\n", "runtimeConfig", Some(2), "unknown key `runtimeConfig`"),
        ("schemaVersion: '1.2'\nmainSteps: []\n", "mainSteps", Some(2), "unknown key `mainSteps`"),
        (
            "schemaVersion: '1.2'\nruntimeConfig:\n  aws:runPowerShellScript:\n    properties:\n    - id: 0.aws:runPowerShellScript\n      \
             runCommand: [dir]\n",
            "runtimeConfig.aws:runPowerShellScript",
            Some(3),
            "step `0.aws-runPowerShellScript` uses `aws:runPowerShellScript`, which runs only on Windows",
        ),
        (
            "schemaVersion: '2.0'\nmainSteps:\n- action: aws:runPowerShellScript\n  name: win\n  inputs: {runCommand: [dir]}\n",
            "mainSteps[0].action",
            Some(3),
            "a schema 1.2 or 2.0 document fails on a platform",
        ),
        (
            "schemaVersion: '2.0'\nmainSteps:\n- action: aws:runShellScript\n  name: s\n  inputs: {runCommand: [x]}\n  \
             precondition: {StringEquals: [platformType, Linux]}\n",
            "mainSteps[0].precondition",
            Some(6),
            "a precondition needs schemaVersion 2.2",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runPowerShellScript\n  name: win\n  inputs: {runCommand: [dir]}\n  \
             precondition: {StringEquals: [platformType, Linux]}\n",
            "mainSteps[0].action",
            Some(3),
            "which runs only on Windows, and its precondition says Linux",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runPowerShellScript\n  name: win\n  inputs: {runCommand: [dir]}\n",
            "mainSteps",
            Some(2),
            "no step of this document runs on Linux (skipped as for another platform: `win` (aws:runPowerShellScript))",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:softwareInventory\n  name: inv\n  inputs: {applications: \
             Enabled, registry: x}\n",
            "mainSteps[0].inputs.registry",
            Some(5),
            "step `inv` (aws:softwareInventory) has unknown input `registry`",
        ),
        (
            "schemaVersion: '1.2'\nruntimeConfig:\n  aws:runShellScript:\n    properties:\n    - id: a b\n      \
             runCommand: ['echo {{ nope }}']\n",
            "runtimeConfig.aws:runShellScript.properties[0].runCommand[0]",
            Some(6),
            "`{{ nope }}` refers to a parameter the document does not declare",
        ),
        (
            "schemaVersion: '2.2'\nparameters:\n  p: {type: String, interpolationType: SHELL}\nmainSteps:\n- action: \
             aws:runShellScript\n  name: s\n  inputs: {runCommand: [x]}\n",
            "parameters.p.interpolationType",
            Some(3),
            "interpolationType `SHELL` is not supported",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:downloadContent\n  name: fetch\n",
            "mainSteps[0].action",
            Some(3),
            "step `fetch` uses `aws:downloadContent`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: run:shell\n  name: native\n  inputs: {commands: [x]}\n",
            "mainSteps[0].action",
            Some(3),
            "step `native` uses `run:shell`, which cannot be imported",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runShellScript\n  name: s\n  inputs:\n    runCommand: [x]\n    \
             onFailure: exit\n",
            "mainSteps[0].inputs.onFailure",
            Some(7),
            "step `s` (aws:runShellScript) has unknown input `onFailure`",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runDocument\n  name: d\n  inputs:\n    documentType: LocalPath\n    \
             documentPath: /tmp/doc.json\n",
            "mainSteps[0].inputs.documentType",
            Some(6),
            "runs a document from `LocalPath`; only documentType SSMDocument",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runDocument\n  name: d\n  inputs:\n    documentType: SSMDocument\n    \
             documentPath: arn:aws:ssm:eu-west-1:123456789012:document/Shared\n",
            "mainSteps[0].inputs.documentPath",
            Some(7),
            "runs a document from `arn:aws:ssm",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runDocument\n  name: d\n  inputs:\n    documentType: SSMDocument\n    \
             documentPath: '{{ missing }}'\n",
            "mainSteps[0].inputs.documentPath",
            Some(7),
            "`{{ missing }}` refers to a parameter the document does not declare",
        ),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runShellScript\n  name: s\n  inputs: {runCommand: [x]}\nassumeRole: r\n",
            "assumeRole",
            Some(6),
            "unknown key `assumeRole`",
        ),
    ];

    #[test]
    fn refuses_what_would_change_meaning() {
        for (text, path, line, fragment) in REFUSED {
            let error = import_ssm(text).expect_err(fragment);
            let message = error.to_string();
            assert!(message.contains(fragment), "{text}\n=> {message}");
            let position = error.position().expect("position");
            assert_eq!(position.path.to_string(), *path, "{message}");
            assert_eq!(position.location.map(|l| l.line), *line, "{message}");
        }
    }
}
