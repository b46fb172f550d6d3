//! Importing AWS SSM command documents (schema 2.2, JSON or YAML) as Flotilla documents.
//!
//! The AWS tree is rewritten into a Flotilla tree and then read by the same rules as a native
//! document, so an imported document obeys every invariant a parsed one does.
//!
//! Invariant: meaning is kept or the import fails. `aws:runShellScript` (runCommand,
//! workingDirectory, timeoutSeconds) becomes `run:shell` with the same inputs;
//! `aws:runDocument` with documentType `SSMDocument` and a plain document name becomes
//! `run:document`. Any other action, input, document source or schema version is refused,
//! naming the step and what to change, rather than dropped. Parameters are read as they are:
//! Flotilla declares them exactly as SSM does.

use serde_yaml::{Mapping, Value};

use crate::action::{RUN_DOCUMENT, RUN_SHELL};
use crate::document::{Document, DocumentError, Position, SCHEMA_VERSION};
use crate::source::{self, FieldPath, tree};

const AWS_TOP_LEVEL_KEYS: &[&str] = &["schemaVersion", "description", "parameters", "mainSteps"];
const AWS_RUN_SHELL_SCRIPT: &str = "aws:runShellScript";
const AWS_RUN_DOCUMENT: &str = "aws:runDocument";
const AWS_SHELL_INPUTS: &[&str] = &["runCommand", "workingDirectory", "timeoutSeconds"];
const AWS_RUN_DOCUMENT_INPUTS: &[&str] = &["documentType", "documentPath", "documentParameters"];

/// Converts an AWS SSM command document (schemaVersion 2.2) into a Flotilla document.
pub fn import_ssm(text: &str) -> Result<Document, DocumentError> {
    let (aws, format) = source::load(text)?;
    let flotilla = translate(&aws).map_err(|e| e.located(text, format, FieldPath::clone))?;
    // Errors found after translation name Flotilla's `documentName`; the text says `documentPath`.
    Document::from_tree(&flotilla)
        .map_err(|e| e.located(text, format, |path| path.rename_key("documentName", "documentPath")))
}

fn translate(aws: &Value) -> Result<Value, DocumentError> {
    let root = FieldPath::root();
    let entries = tree::entries(aws, &root)?;
    let version_path = root.key("schemaVersion");
    let version = tree::scalar(tree::required(&entries, "schemaVersion", &root)?, &version_path)?;
    if version != SCHEMA_VERSION {
        return Err(DocumentError::UnsupportedAwsSchemaVersion { at: Position::at(&version_path), found: version });
    }
    tree::only_keys(&entries, AWS_TOP_LEVEL_KEYS, &root)?;
    let mut out = Mapping::new();
    for (key, value) in &entries {
        let path = root.key(key);
        let converted = match *key {
            "mainSteps" => steps(value, &path)?,
            _ => (*value).clone(),
        };
        out.insert(Value::String((*key).to_owned()), converted);
    }
    Ok(Value::Mapping(out))
}

fn steps(value: &Value, path: &FieldPath) -> Result<Value, DocumentError> {
    let Value::Sequence(items) = value else { return Ok(value.clone()) };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| step(item, &path.index(i)))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Sequence)
}

fn step(value: &Value, path: &FieldPath) -> Result<Value, DocumentError> {
    let entries = tree::entries(value, path)?;
    let name = tree::get(&entries, "name").and_then(|v| tree::scalar(v, &path.key("name")).ok()).unwrap_or_default();
    let Some(action_value) = tree::get(&entries, "action") else { return Ok(value.clone()) };
    let action_path = path.key("action");
    let action = tree::scalar(action_value, &action_path)?;
    let inputs_path = path.key("inputs");
    let empty = Value::Mapping(Mapping::new());
    let inputs = tree::get(&entries, "inputs").unwrap_or(&empty);
    let (flotilla_action, flotilla_inputs) = match action.as_str() {
        AWS_RUN_SHELL_SCRIPT => (RUN_SHELL, shell_inputs(&name, inputs, &inputs_path)?),
        AWS_RUN_DOCUMENT => (RUN_DOCUMENT, run_document_inputs(&name, inputs, &inputs_path)?),
        _ => {
            return Err(DocumentError::UnsupportedAwsAction { at: Position::at(&action_path), step: name, action });
        }
    };
    let mut out = Mapping::new();
    for (key, value) in &entries {
        let converted = match *key {
            "action" => Value::String(flotilla_action.to_owned()),
            "inputs" => flotilla_inputs.clone(),
            _ => (*value).clone(),
        };
        out.insert(Value::String((*key).to_owned()), converted);
    }
    if tree::get(&entries, "inputs").is_none() {
        out.insert(Value::String("inputs".to_owned()), flotilla_inputs);
    }
    Ok(Value::Mapping(out))
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
    // run:shell reads the SSM input names as they are.
    Ok(inputs.clone())
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

    /// (AWS document, path, line, message fragment).
    const REFUSED: &[(&str, &str, Option<u32>, &str)] = &[
        (
            "schemaVersion: '1.2'\nruntimeConfig: {}\n",
            "schemaVersion",
            Some(1),
            "schemaVersion `1.2` cannot be imported; only schema 2.2",
        ),
        ("schemaVersion: '2.0'\nmainSteps: []\n", "schemaVersion", Some(1), "update the document to 2.2"),
        (
            "schemaVersion: '2.2'\nmainSteps:\n- action: aws:runPowerShellScript\n  name: win\n  inputs: {runCommand: [dir]}\n",
            "mainSteps[0].action",
            Some(3),
            "step `win` uses `aws:runPowerShellScript`, which cannot be imported",
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
