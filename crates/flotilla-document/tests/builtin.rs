//! The built-in documents parse and plan as documented.

use std::collections::BTreeMap;

use flotilla_document::{
    Document, ParameterError, ParameterType, ParameterValue, PlanError, RUN_SHELL_SCRIPT, builtin_documents,
    parse_cli_params,
};

fn run_shell_script() -> Document {
    let (_, text) = builtin_documents().into_iter().find(|(name, _)| *name == RUN_SHELL_SCRIPT).expect("built in");
    Document::parse(text).expect("the built-in parses")
}

fn no_documents(_: &str, _: Option<&str>) -> Option<Document> {
    None
}

fn plan(params: &[&str]) -> Result<flotilla_document::Plan, String> {
    let document = run_shell_script();
    let given = parse_cli_params(params).map_err(|e| e.to_string())?;
    let bound = document.bind(&given).map_err(|e| e.to_string())?;
    document.plan(&bound, &no_documents).map_err(|e| e.to_string())
}

#[test]
fn run_shell_script_declares_the_aws_parameters() {
    let document = run_shell_script();
    assert_eq!(document.schema_version(), "2.2");
    let parameters = document.parameters();
    let kinds: Vec<(&str, ParameterType)> = parameters.iter().map(|(name, spec)| (name.as_str(), spec.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("commands", ParameterType::StringList),
            ("executionTimeout", ParameterType::String),
            ("workingDirectory", ParameterType::String),
        ]
    );
    assert_eq!(parameters["commands"].default, None);
    assert_eq!(parameters["workingDirectory"].default, Some(ParameterValue::String(String::new())));
    assert_eq!(parameters["executionTimeout"].default, Some(ParameterValue::String("3600".into())));
    assert_eq!(parameters["executionTimeout"].allowed_pattern.as_ref().map(|p| p.as_str()), Some("^[0-9]+$"));
    assert_eq!(document.steps().len(), 1);
    assert_eq!(document.steps()[0].name, "runShellScript");
}

#[test]
fn run_shell_script_plans_the_operators_commands() {
    let plan = plan(&["commands=set -e", "commands=echo \"$HOSTNAME\" | tee /tmp/x", "commands=uptime"]).expect("plan");
    assert_eq!(plan.steps.len(), 1);
    let step = &plan.steps[0];
    assert_eq!(step.name, "runShellScript");
    assert_eq!(step.precondition, None);
    assert_eq!(step.action.script, "set -e\necho \"$HOSTNAME\" | tee /tmp/x\nuptime");
    assert_eq!(step.action.working_directory, None);
    assert_eq!(step.action.timeout_seconds, 3600);
    assert!(step.action.env.is_empty());
}

#[test]
fn run_shell_script_data_parameters() {
    let plan = plan(&["commands=ls", "workingDirectory=/srv/my app", "executionTimeout=600"]).expect("plan");
    let step = &plan.steps[0].action;
    assert_eq!(step.working_directory.as_deref(), Some("/srv/my app"));
    assert_eq!(step.timeout_seconds, 600);
    assert_eq!(step.script, "ls");
}

#[test]
fn run_shell_script_refuses_bad_input() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "required parameter `commands` (StringList) was not given"),
        (&["commands=ls", "executionTimeout=1h"], "does not match its allowedPattern `^[0-9]+$`"),
        (&["commands=ls", "executionTimeout=4"], "timeout \"4\" is outside 5..=172800 seconds"),
        (&["commands=ls", "executionTimeout=200000"], "outside 5..=172800"),
        (&["commands=ls", "executionTimeout=60", "executionTimeout=70"], "takes exactly one value, but 2 were given"),
        (&["commands=ls", "workingDirectory=tmp"], "working directory \"tmp\" is not an absolute path"),
        (
            &["commands=ls", "timeout=60"],
            "unknown parameter `timeout`; this document takes: commands, executionTimeout, workingDirectory",
        ),
        (&["commands"], "`\"commands\"` is not NAME=VALUE"),
    ];
    for (params, fragment) in cases {
        let error = plan(params).expect_err(fragment);
        assert!(error.contains(fragment), "{params:?}: {error}");
    }
}

#[test]
fn typed_errors_are_matchable() {
    let document = run_shell_script();
    let missing = document.bind(&BTreeMap::new()).expect_err("missing");
    assert_eq!(missing, ParameterError::Missing { name: "commands".into(), kind: ParameterType::StringList });
    let given = parse_cli_params(["commands=ls", "workingDirectory=rel"]).expect("pairs");
    let bound = document.bind(&given).expect("binds");
    let error = document.plan(&bound, &no_documents).expect_err("relative");
    assert!(matches!(error, PlanError::InvalidWorkingDirectory { .. }), "{error:?}");
}
