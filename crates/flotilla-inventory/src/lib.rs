//! Inventory: what is on a node, as typed lists of items.
//!
//! - [`types`]: the built-in types' item schemas and the rules for type names (`Custom:Name`).
//! - [`dpkg`], [`apk`], [`rpm`]: parsers of the real package databases' text (the agent reads
//!   the files or runs `rpm`, these turn the text into [`Application`] items).
//! - [`custom`]: validation of the JSON files operators drop on a node.
//! - [`filter`]: `FIELD OP VALUE` filters of fleet queries, with each ecosystem's real version
//!   ordering (from `flotilla-vuln`).
//!
//! Invariant: pure. No I/O, no clock; the agent and the server do that around it.

pub mod apk;
pub mod custom;
pub mod dpkg;
pub mod filter;
pub mod rpm;
pub mod types;

pub use filter::{Filter, FilterError, Op};
pub use types::{
    Application, Disk, FieldKind, FileItem, Hardware, InstanceInformation, InventoryType, NetworkInterface, Service,
    TypeError,
};
