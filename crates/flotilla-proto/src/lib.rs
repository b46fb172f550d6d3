//! The agent wire protocol, `flotilla.agent.v1`, generated from `proto/agent.proto`.
//!
//! Invariant: the protocol is additive only (see the proto file); conversions to domain types
//! live with their users, so this crate stays a thin, generated boundary.

#![allow(clippy::all, missing_docs)]

/// `flotilla.agent.v1`.
pub mod v1 {
    tonic::include_proto!("flotilla.agent.v1");
}
