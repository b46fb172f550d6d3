//! Desired-state actions in documents: inputs checked when parsed and again when planned, and
//! `Flotilla-DesiredState`'s list, one planned step per element.

use std::collections::BTreeMap;

use flotilla_document::{DESIRED_STATE, Document, builtin_documents};

fn doc(steps: &str) -> Result<Document, String> {
    Document::parse(&format!(
        "schemaVersion: '2.2'\nparameters:\n  text: {{type: String, default: hi}}\n  many: {{type: StringList, default: []}}\nmainSteps:\n{steps}"
    ))
    .map_err(|e| e.to_string())
}

fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()])).collect()
}

fn none(_: &str, _: Option<&str>) -> Option<Document> {
    None
}

#[test]
fn literal_inputs_are_checked_when_the_document_is_parsed() {
    let cases = [
        (
            "- {action: file:write, name: w, inputs: {path: /etc/motd, content: x, mode: '999'}}\n",
            "step `w` (file:write): `mode` \"999\" is not an octal mode",
        ),
        (
            "- {action: file:write, name: w, inputs: {path: etc/motd, content: x}}\n",
            "`path` \"etc/motd\" is not an absolute path",
        ),
        (
            "- {action: file:write, name: w, inputs: {path: /etc/motd, content: x, perms: '0644'}}\n",
            "step `w` (file:write) has unknown input `perms`; its inputs are: path, content, mode, owner, group",
        ),
        (
            "- {action: file:write, name: w, inputs: {path: /etc/motd}}\n",
            "step `w` (file:write) needs the input `content`; add it",
        ),
        ("- {action: sysctl:ensure, name: k, inputs: {name: net.ipv4.ip_forward}}\n", "needs the input `value`"),
        ("- {action: service:ensure, name: s, inputs: {name: nginx, state: up}}\n", "is not one of: running, stopped"),
        ("- {action: package:ensure, name: p, inputs: {name: '-y'}}\n", "is not a package name"),
        (
            "- {action: file:absent, name: a, inputs: {path: '{{ nope }}'}}\n",
            "`{{ nope }}` refers to a parameter the document does not declare",
        ),
        ("- {action: file:absent, name: a, inputs: {path: '/x/{{ many }}'}}\n", "StringList parameter `many`"),
        ("- {action: file:remove, name: a, inputs: {path: /x}}\n", "file:remove"),
        (
            "- {action: state:apply, name: d, inputs: {resources: '[{\"action\":\"file:write\",\"path\":\"/a\",\"content\":\"\"},{\"action\":\"file:chmod\",\"path\":\"/b\"}]'}}\n",
            "resources[1].action `file:chmod` is not a desired-state action; use one of: file:write, file:absent",
        ),
    ];
    for (steps, fragment) in cases {
        let error = doc(steps).expect_err(steps);
        assert!(error.contains(fragment), "{steps}\n{error}");
    }
    let line =
        doc("- action: file:write\n  name: w\n  inputs:\n    path: /etc/motd\n    content: x\n    mode: '999'\n")
            .expect_err("bad mode");
    assert!(line.contains("mainSteps[0].inputs.mode (line 11"), "the line of the bad value is named: {line}");
}

#[test]
fn substituted_inputs_are_checked_again_when_planned_and_mixed_with_scripts() {
    let document = doc("- {action: run:shell, name: before, inputs: {commands: [echo before]}}\n\
         - {action: file:write, name: motd, inputs: {path: /etc/motd, content: '{{ text }}', mode: '0644'}}\n\
         - {action: file:write, name: dynamic, inputs: {path: '{{ text }}', content: '{{param:/motd/text}}'}}\n")
    .expect("valid: references are checked later");
    let bound = document.bind(&given(&[("text", "/srv/x")])).expect("bound");
    let plan = document.plan(&bound, &none).expect("plan");
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["before", "motd", "dynamic"]);
    let motd = &plan.steps[1].action;
    assert_eq!(motd.agent_action.as_deref(), Some("file:write"));
    assert_eq!(motd.agent_inputs["content"], "/srv/x");
    assert_eq!(motd.agent_inputs["mode"], "0644");
    assert!(motd.script.is_empty());
    assert_eq!(
        plan.steps[2].action.agent_inputs["content"], "{{param:/motd/text}}",
        "a Parameter Store reference stays unresolved in the plan"
    );
    let bound = document.bind(&given(&[("text", "relative")])).expect("bound");
    let error = document.plan(&bound, &none).expect_err("relative path");
    assert_eq!(
        error.to_string(),
        "step `dynamic` (file:write): `path` \"relative\" is not an absolute path; give the path as the node sees it, \
         e.g. /etc/motd; fix the document or the parameter values"
    );
}

fn desired_state() -> Document {
    let (_, text) = builtin_documents().into_iter().find(|(n, _)| *n == DESIRED_STATE).expect("built in");
    Document::parse(text).expect("parses")
}

#[test]
fn the_desired_state_document_plans_one_step_per_resource() {
    let document = desired_state();
    let resources = r#"[{"action":"file:write","path":"/etc/motd","content":"hi\n","mode":"0644"},
        {"action":"service:ensure","name":"nginx","enabled":true},
        {"action":"user:ensure","name":"alice","uid":1500,"groups":["wheel","docker"]},
        {"action":"sysctl:ensure","name":"net.ipv4.ip_forward","value":1}]"#;
    let bound = document.bind(&given(&[("resources", resources)])).expect("bound");
    let plan = document.plan(&bound, &none).expect("plan");
    let steps: Vec<(&str, &str)> =
        plan.steps.iter().map(|s| (s.name.as_str(), s.action.agent_action.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        steps,
        [
            ("desiredState.0", "file:write"),
            ("desiredState.1", "service:ensure"),
            ("desiredState.2", "user:ensure"),
            ("desiredState.3", "sysctl:ensure")
        ]
    );
    assert_eq!(plan.steps[0].action.agent_inputs["content"], "hi\n");
    assert_eq!(plan.steps[1].action.agent_inputs["enabled"], "true");
    assert_eq!(plan.steps[2].action.agent_inputs["groups"], "wheel,docker");
    assert_eq!(plan.steps[2].action.agent_inputs["uid"], "1500");
    assert_eq!(plan.steps[3].action.agent_inputs["value"], "1");
}

#[test]
fn a_bad_resource_is_refused_naming_its_index_and_field() {
    let document = desired_state();
    let cases = [
        (
            r#"[{"action":"file:write","path":"/a","content":""},{"action":"file:write","path":"/b","content":"","mode":"999"}]"#,
            "resources[1].mode: \"999\" is not an octal mode",
        ),
        (r#"[{"action":"file:write","path":"b","content":""}]"#, "resources[0].path: \"b\" is not an absolute path"),
        (
            r#"[{"action":"file:write","path":"/b","content":"","colour":"red"}]"#,
            "resources[0] (file:write): unknown input `colour`; this action takes: path, content, mode, owner, group",
        ),
        (r#"[{"action":"file:write","path":"/b"}]"#, "resources[0] (file:write): missing required input `content`"),
        (r#"[{"action":"cron:ensure","name":"x"}]"#, "resources[0].action `cron:ensure` is not a desired-state action"),
        (r#"[{"path":"/b"}]"#, "resources[0] has no `action`"),
        (r#"[{"action":"file:absent","path":{"a":1}}]"#, "resources[0].path is not a string, number or boolean"),
        (r#"{"action":"file:absent"}"#, "resources is not a JSON list"),
        ("not json", "resources is not JSON"),
    ];
    for (resources, fragment) in cases {
        let bound = document.bind(&given(&[("resources", resources)])).expect("bound");
        let error = document.plan(&bound, &none).expect_err(resources).to_string();
        assert!(error.starts_with("step `desiredState` (state:apply): "), "{error}");
        assert!(error.contains(fragment), "{resources}\n{error}");
    }
}
