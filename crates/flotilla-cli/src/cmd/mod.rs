//! One module per command group.

pub mod activations;
pub mod assess;
pub mod associations;
pub mod commands;
pub mod documents;
pub mod events;
pub mod groups;
pub mod inventory;
pub mod nodes;
pub mod notifications;
pub mod params;
pub mod patch;
pub mod server;
pub mod session;
pub mod version_cmp;
pub mod vulndb;
pub mod windows;

/// Splits `KEY=VALUE`; the server validates the parts.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("`{s}` is not KEY=VALUE")),
    }
}
