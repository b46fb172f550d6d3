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
fn a_document_with_only_windows_steps_is_refused_naming_them() {
    let error = import_ssm(&data("aws-powershell.json")).expect_err("refused");
    match &error {
        DocumentError::NoLinuxSteps { skipped, at } => {
            assert_eq!(skipped, "`listTemp` (aws:runPowerShellScript)");
            assert_eq!(at.path.to_string(), "mainSteps");
            assert_eq!(at.location.map(|l| l.line), Some(4));
        }
        other => panic!("{other:?}"),
    }
}

/// What one planned step must be: name, script, working directory, timeout, environment.
struct Expected<'a> {
    name: &'a str,
    script: &'a str,
    working_directory: Option<&'a str>,
    timeout_seconds: u32,
    env: &'a [(&'a str, &'a str)],
    agent_action: Option<&'a str>,
}

const GIVEN_COMMANDS: &[&str] = &["commands=cd /tmp", "commands=echo \"in $(pwd)\"; ls -d ."];

/// (files holding the same document in JSON and YAML, --param arguments, the plan for a Linux node).
type GoodCase<'a> = (&'a [&'a str], &'a [&'a str], &'a [Expected<'a>]);

const GOOD: &[GoodCase<'_>] = &[
    (
        &["AWS-RunShellScript.json", "AWS-RunShellScript.yaml"],
        GIVEN_COMMANDS,
        &[Expected {
            name: "0.aws-runShellScript",
            script: "cd /tmp\necho \"in $(pwd)\"; ls -d .",
            working_directory: None,
            timeout_seconds: 3600,
            env: &[],
            agent_action: None,
        }],
    ),
    (
        &["ops-inventory-2.0.json"],
        &["stateDir=/var/lib/x; reboot"],
        &[
            Expected {
                name: "collectSoftwareInventoryItems",
                script: "",
                working_directory: None,
                timeout_seconds: 3600,
                env: &[],
                agent_action: Some("inventory:collect"),
            },
            Expected {
                name: "report",
                script: "echo inventory requested\necho state in \"${FLOTILLA_PARAM_stateDir}\"",
                working_directory: None,
                timeout_seconds: 60,
                env: &[("FLOTILLA_PARAM_stateDir", "/var/lib/x; reboot")],
                agent_action: None,
            },
        ],
    ),
    (
        &["ops-cross-platform-2.2.yaml", "ops-cross-platform-2.2.json"],
        &["commands=cd /tmp", "commands=echo \"in $(pwd)\"; ls -d .", "name=Bob; $(id)", "message=a'b"],
        &[Expected {
            name: "linuxGreet",
            script: "echo Hello \"${FLOTILLA_PARAM_name}\"\n\
                     echo \"env: $SSM_message; as written: ${SSM_message}\"\n\
                     cd /tmp\n\
                     echo \"in $(pwd)\"; ls -d .\n\
                     echo greeting from {{ssm:/ops/greeting}}",
            working_directory: None,
            timeout_seconds: 3600,
            env: &[("FLOTILLA_PARAM_name", "Bob; $(id)"), ("SSM_message", "a'b")],
            agent_action: None,
        }],
    ),
];

/// Real AWS documents and documents in AWS's published syntax import and plan, on a Linux node,
/// to what AWS would run there; JSON and YAML texts of one document plan the same.
#[test]
fn aws_documents_of_every_schema_plan_as_aws_runs_them() {
    for (files, params, expected) in GOOD {
        let given = parse_cli_params(params.iter()).expect("pairs");
        for file in *files {
            let document = import_ssm(&data(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let bound = document.bind(&given).unwrap_or_else(|e| panic!("{file}: {e}"));
            let plan = document.plan(&bound, &builtins).unwrap_or_else(|e| panic!("{file}: {e}"));
            // Steps for another platform are left to the server, which runs Linux steps only.
            let linux: Vec<_> =
                plan.steps.iter().filter(|s| s.precondition.is_none_or(|p| p == Platform::Linux)).collect();
            assert_eq!(linux.len(), expected.len(), "{file}: {:?}", plan.steps);
            for (step, want) in linux.iter().zip(expected.iter()) {
                let env: BTreeMap<String, String> =
                    want.env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
                assert_eq!(step.name, want.name, "{file}");
                assert_eq!(step.action.script, want.script, "{file}");
                assert_eq!(step.action.working_directory.as_deref(), want.working_directory, "{file}");
                assert_eq!(step.action.timeout_seconds, want.timeout_seconds, "{file}");
                assert_eq!(step.action.env, env, "{file}");
                assert_eq!(step.action.agent_action.as_deref(), want.agent_action, "{file}");
            }
        }
    }
}

#[test]
fn skipped_and_kept_steps_of_a_cross_platform_document() {
    let document = import_ssm(&data("ops-cross-platform-2.2.yaml")).expect("imports");
    let steps: Vec<(&str, Option<Platform>)> =
        document.steps().iter().map(|s| (s.name.as_str(), s.precondition)).collect();
    // The Windows step and the unconditional PowerShell step are skipped, as AWS skips them on Linux.
    assert_eq!(steps, [("linuxGreet", Some(Platform::Linux))]);
    assert!(document.is_script_parameter("commands"));
    assert!(!document.is_script_parameter("name"), "embedded uses stay values");
    assert!(!document.is_script_parameter("message"), "ENV_VAR is never script text");
    assert_eq!(import_ssm(&data("ops-cross-platform-2.2.json")), Ok(document));
}

/// (file, field path, line, message fragment).
const BAD: &[(&str, &str, u32, &str)] = &[
    (
        "AWS-RunPowerShellScript-1.2.json",
        "runtimeConfig.aws:runPowerShellScript",
        25,
        "step `0.aws-runPowerShellScript` uses `aws:runPowerShellScript`, which runs only on Windows, and a schema \
         1.2 or 2.0 document fails",
    ),
    ("bad-schema-version.yaml", "schemaVersion", 1, "schemaVersion `2.1` cannot be imported"),
    (
        "bad-null-required.json",
        "mainSteps[0].inputs",
        7,
        "step `nothing` (aws:runShellScript) needs the input `runCommand`",
    ),
    ("bad-null-document.yaml", "(document)", 1, "expected a mapping, found nothing (null)"),
];

#[test]
fn bad_aws_documents_are_refused_saying_what_and_where() {
    for (file, path, line, fragment) in BAD {
        let error = import_ssm(&data(file)).expect_err(file);
        let message = error.to_string();
        assert!(message.contains(fragment), "{file}: {message}");
        let position = error.position().expect("position");
        assert_eq!(position.path.to_string(), *path, "{file}: {message}");
        assert_eq!(position.location.map(|l| l.line), Some(*line), "{file}: {message}");
    }
}

#[test]
fn native_parse_refuses_aws_documents_and_points_to_the_import() {
    let error = Document::parse(&data("aws-run-shell-script.json")).expect_err("aws action");
    assert!(error.to_string().contains("convert AWS documents with import_ssm"), "{error}");
}
