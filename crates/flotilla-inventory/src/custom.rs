//! Custom inventory: JSON files an operator drops in the node's custom inventory directory,
//! in the shape AWS uses: `{"SchemaVersion": "1.0", "TypeName": "Custom:Name", "Content": ...}`
//! where `Content` is one object or a list of objects whose values are all strings.

use serde::Deserialize;
use serde_json::Value;

use crate::types::InventoryType;

/// Largest accepted custom inventory file.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Why a custom inventory file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomError {
    #[error("is {0} bytes; custom inventory files may be at most {MAX_FILE_BYTES} bytes")]
    TooLarge(u64),
    #[error("is not valid JSON: {0}")]
    NotJson(String),
    #[error("needs the fields SchemaVersion, TypeName and Content: {0}")]
    Shape(String),
    #[error("{0}")]
    Type(#[from] crate::types::TypeError),
    #[error("declares the built-in type `{0}`; custom files must declare `Custom:Name`")]
    Builtin(String),
    #[error("Content item {0} is not an object of string values")]
    NotStrings(usize),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct File {
    #[allow(dead_code)]
    schema_version: String,
    type_name: String,
    content: Value,
}

/// Validates one file's bytes into its type and items.
pub fn parse(bytes: &[u8]) -> Result<(InventoryType, Vec<Value>), CustomError> {
    let size = bytes.len() as u64;
    if size > MAX_FILE_BYTES {
        return Err(CustomError::TooLarge(size));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| CustomError::NotJson(e.to_string()))?;
    let file = File::deserialize(value).map_err(|e| CustomError::Shape(e.to_string()))?;
    let kind = InventoryType::parse(&file.type_name)?;
    if let InventoryType::Builtin(name) = kind {
        return Err(CustomError::Builtin(name.to_owned()));
    }
    let items = match file.content {
        Value::Array(items) => items,
        one => vec![one],
    };
    if let Some(bad) = items.iter().position(|i| !i.as_object().is_some_and(|o| o.values().all(Value::is_string))) {
        return Err(CustomError::NotStrings(bad));
    }
    Ok((kind, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_files() {
        let one = br#"{"SchemaVersion":"1.0","TypeName":"Custom:RackInfo","Content":{"Row":"3","Slot":"12"}}"#;
        let (kind, items) = parse(one).expect("test input is valid");
        assert_eq!(kind.as_str(), "Custom:RackInfo");
        assert_eq!(items.len(), 1);
        let many = br#"{"SchemaVersion":"1.0","TypeName":"Custom:Disks","Content":[{"A":"1"},{"A":"2"}]}"#;
        assert_eq!(parse(many).expect("test input is valid").1.len(), 2);
    }

    #[test]
    fn refusals_say_why() {
        assert!(matches!(parse(b"{not json"), Err(CustomError::NotJson(_))));
        assert!(matches!(parse(br#"{"TypeName":"Custom:A","Content":{}}"#), Err(CustomError::Shape(_))));
        assert!(matches!(
            parse(br#"{"SchemaVersion":"1.0","TypeName":"Application","Content":{}}"#),
            Err(CustomError::Builtin(_))
        ));
        assert!(matches!(
            parse(br#"{"SchemaVersion":"1.0","TypeName":"Custom:Application","Content":{}}"#),
            Err(CustomError::Type(_))
        ));
        assert!(matches!(
            parse(br#"{"SchemaVersion":"1.0","TypeName":"Custom:A","Content":[{"n":1}]}"#),
            Err(CustomError::NotStrings(0))
        ));
        let big = vec![b' '; usize::try_from(MAX_FILE_BYTES).expect("test input is valid") + 1];
        assert!(matches!(parse(&big), Err(CustomError::TooLarge(_))));
    }
}
