//! Parameter Store rules: names, labels, types, tiers, value limits and the `{{param:...}}`
//! reference syntax, as AWS Systems Manager Parameter Store defines them (spec §10).
//!
//! Invariant: pure checks with no I/O; every refusal says what was wrong and what to do, in one
//! line, so the server and the CLI can show it as is.

use std::fmt;
use std::str::FromStr;

/// Longest name accepted (AWS counts 1,011 characters; Flotilla has no ARN prefix to add).
pub const MAX_NAME_CHARS: usize = 1011;
/// Deepest hierarchy accepted (`/a/b` has depth 2).
pub const MAX_DEPTH: usize = 15;
/// Longest label accepted.
pub const MAX_LABEL_CHARS: usize = 100;
/// Labels one version may carry.
pub const MAX_LABELS_PER_VERSION: usize = 10;
/// Versions kept per parameter; a put beyond this drops the oldest.
pub const MAX_VERSIONS: usize = 100;
/// Longest description accepted.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParameterType {
    String,
    /// Comma-separated values, no escaping.
    StringList,
    /// Stored encrypted; returned in clear only on an explicit decrypt request.
    SecureString,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParameterType {
    type Err = ParameterRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "String" => Ok(ParameterType::String),
            "StringList" => Ok(ParameterType::StringList),
            "SecureString" => Ok(ParameterType::SecureString),
            other => Err(ParameterRuleError::UnknownType(other.to_owned())),
        }
    }
}

/// Storage tier: it only sets the value size limit here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Standard,
    Advanced,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }

    /// Largest value in bytes.
    pub fn max_value_bytes(self) -> usize {
        match self {
            Tier::Standard => 4096,
            Tier::Advanced => 8192,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = ParameterRuleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Standard" => Ok(Tier::Standard),
            "Advanced" => Ok(Tier::Advanced),
            other => Err(ParameterRuleError::UnknownTier(other.to_owned())),
        }
    }
}

/// Why a name, label, value or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterRuleError {
    #[error("parameter name `{name}` {reason}; names look like /app/prod/db-password")]
    InvalidName { name: String, reason: String },
    #[error("label `{label}` {reason}; labels are up to 100 of A-Z a-z 0-9 . _ - and start with a letter, . _ or -")]
    InvalidLabel { label: String, reason: String },
    #[error(
        "a version may carry at most {MAX_LABELS_PER_VERSION} labels ({given} given); move some to another version"
    )]
    TooManyLabels { given: usize },
    #[error("`{0}` is not a parameter type; use String, StringList or SecureString")]
    UnknownType(String),
    #[error("`{0}` is not a parameter tier; use Standard or Advanced")]
    UnknownTier(String),
    #[error(
        "the value is {bytes} bytes, over the {tier} tier's limit of {limit} bytes; shorten it{}",
        if *tier == Tier::Standard { " or use --tier Advanced (8192 bytes)" } else { "" }
    )]
    ValueTooLarge { bytes: usize, limit: usize, tier: Tier },
    #[error("the value is empty; give a value of at least one character")]
    EmptyValue,
    #[error(
        "the value contains a parameter reference (`{{{{param:...}}}}` or `{{{{ssm:...}}}}`); references do not nest, \
         store the value itself"
    )]
    NestedReference,
    #[error("the description is {chars} characters, over {MAX_DESCRIPTION_CHARS}; shorten it")]
    DescriptionTooLong { chars: usize },
    #[error(
        "`{text}` is not a parameter reference: {reason}; write {{{{param:/path}}}}, {{{{ssm:/path}}}} or \
         {{{{ssm-secure:/path}}}}, optionally with :VERSION_OR_LABEL"
    )]
    InvalidReference { text: String, reason: String },
}

fn bad_name(name: &str, reason: impl Into<String>) -> ParameterRuleError {
    let shown: String = name.chars().take(80).collect();
    let shown = if shown.len() < name.len() { format!("{shown}...") } else { shown };
    ParameterRuleError::InvalidName { name: shown, reason: reason.into() }
}

fn reserved_prefix(text: &str) -> bool {
    let lower = text.get(..3).map(str::to_ascii_lowercase);
    matches!(lower.as_deref(), Some("aws" | "ssm"))
}

/// Checks a full parameter name: `/` then segments of `a-zA-Z0-9_.-` separated by single
/// slashes, at most [`MAX_DEPTH`] of them and [`MAX_NAME_CHARS`] characters, not starting with
/// `aws` or `ssm`.
pub fn validate_name(name: &str) -> Result<(), ParameterRuleError> {
    if name.is_empty() {
        return Err(bad_name(name, "is empty"));
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(bad_name(name, format!("is {} characters long, over the limit of {MAX_NAME_CHARS}", name.len())));
    }
    let Some(rest) = name.strip_prefix('/') else {
        return Err(bad_name(name, "does not start with `/`"));
    };
    if rest.is_empty() {
        return Err(bad_name(name, "has no segment after `/`"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))) {
        return Err(bad_name(name, format!("contains {c:?}, which is not allowed (only a-z A-Z 0-9 _ . - and /)")));
    }
    if name.contains("//") {
        return Err(bad_name(name, "contains an empty segment (`//`)"));
    }
    if name.ends_with('/') {
        return Err(bad_name(name, "ends with `/`"));
    }
    let depth = rest.split('/').count();
    if depth > MAX_DEPTH {
        return Err(bad_name(name, format!("has {depth} levels, over the limit of {MAX_DEPTH}")));
    }
    if reserved_prefix(rest) {
        return Err(bad_name(name, "starts with `aws` or `ssm`, which are reserved"));
    }
    Ok(())
}

/// Checks a path given to a listing: `/` alone, or a valid name (a trailing `/` is allowed).
pub fn validate_path(path: &str) -> Result<(), ParameterRuleError> {
    if path == "/" {
        return Ok(());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    // Listing under a reserved prefix finds nothing but is not wrong.
    validate_name(trimmed).or_else(|e| if reserved_prefix(trimmed.trim_start_matches('/')) { Ok(()) } else { Err(e) })
}

/// Checks one label.
pub fn validate_label(label: &str) -> Result<(), ParameterRuleError> {
    let bad = |reason: &str| ParameterRuleError::InvalidLabel { label: label.to_owned(), reason: reason.to_owned() };
    if label.is_empty() {
        return Err(bad("is empty"));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(bad("is longer than 100 characters"));
    }
    if !label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(bad("contains a character other than A-Z a-z 0-9 . _ -"));
    }
    if label.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad("starts with a digit (it would read as a version)"));
    }
    if reserved_prefix(label) {
        return Err(bad("starts with `aws` or `ssm`, which are reserved"));
    }
    Ok(())
}

/// Checks the labels given for one version (each valid, at most ten, duplicates allowed).
pub fn validate_labels(labels: &[String]) -> Result<(), ParameterRuleError> {
    labels.iter().try_for_each(|l| validate_label(l))?;
    let mut distinct: Vec<&String> = labels.iter().collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > MAX_LABELS_PER_VERSION {
        return Err(ParameterRuleError::TooManyLabels { given: distinct.len() });
    }
    Ok(())
}

/// Checks a value against its tier's size limit. References to other parameters do not nest.
pub fn validate_value(value: &str, tier: Tier) -> Result<(), ParameterRuleError> {
    if value.is_empty() {
        return Err(ParameterRuleError::EmptyValue);
    }
    if value.len() > tier.max_value_bytes() {
        return Err(ParameterRuleError::ValueTooLarge { bytes: value.len(), limit: tier.max_value_bytes(), tier });
    }
    if !find_references(value).is_empty() {
        return Err(ParameterRuleError::NestedReference);
    }
    Ok(())
}

/// Checks a description's length.
pub fn validate_description(description: &str) -> Result<(), ParameterRuleError> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(ParameterRuleError::DescriptionTooLong { chars });
    }
    Ok(())
}

/// Which version a reference or a get names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(i64),
    Label(String),
}

impl Selector {
    /// Reads `3` as a version and anything else as a label.
    pub fn parse(text: &str) -> Result<Selector, ParameterRuleError> {
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            return match text.parse::<i64>() {
                Ok(v) if v >= 1 => Ok(Selector::Version(v)),
                _ => Err(ParameterRuleError::InvalidLabel {
                    label: text.to_owned(),
                    reason: "is neither a version (a whole number from 1) nor a label".to_owned(),
                }),
            };
        }
        validate_label(text)?;
        Ok(Selector::Label(text.to_owned()))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Latest => f.write_str("latest"),
            Selector::Version(v) => write!(f, "version {v}"),
            Selector::Label(l) => write!(f, "label {l}"),
        }
    }
}

/// Which spelling a Parameter Store reference uses. All three name the same store; they differ
/// in the types they accept, as in AWS: `ssm:` takes String and StringList parameters,
/// `ssm-secure:` only SecureString ones, and Flotilla's own `param:` any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    Param,
    Ssm,
    SsmSecure,
}

impl ReferenceKind {
    /// The prefix inside the braces, with its colon.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Param => "param:",
            Self::Ssm => "ssm:",
            Self::SsmSecure => "ssm-secure:",
        }
    }

    /// Whether a parameter of type `kind` may be resolved through this spelling; `Err` says
    /// what to write instead.
    pub fn accepts(self, kind: ParameterType) -> Result<(), &'static str> {
        match (self, kind) {
            (Self::Ssm, ParameterType::SecureString) => {
                Err("it is a SecureString, which `{{ssm:...}}` does not resolve; write {{ssm-secure:...}}")
            }
            (Self::SsmSecure, ParameterType::String | ParameterType::StringList) => Err(
                "it is not a SecureString, and `{{ssm-secure:...}}` takes only SecureString parameters; write {{ssm:...}}",
            ),
            _ => Ok(()),
        }
    }
}

/// A Parameter Store reference found in some text: `{{param:/name}}`, `{{param:/name:3}}`,
/// `{{param:/name:label}}`, the AWS spellings `{{ssm:name}}`, `{{ssm:/name:3}}` and
/// `{{ssm-secure:/name}}`, with optional blanks inside the braces.
///
/// AWS names may lack the leading `/` (`{{ssm:DNS-IP}}`); Flotilla names always have one, so
/// such a name is read as the root-level `/DNS-IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Byte range of the whole `{{...}}` in the text.
    pub start: usize,
    pub end: usize,
    pub kind: ReferenceKind,
    /// The full name, with its leading `/`.
    pub name: String,
    pub selector: Selector,
}

/// Longest prefix first, so `ssm-secure:` is not read as `ssm` followed by text.
const REFERENCE_KINDS: [ReferenceKind; 3] = [ReferenceKind::SsmSecure, ReferenceKind::Ssm, ReferenceKind::Param];

/// The next reference opening at or after `from`: (start of `{{`, kind, start of the body).
fn next_open(text: &str, mut from: usize) -> Option<(usize, ReferenceKind, usize)> {
    while let Some(offset) = text.get(from..).and_then(|rest| rest.find("{{")) {
        let start = from + offset;
        let inner = start + 2;
        let rest = text.get(inner..).unwrap_or_default();
        let blanks = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let after = rest.get(blanks..).unwrap_or_default();
        if let Some(kind) = REFERENCE_KINDS.into_iter().find(|k| after.starts_with(k.prefix())) {
            return Some((start, kind, inner + blanks + kind.prefix().len()));
        }
        from = inner;
    }
    None
}

/// Every Parameter Store reference in `text`, in order. Malformed ones (bad name, bad
/// selector, no `}}`) are errors rather than text, so a typo never reaches a node as a literal.
pub fn parse_references(text: &str) -> Result<Vec<Reference>, ParameterRuleError> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some((start, kind, body_start)) = next_open(text, from) {
        let Some(close) = text.get(body_start..).and_then(|rest| rest.find("}}")) else {
            return Err(ParameterRuleError::InvalidReference {
                text: text.get(start..).unwrap_or_default().chars().take(60).collect(),
                reason: "it has no closing `}}`".to_owned(),
            });
        };
        let body = text.get(body_start..body_start + close).unwrap_or_default().trim();
        let end = body_start + close + 2;
        let whole = text.get(start..end).unwrap_or_default().to_owned();
        let invalid = |reason: String| ParameterRuleError::InvalidReference { text: whole.clone(), reason };
        let (name, selector) = match body.rsplit_once(':') {
            Some((name, sel)) => (name, Selector::parse(sel).map_err(|e| invalid(e.to_string()))?),
            None => (body, Selector::Latest),
        };
        let name = match kind {
            ReferenceKind::Ssm | ReferenceKind::SsmSecure if !name.starts_with('/') => format!("/{name}"),
            _ => name.to_owned(),
        };
        validate_name(&name).map_err(|e| invalid(e.to_string()))?;
        found.push(Reference { start, end, kind, name, selector });
        from = end;
    }
    Ok(found)
}

/// As [`parse_references`], keeping only the well-formed ones (for a quick "are there any").
pub fn find_references(text: &str) -> Vec<Reference> {
    parse_references(text).unwrap_or_else(|_| {
        // A malformed reference still counts as one for the nesting rule.
        vec![Reference {
            start: 0,
            end: 0,
            kind: ReferenceKind::Param,
            name: String::new(),
            selector: Selector::Latest,
        }]
    })
}

/// True when `text` opens any Parameter Store reference at all (cheap check before parsing).
pub fn mentions_reference(text: &str) -> bool {
    text.contains("{{") && next_open(text, 0).is_some()
}

/// Whether `name` is listed under `path`: directly (one level) or anywhere below (recursive).
pub fn is_under(name: &str, path: &str, recursive: bool) -> bool {
    let prefix = if path.ends_with('/') { path.to_owned() } else { format!("{path}/") };
    match name.strip_prefix(prefix.as_str()) {
        Some(rest) if !rest.is_empty() => recursive || !rest.contains('/'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let deep16 = "/a".repeat(16);
        let deep15 = "/a".repeat(15);
        let long = format!("/{}", "x".repeat(MAX_NAME_CHARS));
        let longest = format!("/{}", "x".repeat(MAX_NAME_CHARS - 1));
        let cases: &[(&str, Option<&str>)] = &[
            ("/app/db/password", None),
            ("/a", None),
            ("/A-b_c.d/0", None),
            (&deep15, None),
            (&longest, None),
            ("", Some("is empty")),
            ("app/db", Some("does not start with `/`")),
            ("/", Some("no segment")),
            ("/a//b", Some("`//`")),
            ("/a/", Some("ends with `/`")),
            ("/a b", Some("' '")),
            ("/a$b", Some("'$'")),
            ("/é", Some("'é'")),
            (&deep16, Some("16 levels")),
            (&long, Some("over the limit of 1011")),
            ("/aws/x", Some("reserved")),
            ("/SSM", Some("reserved")),
        ];
        for (name, want) in cases {
            match (validate_name(name), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn labels() {
        for ok in ["prod", "Release-1.2", "_x", ".a", "-a"] {
            validate_label(ok).expect(ok);
        }
        for bad in ["", "1st", "a b", "awsome", "SSMx", "a/b", &"l".repeat(101)] {
            assert!(validate_label(bad).is_err(), "{bad}");
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("l{i}")).collect();
        assert_eq!(validate_labels(&eleven), Err(ParameterRuleError::TooManyLabels { given: 11 }));
        validate_labels(&eleven[..10]).expect("ten");
    }

    #[test]
    fn values_and_tiers() {
        validate_value(&"x".repeat(4096), Tier::Standard).expect("4096 fits");
        let err = validate_value(&"x".repeat(4097), Tier::Standard).expect_err("too big");
        assert!(err.to_string().contains("--tier Advanced"), "{err}");
        validate_value(&"x".repeat(8192), Tier::Advanced).expect("8192 fits");
        assert!(validate_value(&"x".repeat(8193), Tier::Advanced).is_err());
        assert_eq!(validate_value("", Tier::Standard), Err(ParameterRuleError::EmptyValue));
        assert_eq!(validate_value("a {{param:/x}}", Tier::Standard), Err(ParameterRuleError::NestedReference));
        assert_eq!("SecureString".parse::<ParameterType>(), Ok(ParameterType::SecureString));
        assert!("secure".parse::<ParameterType>().is_err());
    }

    #[test]
    fn references() {
        let text = "echo {{param:/a/b}} and {{param:/c:3}} or {{ param:/x }} {{param:/d:prod}}";
        let refs = parse_references(text).expect("parse");
        // Blanks inside the braces are allowed, as AWS allows them in `{{ ssm:/x }}`.
        assert_eq!(refs.len(), 4);
        assert_eq!((refs[0].name.as_str(), &refs[0].selector), ("/a/b", &Selector::Latest));
        assert_eq!(&text[refs[0].start..refs[0].end], "{{param:/a/b}}");
        assert_eq!(refs[1].selector, Selector::Version(3));
        assert_eq!(refs[2].name, "/x");
        assert_eq!(refs[3].selector, Selector::Label("prod".into()));
        assert!(parse_references("{{param:/a").is_err());
        assert!(parse_references("{{param:a}}").is_err());
        assert!(parse_references("{{param:/a:0}}").is_err());
        assert!(parse_references("{{ name }} {{ .State }} {{ssmx:/a}} {{ params:/b }}").expect("none").is_empty());
    }

    #[test]
    fn aws_references_name_the_same_store() {
        type Case<'a> = (&'a str, ReferenceKind, &'a str, Selector, &'a str);
        let cases: &[Case<'_>] = &[
            ("{{ssm:/a/b}}", ReferenceKind::Ssm, "/a/b", Selector::Latest, "{{ssm:/a/b}}"),
            ("x {{ ssm:DNS-IP }} y", ReferenceKind::Ssm, "/DNS-IP", Selector::Latest, "{{ ssm:DNS-IP }}"),
            ("{{ssm:name:3}}", ReferenceKind::Ssm, "/name", Selector::Version(3), "{{ssm:name:3}}"),
            ("{{ssm:/n:prod}}", ReferenceKind::Ssm, "/n", Selector::Label("prod".into()), "{{ssm:/n:prod}}"),
            ("{{ssm-secure:/db/pw}}", ReferenceKind::SsmSecure, "/db/pw", Selector::Latest, "{{ssm-secure:/db/pw}}"),
            ("{{ ssm-secure:pw:2 }}", ReferenceKind::SsmSecure, "/pw", Selector::Version(2), "{{ ssm-secure:pw:2 }}"),
            ("{{ param:/x }}", ReferenceKind::Param, "/x", Selector::Latest, "{{ param:/x }}"),
        ];
        for (text, kind, name, selector, whole) in cases {
            let refs = parse_references(text).expect(text);
            assert_eq!(refs.len(), 1, "{text}");
            assert_eq!((refs[0].kind, refs[0].name.as_str(), &refs[0].selector), (*kind, *name, selector), "{text}");
            assert_eq!(&text[refs[0].start..refs[0].end], *whole);
            assert!(mentions_reference(text), "{text}");
        }
        for bad in ["{{ssm:/a", "{{ssm:a b}}", "{{ssm-secure:/x:0}}", "{{ssm:}}", "{{ssm:aws/x}}"] {
            assert!(parse_references(bad).is_err(), "{bad}");
        }
        assert!(!mentions_reference("{{ name }} {{ .State }}"));
        assert_eq!(validate_value("{{ssm:/x}}", Tier::Standard), Err(ParameterRuleError::NestedReference));
        assert!(ReferenceKind::Ssm.accepts(ParameterType::SecureString).is_err());
        assert!(ReferenceKind::SsmSecure.accepts(ParameterType::String).is_err());
        assert!(ReferenceKind::SsmSecure.accepts(ParameterType::SecureString).is_ok());
        assert!(ReferenceKind::Param.accepts(ParameterType::SecureString).is_ok());
    }

    #[test]
    fn paths() {
        assert!(is_under("/a/b", "/a", false));
        assert!(is_under("/a/b", "/a/", false));
        assert!(!is_under("/a/b/c", "/a", false));
        assert!(is_under("/a/b/c", "/a", true));
        assert!(!is_under("/ab", "/a", true));
        assert!(is_under("/x", "/", false));
        validate_path("/").expect("root");
        validate_path("/a/").expect("trailing slash");
        assert!(validate_path("a").is_err());
    }
}
