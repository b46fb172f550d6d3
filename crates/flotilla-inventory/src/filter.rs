//! Fleet query filters: `FIELD OP VALUE`, e.g. `name=openssl`, `version<3.0.11`.
//!
//! Operators: `=`, `!=`, `<`, `<=`, `>`, `>=`, `~` (contains). Version fields compare with the
//! item's own package manager's ordering (dpkg, rpm or apk, from `flotilla-vuln`); an item whose
//! version that ordering rejects never matches an ordering comparison (it is not guessed at).
//! Integers compare as numbers, lists match when any element does, text compares exactly.
//! A field missing from an item matches only `!=`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use flotilla_vuln::Ecosystem;
use serde_json::Value;

use crate::types::{FieldKind, InventoryType};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

impl Op {
    /// Longest spellings first so that `<=` is not read as `<`.
    const SPELLINGS: [(&'static str, Op); 7] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("!=", Op::Ne),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("~", Op::Contains),
    ];

    fn as_str(self) -> &'static str {
        Self::SPELLINGS.iter().find(|(_, op)| *op == self).map_or("?", |(s, _)| s)
    }

    fn ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }

    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Contains => false,
        }
    }
}

/// One parsed, checked filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: String,
    pub op: Op,
    pub value: String,
    kind: FieldKind,
    integer: Option<i64>,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter `{0}` has no field name; write it as FIELD OP VALUE, e.g. 'name=openssl'")]
    NoField(String),
    #[error("filter `{0}` has no valid operator after the field; use one of = != < <= > >= ~")]
    BadOperator(String),
    #[error("type {kind} has no field `{field}`; its fields are {fields}")]
    UnknownField { kind: String, field: String, fields: String },
    #[error("field `{field}` of {kind} cannot be compared with `{op}`{hint}")]
    OperatorNotForField { kind: String, field: String, op: &'static str, hint: &'static str },
    #[error("field `{field}` is a number, but `{value}` is not")]
    NotANumber { field: String, value: String },
}

impl Filter {
    /// Parses `text` and checks it against the type's schema.
    pub fn parse(text: &str, kind: &InventoryType) -> Result<Self, FilterError> {
        let trimmed = text.trim();
        let end = trimmed.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(trimmed.len());
        let field = &trimmed[..end];
        if field.is_empty() {
            return Err(FilterError::NoField(text.to_owned()));
        }
        let rest = trimmed[end..].trim_start();
        let Some((spelling, op)) = Op::SPELLINGS.iter().find(|(s, _)| rest.starts_with(s)) else {
            return Err(FilterError::BadOperator(text.to_owned()));
        };
        let value = rest[spelling.len()..].trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(value);
        // A second operator right after the first (`name=<x`, `a<>b`) is a typo, not a value.
        if value.starts_with(['<', '>', '=', '!']) {
            return Err(FilterError::BadOperator(text.to_owned()));
        }
        let field_kind = match kind.fields() {
            None => FieldKind::Text,
            Some(fields) => match fields.iter().find(|(name, _)| *name == field) {
                Some((_, field_kind)) => *field_kind,
                None => {
                    return Err(FilterError::UnknownField {
                        kind: kind.to_string(),
                        field: field.to_owned(),
                        fields: fields.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                    });
                }
            },
        };
        let refuse = |hint| FilterError::OperatorNotForField {
            kind: kind.to_string(),
            field: field.to_owned(),
            op: op.as_str(),
            hint,
        };
        match field_kind {
            FieldKind::Nested => return Err(refuse(": it is structured; show it with `inventory show`")),
            FieldKind::List if op.ordering() => return Err(refuse(": it is a list; use = != or ~")),
            FieldKind::Integer if *op == Op::Contains => return Err(refuse(": it is a number")),
            _ => {}
        }
        let integer = match field_kind {
            FieldKind::Integer => Some(
                value
                    .parse::<i64>()
                    .map_err(|_| FilterError::NotANumber { field: field.to_owned(), value: value.to_owned() })?,
            ),
            _ => None,
        };
        Ok(Filter { field: field.to_owned(), op: *op, value: value.to_owned(), kind: field_kind, integer })
    }

    /// The value an index lookup can use: the filter is `KEY = VALUE` on the type's key field.
    pub fn key_lookup(&self, kind: &InventoryType) -> Option<&str> {
        (self.op == Op::Eq && kind.key_field() == Some(self.field.as_str())).then_some(self.value.as_str())
    }

    pub fn matches(&self, item: &Value) -> bool {
        let Some(value) = item.get(&self.field).filter(|v| !v.is_null()) else {
            return self.op == Op::Ne;
        };
        match self.kind {
            FieldKind::Integer => {
                let (Some(have), Some(want)) = (value.as_i64(), self.integer) else { return self.op == Op::Ne };
                self.op.accepts(have.cmp(&want))
            }
            FieldKind::List => {
                let elements = value.as_array().map(Vec::as_slice).unwrap_or_default();
                let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                match self.op {
                    Op::Eq => elements.iter().any(|e| text(e) == self.value),
                    Op::Ne => !elements.iter().any(|e| text(e) == self.value),
                    _ => elements.iter().any(|e| text(e).contains(&self.value)),
                }
            }
            FieldKind::Version => {
                let have = value.as_str().unwrap_or_default();
                if self.op == Op::Contains {
                    return have.contains(&self.value);
                }
                let ecosystem =
                    item.get("package_manager").and_then(Value::as_str).and_then(|pm| Ecosystem::from_str(pm).ok());
                match ecosystem.map(|eco| flotilla_vuln::compare(eco, have, &self.value)) {
                    Some(Ok(ordering)) => self.op.accepts(ordering),
                    // Unknown ordering: only exact text can be said equal or different.
                    _ if !self.op.ordering() => self.op.accepts(have.cmp(self.value.as_str())),
                    _ => false,
                }
            }
            FieldKind::Text | FieldKind::Nested => {
                let have = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
                match self.op {
                    Op::Contains => have.contains(&self.value),
                    op => op.accepts(have.as_str().cmp(self.value.as_str())),
                }
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.field, self.op.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn app() -> InventoryType {
        InventoryType::parse("Application").expect("test input is valid")
    }

    fn package(pm: &str, name: &str, version: &str) -> Value {
        json!({"name": name, "version": version, "package_manager": pm, "arch": "amd64"})
    }

    #[test]
    fn versions_use_the_package_managers_ordering() {
        let older = Filter::parse("version<3.0.11", &app()).expect("test input is valid");
        assert!(older.matches(&package("dpkg", "openssl", "3.0.9-1")));
        // Lexically "3.0.11" < "3.0.9"; dpkg says otherwise.
        assert!(!older.matches(&package("dpkg", "openssl", "3.0.11-1~deb12u2")));
        assert!(older.matches(&package("dpkg", "openssl", "3.0.11~rc1-1")));
        assert!(!older.matches(&package("dpkg", "openssl", "1:1.0")), "the epoch wins");
        assert!(older.matches(&package("rpm", "openssl", "3.0.7-27.el9")));
        assert!(!older.matches(&package("rpm", "openssl", "1:3.0.7-27.el9")));
        assert!(older.matches(&package("apk", "openssl", "3.0.11_rc1-r0")));
        let at_least = Filter::parse("version >= 3.0.11", &app()).expect("test input is valid");
        assert!(at_least.matches(&package("apk", "openssl", "3.0.11-r0")));
        // A version the ordering rejects never matches an ordering comparison.
        assert!(!older.matches(&package("dpkg", "x", "not a version!")));
        assert!(!at_least.matches(&package("dpkg", "x", "not a version!")));
    }

    #[test]
    fn text_lists_and_numbers() {
        let item = json!({"name": "eth0", "mac": "aa:bb", "addresses": ["10.0.0.1", "fe80::1"], "mtu": 1500});
        let network = InventoryType::parse("Network").expect("test input is valid");
        let check = |text: &str| Filter::parse(text, &network).expect("test input is valid").matches(&item);
        assert!(check("name=eth0"));
        assert!(!check("name!=eth0"));
        assert!(check("name~th"));
        assert!(check("addresses=10.0.0.1"));
        assert!(!check("addresses=10.0.0"));
        assert!(check("addresses~10.0.0"));
        assert!(check("mtu>=1500") && !check("mtu>1500") && check("mtu<9000"));
        assert!(check("mac!=x"), "present and different");
        let missing = json!({"name": "lo"});
        assert!(Filter::parse("mac!=x", &network).expect("test input is valid").matches(&missing));
        assert!(!Filter::parse("mac=x", &network).expect("test input is valid").matches(&missing));
    }

    #[test]
    fn key_lookup_only_for_equality_on_the_key() {
        assert_eq!(
            Filter::parse("name=openssl", &app()).expect("test input is valid").key_lookup(&app()),
            Some("openssl")
        );
        assert_eq!(Filter::parse("name~openssl", &app()).expect("test input is valid").key_lookup(&app()), None);
        assert_eq!(Filter::parse("arch=amd64", &app()).expect("test input is valid").key_lookup(&app()), None);
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let error = |text: &str| Filter::parse(text, &app()).unwrap_err();
        assert!(matches!(error("=openssl"), FilterError::NoField(_)));
        assert!(matches!(error("name openssl"), FilterError::BadOperator(_)));
        assert!(matches!(error("name=<3"), FilterError::BadOperator(_)));
        assert!(matches!(error("name like x"), FilterError::BadOperator(_)));
        let unknown = error("colour=red");
        assert!(unknown.to_string().contains("source_name"), "{unknown}");
        assert!(matches!(error("install_time>soon"), FilterError::NotANumber { .. }));
        let hardware = InventoryType::parse("Hardware").expect("test input is valid");
        assert!(matches!(Filter::parse("disks=x", &hardware), Err(FilterError::OperatorNotForField { .. })));
        let network = InventoryType::parse("Network").expect("test input is valid");
        assert!(matches!(Filter::parse("addresses<x", &network), Err(FilterError::OperatorNotForField { .. })));
        // Custom types: any attribute, text comparison.
        let custom = InventoryType::parse("Custom:Rack").expect("test input is valid");
        assert!(Filter::parse("Row=3", &custom).expect("test input is valid").matches(&json!({"Row": "3"})));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC*") {
            let _ = Filter::parse(&text, &app());
        }
    }
}
