//! Table tests of event patterns (matching and the where-and-what of refusals) and property
//! tests: matching is total, exact and anything-but are complements, numeric ranges hold exactly.

use super::*;
use proptest::prelude::*;

fn json(v: &serde_json::Value) -> Json {
    match v {
        serde_json::Value::Null => Json::Null,
        serde_json::Value::Bool(b) => Json::Bool(*b),
        serde_json::Value::Number(n) => Json::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Json::String(s.clone()),
        serde_json::Value::Array(a) => Json::Array(a.iter().map(json).collect()),
        serde_json::Value::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), json(v))).collect()),
    }
}

fn pattern(text: &str) -> Result<Pattern, PatternError> {
    Pattern::parse(&json(&serde_json::from_str(text).expect("test JSON")))
}

fn event(text: &str) -> Json {
    json(&serde_json::from_str(text).expect("test JSON"))
}

const EVENT: &str = r#"{"type": "Assessment.Completed", "source": "flotilla.assessments",
    "resources": ["run-1", "n-7"],
    "detail": {"status": "Completed", "node_count": 12, "counts": {"High": 3, "Low": 0},
               "rules": ["cve", "network-reachability"], "template": null, "ok": true}}"#;

#[test]
fn matching_table() {
    let table: &[(&str, bool)] = &[
        (r#"{"type": ["Assessment.Completed"]}"#, true),
        (r#"{"type": ["Finding.Reported", "Assessment.Completed"]}"#, true),
        (r#"{"type": ["Finding.Reported"]}"#, false),
        (r#"{"source": [{"prefix": "flotilla."}]}"#, true),
        (r#"{"source": [{"prefix": "aws."}]}"#, false),
        (r#"{"resources": ["n-7"]}"#, true),
        (r#"{"resources": [{"prefix": "run-"}]}"#, true),
        (r#"{"detail": {"status": ["Completed"]}}"#, true),
        (r#"{"detail": {"status": [{"anything-but": "Completed"}]}}"#, false),
        (r#"{"detail": {"status": [{"anything-but": ["Failed", "Created"]}]}}"#, true),
        (r#"{"detail": {"status": [{"anything-but": {"prefix": "Comp"}}]}}"#, false),
        (r#"{"detail": {"status": [{"anything-but": {"prefix": "Fail"}}]}}"#, true),
        (r#"{"detail": {"node_count": [{"numeric": [">", 10]}]}}"#, true),
        (r#"{"detail": {"node_count": [{"numeric": [">", 0, "<=", 12]}]}}"#, true),
        (r#"{"detail": {"node_count": [{"numeric": [">=", 13]}]}}"#, false),
        (r#"{"detail": {"node_count": [{"numeric": ["=", 12]}]}}"#, true),
        (r#"{"detail": {"node_count": [12]}}"#, true),
        (r#"{"detail": {"node_count": [12.0]}}"#, true),
        (r#"{"detail": {"node_count": ["12"]}}"#, false),
        (r#"{"detail": {"counts": {"High": [{"numeric": [">", 0]}]}}}"#, true),
        (r#"{"detail": {"counts": {"Low": [{"numeric": [">", 0]}]}}}"#, false),
        (r#"{"detail": {"counts": {"Medium": [{"exists": false}]}}}"#, true),
        (r#"{"detail": {"counts": {"High": [{"exists": true}]}}}"#, true),
        (r#"{"detail": {"missing": [{"exists": false}]}}"#, true),
        (r#"{"detail": {"missing": [{"exists": true}]}}"#, false),
        (r#"{"detail": {"missing": {"deeper": [{"exists": false}]}}}"#, true),
        (r#"{"detail": {"missing": [{"anything-but": "x"}]}}"#, false),
        (r#"{"detail": {"rules": ["cve"]}}"#, true),
        (r#"{"detail": {"rules": [{"prefix": "network"}]}}"#, true),
        (r#"{"detail": {"rules": ["patch"]}}"#, false),
        (r#"{"detail": {"template": [null]}}"#, true),
        (r#"{"detail": {"template": [{"exists": true}]}}"#, true),
        (r#"{"detail": {"ok": [true]}}"#, true),
        (r#"{"detail": {"ok": [false]}}"#, false),
        (r#"{"detail": {"status": [{"prefix": "C"}]}, "type": ["Assessment.Completed"]}"#, true),
        (r#"{"detail": {"status": ["Completed"]}, "type": ["Finding.Reported"]}"#, false),
        (r#"{"detail": {"status": [{"numeric": [">", 1]}]}}"#, false),
    ];
    let e = event(EVENT);
    for (p, want) in table {
        let parsed = pattern(p).unwrap_or_else(|err| panic!("{p}: {err}"));
        assert_eq!(parsed.matches(&e), *want, "{p}");
    }
}

#[test]
fn errors_say_where_and_what() {
    let table: &[(&str, &str, &str)] = &[
        ("[]", "(top)", "is an object"),
        ("{}", "(top)", "every event"),
        (r#"{"typ": ["X"]}"#, "typ", "unknown field `typ`"),
        (r#"{"type": "Assessment.Completed"}"#, "type", "list of values"),
        (r#"{"type": []}"#, "type", "empty list"),
        (r#"{"detail": ["x"]}"#, "detail", "object of detail fields"),
        (r#"{"detail": {"status": "x"}}"#, "detail.status", "list of values"),
        (r#"{"detail": {}}"#, "detail", "empty object"),
        (r#"{"detail": {"a": {"b": ["x", {"prefx": "y"}]}}}"#, "detail.a.b[1]", "unknown matcher `prefx`"),
        (r#"{"source": [{"prefix": 3}]}"#, "source[0]", "`prefix` takes a string"),
        (r#"{"source": [{"prefix": "a", "exists": true}]}"#, "source[0]", "exactly one"),
        (r#"{"source": [["a"]]}"#, "source[0]", "list inside a list"),
        (r#"{"detail": {"n": [{"exists": "yes"}]}}"#, "detail.n[0]", "true or false"),
        (r#"{"detail": {"n": [{"numeric": [">", 1, ">", 2]}]}}"#, "detail.n[0]", "one lower bound"),
        (r#"{"detail": {"n": [{"numeric": [">", 5, "<", 2]}]}}"#, "detail.n[0]", "range is empty"),
        (r#"{"detail": {"n": [{"numeric": [">", 2, "<", 2]}]}}"#, "detail.n[0]", "range is empty"),
        (r#"{"detail": {"n": [{"numeric": ["~", 1]}]}}"#, "detail.n[0].numeric[0]", "unknown operator"),
        (r#"{"detail": {"n": [{"numeric": [">", "1"]}]}}"#, "detail.n[0].numeric[0]", "followed by a number"),
        (r#"{"detail": {"n": [{"numeric": [">"]}]}}"#, "detail.n[0]", "one or two comparisons"),
        (r#"{"detail": {"n": [{"numeric": ["=", 1, "<", 3]}]}}"#, "detail.n[0]", "`=` alone"),
        (r#"{"detail": {"n": [{"anything-but": []}]}}"#, "detail.n[0]", "empty list"),
        (r#"{"detail": {"n": [{"anything-but": [true]}]}}"#, "detail.n[0].anything-but[0]", "string or a number"),
        (r#"{"detail": {"n": [{"anything-but": {"suffix": "x"}}]}}"#, "detail.n[0]", "prefix"),
    ];
    for (p, path, what) in table {
        let e = pattern(p).expect_err(p);
        assert_eq!(e.path, *path, "{p}: {e}");
        assert!(e.message.contains(what), "{p}: {e}");
        assert!(e.to_string().contains(&format!("`{path}`")), "{e}");
    }
}

#[test]
fn exact_values_name_their_paths() {
    let p = pattern(r#"{"type": ["A.B", {"prefix": "C"}, "D.E"]}"#).expect("valid");
    let got: Vec<(String, Json)> = p.exact_values("type").into_iter().map(|(k, v)| (k, v.clone())).collect();
    assert_eq!(got, [("type[0]".into(), Json::String("A.B".into())), ("type[2]".into(), Json::String("D.E".into()))]);
}

fn scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-1000i32..1000).prop_map(|n| Json::Number(f64::from(n))),
        "[a-c]{0,3}".prop_map(Json::String),
    ]
}

fn value() -> impl Strategy<Value = Json> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            proptest::collection::vec(("[a-c]", inner), 0..4).prop_map(Json::Object),
        ]
    })
}

proptest! {
    /// Matching never panics on any pattern that parses and any event.
    #[test]
    fn matching_is_total(p in value(), e in value()) {
        let wrapped = Json::Object(vec![("detail".into(), p)]);
        if let Ok(parsed) = Pattern::parse(&wrapped) {
            let _ = parsed.matches(&Json::Object(vec![("detail".into(), e)]));
        }
    }

    /// An exact matcher matches its own value; anything-but of it never does; they are
    /// complements for scalars that are strings or numbers.
    #[test]
    fn exact_and_anything_but_are_complements(want in scalar(), got in scalar()) {
        let field = |m: Json| Json::Object(vec![("detail".into(), Json::Object(vec![("f".into(), Json::Array(vec![m]))]))]);
        let ev = Json::Object(vec![("detail".into(), Json::Object(vec![("f".into(), got.clone())]))]);
        let exact = Pattern::parse(&field(want.clone())).expect("a scalar parses");
        prop_assert_eq!(exact.matches(&ev), scalar_eq(&want, &got));
        if matches!(want, Json::String(_) | Json::Number(_)) {
            let but = Pattern::parse(&field(Json::Object(vec![("anything-but".into(), want.clone())]))).expect("parses");
            prop_assert_eq!(but.matches(&ev), !scalar_eq(&want, &got));
        }
    }

    /// A numeric range holds exactly for the numbers inside it.
    #[test]
    fn numeric_ranges(lo in -100i32..100, width in 0i32..100, n in -300i32..300) {
        let hi = lo + width;
        let m = Json::Object(vec![("numeric".into(), Json::Array(vec![
            Json::String(">=".into()), Json::Number(f64::from(lo)), Json::String("<=".into()), Json::Number(f64::from(hi)),
        ]))]);
        let p = Pattern::parse(&Json::Object(vec![("detail".into(), Json::Object(vec![("n".into(), Json::Array(vec![m]))]))])).expect("parses");
        let ev = Json::Object(vec![("detail".into(), Json::Object(vec![("n".into(), Json::Number(f64::from(n)))]))]);
        prop_assert_eq!(p.matches(&ev), lo <= n && n <= hi);
    }
}
