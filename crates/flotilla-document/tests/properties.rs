//! Property tests: parsers never panic, and parameter values never become script text.

use std::collections::BTreeMap;

use flotilla_document::{Document, builtin_documents, import_ssm};
use proptest::prelude::*;

/// A document using every single-valued kind and a non-`commands` StringList in scripts, in
/// every quoting context. `☃` appears nowhere in it.
const TEMPLATE: &str = r##"
schemaVersion: "2.2"
parameters:
  text: {type: String}
  items: {type: StringList, default: []}
  number: {type: Integer, default: 7}
  flag: {type: Boolean, default: true}
mainSteps:
  - action: run:shell
    name: everywhere
    inputs:
      commands:
        - echo {{ text }} {{number}} {{ flag }}
        - echo "in double {{ text }}"
        - echo 'in single {{ text }}'
        - "echo $'ansi {{ text }}'"
        - '{{ items }}'
        - cat <<EOF
        - body {{ text }}
        - EOF
        - "# comment {{ text }}"
"##;

const RUN_SCRIPT_WITH_MESSAGE: &str = r#"
schemaVersion: "2.2"
parameters:
  commands: {type: StringList}
  message: {type: String}
mainSteps:
  - action: run:shell
    name: s
    inputs:
      commands: ["{{ commands }}", "echo {{ message }}"]
"#;

fn no_documents(_: &str, _: Option<&str>) -> Option<Document> {
    None
}

fn script_for(document: &Document, given: &BTreeMap<String, Vec<String>>) -> (String, BTreeMap<String, String>) {
    let bound = document.bind(given).expect("values bind");
    let mut plan = document.plan(&bound, &no_documents).expect("plans");
    let step = plan.steps.remove(0).action;
    (step.script, step.env)
}

/// Text heavy in shell syntax, starting with a marker so it cannot occur in the document by chance.
fn hostile() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\n\t;$`'\"\\\\(){}|&<>*é]{0,40}")
        .expect("valid regex")
        .prop_map(|tail| format!("☃{tail}"))
}

proptest! {
    #[test]
    fn values_never_reach_the_script(a in hostile(), b in hostile(), items in proptest::collection::vec(hostile(), 0..4)) {
        let document = Document::parse(TEMPLATE).expect("valid");
        let given = |text: &str| BTreeMap::from([
            ("text".to_owned(), vec![text.to_owned()]),
            ("items".to_owned(), items.clone()),
        ]);
        let (script_a, env_a) = script_for(&document, &given(&a));
        let (script_b, _) = script_for(&document, &given(&b));
        // The script does not depend on the values at all ...
        prop_assert_eq!(&script_a, &script_b);
        prop_assert!(!script_a.contains('☃'));
        // ... they travel in the environment instead.
        prop_assert_eq!(env_a.get("FLOTILLA_PARAM_text"), Some(&a));
        for (i, item) in items.iter().enumerate() {
            prop_assert_eq!(env_a.get(&format!("FLOTILLA_ITEM_items_{i}")), Some(item));
        }
    }

    #[test]
    fn only_the_commands_parameter_becomes_script(
        commands in proptest::collection::vec("[a-z ;|$'\"]{0,20}", 1..4),
        message in hostile(),
    ) {
        let document = Document::parse(RUN_SCRIPT_WITH_MESSAGE).expect("valid");
        let given = BTreeMap::from([
            ("commands".to_owned(), commands.clone()),
            ("message".to_owned(), vec![message.clone()]),
        ]);
        let (script, env) = script_for(&document, &given);
        let mut lines: Vec<&str> = script.split('\n').collect();
        let last = lines.pop();
        prop_assert_eq!(lines, commands.iter().map(String::as_str).collect::<Vec<_>>());
        // The spelling of the reference depends on quotes the operator's lines left open.
        let reference = "${FLOTILLA_PARAM_message}";
        prop_assert!(last.is_some_and(|l| l.starts_with("echo ") && l.contains(reference)));
        prop_assert!(!script.contains('☃'));
        prop_assert_eq!(env.get("FLOTILLA_PARAM_message"), Some(&message));
    }

    #[test]
    fn parse_and_import_never_panic_on_any_text(text in any::<String>()) {
        let _ = Document::parse(&text);
        let _ = import_ssm(&text);
    }

    #[test]
    fn parse_and_import_never_panic_on_damaged_documents(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
    ) {
        const ALPHABET: &[char] = &[' ', '\n', ':', '-', '{', '}', '[', ']', '"', '\'', ',', '#', '&', '*', '!', '|', '>', 'x', '0', '\t'];
        let texts = [builtin_documents()[0].1, TEMPLATE, RUN_SCRIPT_WITH_MESSAGE];
        let mut chars: Vec<char> = texts[which].chars().collect();
        for (at, with) in edits {
            let i = at.index(chars.len());
            chars[i] = ALPHABET[with.index(ALPHABET.len())];
        }
        let text: String = chars.into_iter().collect();
        if let Ok(document) = Document::parse(&text) {
            // Whatever survives parsing binds and plans without panicking.
            if let Ok(bound) = document.bind(&BTreeMap::from([("commands".to_owned(), vec!["x".to_owned()])])) {
                let _ = document.plan(&bound, &no_documents);
            }
        }
        let _ = import_ssm(&text);
    }

    #[test]
    fn bind_never_panics(given in proptest::collection::btree_map("[a-zA-Z]{1,16}", proptest::collection::vec(any::<String>(), 0..3), 0..5)) {
        let document = Document::parse(TEMPLATE).expect("valid");
        if let Ok(bound) = document.bind(&given) {
            let _ = document.plan(&bound, &no_documents);
        }
    }
}
