//! The reference pipeline, shipped as data: on first start the server creates the `daily`
//! assessment template (targets `all`, every rules package, no schedule: disabled), the topics
//! `assessments` and `findings`, and two rules, `default-assessments` (`Assessment.Completed`
//! to `topic:assessments`) and `default-findings` (each node's `Finding.Reported` to
//! `topic:findings`). They are ordinary objects: the router and the scheduler treat them as
//! any operator's, with no cap on nodes. The template gets its schedule
//! (`assessments::templates::schedule_daily`) the first time advisories are imported, unless
//! the operator scheduled it already; the operator may enable it sooner with
//! `flotilla assess templates put daily --schedule ...`.
//!
//! Invariant: each seed is created at most once (the `seeds` table remembers it), so an
//! operator's edit or deletion is never undone by a restart; an object of the same name the
//! operator made first is left as it is.

use std::sync::Arc;

use crate::app::AppState;
use crate::assessments::templates::{self, DAILY, NewTemplate};
use crate::platform::{ServiceError, now_ms};

/// The seeded topics.
pub const ASSESSMENTS_TOPIC: &str = "assessments";
pub const FINDINGS_TOPIC: &str = "findings";

/// Creates whatever seed was never created. Idempotent.
pub async fn install(state: &Arc<AppState>) -> Result<(), ServiceError> {
    for topic in [ASSESSMENTS_TOPIC, FINDINGS_TOPIC] {
        seed(state, &format!("topic:{topic}"), || async move {
            match super::create_topic(state, topic).await {
                Ok(_) | Err(ServiceError::Clash { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
    }
    seed(state, &format!("template:{DAILY}"), || async move {
        if state.store.list_assessment_templates().await?.iter().any(|t| t.name == DAILY) {
            return Ok(());
        }
        templates::put_template(state, DAILY, NewTemplate { targets: vec!["all".into()], ..Default::default() })
            .await
            .map(|_| ())
    })
    .await?;
    for (name, kind, topic) in [
        ("default-assessments", "Assessment.Completed", ASSESSMENTS_TOPIC),
        ("default-findings", "Finding.Reported", FINDINGS_TOPIC),
    ] {
        seed(state, &format!("rule:{name}"), || async move {
            let rule = super::NewRule {
                name: name.to_owned(),
                pattern: serde_json::json!({ "type": [kind] }),
                target: format!("topic:{topic}"),
                parameters: Default::default(),
                targets: Vec::new(),
                enabled: true,
            };
            match super::create_rule(state, rule).await {
                Ok(_) | Err(ServiceError::Clash { .. }) => Ok(()),
                // The operator deleted the topic before this seed ran: leave the rule out.
                Err(ServiceError::Missing { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
    }
    if state.store.advisory_stats().await?.total > 0 {
        templates::schedule_daily(state).await?;
    }
    Ok(())
}

/// Runs `create` unless the seed `name` was applied, then records it.
async fn seed<F, Fut>(state: &AppState, name: &str, create: F) -> Result<(), ServiceError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), ServiceError>>,
{
    if state.store.seed_applied(name).await? {
        return Ok(());
    }
    create().await?;
    state.store.mark_seed(name, now_ms()).await?;
    Ok(())
}
