//! The planned scripts, run by a real `sh`, print hostile parameter values back unchanged: the
//! values stayed data in every quoting context. (The library does no I/O; this test runs the
//! system shell to check the library's claim against the real thing.)

use std::collections::BTreeMap;
use std::process::Command;

use flotilla_document::{Document, ShellStep};
use proptest::prelude::*;

/// Each line prints the value in one context, framed by `<` and `>` so lost spaces show.
const CONTEXTS: &str = r##"
schemaVersion: "2.2"
parameters:
  v: {type: String}
mainSteps:
  - action: run:shell
    name: contexts
    inputs:
      commands:
        - printf '<%s>\n' {{ v }}
        - printf '<%s>\n' "{{ v }}"
        - printf '<%s>\n' '{{ v }}'
        - printf '<%s>\n' x{{ v }}y
        - cat <<EOF
        - <{{ v }}>
        - EOF
        - printf '<%s>\n' "$( printf '%s' "{{ v }}" )"
        - "# a comment mentioning {{ v }} changes nothing"
"##;

/// A StringList other than `commands`, as whole lines: each item is at most one command word.
const ITEMS: &str = r#"
schemaVersion: "2.2"
parameters:
  items: {type: StringList}
mainSteps:
  - action: run:shell
    name: items
    inputs:
      commands: ['{{ items }}', printf done]
"#;

fn plan_with(text: &str, given: &[(&str, Vec<String>)]) -> ShellStep {
    let document = Document::parse(text).expect("valid");
    let given: BTreeMap<String, Vec<String>> = given.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    let bound = document.bind(&given).expect("binds");
    let mut plan = document.plan(&bound, &|_, _| None).expect("plans");
    plan.steps.remove(0).action
}

fn plan(value: &str) -> ShellStep {
    plan_with(CONTEXTS, &[("v", vec![value.to_owned()])])
}

// The ban routes node processes through the agent's wrapper; this test runs the system shell
// only to check the plan's claim against a real `sh`, on no node.
#[allow(clippy::disallowed_methods)]
fn run(step: &ShellStep) -> (String, String) {
    let output = Command::new("sh")
        .arg("-c")
        .arg(&step.script)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(&step.env)
        .output()
        .expect("sh runs");
    assert!(output.status.success(), "{}\n{}", step.script, String::from_utf8_lossy(&output.stderr));
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn expected(value: &str) -> String {
    let mut out = String::new();
    for framed in [value.to_owned(), value.to_owned(), value.to_owned(), format!("x{value}y"), value.to_owned()] {
        out.push_str(&format!("<{framed}>\n"));
    }
    // `$( )` drops trailing newlines, as command substitution always does.
    out.push_str(&format!("<{}>\n", value.trim_end_matches('\n')));
    out
}

#[test]
fn hostile_values_come_back_unchanged() {
    let values = [
        "; rm -rf / ; echo owned",
        "$(echo owned)",
        "`echo owned`",
        "\"; echo owned; \"",
        "'; echo owned; '",
        "line one\necho owned",
        "${HOME} $PATH $0",
        "  spaced   out  ",
        "*",
        "a\\b\\",
        "EOF",
        "",
        "-n",
        "%s %d",
    ];
    for value in values {
        let step = plan(value);
        assert_eq!(run(&step).0, expected(value), "{value:?}\n{}", step.script);
    }
}

#[test]
fn list_items_as_lines_are_single_command_words() {
    let items: Vec<String> =
        ["echo owned", "; echo owned", "$(echo owned >&2)", "true && echo owned"].map(str::to_owned).to_vec();
    let step = plan_with(ITEMS, &[("items", items)]);
    let (stdout, stderr) = run(&step);
    // Each item was looked up as a program name and not found; nothing it spelled ran.
    assert_eq!(stdout, "done");
    assert!(!stderr.lines().any(|line| line == "owned"), "{stderr}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_values_come_back_unchanged(value in "[ -~\t\né☃]{0,30}") {
        let step = plan(&value);
        prop_assert_eq!(run(&step).0, expected(&value));
    }
}
