//! Tags: key/value labels on nodes and activations, the basis of targeting.
//!
//! Rules follow AWS resource tags: keys 1..=128 characters, values 0..=256, letters, digits,
//! spaces and `_ . : / = + - @`; keys starting with `aws:` or `flotilla:` are reserved.

use std::collections::BTreeMap;

/// A node's tags, ordered by key so listings and hashes are stable.
pub type Tags = BTreeMap<String, String>;

/// Why a tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag `{0}` has an empty key: write KEY=VALUE with a non-empty KEY")]
    EmptyKey(String),
    #[error("tag key `{key}` is {len} characters long; the limit is 128")]
    KeyTooLong { key: String, len: usize },
    #[error("tag value for `{key}` is {len} characters long; the limit is 256")]
    ValueTooLong { key: String, len: usize },
    #[error("tag `{0}` contains a character that is not allowed: use letters, digits, spaces and _ . : / = + - @")]
    BadCharacter(String),
    #[error("tag key `{0}` uses a reserved prefix (aws: or flotilla:)")]
    Reserved(String),
    #[error("`{0}` is not a tag: write KEY=VALUE")]
    MissingEquals(String),
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || " _.:/=+-@".contains(c)
}

/// Checks a key on its own (for untag).
pub fn validate_key(key: &str) -> Result<(), TagError> {
    if key.is_empty() {
        return Err(TagError::EmptyKey(key.to_owned()));
    }
    let len = key.chars().count();
    if len > 128 {
        return Err(TagError::KeyTooLong { key: key.to_owned(), len });
    }
    if !key.chars().all(allowed) {
        return Err(TagError::BadCharacter(key.to_owned()));
    }
    let lower = key.to_ascii_lowercase();
    if lower.starts_with("aws:") || lower.starts_with("flotilla:") {
        return Err(TagError::Reserved(key.to_owned()));
    }
    Ok(())
}

/// Checks a key and its value.
pub fn validate(key: &str, value: &str) -> Result<(), TagError> {
    validate_key(key)?;
    let len = value.chars().count();
    if len > 256 {
        return Err(TagError::ValueTooLong { key: key.to_owned(), len });
    }
    if !value.chars().all(allowed) {
        return Err(TagError::BadCharacter(format!("{key}={value}")));
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the value may be empty and may itself contain `=`).
pub fn parse_pair(s: &str) -> Result<(String, String), TagError> {
    let (key, value) = s.split_once('=').ok_or_else(|| TagError::MissingEquals(s.to_owned()))?;
    if key.is_empty() {
        return Err(TagError::EmptyKey(s.to_owned()));
    }
    validate(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("env=prod"), Ok(("env".into(), "prod".into())));
        assert_eq!(parse_pair("env="), Ok(("env".into(), "".into())));
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("Patch Group=web"), Ok(("Patch Group".into(), "web".into())));
        assert!(matches!(parse_pair("=prod"), Err(TagError::EmptyKey(_))));
        assert!(matches!(parse_pair("env"), Err(TagError::MissingEquals(_))));
        assert!(matches!(parse_pair("aws:x=1"), Err(TagError::Reserved(_))));
        assert!(matches!(parse_pair("e;nv=1"), Err(TagError::BadCharacter(_))));
        assert!(matches!(parse_pair(&format!("{}=1", "k".repeat(129))), Err(TagError::KeyTooLong { .. })));
        assert!(matches!(parse_pair(&format!("k={}", "v".repeat(257))), Err(TagError::ValueTooLong { .. })));
    }
}
