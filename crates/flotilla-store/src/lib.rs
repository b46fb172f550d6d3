//! Flotilla's storage: one [`Store`] interface, two real back ends (SQLite for the embedded
//! default, PostgreSQL for scale), versioned migrations embedded for each.
//!
//! Layout: one domain per module — `src/<domain>.rs` holds its trait and records,
//! `src/sql/<domain>.rs` its SQL; [`Store`] is the supertrait of every domain trait, so the
//! server holds one `Arc<dyn Store>`. `use flotilla_store::prelude::*` brings every trait into
//! scope for code that calls them on a concrete [`SqlStore`].
//!
//! Architecture invariant: the server sees only the traits; SQL lives here and nowhere else.
//! Both back ends run the same contract suite (`tests/contract.rs`). Queries are runtime
//! (`sqlx::query`), written once in the `$N` placeholder form both engines accept, so the
//! back ends differ only in their connection set-up and migrations.

mod assessments;
mod associations;
mod commands;
mod compliance;
mod error;
mod events;
mod fleet;
mod inventory;
mod notifications;
mod parameters;
mod patch;
mod schedules;
mod sessions;
mod sql;
mod vulndb;
mod windows;

pub use assessments::{
    AssessmentNodeRecord, AssessmentRunRecord, AssessmentStore, AssessmentTemplate, FindingRecord, NodeAssessment,
};
pub use associations::{AssociationNodeRecord, AssociationRecord, AssociationStore, SettledRun};
pub use commands::{CommandRecord, CommandStore, DocumentHead, DocumentVersion, InvocationRecord};
pub use compliance::{ComplianceItem, ComplianceStore};
pub use error::StoreError;
pub use events::{EventRecord, EventStore, NewEvent};
pub use fleet::{Enrollment, FleetStore, TargetGroup};
pub use inventory::{InventoryChange, InventorySetting, InventoryStore, StoredInventoryType};
pub use notifications::{DeliveryRecord, NewDelivery, NotificationStore, RuleRecord, SubscriptionRecord, TopicRecord};
pub use parameters::{MasterKeyRecord, ParameterLabel, ParameterPut, ParameterRecord, ParameterStore};
pub use patch::{BaselineRecord, PatchGroupRecord, PatchResult, PatchStateRecord, PatchStore, PatchSummaryRecord};
pub use schedules::{OccurrenceOutcome, OccurrenceRecord, ScheduleStore, UnknownOutcome};
pub use sessions::{SessionConnectionRecord, SessionRecord, SessionStore};
pub use sql::SqlStore;
pub use vulndb::{AdvisoryKeyHit, AdvisoryRecord, AdvisoryStats, ImportOutcome, StoredAdvisory, VulnDbStore};
pub use windows::{
    TaskInvocationRecord, WindowExecutionRecord, WindowRecord, WindowStore, WindowTargetRecord, WindowTaskRecord,
};

use async_trait::async_trait;

/// Every store trait, for `use flotilla_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AssessmentStore, AssociationStore, CommandStore, ComplianceStore, EventStore, FleetStore, InventoryStore,
        NotificationStore, ParameterStore, PatchStore, ScheduleStore, SessionStore, Store, VulnDbStore, WindowStore,
    };
}

/// The storage interface of the control plane: every domain's trait, plus what the server
/// asks of the database itself.
#[async_trait]
pub trait Store:
    FleetStore
    + CommandStore
    + InventoryStore
    + AssessmentStore
    + AssociationStore
    + ComplianceStore
    + ParameterStore
    + PatchStore
    + VulnDbStore
    + ScheduleStore
    + NotificationStore
    + EventStore
    + WindowStore
    + SessionStore
    + Send
    + Sync
    + 'static
{
    /// Which engine this is (`sqlite` or `postgres`), for logs and readiness.
    fn backend(&self) -> &'static str;
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
}
