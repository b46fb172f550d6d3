//! Importing AWS SSM documents from tests/data and planning them.

use std::collections::BTreeMap;

use flotilla_document::{Action, Document, DocumentError, Platform, builtin_documents, import_ssm, parse_cli_params};

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn builtins(name: &str, _version: Option<&str>) -> Option<Document> {
    builtin_documents().into_iter().find(|(n, _)| *n == name).and_then(|(_, text)| Document::parse(text).ok())
}

#[test]
fn aws_run_shell_script_imports_with_the_same_meaning() {
    let document = import_ssm(&data("aws-run-shell-script.json")).expect("imports");
    let step = &document.steps()[0];
    assert_eq!(step.name, "runShellScript");
    assert_eq!(step.precondition, Some(Platform::Linux));
    let Action::Shell(shell) = &step.action else { panic!("run:shell") };
    assert_eq!(shell.commands, ["{{ commands }}"]);
    assert_eq!(shell.working_directory.as_deref(), Some("{{ workingDirectory }}"));
    assert_eq!(shell.timeout_seconds.as_deref(), Some("{{ executionTimeout }}"));
    assert_eq!(document.parameters()["commands"].min_items, Some(1));
    assert_eq!(document.parameters()["workingDirectory"].max_chars, Some(4096));
}

#[test]
fn aws_run_shell_script_plans_like_the_builtin() {
    let imported = import_ssm(&data("aws-run-shell-script.json")).expect("imports");
    let builtin = builtins("Flotilla-RunShellScript", None).expect("built in");
    let given =
        parse_cli_params(["commands=cd /tmp", "commands=ls -la", "executionTimeout=900", "workingDirectory=/opt"])
            .expect("pairs");
    let imported_plan = imported.plan(&imported.bind(&given).expect("binds"), &builtins).expect("plans");
    let builtin_plan = builtin.plan(&builtin.bind(&given).expect("binds"), &builtins).expect("plans");
    assert_eq!(imported_plan.steps.len(), 1);
    assert_eq!(imported_plan.steps[0].action, builtin_plan.steps[0].action);
    assert_eq!(imported_plan.steps[0].action.script, "cd /tmp\nls -la");
    assert_eq!(imported_plan.steps[0].action.timeout_seconds, 900);
    assert_eq!(imported_plan.steps[0].precondition, Some(Platform::Linux));

    // The AWS pattern bounds the timeout the way AWS does.
    let over = parse_cli_params(["commands=ls", "executionTimeout=172801"]).expect("pairs");
    assert!(imported.bind(&over).is_err());
    let none = parse_cli_params(["workingDirectory=/opt"]).expect("pairs");
    assert!(imported.bind(&none).is_err(), "commands is required");
}

#[test]
fn aws_yaml_with_run_document_plans_through_the_builtin() {
    let document = import_ssm(&data("aws-nested.yaml")).expect("imports");
    let given = parse_cli_params(["commands=systemctl restart app", "stage=production"]).expect("pairs");
    let plan = document.plan(&document.bind(&given).expect("binds"), &builtins).expect("plans");
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["prepare", "runScript.runShellScript"]);
    let prepare = &plan.steps[0].action;
    assert_eq!(prepare.script, "echo \"preparing for ${FLOTILLA_PARAM_stage}\"\nmkdir -p /var/tmp/flotilla");
    assert_eq!(prepare.env, BTreeMap::from([("FLOTILLA_PARAM_stage".to_owned(), "production".to_owned())]));
    assert_eq!(prepare.timeout_seconds, 120);
    let run = &plan.steps[1].action;
    assert_eq!(run.script, "systemctl restart app");
    assert_eq!(run.working_directory.as_deref(), Some("/var/tmp/flotilla"));

    let bad_stage = parse_cli_params(["commands=true", "stage=dev"]).expect("pairs");
    let error = document.bind(&bad_stage).expect_err("not allowed");
    assert!(error.to_string().contains("value \"dev\" is not allowed for parameter `stage`"), "{error}");
}

#[test]
fn aws_powershell_is_refused_naming_action_and_step() {
    let error = import_ssm(&data("aws-powershell.json")).expect_err("refused");
    match &error {
        DocumentError::UnsupportedAwsAction { step, action, at } => {
            assert_eq!((step.as_str(), action.as_str()), ("listTemp", "aws:runPowerShellScript"));
            assert_eq!(at.path.to_string(), "mainSteps[0].action");
            assert_eq!(at.location.map(|l| l.line), Some(6));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn native_parse_refuses_aws_documents_and_points_to_the_import() {
    let error = Document::parse(&data("aws-run-shell-script.json")).expect_err("aws action");
    assert!(error.to_string().contains("convert AWS documents with import_ssm"), "{error}");
}
