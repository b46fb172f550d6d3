//! The scheduler's part of the storage interface: the durable record of which occurrence of
//! which schedule was fired or missed. Kept as its own trait (a supertrait of [`crate::Store`])
//! so the scheduler depends on nothing else of the store.
//!
//! Invariant: an occurrence is recorded at most once. The claim is an INSERT on the primary key
//! (schedule key, occurrence instant), so of any number of servers sharing one database exactly
//! one claim succeeds, and that server alone fires the occurrence.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use flotilla_core::UnixMillis;

use crate::StoreError;

/// What became of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OccurrenceOutcome {
    /// Claimed and handed to the schedule's handler.
    Fired,
    /// Not fired: the server was down past the schedule's grace, or a newer occurrence
    /// superseded it in the same catch-up.
    Missed,
}

impl OccurrenceOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceOutcome::Fired => "Fired",
            OccurrenceOutcome::Missed => "Missed",
        }
    }
}

impl fmt::Display for OccurrenceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outcome string that is neither `Fired` nor `Missed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an occurrence outcome (Fired or Missed)")]
pub struct UnknownOutcome(pub String);

impl FromStr for OccurrenceOutcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Fired" => Ok(OccurrenceOutcome::Fired),
            "Missed" => Ok(OccurrenceOutcome::Missed),
            other => Err(UnknownOutcome(other.to_owned())),
        }
    }
}

/// One recorded occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceRecord {
    /// The schedule's key, named by the capability that owns it (`assessment-template:nightly`).
    pub schedule_key: String,
    /// The instant the schedule named, not when it was handled.
    pub occurrence_at: UnixMillis,
    pub outcome: OccurrenceOutcome,
    pub recorded_at: UnixMillis,
    pub claimed_by: String,
}

#[async_trait]
pub trait ScheduleStore {
    /// Records the occurrence with `outcome` unless it is already recorded. True when this call
    /// wrote the row: for `Fired`, the caller has won the occurrence and must fire it.
    async fn claim_occurrence(
        &self,
        schedule_key: &str,
        occurrence_at: UnixMillis,
        outcome: OccurrenceOutcome,
        now: UnixMillis,
        claimed_by: &str,
    ) -> Result<bool, StoreError>;
    /// Records each occurrence as `Missed` unless already recorded, in one transaction;
    /// returns how many rows were written.
    async fn record_missed(
        &self,
        schedule_key: &str,
        occurrences: &[UnixMillis],
        now: UnixMillis,
        claimed_by: &str,
    ) -> Result<u64, StoreError>;
    /// The newest recorded occurrence of the schedule (fired or missed): where catch-up starts.
    async fn last_occurrence(&self, schedule_key: &str) -> Result<Option<OccurrenceRecord>, StoreError>;
    /// The newest occurrence that fired.
    async fn last_fired(&self, schedule_key: &str) -> Result<Option<OccurrenceRecord>, StoreError>;
    /// The schedule's recorded occurrences, newest first, at most `limit`.
    async fn list_occurrences(&self, schedule_key: &str, limit: u32) -> Result<Vec<OccurrenceRecord>, StoreError>;
    /// Forgets every occurrence of a schedule (it was deleted); returns how many rows went.
    async fn delete_occurrences(&self, schedule_key: &str) -> Result<u64, StoreError>;
    /// Deletes occurrences recorded before `cutoff`, except each schedule's newest, which is
    /// its catch-up mark; returns how many rows went.
    async fn prune_occurrences(&self, cutoff: UnixMillis) -> Result<u64, StoreError>;
}
