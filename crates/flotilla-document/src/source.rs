//! Source text: the size limit, YAML/JSON detection, syntax errors, field paths, and finding the
//! line and column of a field path again once a rule about it has failed.
//!
//! Invariants: text over [`MAX_DOCUMENT_BYTES`] is refused before any parser sees it; every
//! document is turned into one tree type (`serde_yaml::Value`), whichever format it came in, so
//! the rules are written once; duplicate keys are syntax errors, never "last one wins".
//!
//! Why locations are found afterwards: `serde_yaml::Value` keeps no positions, so the rules run on
//! the tree and report a [`FieldPath`]; only when a rule fails is the text read a second time,
//! walking to that path and stopping there, which makes the parser report where it stopped.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;

use crate::document::{DocumentError, Position};

/// The largest document accepted, in bytes (the SSM quota).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A 1-based line and column in the document text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl Location {
    /// Saturates rather than wraps: a 64 KiB document never gets near the limit anyway.
    fn new(line: usize, column: usize) -> Self {
        Self { line: u32::try_from(line).unwrap_or(u32::MAX), column: u32::try_from(column).unwrap_or(u32::MAX) }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in a document, written `mainSteps[1].inputs.runCommand`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The whole document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The same path with one key name replaced, for errors found after a key was renamed.
    pub(crate) fn rename_key(&self, from: &str, to: &str) -> Self {
        Self(
            self.0
                .iter()
                .map(|segment| match segment {
                    Segment::Key(key) if key == from => Segment::Key(to.to_owned()),
                    other => other.clone(),
                })
                .collect(),
        )
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The syntax the text was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Json,
}

/// Checks the size, picks the format and parses the text into a tree.
///
/// Text whose first non-blank character is `{` is read as JSON and anything else as YAML. JSON
/// is not retried as YAML: YAML would accept broken JSON such as `{"a": }` and hide the mistake.
pub(crate) fn load(text: &str) -> Result<(Value, Format), DocumentError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge { size: text.len(), limit: MAX_DOCUMENT_BYTES });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        match serde_json::from_str::<Value>(text) {
            Ok(tree) => return Ok((tree, Format::Json)),
            Err(json_error) => {
                if let Some(duplicate) = find_duplicate_key(text, Format::Json) {
                    return Err(duplicate);
                }
                let location = (json_error.line() > 0).then(|| Location::new(json_error.line(), json_error.column()));
                return Err(DocumentError::Syntax { format: "JSON", location, message: json_error.to_string() });
            }
        }
    }
    serde_yaml::from_str::<Value>(text).map(|tree| (tree, Format::Yaml)).map_err(|yaml_error| {
        // serde_yaml places a duplicate key at the start of its mapping; find the key itself.
        find_duplicate_key(text, Format::Yaml).unwrap_or_else(|| DocumentError::Syntax {
            format: "YAML",
            location: yaml_error.location().map(|l| Location::new(l.line(), l.column())),
            message: yaml_error.to_string(),
        })
    })
}

/// Walks the text looking for a key repeated within one mapping; returns it with its path and
/// the position of the second occurrence.
fn find_duplicate_key(text: &str, format: Format) -> Option<DocumentError> {
    let found = RefCell::new(None);
    let seed = FindDuplicate { path: FieldPath::root(), found: &found };
    let location = match format {
        Format::Yaml => {
            let error = seed.deserialize(serde_yaml::Deserializer::from_str(text)).err()?;
            error.location().map(|l| Location::new(l.line(), l.column()))
        }
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let error = seed.deserialize(&mut deserializer).err()?;
            (error.line() > 0).then(|| Location::new(error.line(), error.column()))
        }
    };
    let (path, key) = found.into_inner()?;
    Some(DocumentError::DuplicateKey { at: Position { path, location }, key })
}

struct FindDuplicate<'f> {
    path: FieldPath,
    found: &'f RefCell<Option<(FieldPath, String)>>,
}

impl<'de> DeserializeSeed<'de> for FindDuplicate<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FindDuplicate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (_, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(FindDuplicate { path: self.path.index(i), found: self.found })?.is_some() {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key_seed(NewKey { seen: &mut seen, path: &self.path, found: self.found })? {
            map.next_value_seed(FindDuplicate { path: self.path.key(&key), found: self.found })?;
        }
        Ok(())
    }
}

/// Reads a key and fails, recording it, if the mapping had it already.
struct NewKey<'s> {
    seen: &'s mut HashSet<String>,
    path: &'s FieldPath,
    found: &'s RefCell<Option<(FieldPath, String)>>,
}

impl NewKey<'_> {
    fn check<E: de::Error>(self, key: String) -> Result<String, E> {
        if self.seen.insert(key.clone()) {
            return Ok(key);
        }
        *self.found.borrow_mut() = Some((self.path.key(&key), key));
        Err(E::custom(FOUND))
    }
}

impl<'de> DeserializeSeed<'de> for NewKey<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NewKey<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        self.check(key.to_owned())
    }
    fn visit_bool<E: de::Error>(self, key: bool) -> Result<String, E> {
        self.check(key.to_string())
    }
    fn visit_i64<E: de::Error>(self, key: i64) -> Result<String, E> {
        self.check(key.to_string())
    }
    fn visit_u64<E: de::Error>(self, key: u64) -> Result<String, E> {
        self.check(key.to_string())
    }
    fn visit_f64<E: de::Error>(self, key: f64) -> Result<String, E> {
        self.check(key.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.check("null".to_owned())
    }
    // Lists and mappings as keys are left to the parser's own error.
}

/// Marks the error raised on purpose when the walk reaches its target.
const FOUND: &str = "\u{0}flotilla-location-found";

/// Finds the line and column of `path` in `text`: of the key when the path ends in a key, of the
/// element when it ends in an index. `None` when the path is not in the text.
pub(crate) fn locate(text: &str, format: Format, path: &FieldPath) -> Option<Location> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let seek = Seek { path: path.segments() };
    match format {
        Format::Yaml => {
            let error = seek.deserialize(serde_yaml::Deserializer::from_str(text)).err()?;
            if !error.to_string().contains(FOUND) {
                return None;
            }
            error.location().map(|l| Location::new(l.line(), l.column()))
        }
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let error = seek.deserialize(&mut deserializer).err()?;
            (error.to_string().contains(FOUND) && error.line() > 0).then(|| Location::new(error.line(), error.column()))
        }
    }
}

/// Walks one value towards the rest of the path; with no path left, stops here.
struct Seek<'p> {
    path: &'p [Segment],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            None => deserializer.deserialize_any(Stop),
            Some((Segment::Key(key), rest)) => deserializer.deserialize_any(SeekKey { key, rest }),
            Some((Segment::Index(index), rest)) => deserializer.deserialize_any(SeekIndex { index: *index, rest }),
        }
    }
}

/// Fails on whatever it is given, so the parser stamps its current position on the error.
struct Stop;

impl<'de> Visitor<'de> for Stop {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

/// Looks for one key in a mapping; anything else means the path is not there.
struct SeekKey<'p> {
    key: &'p str,
    rest: &'p [Segment],
}

impl<'de> Visitor<'de> for SeekKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(matched) = map.next_key_seed(KeyMatch { key: self.key, stop_here: self.rest.is_empty() })? {
            if matched {
                return map.next_value_seed(Seek { path: self.rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Reads a key; stops on it when it is the last step of the path.
struct KeyMatch<'p> {
    key: &'p str,
    stop_here: bool,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key != self.key {
            return Ok(false);
        }
        if self.stop_here { Err(E::custom(FOUND)) } else { Ok(true) }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Skips to one element of a list.
struct SeekIndex<'p> {
    index: usize,
    rest: &'p [Segment],
}

impl<'de> Visitor<'de> for SeekIndex<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: self.rest })?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// Reading the tree with paths: small accessors that turn a wrong shape into a located error.
pub(crate) mod tree {
    use serde_yaml::Value;

    use super::FieldPath;
    use crate::document::{DocumentError, Position};

    /// A human name for the kind of a value, for "expected X, found Y".
    pub(crate) fn kind_of(value: &Value) -> &'static str {
        match value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "true/false",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
            Value::Tagged(_) => "a tagged value",
        }
    }

    pub(crate) fn wrong_type(path: &FieldPath, expected: &'static str, value: &Value) -> DocumentError {
        DocumentError::WrongType { at: Position::at(path), expected, found: kind_of(value) }
    }

    /// A mapping's entries in document order; every key must be a string.
    pub(crate) fn entries<'a>(value: &'a Value, path: &FieldPath) -> Result<Vec<(&'a str, &'a Value)>, DocumentError> {
        let Value::Mapping(mapping) = value else {
            return Err(wrong_type(path, "a mapping", value));
        };
        mapping
            .iter()
            .map(|(key, value)| match key {
                Value::String(key) => Ok((key.as_str(), value)),
                other => Err(DocumentError::NonStringKey { at: Position::at(path), found: kind_of(other) }),
            })
            .collect()
    }

    /// Refuses any key not in `allowed`, naming it and listing the allowed ones.
    pub(crate) fn only_keys(
        entries: &[(&str, &Value)],
        allowed: &'static [&'static str],
        path: &FieldPath,
    ) -> Result<(), DocumentError> {
        match entries.iter().find(|(key, _)| !allowed.contains(key)) {
            Some((key, _)) => {
                Err(DocumentError::UnknownKey { at: Position::at(&path.key(key)), key: (*key).to_owned(), allowed })
            }
            None => Ok(()),
        }
    }

    pub(crate) fn get<'a>(entries: &[(&str, &'a Value)], key: &str) -> Option<&'a Value> {
        entries.iter().find(|(k, _)| *k == key).map(|(_, value)| *value)
    }

    pub(crate) fn required<'a>(
        entries: &[(&str, &'a Value)],
        key: &'static str,
        path: &FieldPath,
    ) -> Result<&'a Value, DocumentError> {
        get(entries, key).ok_or_else(|| DocumentError::MissingKey { at: Position::at(path), key })
    }

    /// The text of a scalar. Numbers and booleans count: YAML writes `timeoutSeconds: 600` and
    /// `default: 3600` unquoted, and refusing that would only annoy.
    pub(crate) fn scalar(value: &Value, path: &FieldPath) -> Result<String, DocumentError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(wrong_type(path, "a string", other)),
        }
    }

    /// A list of scalars; a single scalar is a one-element list (AWS writes
    /// `"runCommand": "{{ commands }}"`).
    pub(crate) fn scalar_list(value: &Value, path: &FieldPath) -> Result<Vec<String>, DocumentError> {
        match value {
            Value::Sequence(items) => items.iter().enumerate().map(|(i, item)| scalar(item, &path.index(i))).collect(),
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(vec![scalar(value, path)?]),
            other => Err(wrong_type(path, "a list of strings", other)),
        }
    }

    /// A non-negative whole number.
    pub(crate) fn count(value: &Value, path: &FieldPath) -> Result<usize, DocumentError> {
        value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| wrong_type(path, "a whole number (0 or more)", value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> FieldPath {
        parts.iter().fold(FieldPath::root(), |p, part| match part.parse::<usize>() {
            Ok(i) => p.index(i),
            Err(_) => p.key(part),
        })
    }

    #[test]
    fn paths_display_like_field_accessors() {
        let cases = [
            (path(&[]), "(document)"),
            (path(&["mainSteps"]), "mainSteps"),
            (path(&["mainSteps", "1", "inputs", "runCommand"]), "mainSteps[1].inputs.runCommand"),
            (path(&["parameters", "commands", "default", "0"]), "parameters.commands.default[0]"),
        ];
        for (p, shown) in cases {
            assert_eq!(p.to_string(), shown);
        }
    }

    const YAML: &str = "\
schemaVersion: '2.2'
mainSteps:
  - action: run:shell
    name: first
    inputs:
      commands: [echo one]
  - action: run:shell
    name: second
    inputs:
      runCommand:
        - echo two
";

    const JSON: &str = r#"{
  "schemaVersion": "2.2",
  "mainSteps": [
    {"action": "run:shell", "name": "first", "inputs": {"commands": ["echo one"]}},
    {
      "action": "run:shell",
      "name": "second",
      "inputs": {
        "runCommand": ["echo two"]
      }
    }
  ]
}"#;

    #[test]
    fn locates_keys_and_elements_in_yaml() {
        type LineColumn = Option<(u32, u32)>;
        let cases: [(&[&str], LineColumn); 6] = [
            (&["schemaVersion"], Some((1, 1))),
            (&["mainSteps"], Some((2, 1))),
            (&["mainSteps", "1", "name"], Some((8, 5))),
            (&["mainSteps", "1", "inputs", "runCommand"], Some((10, 7))),
            (&["mainSteps", "1", "inputs", "runCommand", "0"], Some((11, 11))),
            (&["mainSteps", "7"], None),
        ];
        for (parts, expected) in cases {
            let found = locate(YAML, Format::Yaml, &path(parts)).map(|l| (l.line, l.column));
            assert_eq!(found, expected, "{parts:?}");
        }
    }

    #[test]
    fn locates_lines_in_json() {
        // serde_json reports the position after the token it stopped on, so only lines are exact.
        let cases: [(&[&str], Option<u32>); 5] = [
            (&["schemaVersion"], Some(2)),
            (&["mainSteps", "0", "name"], Some(4)),
            (&["mainSteps", "1", "name"], Some(7)),
            (&["mainSteps", "1", "inputs", "runCommand"], Some(9)),
            (&["description"], None),
        ];
        for (parts, expected) in cases {
            let found = locate(JSON, Format::Json, &path(parts)).map(|l| l.line);
            assert_eq!(found, expected, "{parts:?}");
        }
    }

    #[test]
    fn load_picks_the_format_and_reports_syntax_errors_with_a_line() {
        assert_eq!(load(JSON).map(|(_, f)| f), Ok(Format::Json));
        assert_eq!(load(YAML).map(|(_, f)| f), Ok(Format::Yaml));
        assert_eq!(load(" \n[1]").map(|(_, f)| f), Ok(Format::Yaml));
        let cases = [
            ("{\n  \"a\": [1, 2\n}", "JSON", 3),
            ("{\"a\":\n }", "JSON", 2),
            ("{a: b}", "JSON", 1),
            ("a: 1\nb: [1, 2\nc: 3\n", "YAML", 3),
        ];
        for (text, format, line) in cases {
            match load(text) {
                Err(DocumentError::Syntax { format: f, location: Some(location), .. }) => {
                    assert_eq!((f, location.line), (format, line), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_keys_are_refused_where_they_repeat() {
        let cases = [
            ("{\n  \"a\": 1,\n  \"a\": 2\n}", "a", 3),
            ("a: 1\na: 2\n", "a", 2),
            ("a:\n  - x: 1\n    y: 2\n  - x: 1\n    x: 2\n", "a[1].x", 5),
            ("{\"a\": {\"b\": 1,\n \"b\": 2}}", "a.b", 2),
            ("1: a\n1: b\n", "1", 2),
        ];
        for (text, path, line) in cases {
            match load(text) {
                Err(DocumentError::DuplicateKey { at, .. }) => {
                    assert_eq!(
                        (at.path.to_string().as_str(), at.location.map(|l| l.line)),
                        (path, Some(line)),
                        "{text}"
                    );
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn load_refuses_text_over_the_limit() {
        let text = format!("description: \"{}\"\n", "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(matches!(load(&text), Err(DocumentError::TooLarge { limit: MAX_DOCUMENT_BYTES, .. })));
    }
}
