//! Parameters: what a document declares ([`ParameterSpec`]) and binding what a caller gives
//! (`--param NAME=VALUE`, possibly repeated) into typed, checked values ([`BoundParameters`]).
//!
//! Invariants:
//! - A parameter name is 1..=128 ASCII letters, digits and `_`, because it becomes part of an
//!   environment variable name (`FLOTILLA_PARAM_<name>`) when a script uses it.
//! - An `allowedPattern` must compile on its own and is then matched against the whole value
//!   (`^(?:pattern)$`); compiling it alone first stops a pattern such as `a)|(b` from escaping
//!   the anchors once wrapped.
//! - A default obeys the same rules as a given value; a document with a bad default does not parse.
//! - Every bound value is free of NUL, which no process environment can carry.
//! - A name given with an empty list of values counts as not given (the default applies).
//!
//! Values shown in error messages are quoted, escaped and cut to 64 characters, so a hostile or
//! secret value cannot forge log lines or spill whole into them.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde_yaml::Value;

use crate::document::{DocumentError, Position};
use crate::source::{FieldPath, tree};

/// The types a Flotilla command document parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParameterType {
    String,
    StringList,
    Integer,
    Boolean,
}

impl ParameterType {
    /// The name used in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::StringList => "StringList",
            Self::Integer => "Integer",
            Self::Boolean => "Boolean",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::String, Self::StringList, Self::Integer, Self::Boolean].into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterValue {
    String(String),
    StringList(Vec<String>),
    Integer(i64),
    Boolean(bool),
}

impl ParameterValue {
    pub fn kind(&self) -> ParameterType {
        match self {
            Self::String(_) => ParameterType::String,
            Self::StringList(_) => ParameterType::StringList,
            Self::Integer(_) => ParameterType::Integer,
            Self::Boolean(_) => ParameterType::Boolean,
        }
    }

    /// The text of a single value; `None` for a list.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Self::String(s) => Some(s.clone()),
            Self::Integer(n) => Some(n.to_string()),
            Self::Boolean(b) => Some(b.to_string()),
            Self::StringList(_) => None,
        }
    }
}

/// An `allowedPattern`, compiled once.
#[derive(Debug, Clone)]
pub struct AllowedPattern {
    source: String,
    anchored: Regex,
}

/// Compiled patterns are capped so a hostile document cannot make the server build a huge
/// automaton; the regex crate already guarantees matching in linear time.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl AllowedPattern {
    /// Compiles `source`; the error text is one line, fit to show to the document author.
    pub fn new(source: &str) -> Result<Self, String> {
        let build = |pattern: &str| {
            RegexBuilder::new(pattern).size_limit(PATTERN_SIZE_LIMIT).build().map_err(|e| {
                let text = e.to_string();
                text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern").trim().to_owned()
            })
        };
        build(source)?;
        let anchored = build(&format!("^(?:{source})$"))?;
        Ok(Self { source: source.to_owned(), anchored })
    }

    /// The pattern as the document wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        self.anchored.is_match(value)
    }
}

impl PartialEq for AllowedPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for AllowedPattern {}

/// One declared parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSpec {
    pub kind: ParameterType,
    pub description: Option<String>,
    /// How a UI should offer the field (`textarea` or `textfield`); no effect at run time.
    pub display_type: Option<String>,
    /// Already checked against the rules below. `None` means the parameter is required.
    pub default: Option<ParameterValue>,
    pub allowed_values: Vec<String>,
    pub allowed_pattern: Option<AllowedPattern>,
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
    /// `interpolationType: ENV_VAR` (AWS): scripts see the value only as the environment
    /// variable `SSM_<name>`, in every shell step of the document, and a `{{ name }}` in a
    /// script becomes a reference to that variable, never text, even as a whole line.
    pub env_var: bool,
}

/// Prefix of the variable an `interpolationType: ENV_VAR` parameter is exposed as (AWS's name).
pub const ENV_VAR_PREFIX: &str = "SSM_";
/// The one `interpolationType` value AWS defines.
const ENV_VAR_INTERPOLATION: &str = "ENV_VAR";

/// Why given parameter values were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("unknown parameter `{name}`; this document takes: {known}")]
    Unknown { name: String, known: String },
    #[error("required parameter `{name}` ({kind}) was not given and has no default; pass --param {name}=VALUE")]
    Missing { name: String, kind: ParameterType },
    #[error(
        "parameter `{name}` is a {kind} and takes exactly one value, but {count} were given; \
         pass --param {name}=VALUE once"
    )]
    NotOneValue { name: String, kind: ParameterType, count: usize },
    #[error("parameter `{name}` must be a whole number (Integer), but {value} is not; pass digits, e.g. {name}=30")]
    NotAnInteger { name: String, value: String },
    #[error("parameter `{name}` must be `true` or `false` (Boolean), not {value}")]
    NotABoolean { name: String, value: String },
    #[error("value {value} is not allowed for parameter `{name}`; allowed values: {allowed}")]
    NotAllowed { name: String, value: String, allowed: String },
    #[error(
        "value {value} for parameter `{name}` does not match its allowedPattern `{pattern}` \
         (the whole value must match); pass a value of that form"
    )]
    PatternMismatch { name: String, value: String, pattern: String },
    #[error("parameter `{name}` has {count} items but needs at least {min}; repeat --param {name}=VALUE")]
    TooFewItems { name: String, count: usize, min: usize },
    #[error("parameter `{name}` has {count} items but takes at most {max}; pass fewer")]
    TooManyItems { name: String, count: usize, max: usize },
    #[error("value {value} for parameter `{name}` has {chars} characters; the minimum is {min}")]
    TooShort { name: String, value: String, chars: usize, min: usize },
    #[error("value {value} for parameter `{name}` has {chars} characters; the maximum is {max}")]
    TooLong { name: String, value: String, chars: usize, max: usize },
    #[error("a value for parameter `{name}` contains a NUL character, which no process can receive; remove it")]
    NulCharacter { name: String },
    #[error("`{argument}` is not NAME=VALUE; write --param NAME=VALUE")]
    NotNameValue { argument: String },
}

/// A value as it appears in messages: quoted, escaped, at most 64 characters.
fn shown(value: &str) -> String {
    const LIMIT: usize = 64;
    if value.chars().count() <= LIMIT {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(LIMIT).collect();
        format!("{cut:?}…")
    }
}

impl ParameterSpec {
    /// Checks the values given for parameter `name` and converts them to its type.
    pub fn check(&self, name: &str, values: &[String]) -> Result<ParameterValue, ParameterError> {
        if values.iter().any(|v| v.contains('\0')) {
            return Err(ParameterError::NulCharacter { name: name.to_owned() });
        }
        if self.kind == ParameterType::StringList {
            let count = values.len();
            if let Some(min) = self.min_items.filter(|min| count < *min) {
                return Err(ParameterError::TooFewItems { name: name.to_owned(), count, min });
            }
            if let Some(max) = self.max_items.filter(|max| count > *max) {
                return Err(ParameterError::TooManyItems { name: name.to_owned(), count, max });
            }
            for item in values {
                self.check_text(name, item)?;
            }
            return Ok(ParameterValue::StringList(values.to_vec()));
        }
        let [value] = values else {
            return Err(ParameterError::NotOneValue { name: name.to_owned(), kind: self.kind, count: values.len() });
        };
        let typed = match self.kind {
            ParameterType::Integer => value
                .parse::<i64>()
                .map(ParameterValue::Integer)
                .map_err(|_| ParameterError::NotAnInteger { name: name.to_owned(), value: shown(value) })?,
            ParameterType::Boolean => match value.as_str() {
                "true" => ParameterValue::Boolean(true),
                "false" => ParameterValue::Boolean(false),
                _ => return Err(ParameterError::NotABoolean { name: name.to_owned(), value: shown(value) }),
            },
            ParameterType::String | ParameterType::StringList => ParameterValue::String(value.clone()),
        };
        self.check_text(name, value)?;
        Ok(typed)
    }

    fn check_text(&self, name: &str, value: &str) -> Result<(), ParameterError> {
        let chars = value.chars().count();
        if let Some(min) = self.min_chars.filter(|min| chars < *min) {
            return Err(ParameterError::TooShort { name: name.to_owned(), value: shown(value), chars, min });
        }
        if let Some(max) = self.max_chars.filter(|max| chars > *max) {
            return Err(ParameterError::TooLong { name: name.to_owned(), value: shown(value), chars, max });
        }
        if !self.allowed_values.is_empty() && !self.allowed_values.iter().any(|allowed| allowed == value) {
            let allowed = self.allowed_values.iter().map(|v| shown(v)).collect::<Vec<_>>().join(", ");
            return Err(ParameterError::NotAllowed { name: name.to_owned(), value: shown(value), allowed });
        }
        if let Some(pattern) = self.allowed_pattern.as_ref().filter(|p| !p.matches(value)) {
            return Err(ParameterError::PatternMismatch {
                name: name.to_owned(),
                value: shown(value),
                pattern: pattern.as_str().to_owned(),
            });
        }
        Ok(())
    }
}

/// Parameter values checked against a document's declarations, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundParameters {
    values: BTreeMap<String, ParameterValue>,
}

impl BoundParameters {
    pub fn get(&self, name: &str) -> Option<&ParameterValue> {
        self.values.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParameterValue)> {
        self.values.iter().map(|(name, value)| (name.as_str(), value))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Binds `given` (name → values, in the order given) against `specs`.
pub(crate) fn bind(
    specs: &BTreeMap<String, ParameterSpec>,
    given: &BTreeMap<String, Vec<String>>,
) -> Result<BoundParameters, ParameterError> {
    if let Some(name) = given.keys().find(|name| !specs.contains_key(*name)) {
        let known = if specs.is_empty() {
            "no parameters".to_owned()
        } else {
            specs.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
        };
        return Err(ParameterError::Unknown { name: name.clone(), known });
    }
    let mut values = BTreeMap::new();
    for (name, spec) in specs {
        let value = match given.get(name).filter(|values| !values.is_empty()) {
            Some(given) => spec.check(name, given)?,
            None => {
                spec.default.clone().ok_or_else(|| ParameterError::Missing { name: name.clone(), kind: spec.kind })?
            }
        };
        values.insert(name.clone(), value);
    }
    Ok(BoundParameters { values })
}

/// Collects CLI `--param NAME=VALUE` arguments (split at the first `=`); a repeated name adds
/// values in order.
pub fn parse_cli_params<I, S>(arguments: I) -> Result<BTreeMap<String, Vec<String>>, ParameterError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for argument in arguments {
        let argument = argument.as_ref();
        match argument.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                given.entry(name.to_owned()).or_default().push(value.to_owned());
            }
            _ => return Err(ParameterError::NotNameValue { argument: shown(argument) }),
        }
    }
    Ok(given)
}

const SPEC_KEYS: &[&str] = &[
    "type",
    "description",
    "default",
    "allowedValues",
    "allowedPattern",
    "minItems",
    "maxItems",
    "minChars",
    "maxChars",
    "displayType",
    "interpolationType",
];
const DISPLAY_TYPES: &[&str] = &["textarea", "textfield"];

fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Reads the `parameters` mapping of a document.
pub(crate) fn read_parameters(
    value: &Value,
    path: &FieldPath,
) -> Result<BTreeMap<String, ParameterSpec>, DocumentError> {
    let mut specs = BTreeMap::new();
    for (name, spec) in tree::entries(value, path)? {
        let spec_path = path.key(name);
        if !valid_name(name) {
            return Err(DocumentError::InvalidParameterName { at: Position::at(&spec_path), name: name.to_owned() });
        }
        specs.insert(name.to_owned(), read_spec(name, spec, &spec_path)?);
    }
    Ok(specs)
}

fn read_spec(name: &str, value: &Value, path: &FieldPath) -> Result<ParameterSpec, DocumentError> {
    let entries = tree::entries(value, path)?;
    tree::only_keys(&entries, SPEC_KEYS, path)?;
    let type_path = path.key("type");
    let type_name = tree::scalar(tree::required(&entries, "type", path)?, &type_path)?;
    let kind = ParameterType::from_name(&type_name)
        .ok_or_else(|| DocumentError::UnsupportedParameterType { at: Position::at(&type_path), found: type_name })?;
    let description =
        tree::get(&entries, "description").map(|v| tree::scalar(v, &path.key("description"))).transpose()?;
    let display_type = match tree::get(&entries, "displayType") {
        None => None,
        Some(v) => {
            let display_path = path.key("displayType");
            let found = tree::scalar(v, &display_path)?;
            if !DISPLAY_TYPES.contains(&found.as_str()) {
                return Err(DocumentError::UnsupportedDisplayType { at: Position::at(&display_path), found });
            }
            Some(found)
        }
    };
    let allowed_values = match tree::get(&entries, "allowedValues") {
        None => Vec::new(),
        Some(v) => {
            let values = tree::scalar_list(v, &path.key("allowedValues"))?;
            if values.is_empty() {
                return Err(DocumentError::EmptyAllowedValues { at: Position::at(&path.key("allowedValues")) });
            }
            values
        }
    };
    let allowed_pattern = match tree::get(&entries, "allowedPattern") {
        None => None,
        Some(v) => {
            let pattern_path = path.key("allowedPattern");
            let pattern = tree::scalar(v, &pattern_path)?;
            let compiled = AllowedPattern::new(&pattern).map_err(|reason| DocumentError::InvalidPattern {
                at: Position::at(&pattern_path),
                pattern: pattern.clone(),
                reason,
            })?;
            Some(compiled)
        }
    };
    let bound = |key: &'static str, applies: bool| -> Result<Option<usize>, DocumentError> {
        let Some(v) = tree::get(&entries, key) else { return Ok(None) };
        if !applies {
            return Err(DocumentError::AttributeNotForType { at: Position::at(&path.key(key)), attribute: key, kind });
        }
        tree::count(v, &path.key(key)).map(Some)
    };
    let is_list = kind == ParameterType::StringList;
    let is_text = matches!(kind, ParameterType::String | ParameterType::StringList);
    let mut spec = ParameterSpec {
        kind,
        description,
        display_type,
        default: None,
        allowed_values,
        allowed_pattern,
        min_items: bound("minItems", is_list)?,
        max_items: bound("maxItems", is_list)?,
        min_chars: bound("minChars", is_text)?,
        max_chars: bound("maxChars", is_text)?,
        env_var: false,
    };
    if let Some(v) = tree::get(&entries, "interpolationType") {
        let interpolation_path = path.key("interpolationType");
        let found = tree::scalar(v, &interpolation_path)?;
        if found != ENV_VAR_INTERPOLATION {
            return Err(DocumentError::UnsupportedInterpolation { at: Position::at(&interpolation_path), found });
        }
        // A list has no single value to put in one variable.
        if is_list {
            return Err(DocumentError::AttributeNotForType {
                at: Position::at(&interpolation_path),
                attribute: "interpolationType",
                kind,
            });
        }
        spec.env_var = true;
    }
    for (min_key, min, max_key, max) in [
        ("minItems", spec.min_items, "maxItems", spec.max_items),
        ("minChars", spec.min_chars, "maxChars", spec.max_chars),
    ] {
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(DocumentError::MinAboveMax {
                at: Position::at(&path.key(min_key)),
                min_key,
                min,
                max_key,
                max,
            });
        }
    }
    if let Some(default) = tree::get(&entries, "default") {
        let default_path = path.key("default");
        let values = match kind {
            ParameterType::StringList => tree::scalar_list(default, &default_path)?,
            _ => vec![tree::scalar(default, &default_path)?],
        };
        let checked = spec
            .check(name, &values)
            .map_err(|problem| DocumentError::InvalidDefault { at: Position::at(&default_path), problem })?;
        spec.default = Some(checked);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ParameterType) -> ParameterSpec {
        ParameterSpec {
            kind,
            description: None,
            display_type: None,
            default: None,
            allowed_values: Vec::new(),
            allowed_pattern: None,
            min_items: None,
            max_items: None,
            min_chars: None,
            max_chars: None,
            env_var: false,
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn check_converts_good_values() {
        use ParameterType as T;
        use ParameterValue as V;
        let cases: &[(ParameterType, &[&str], ParameterValue)] = &[
            (T::String, &["hello"], V::String("hello".into())),
            (T::String, &[""], V::String(String::new())),
            (T::String, &["; rm -rf /"], V::String("; rm -rf /".into())),
            (T::StringList, &[], V::StringList(vec![])),
            (T::StringList, &["a"], V::StringList(strings(&["a"]))),
            (T::StringList, &["a", "b", "a"], V::StringList(strings(&["a", "b", "a"]))),
            (T::Integer, &["42"], V::Integer(42)),
            (T::Integer, &["-7"], V::Integer(-7)),
            (T::Integer, &["+7"], V::Integer(7)),
            (T::Boolean, &["true"], V::Boolean(true)),
            (T::Boolean, &["false"], V::Boolean(false)),
        ];
        for (kind, values, expected) in cases {
            assert_eq!(spec(*kind).check("p", &strings(values)).as_ref(), Ok(expected), "{kind} {values:?}");
        }
    }

    #[test]
    fn check_refuses_bad_values() {
        use ParameterType as T;
        let pattern = |p: &str| ParameterSpec { allowed_pattern: AllowedPattern::new(p).ok(), ..spec(T::String) };
        let allowed = ParameterSpec { allowed_values: strings(&["on", "off"]), ..spec(T::StringList) };
        let items = ParameterSpec { min_items: Some(1), max_items: Some(2), ..spec(T::StringList) };
        let chars = ParameterSpec { min_chars: Some(2), max_chars: Some(3), ..spec(T::String) };
        let cases: Vec<(ParameterSpec, &[&str], &str)> = vec![
            (spec(T::String), &["a", "b"], "parameter `p` is a String and takes exactly one value, but 2 were given"),
            (spec(T::Integer), &["1", "2"], "takes exactly one value, but 2 were given"),
            (spec(T::Integer), &["ten"], "parameter `p` must be a whole number (Integer), but \"ten\" is not"),
            (spec(T::Integer), &["1.5"], "must be a whole number"),
            (spec(T::Integer), &["99999999999999999999"], "must be a whole number"),
            (spec(T::Integer), &[" 1"], "must be a whole number"),
            (spec(T::Boolean), &["yes"], "must be `true` or `false` (Boolean), not \"yes\""),
            (spec(T::Boolean), &["True"], "not \"True\""),
            (
                allowed.clone(),
                &["on", "maybe"],
                "value \"maybe\" is not allowed for parameter `p`; allowed values: \"on\", \"off\"",
            ),
            (pattern("^[0-9]+$"), &["12a"], "does not match its allowedPattern `^[0-9]+$`"),
            (pattern("[0-9]+"), &["a1"], "does not match"),
            (pattern("ab|cd"), &["abcd"], "does not match"),
            (items.clone(), &[], "parameter `p` has 0 items but needs at least 1"),
            (items, &["a", "b", "c"], "has 3 items but takes at most 2"),
            (chars.clone(), &["a"], "has 1 characters; the minimum is 2"),
            (chars, &["abcd"], "has 4 characters; the maximum is 3"),
            (spec(T::String), &["a\0b"], "contains a NUL character"),
        ];
        for (spec, values, message) in cases {
            let error = spec.check("p", &strings(values)).expect_err(message);
            assert!(error.to_string().contains(message), "{values:?}: {error}");
        }
    }

    /// Parameters as the CLI collects them: name and values.
    type Given<'a> = &'a [(&'a str, &'a [&'a str])];

    const SPECS: &str = "
schemaVersion: '2.2'
parameters:
  mode: {type: String, allowedValues: [fast, safe], default: safe}
  host: {type: String, allowedPattern: '[a-z0-9.-]+'}
  retries: {type: Integer, default: 3}
  dryRun: {type: Boolean, default: false}
  files: {type: StringList, default: [/etc/hosts], maxItems: 2}
mainSteps:
  - {action: run:shell, name: s, inputs: {commands: [true]}}
";

    #[test]
    fn bind_fills_defaults_and_types_values() {
        use ParameterValue as V;
        let document = crate::Document::parse(SPECS).expect("valid");
        let cases: &[(Given<'_>, &[(&str, ParameterValue)])] = &[
            (
                &[("host", &["db1"])],
                &[
                    ("dryRun", V::Boolean(false)),
                    ("files", V::StringList(strings(&["/etc/hosts"]))),
                    ("host", V::String("db1".into())),
                    ("mode", V::String("safe".into())),
                    ("retries", V::Integer(3)),
                ],
            ),
            (
                &[
                    ("host", &["db1"]),
                    ("mode", &["fast"]),
                    ("retries", &["-1"]),
                    ("dryRun", &["true"]),
                    ("files", &["/a", "/b"]),
                ],
                &[
                    ("dryRun", V::Boolean(true)),
                    ("files", V::StringList(strings(&["/a", "/b"]))),
                    ("host", V::String("db1".into())),
                    ("mode", V::String("fast".into())),
                    ("retries", V::Integer(-1)),
                ],
            ),
            // A name given with no values is not given: the default applies.
            (&[("host", &["db1"]), ("files", &[])], &[("files", V::StringList(strings(&["/etc/hosts"])))]),
        ];
        for (given, expected) in cases {
            let given = given.iter().map(|(k, v)| ((*k).to_owned(), strings(v))).collect();
            let bound = document.bind(&given).expect("binds");
            for (name, value) in *expected {
                assert_eq!(bound.get(name), Some(value), "{name}");
            }
        }
    }

    #[test]
    fn bind_refuses_bad_input() {
        let document = crate::Document::parse(SPECS).expect("valid");
        let cases: &[(Given<'_>, &str)] = &[
            (&[], "required parameter `host` (String) was not given and has no default"),
            (
                &[("host", &["db1"]), ("hots", &["x"])],
                "unknown parameter `hots`; this document takes: dryRun, files, host, mode, retries",
            ),
            (
                &[("host", &["db1", "db2"])],
                "parameter `host` is a String and takes exactly one value, but 2 were given",
            ),
            (&[("host", &["db1"]), ("retries", &["3x"])], "parameter `retries` must be a whole number"),
            (&[("host", &["db1"]), ("dryRun", &["yes"])], "parameter `dryRun` must be `true` or `false`"),
            (
                &[("host", &["db1"]), ("mode", &["slow"])],
                "value \"slow\" is not allowed for parameter `mode`; allowed values: \"fast\", \"safe\"",
            ),
            (
                &[("host", &["db 1"])],
                "value \"db 1\" for parameter `host` does not match its allowedPattern `[a-z0-9.-]+`",
            ),
            (
                &[("host", &["db1"]), ("files", &["/a", "/b", "/c"])],
                "parameter `files` has 3 items but takes at most 2",
            ),
        ];
        for (given, fragment) in cases {
            let given = given.iter().map(|(k, v)| ((*k).to_owned(), strings(v))).collect();
            let error = document.bind(&given).expect_err(fragment);
            assert!(error.to_string().contains(fragment), "{error}");
        }
    }

    #[test]
    fn patterns_are_anchored_and_cannot_escape_the_anchors() {
        let digits = AllowedPattern::new("[0-9]+").expect("compiles");
        assert!(digits.matches("123"));
        assert!(!digits.matches("1x3"));
        let alternation = AllowedPattern::new("ab|cd").expect("compiles");
        assert!(alternation.matches("ab") && alternation.matches("cd") && !alternation.matches("abcd"));
        for bad in ["a)|(b", "[a-", "(", "a{2,1}"] {
            assert!(AllowedPattern::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_in_messages_are_escaped_and_cut() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(100);
        assert_eq!(shown(&long), format!("\"{}\"…", "x".repeat(64)));
    }

    #[test]
    fn cli_params_collect_repeats_in_order() {
        let given = parse_cli_params(["commands=echo a", "commands=echo b=c", "dir=/tmp", "empty="]).expect("valid");
        assert_eq!(given["commands"], strings(&["echo a", "echo b=c"]));
        assert_eq!(given["dir"], strings(&["/tmp"]));
        assert_eq!(given["empty"], strings(&[""]));
        for bad in ["novalue", "=x"] {
            assert!(matches!(parse_cli_params([bad]), Err(ParameterError::NotNameValue { .. })), "{bad}");
        }
    }
}
