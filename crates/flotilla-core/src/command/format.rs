//! A command document's source format: Flotilla's own schema, or an AWS SSM document kept as
//! written and read through the importer. Stored with each document version.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DocumentFormat {
    #[default]
    Flotilla,
    /// An AWS SSM document (schema 1.2, 2.0 or 2.2).
    Ssm,
}

impl DocumentFormat {
    pub const ALL: [DocumentFormat; 2] = [DocumentFormat::Flotilla, DocumentFormat::Ssm];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Flotilla => "flotilla",
            DocumentFormat::Ssm => "ssm",
        }
    }
}

impl fmt::Display for DocumentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a document format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document format `{0}`: use `flotilla` or `ssm`")]
pub struct DocumentFormatError(pub String);

impl FromStr for DocumentFormat {
    type Err = DocumentFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentFormat::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| DocumentFormatError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in DocumentFormat::ALL {
            assert_eq!(format.as_str().parse::<DocumentFormat>(), Ok(format));
        }
        assert!("SSM".parse::<DocumentFormat>().is_err());
        assert!("yaml".parse::<DocumentFormat>().is_err());
    }
}
