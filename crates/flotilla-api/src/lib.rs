//! Flotilla's REST/JSON boundary: request and response types of `/api/v1` and `/agent/v1`,
//! and a typed client. The CLI (and any other tool) talks to the server only through this.
//!
//! Invariant: these types are the public wire format. Fields are snake_case and only ever
//! added; requests reject unknown fields so that a typo is an error, not a silent default.

pub mod assess;
pub mod associations;
pub mod client;
pub mod inventory;
pub mod notifications;
pub mod parameters;
pub mod patch;
pub mod server;
pub mod sessions;
pub mod types;
pub mod vulndb;
pub mod windows;

pub use assess::*;
pub use associations::*;
pub use client::{Client, ClientError};
pub use inventory::*;
pub use notifications::*;
pub use parameters::*;
pub use patch::*;
pub use server::*;
pub use sessions::*;
pub use types::*;
pub use vulndb::*;
pub use windows::*;
