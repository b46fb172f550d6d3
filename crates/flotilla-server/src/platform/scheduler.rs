//! The one scheduler: every schedule of every capability fires here, each occurrence once.
//!
//! Capabilities contribute a [`ScheduleSource`] at start (assessment templates today;
//! associations and maintenance windows next): it lists its schedules and fires an occurrence.
//! The loop wakes at the next due instant, when a capability says its schedules changed, or
//! every `resync` (to learn of changes made through another server on the same database), and
//! applies `flotilla_core::schedule`'s catch-up rule to each schedule from its mark (the newest
//! recorded occurrence, or when the schedule was set).
//!
//! Invariants:
//! - Exactly once: an occurrence fires only after this server's INSERT of its `Fired` row
//!   succeeded (`ScheduleStore::claim_occurrence`); of several servers on one PostgreSQL, only
//!   one INSERT lands. The row is written before the handler runs, so a handler that fails or a
//!   server killed mid-fire does not fire it again: at most once, by design, over at least once.
//! - Catch-up after downtime fires at most the newest missed occurrence, and only within the
//!   schedule's grace; every other one is recorded `Missed`, so it is never considered again.
//! - This module knows no capability: a source is a trait object, a schedule a key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::UnixMillis;
use flotilla_core::schedule::Schedule;
use flotilla_store::{OccurrenceOutcome, Store, StoreError};
use tokio::sync::Notify;

use super::now_ms;
use super::worker::WorkerContext;

/// How often the loop re-reads every source even when nothing woke it: the bound on how late a
/// schedule created through another server is noticed.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);

/// How long occurrence rows are kept (each schedule's newest is kept regardless: it is the
/// schedule's catch-up mark).
pub const OCCURRENCE_RETENTION_MS: i64 = 30 * 86_400_000;

/// How often the loop prunes old occurrence rows.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// One schedule as a source lists it.
#[derive(Debug, Clone)]
pub struct ScheduleEntry {
    /// Unique across sources; a source prefixes its own (`assessment-template:NAME`).
    pub key: String,
    pub schedule: Schedule,
    /// How late an occurrence may still fire, in milliseconds.
    pub grace_ms: i64,
    /// When the schedule was set: occurrences at or before it are not caught up.
    pub since: UnixMillis,
}

/// A failure to list or fire, as the source words it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// What a capability contributes to the scheduler.
#[async_trait]
pub trait ScheduleSource: Send + Sync {
    /// For logs: `assessment templates`.
    fn name(&self) -> &'static str;
    /// The source's schedules now.
    async fn schedules(&self) -> Result<Vec<ScheduleEntry>, SourceError>;
    /// Fires one occurrence, already claimed for this server.
    async fn fire(&self, key: &str, occurrence_at: UnixMillis) -> Result<(), SourceError>;
}

/// Counters since start, for status and tests.
#[derive(Debug, Default)]
pub struct SchedulerCounters {
    /// Occurrences this server claimed and fired.
    pub fired: AtomicU64,
    /// Occurrences this server recorded as missed.
    pub missed: AtomicU64,
    /// Claims another server won first.
    pub lost: AtomicU64,
    /// Handlers or sources that failed.
    pub errors: AtomicU64,
}

/// The scheduler's shared half: capabilities hold it to say their schedules changed.
pub struct Scheduler {
    store: Arc<dyn Store>,
    claimer: String,
    wake: Notify,
    resync: Duration,
    pub counters: SchedulerCounters,
}

impl Scheduler {
    /// `claimer` names this server in the occurrence rows (its URL).
    pub fn new(store: Arc<dyn Store>, claimer: String) -> Scheduler {
        Scheduler {
            store,
            claimer,
            wake: Notify::new(),
            resync: DEFAULT_RESYNC,
            counters: SchedulerCounters::default(),
        }
    }

    /// A capability created, changed or removed a schedule: look again now.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// The worker loop (run as the named worker `scheduler`): passes over every source until
    /// the worker is cancelled, `Running` during a pass and `Idle` between.
    pub async fn run(&self, sources: &[Arc<dyn ScheduleSource>], ctx: &WorkerContext) {
        let mut pruned_at = i64::MIN;
        loop {
            let now = now_ms();
            ctx.running();
            let next = self.pass(sources, now).await;
            if now.saturating_sub(pruned_at) >= PRUNE_EVERY_MS {
                pruned_at = now;
                match self.store.prune_occurrences(now - OCCURRENCE_RETENTION_MS).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned old schedule occurrences"),
                    Err(e) => tracing::warn!("cannot prune old schedule occurrences: {e}"),
                }
            }
            ctx.progress(match next {
                Some(at) => format!("next occurrence at {}", rfc3339(at)),
                None => "no upcoming occurrence".to_owned(),
            });
            ctx.idle();
            let resync = now.saturating_add(i64::try_from(self.resync.as_millis()).unwrap_or(i64::MAX));
            let until = next.map_or(resync, |n| n.min(resync));
            let wait = Duration::from_millis(u64::try_from(until.saturating_sub(now_ms())).unwrap_or(0));
            tokio::select! {
                () = ctx.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass at `now`: every due occurrence claimed and fired or recorded missed. Returns
    /// the earliest next occurrence of any schedule.
    pub async fn pass(&self, sources: &[Arc<dyn ScheduleSource>], now: UnixMillis) -> Option<UnixMillis> {
        let mut next: Option<UnixMillis> = None;
        for source in sources {
            let entries = match source.schedules().await {
                Ok(entries) => entries,
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = source.name(), "cannot list schedules: {e}");
                    continue;
                }
            };
            for entry in entries {
                match self.handle(source.as_ref(), &entry, now).await {
                    Ok(Some(n)) => next = Some(next.map_or(n, |m| m.min(n))),
                    Ok(None) => {}
                    Err(e) => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(schedule = %entry.key, "scheduler store error: {e}");
                    }
                }
            }
        }
        next
    }

    /// When `entry` fires next as this scheduler sees it at `now`: after its newest handled
    /// occurrence and its `since`, an occurrence still within its grace counting as next even
    /// if its instant passed. For the "next run" that capabilities show.
    pub async fn next_run(&self, entry: &ScheduleEntry, now: UnixMillis) -> Result<Option<UnixMillis>, StoreError> {
        let mark = self.store.last_occurrence(&entry.key).await?.map_or(entry.since, |o| o.occurrence_at);
        Ok(entry.schedule.next_after(mark.max(entry.since).max(now.saturating_sub(entry.grace_ms))))
    }

    async fn handle(
        &self,
        source: &dyn ScheduleSource,
        entry: &ScheduleEntry,
        now: UnixMillis,
    ) -> Result<Option<UnixMillis>, StoreError> {
        let mark =
            self.store.last_occurrence(&entry.key).await?.map_or(entry.since, |o| o.occurrence_at.max(entry.since));
        let decision = entry.schedule.catch_up(mark, now, entry.grace_ms);
        if !decision.missed.is_empty() {
            let written = self.store.record_missed(&entry.key, &decision.missed, now, &self.claimer).await?;
            self.counters.missed.fetch_add(written, Ordering::Relaxed);
            if written > 0 {
                tracing::warn!(
                    schedule = %entry.key,
                    missed = written,
                    newest = decision.missed.first().copied().unwrap_or_default(),
                    "schedule occurrences missed (older than the grace, or superseded by a newer one)"
                );
            }
        }
        if let Some(at) = decision.fire {
            if self.store.claim_occurrence(&entry.key, at, OccurrenceOutcome::Fired, now, &self.claimer).await? {
                self.counters.fired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(schedule = %entry.key, occurrence = at, late_ms = now - at, "schedule fired");
                if let Err(e) = source.fire(&entry.key, at).await {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(schedule = %entry.key, occurrence = at, "the fired occurrence failed: {e}");
                }
            } else {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(schedule = %entry.key, occurrence = at, "another server fired this occurrence");
            }
        }
        Ok(decision.next)
    }
}

fn rfc3339(at: UnixMillis) -> String {
    let ms = u64::try_from(at).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use flotilla_core::schedule::ScheduleRules;
    use flotilla_store::SqlStore;

    use super::*;

    const HOUR: i64 = 3_600_000;
    /// 2026-11-25T00:00:00Z
    const DAY: i64 = 1_795_564_800_000;

    struct Fake {
        entries: Vec<ScheduleEntry>,
        fired: Mutex<Vec<(String, UnixMillis)>>,
    }

    #[async_trait]
    impl ScheduleSource for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        async fn schedules(&self) -> Result<Vec<ScheduleEntry>, SourceError> {
            Ok(self.entries.clone())
        }
        async fn fire(&self, key: &str, at: UnixMillis) -> Result<(), SourceError> {
            self.fired.lock().expect("lock").push((key.to_owned(), at));
            Ok(())
        }
    }

    fn source(expr: &str, grace_ms: i64, since: UnixMillis) -> Arc<Fake> {
        let schedule = Schedule::parse(expr, None, &ScheduleRules::GENERAL).expect("valid");
        let entry = ScheduleEntry { key: "k".into(), schedule, grace_ms, since };
        Arc::new(Fake { entries: vec![entry], fired: Mutex::new(Vec::new()) })
    }

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(SqlStore::open_sqlite(&dir.path().join("db")).await.expect("open"))
    }

    #[tokio::test]
    async fn an_occurrence_fires_once_and_a_late_one_is_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let fake = source("cron(0 2 * * *)", HOUR, DAY - 10 * HOUR);
        let sources: Vec<Arc<dyn ScheduleSource>> = vec![fake.clone()];
        let s = Scheduler::new(store.clone(), "a".into());
        assert_eq!(s.pass(&sources, DAY + HOUR).await, Some(DAY + 2 * HOUR), "not due yet");
        // Down across 02:00, back at 02:40: fires once, however many passes follow.
        s.pass(&sources, DAY + 2 * HOUR + 40 * 60_000).await;
        s.pass(&sources, DAY + 2 * HOUR + 41 * 60_000).await;
        assert_eq!(*fake.fired.lock().expect("lock"), vec![("k".to_owned(), DAY + 2 * HOUR)]);
        // The next night's is missed by more than the grace: recorded, not fired.
        s.pass(&sources, DAY + 24 * HOUR + 4 * HOUR).await;
        assert_eq!(fake.fired.lock().expect("lock").len(), 1);
        let last = store.last_occurrence("k").await.expect("read").expect("some");
        assert_eq!((last.occurrence_at, last.outcome), (DAY + 26 * HOUR, OccurrenceOutcome::Missed));
        assert_eq!(s.counters.missed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn two_schedulers_on_one_store_fire_an_occurrence_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let fake = source("rate(1 hour)", HOUR, DAY);
        let sources: Vec<Arc<dyn ScheduleSource>> = vec![fake.clone()];
        let a = Arc::new(Scheduler::new(store.clone(), "a".into()));
        let b = Arc::new(Scheduler::new(store.clone(), "b".into()));
        let now = DAY + HOUR + 5;
        let (ra, rb) = tokio::join!(a.pass(&sources, now), b.pass(&sources, now));
        assert_eq!((ra, rb), (Some(DAY + 2 * HOUR), Some(DAY + 2 * HOUR)));
        assert_eq!(fake.fired.lock().expect("lock").len(), 1);
        let won = a.counters.fired.load(Ordering::Relaxed) + b.counters.fired.load(Ordering::Relaxed);
        let lost = a.counters.lost.load(Ordering::Relaxed) + b.counters.lost.load(Ordering::Relaxed);
        // The other either lost the claim or, passing after it, saw the occurrence handled.
        assert!(won == 1 && lost <= 1, "won {won}, lost {lost}");
    }

    #[tokio::test]
    async fn the_loop_fires_an_occurrence_due_soon_and_stops_on_cancel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let soon = now_ms() + 300;
        let fake = source("rate(5 minutes)", HOUR, 0);
        // A rate anchored 300 ms ahead, so its first occurrence is then.
        let mut entry = fake.entries[0].clone();
        entry.schedule = entry.schedule.anchored(soon);
        entry.since = soon - 1;
        let fake = Arc::new(Fake { entries: vec![entry], fired: Mutex::new(Vec::new()) });
        let s = Arc::new(Scheduler::new(store, "a".into()));
        let cancel = tokio_util::sync::CancellationToken::new();
        let workers = crate::platform::worker::Workers::new(cancel.clone());
        let sources: Vec<Arc<dyn ScheduleSource>> = vec![fake.clone()];
        workers
            .spawn("scheduler", move |ctx| {
                let (s, sources) = (s.clone(), sources.clone());
                async move {
                    s.run(&sources, &ctx).await;
                    Ok(())
                }
            })
            .expect("spawn");
        for _ in 0..100 {
            if !fake.fired.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(*fake.fired.lock().expect("lock"), vec![("k".to_owned(), soon)]);
        let late = workers.shutdown(tokio::time::Instant::now() + Duration::from_secs(10)).await;
        assert!(late.is_empty(), "the loop ends on cancel: {late:?}");
    }
}
