//! Activations: the shared secret with which agents enroll (SSM hybrid activations).
//!
//! Invariant: the code itself is never stored; only its SHA-256 is. Refusal reasons are
//! decided here so that the server and its tests agree on them.

use crate::{Tags, UnixMillis};

/// An activation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub id: String,
    /// Hex SHA-256 of the activation code.
    pub code_hash: String,
    pub description: String,
    pub registration_limit: u32,
    pub registrations: u32,
    pub expires_at: UnixMillis,
    pub default_tags: Tags,
    pub created_at: UnixMillis,
}

/// Why an enrollment was refused. Messages are safe to show to the enrolling agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationRefusal {
    #[error("unknown activation id `{0}`: check the id printed by `flotilla activations create`")]
    UnknownId(String),
    #[error("wrong activation code for activation `{0}`")]
    WrongCode(String),
    #[error("activation `{0}` has expired: create a new one with `flotilla activations create`")]
    Expired(String),
    #[error(
        "activation `{id}` has reached its registration limit of {limit}: create a new activation or raise --limit"
    )]
    LimitReached { id: String, limit: u32 },
}

/// Largest registration limit an activation may have (AWS allows 1000; we allow more since
/// fleets here are larger).
pub const MAX_REGISTRATION_LIMIT: u32 = 100_000;

impl Activation {
    /// Decides whether an agent presenting `code_hash` at `now` may enroll.
    pub fn admit(&self, code_hash: &str, now: UnixMillis) -> Result<(), ActivationRefusal> {
        if !constant_time_eq(self.code_hash.as_bytes(), code_hash.as_bytes()) {
            return Err(ActivationRefusal::WrongCode(self.id.clone()));
        }
        if now >= self.expires_at {
            return Err(ActivationRefusal::Expired(self.id.clone()));
        }
        if self.registrations >= self.registration_limit {
            return Err(ActivationRefusal::LimitReached { id: self.id.clone(), limit: self.registration_limit });
        }
        Ok(())
    }
}

/// Compares secrets' hashes without an early exit, so timing reveals nothing about them.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_table() {
        let act = Activation {
            id: "a1".into(),
            code_hash: "abc".into(),
            description: String::new(),
            registration_limit: 2,
            registrations: 1,
            expires_at: 1_000,
            default_tags: Tags::new(),
            created_at: 0,
        };
        assert_eq!(act.admit("abc", 999), Ok(()));
        assert_eq!(act.admit("abd", 999), Err(ActivationRefusal::WrongCode("a1".into())));
        assert_eq!(act.admit("abc", 1_000), Err(ActivationRefusal::Expired("a1".into())));
        let full = Activation { registrations: 2, ..act.clone() };
        assert_eq!(full.admit("abc", 0), Err(ActivationRefusal::LimitReached { id: "a1".into(), limit: 2 }));
        // A wrong code is reported before anything else, so the code is not needed to learn state.
        assert_eq!(full.admit("x", 5_000), Err(ActivationRefusal::WrongCode("a1".into())));
    }
}
