//! Event patterns in EventBridge's form: which events a rule routes.
//!
//! A pattern is a JSON object over an event's `type`, `source`, `resources` and `detail`
//! fields. Each field of the pattern is either an object (a nested field, under `detail`) or a
//! list of matchers, any of which may match: an exact value (string, number, boolean, null),
//! `{"prefix": "..."}`, `{"anything-but": VALUE | [VALUES] | {"prefix": "..."}}`,
//! `{"numeric": [">", 0, "<=", 5]}` or `{"exists": true|false}`. All fields of the pattern must
//! match; an event field holding a list matches when any of its elements does (as in
//! EventBridge). A field the event does not have matches only `{"exists": false}`.
//!
//! Invariants: [`Pattern::parse`] refuses every malformed pattern with where (a path such as
//! `detail.status[1]`) and what, so a stored pattern always means something; matching never
//! fails and never panics. Pure: JSON arrives as [`Json`], converted by the caller.

use std::fmt;

/// A JSON value, as the caller's JSON library gives it (the core has no serde).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

/// Where a pattern is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event pattern at `{path}`: {message}")]
pub struct PatternError {
    /// `type`, `detail.status[1]`, ... (`(top)` for the pattern itself).
    pub path: String,
    pub message: String,
}

/// The fields a pattern may name at its top level.
pub const TOP_FIELDS: [&str; 4] = ["type", "source", "resources", "detail"];

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compare {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Compare {
    fn parse(s: &str) -> Option<Compare> {
        Some(match s {
            "<" => Compare::Lt,
            "<=" => Compare::Le,
            "=" => Compare::Eq,
            ">=" => Compare::Ge,
            ">" => Compare::Gt,
            _ => return None,
        })
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Compare::Lt => value < bound,
            Compare::Le => value <= bound,
            Compare::Eq => value == bound,
            Compare::Ge => value >= bound,
            Compare::Gt => value > bound,
        }
    }
}

/// One matcher of a field's list.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// Equal to this scalar (numbers compare as numbers).
    Exact(Json),
    Prefix(String),
    /// Present and none of these scalars.
    AnythingBut(Vec<Json>),
    /// Present, a string, and not starting with this.
    AnythingButPrefix(String),
    /// A number for which every comparison holds.
    Numeric(Vec<(Compare, f64)>),
    Exists(bool),
}

/// A field of the pattern: nested fields, or a list of alternatives.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Fields(Vec<(String, Node)>),
    AnyOf(Vec<Matcher>),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Vec<(String, Node)>,
}

fn err(path: &str, message: impl Into<String>) -> PatternError {
    PatternError { path: if path.is_empty() { "(top)".into() } else { path.into() }, message: message.into() }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn is_scalar(v: &Json) -> bool {
    matches!(v, Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_))
}

impl Pattern {
    /// Checks and parses a pattern. Only `type`, `source`, `resources` and `detail` may appear
    /// at the top; only `detail` may nest.
    pub fn parse(json: &Json) -> Result<Pattern, PatternError> {
        let Json::Object(fields) = json else {
            return Err(err(
                "",
                format!("a pattern is an object such as {{\"type\": [\"Assessment.Completed\"]}}, not {}", json.kind()),
            ));
        };
        if fields.is_empty() {
            return Err(err(
                "",
                "an empty pattern would match every event; name at least one field, e.g. {\"type\": [\"Assessment.Completed\"]}",
            ));
        }
        let mut root = Vec::new();
        for (key, value) in fields {
            if !TOP_FIELDS.contains(&key.as_str()) {
                return Err(err(key, format!("unknown field `{key}`: a pattern matches {}", TOP_FIELDS.join(", "))));
            }
            let node = if key == "detail" {
                match value {
                    Json::Object(_) => parse_node(value, key)?,
                    other => {
                        return Err(err(
                            key,
                            format!("`detail` takes an object of detail fields, not {}", other.kind()),
                        ));
                    }
                }
            } else {
                match value {
                    Json::Array(_) => parse_node(value, key)?,
                    other => {
                        return Err(err(
                            key,
                            format!("expected a list of values such as [\"...\"], not {}", other.kind()),
                        ));
                    }
                }
            };
            root.push((key.clone(), node));
        }
        Ok(Pattern { root })
    }

    /// The exact values the pattern gives for a top-level field (e.g. the event types named
    /// under `type`), with their paths, so the caller can check them against what exists.
    pub fn exact_values(&self, field: &str) -> Vec<(String, &Json)> {
        let mut out = Vec::new();
        for (key, node) in &self.root {
            if key == field
                && let Node::AnyOf(list) = node
            {
                for (i, m) in list.iter().enumerate() {
                    if let Matcher::Exact(v) = m {
                        out.push((format!("{key}[{i}]"), v));
                    }
                }
            }
        }
        out
    }

    /// Whether the event (an object with `type`, `source`, `resources`, `detail`) matches.
    pub fn matches(&self, event: &Json) -> bool {
        fields_match(&self.root, event)
    }
}

fn parse_node(value: &Json, path: &str) -> Result<Node, PatternError> {
    match value {
        Json::Object(fields) => {
            if fields.is_empty() {
                return Err(err(path, "an empty object matches nothing: name a field or remove it"));
            }
            let mut out = Vec::new();
            for (key, v) in fields {
                if key.is_empty() {
                    return Err(err(path, "a field name is empty"));
                }
                let sub = join(path, key);
                if !matches!(v, Json::Object(_) | Json::Array(_)) {
                    return Err(err(
                        &sub,
                        format!("expected a list of values such as [\"...\"] or an object, not {}", v.kind()),
                    ));
                }
                out.push((key.clone(), parse_node(v, &sub)?));
            }
            Ok(Node::Fields(out))
        }
        Json::Array(items) => {
            if items.is_empty() {
                return Err(err(path, "an empty list matches nothing: give at least one value"));
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(parse_matcher(item, &format!("{path}[{i}]"))?);
            }
            Ok(Node::AnyOf(out))
        }
        other => Err(err(path, format!("expected a list or an object, not {}", other.kind()))),
    }
}

fn parse_matcher(item: &Json, path: &str) -> Result<Matcher, PatternError> {
    if is_scalar(item) {
        return Ok(Matcher::Exact(item.clone()));
    }
    let Json::Object(fields) = item else {
        return Err(err(path, "a list inside a list is not a matcher: flatten it"));
    };
    let [(op, arg)] = fields.as_slice() else {
        return Err(err(path, "a matcher object has exactly one of prefix, anything-but, numeric, exists"));
    };
    match op.as_str() {
        "prefix" => match arg {
            Json::String(p) => Ok(Matcher::Prefix(p.clone())),
            other => Err(err(path, format!("`prefix` takes a string, not {}", other.kind()))),
        },
        "exists" => match arg {
            Json::Bool(b) => Ok(Matcher::Exists(*b)),
            other => Err(err(path, format!("`exists` takes true or false, not {}", other.kind()))),
        },
        "anything-but" => match arg {
            Json::Array(values) => {
                if values.is_empty() {
                    return Err(err(
                        path,
                        "`anything-but` with an empty list would match every value: give at least one",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if !matches!(v, Json::String(_) | Json::Number(_)) {
                        return Err(err(
                            &format!("{path}.anything-but[{i}]"),
                            format!("expected a string or a number, not {}", v.kind()),
                        ));
                    }
                }
                Ok(Matcher::AnythingBut(values.clone()))
            }
            Json::String(_) | Json::Number(_) => Ok(Matcher::AnythingBut(vec![arg.clone()])),
            Json::Object(inner) => match inner.as_slice() {
                [(k, Json::String(p))] if k == "prefix" => Ok(Matcher::AnythingButPrefix(p.clone())),
                _ => Err(err(path, "`anything-but` takes a value, a list of values or {\"prefix\": \"...\"}")),
            },
            other => Err(err(
                path,
                format!("`anything-but` takes a string, a number or a list of them, not {}", other.kind()),
            )),
        },
        "numeric" => parse_numeric(arg, path),
        other => Err(err(path, format!("unknown matcher `{other}`: use prefix, anything-but, numeric or exists"))),
    }
}

fn parse_numeric(arg: &Json, path: &str) -> Result<Matcher, PatternError> {
    let Json::Array(items) = arg else {
        return Err(err(path, "`numeric` takes a list of comparisons such as [\">\", 0, \"<=\", 5]"));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(err(
            path,
            "`numeric` takes one or two comparisons, each an operator and a number: [\">\", 0, \"<=\", 5]",
        ));
    }
    let mut out = Vec::new();
    for (i, pair) in items.chunks(2).enumerate() {
        let (Json::String(op), Json::Number(n)) = (&pair[0], &pair[1]) else {
            return Err(err(
                &format!("{path}.numeric[{}]", i * 2),
                "expected an operator (<, <=, =, >=, >) followed by a number",
            ));
        };
        let Some(cmp) = Compare::parse(op) else {
            return Err(err(
                &format!("{path}.numeric[{}]", i * 2),
                format!("unknown operator `{op}`: use <, <=, =, >= or >"),
            ));
        };
        if !n.is_finite() {
            return Err(err(&format!("{path}.numeric[{}]", i * 2 + 1), "the bound must be a finite number"));
        }
        out.push((cmp, *n));
    }
    let lower = out.iter().filter(|(c, _)| matches!(c, Compare::Gt | Compare::Ge)).count();
    let upper = out.iter().filter(|(c, _)| matches!(c, Compare::Lt | Compare::Le)).count();
    let equal = out.iter().filter(|(c, _)| matches!(c, Compare::Eq)).count();
    if lower > 1 || upper > 1 || (equal > 0 && out.len() > 1) {
        return Err(err(
            path,
            "`numeric` takes `=` alone, or at most one lower bound (> or >=) and one upper bound (< or <=)",
        ));
    }
    if let (Some((lc, lo)), Some((uc, hi))) = (
        out.iter().find(|(c, _)| matches!(c, Compare::Gt | Compare::Ge)),
        out.iter().find(|(c, _)| matches!(c, Compare::Lt | Compare::Le)),
    ) && (lo > hi || (lo == hi && !(matches!(lc, Compare::Ge) && matches!(uc, Compare::Le))))
    {
        return Err(err(path, format!("the range is empty: no number is above {lo} and below {hi}")));
    }
    Ok(Matcher::Numeric(out))
}

fn fields_match(fields: &[(String, Node)], value: &Json) -> bool {
    fields.iter().all(|(key, node)| node_matches(node, value.get(key)))
}

fn node_matches(node: &Node, value: Option<&Json>) -> bool {
    match node {
        Node::Fields(fields) => match value {
            Some(Json::Array(items)) => items.iter().any(|v| fields_match(fields, v)),
            Some(v @ Json::Object(_)) => fields_match(fields, v),
            // A missing object still matches when every nested field only asks for absence.
            _ => fields.iter().all(|(_, n)| node_matches(n, None)),
        },
        Node::AnyOf(matchers) => matchers.iter().any(|m| matcher_matches(m, value)),
    }
}

fn scalar_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x == y,
        _ => a == b,
    }
}

fn matcher_matches(m: &Matcher, value: Option<&Json>) -> bool {
    match (m, value) {
        (Matcher::Exists(want), v) => *want == v.is_some(),
        (_, None) => false,
        (_, Some(Json::Array(items))) => items.iter().any(|v| matcher_matches(m, Some(v))),
        (Matcher::Exact(want), Some(v)) => scalar_eq(want, v),
        (Matcher::Prefix(p), Some(Json::String(s))) => s.starts_with(p.as_str()),
        (Matcher::AnythingBut(list), Some(v)) => is_scalar(v) && !list.iter().any(|x| scalar_eq(x, v)),
        (Matcher::AnythingButPrefix(p), Some(Json::String(s))) => !s.starts_with(p.as_str()),
        (Matcher::Numeric(cmps), Some(Json::Number(n))) => cmps.iter().all(|(c, b)| c.holds(*n, *b)),
        _ => false,
    }
}

impl fmt::Display for Compare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compare::Lt => "<",
            Compare::Le => "<=",
            Compare::Eq => "=",
            Compare::Ge => ">=",
            Compare::Gt => ">",
        })
    }
}

#[cfg(test)]
mod tests;
