//! The agent wire protocol, `flotilla.agent.v1`, generated from `proto/agent.proto`.
//!
//! Invariant: the protocol is additive only (see the proto file); conversions to domain types
//! live with their users, so this crate stays a thin, generated boundary.

#![allow(clippy::all, missing_docs)]

pub mod codec;

/// `flotilla.agent.v1`.
pub mod v1 {
    tonic::include_proto!("flotilla.agent.v1");
}

/// How the server tells an agent that a refusal is final. A PermissionDenied carrying the
/// metadata entry `flotilla-refusal: deregistered` means the node was deregistered (the agent
/// stops); any other refusal may be temporary (the agent retries). Agents also read the
/// message text "was deregistered", which servers before this entry sent alone.
pub mod refusal {
    /// The metadata key of a refusal's kind.
    pub const KEY: &str = "flotilla-refusal";
    /// The kind of a final refusal: the node was deregistered.
    pub const DEREGISTERED: &str = "deregistered";

    /// A PermissionDenied that tells the agent to stop for good.
    pub fn deregistered(message: String) -> tonic::Status {
        let mut status = tonic::Status::permission_denied(message);
        status.metadata_mut().insert(KEY, tonic::metadata::MetadataValue::from_static(DEREGISTERED));
        status
    }

    /// Whether `status` is a final refusal (from this server version or an older one).
    pub fn is_deregistered(status: &tonic::Status) -> bool {
        status.code() == tonic::Code::PermissionDenied
            && (status.metadata().get(KEY).is_some_and(|v| v == DEREGISTERED)
                || status.message().contains("was deregistered"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn final_refusals_are_told_apart_from_temporary_ones() {
            assert!(is_deregistered(&deregistered("node n-1 is gone".into())), "the metadata decides, not the text");
            assert!(is_deregistered(&tonic::Status::permission_denied("node n-1 was deregistered")), "older servers");
            assert!(!is_deregistered(&tonic::Status::permission_denied("certificate does not match")));
            let mut other = tonic::Status::unavailable("was deregistered");
            other.metadata_mut().insert(KEY, tonic::metadata::MetadataValue::from_static(DEREGISTERED));
            assert!(!is_deregistered(&other), "only a PermissionDenied is a refusal");
        }
    }
}
