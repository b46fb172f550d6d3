//! Named workers: every background task of the server runs under one supervisor, so that an
//! operator can see it (`GET /api/v1/server/status`), a failure restarts it, and shutdown stops
//! all of them together.
//!
//! Invariants: a worker whose future returns an error or panics is restarted after an
//! exponential backoff (`flotilla_core::backoff`) and shows the error meanwhile; it is never
//! silently gone, and the rest of the server keeps running (each worker is its own task and a
//! panic is caught at its boundary). [`Workers::shutdown`] cancels every worker at once and
//! waits for all of them against ONE deadline, naming those that did not stop in time. No lock
//! here is held across an `.await`.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use flotilla_core::backoff::Backoff;
use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::now_ms;

/// What a worker's future ends with. Any error type converts into it with `?`.
pub type WorkerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The first restart comes after about this long; each further one doubles it.
pub const RESTART_BASE: Duration = Duration::from_secs(1);
/// No restart waits longer than this.
pub const RESTART_CAP: Duration = Duration::from_secs(60);

/// Where a worker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Its future runs and is doing work (or never says otherwise).
    Running,
    /// Its future runs and waits for its next piece of work.
    Idle,
    /// Its last incarnation failed with `error`; it restarts at `until_ms` (ms since the epoch).
    BackingOff { until_ms: i64, error: String },
    /// It failed and will not be restarted (the server is stopping, or it ignored the shutdown
    /// deadline and was aborted).
    Failed { error: String },
    /// It ended normally (on cancellation, or a one-off task that finished).
    Stopped,
}

impl WorkerState {
    /// The state's name on the API: `running`, `idle`, `backing_off`, `failed`, `stopped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Idle => "idle",
            WorkerState::BackingOff { .. } => "backing_off",
            WorkerState::Failed { .. } => "failed",
            WorkerState::Stopped => "stopped",
        }
    }
}

/// The start and end (ms since the epoch) of a worker's last piece of work; `ended_at_ms` is
/// `None` while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// One worker as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub name: String,
    pub state: WorkerState,
    pub last_run: Option<LastRun>,
    /// The error of the last failure, kept after a successful restart.
    pub last_error: Option<String>,
    /// Free text the worker last reported about what it is doing.
    pub progress: Option<String>,
    /// Pieces of work started ([`WorkerContext::running`]).
    pub runs: u64,
    /// Incarnations that returned an error or panicked.
    pub failures: u64,
    /// Incarnations started after a failure.
    pub restarts: u64,
}

/// Refusals of [`Workers::spawn`].
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("a worker named `{name}` is already running: give each background task its own name")]
    Duplicate { name: String },
}

#[derive(Debug)]
struct Status {
    state: WorkerState,
    last_run: Option<LastRun>,
    last_error: Option<String>,
    progress: Option<String>,
    runs: u64,
    failures: u64,
    restarts: u64,
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    status: Mutex<Status>,
}

impl Entry {
    fn status(&self) -> MutexGuard<'_, Status> {
        // A panic while the guard is held only ever interrupts a field assignment, so the
        // status is still coherent.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self) -> WorkerSnapshot {
        let s = self.status();
        WorkerSnapshot {
            name: self.name.to_string(),
            state: s.state.clone(),
            last_run: s.last_run,
            last_error: s.last_error.clone(),
            progress: s.progress.clone(),
            runs: s.runs,
            failures: s.failures,
            restarts: s.restarts,
        }
    }

    fn is_active(&self) -> bool {
        !matches!(self.status().state, WorkerState::Stopped | WorkerState::Failed { .. })
    }
}

struct Inner {
    token: CancellationToken,
    entries: Mutex<BTreeMap<Arc<str>, Arc<Entry>>>,
    tasks: Mutex<Vec<(Arc<str>, JoinHandle<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The registry of the server's workers. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

/// What a worker's future gets: its cancellation token and a handle to report its state.
#[derive(Clone)]
pub struct WorkerContext {
    entry: Arc<Entry>,
    token: CancellationToken,
}

impl WorkerContext {
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Cancelled when the server stops; a worker returns soon after.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A piece of work starts: state `Running`, counted, its start time kept.
    pub fn running(&self) {
        let mut s = self.entry.status();
        s.state = WorkerState::Running;
        s.runs = s.runs.saturating_add(1);
        s.last_run = Some(LastRun { started_at_ms: now_ms(), ended_at_ms: None });
    }

    /// The piece of work ended: state `Idle` until the next one.
    pub fn idle(&self) {
        let mut s = self.entry.status();
        s.state = WorkerState::Idle;
        if let Some(run) = s.last_run.as_mut() {
            run.ended_at_ms.get_or_insert_with(now_ms);
        }
    }

    /// Runs `work` as one piece of work: `running` before, `idle` after.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> T {
        self.running();
        let out = work.await;
        self.idle();
        out
    }

    /// What the worker is doing, in a few words, for the status endpoint.
    pub fn progress(&self, text: impl Into<String>) {
        self.entry.status().progress = Some(text.into());
    }
}

impl Workers {
    /// A registry whose workers stop when `token` is cancelled (by [`Workers::shutdown`] or by
    /// whoever else holds it).
    pub fn new(token: CancellationToken) -> Self {
        Workers {
            inner: Arc::new(Inner { token, entries: Mutex::new(BTreeMap::new()), tasks: Mutex::new(Vec::new()) }),
        }
    }

    /// The token every worker watches.
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Starts a long-lived worker. `make` builds its future, again after each failure: a future
    /// that returns `Err` or panics is restarted with backoff; one that returns `Ok` has
    /// stopped for good (normally on cancellation) and stays listed as `Stopped`.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, make: F) -> Result<(), WorkerError>
    where
        F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WorkerResult> + Send + 'static,
    {
        self.start(name.into(), make, false)
    }

    /// Like [`Workers::spawn`] for a task that ends by itself (one assessment run, say): while
    /// it runs it is listed and supervised like any worker; once it has finished it is
    /// removed from the list.
    pub fn spawn_transient<F, Fut>(&self, name: impl Into<String>, make: F) -> Result<(), WorkerError>
    where
        F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WorkerResult> + Send + 'static,
    {
        self.start(name.into(), make, true)
    }

    fn start<F, Fut>(&self, name: String, make: F, transient: bool) -> Result<(), WorkerError>
    where
        F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WorkerResult> + Send + 'static,
    {
        let name: Arc<str> = Arc::from(name);
        let entry = {
            let mut entries = lock(&self.inner.entries);
            if entries.get(&name).is_some_and(|e| e.is_active()) {
                return Err(WorkerError::Duplicate { name: name.to_string() });
            }
            let entry = Arc::new(Entry {
                name: name.clone(),
                status: Mutex::new(Status {
                    state: WorkerState::Running,
                    last_run: None,
                    last_error: None,
                    progress: None,
                    runs: 0,
                    failures: 0,
                    restarts: 0,
                }),
            });
            entries.insert(name.clone(), entry.clone());
            entry
        };
        let registry = transient.then(|| Arc::downgrade(&self.inner));
        let handle = tokio::spawn(supervise(entry, self.inner.token.clone(), make, registry));
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|(_, task)| !task.is_finished());
        tasks.push((name, handle));
        Ok(())
    }

    /// Every worker, by name.
    pub fn snapshot(&self) -> Vec<WorkerSnapshot> {
        let entries: Vec<Arc<Entry>> = lock(&self.inner.entries).values().cloned().collect();
        entries.iter().map(|e| e.snapshot()).collect()
    }

    /// Cancels every worker at once and waits for all of them until `deadline` (one deadline
    /// for all, not one each). Those still running then are aborted, marked failed, logged,
    /// and their names returned.
    pub async fn shutdown(&self, deadline: Instant) -> Vec<String> {
        self.inner.token.cancel();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        let mut late = Vec::new();
        for (name, mut task) in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                if let Some(entry) = lock(&self.inner.entries).get(&name) {
                    entry.status().state =
                        WorkerState::Failed { error: "did not stop within the shutdown deadline; aborted".into() };
                }
                late.push(name.to_string());
            }
        }
        if !late.is_empty() {
            tracing::warn!(workers = %late.join(", "), "workers did not stop within the shutdown deadline and were aborted");
        }
        late
    }
}

async fn supervise<F, Fut>(entry: Arc<Entry>, token: CancellationToken, make: F, registry: Option<Weak<Inner>>)
where
    F: Fn(WorkerContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = WorkerResult> + Send + 'static,
{
    let mut backoff = Backoff::new(RESTART_BASE, RESTART_CAP);
    loop {
        let ctx = WorkerContext { entry: entry.clone(), token: token.clone() };
        let began = Instant::now();
        // `make` is called inside the caught future so that a panic while building it is
        // caught too. Unwind safety: a worker's shared state is behind locks that recover from
        // poisoning, or in the store, and the failed incarnation is discarded whole.
        let outcome = AssertUnwindSafe(async { make(ctx).await }).catch_unwind().await;
        let error = match outcome {
            Ok(Ok(())) => {
                entry.status().state = WorkerState::Stopped;
                break;
            }
            Ok(Err(e)) => {
                let error = error_chain(e.as_ref());
                tracing::warn!(worker = %entry.name, "worker failed: {error}");
                error
            }
            Err(panic) => {
                let error = format!("panicked: {}", panic_message(panic.as_ref()));
                tracing::error!(worker = %entry.name, "worker {error}");
                error
            }
        };
        {
            let mut s = entry.status();
            s.failures = s.failures.saturating_add(1);
            s.last_error = Some(error.clone());
        }
        if token.is_cancelled() {
            entry.status().state = WorkerState::Failed { error };
            break;
        }
        // An incarnation that lived a long time was healthy: its failure starts the backoff
        // again from the bottom instead of waiting a minute.
        if began.elapsed() >= RESTART_CAP {
            backoff.reset();
        }
        // No jitter: workers of one server do not stampede anything.
        let delay = backoff.next_delay(1.0);
        let until_ms = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        entry.status().state = WorkerState::BackingOff { until_ms, error: error.clone() };
        tokio::select! {
            () = token.cancelled() => {
                entry.status().state = WorkerState::Failed { error };
                break;
            }
            () = tokio::time::sleep(delay) => {}
        }
        let mut s = entry.status();
        s.restarts = s.restarts.saturating_add(1);
        s.state = WorkerState::Running;
    }
    if let Some(inner) = registry.and_then(|r| r.upgrade()) {
        let mut entries = lock(&inner.entries);
        if entries.get(&entry.name).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            entries.remove(&entry.name);
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Waits (on the paused clock, so instantly) until `check` holds for `name`'s snapshot.
    async fn wait_for(workers: &Workers, name: &str, check: impl Fn(&WorkerSnapshot) -> bool) -> WorkerSnapshot {
        for _ in 0..10_000 {
            if let Some(s) = workers.snapshot().into_iter().find(|s| s.name == name && check(s)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("worker {name} never reached the expected state: {:?}", workers.snapshot());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_worker_is_restarted_and_shown_failed_with_the_message() {
        let workers = Workers::new(CancellationToken::new());
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        workers
            .spawn("panicker", move |ctx| {
                let call = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if call == 0 {
                        panic!("boom at call {call}");
                    }
                    ctx.idle();
                    ctx.cancelled().await;
                    Ok(())
                }
            })
            .expect("spawn");
        let failed = wait_for(&workers, "panicker", |s| s.failures == 1).await;
        match &failed.state {
            WorkerState::BackingOff { error, .. } => assert_eq!(error, "panicked: boom at call 0"),
            other => panic!("expected backing off, got {other:?}"),
        }
        assert_eq!(failed.last_error.as_deref(), Some("panicked: boom at call 0"));
        let back = wait_for(&workers, "panicker", |s| s.state == WorkerState::Idle).await;
        assert_eq!((back.failures, back.restarts), (1, 1));
        assert_eq!(back.last_error.as_deref(), Some("panicked: boom at call 0"), "the last error stays visible");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(workers.shutdown(Instant::now() + Duration::from_secs(1)).await.is_empty());
        assert_eq!(workers.snapshot()[0].state, WorkerState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn an_erroring_worker_backs_off_exponentially() {
        let workers = Workers::new(CancellationToken::new());
        let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let log = starts.clone();
        workers
            .spawn("flaky", move |_ctx| {
                lock(&log).push(Instant::now());
                async { Err("store unreachable".into()) }
            })
            .expect("spawn");
        let s = wait_for(&workers, "flaky", |s| s.restarts >= 4).await;
        assert!(s.failures >= 4);
        assert_eq!(s.last_error.as_deref(), Some("store unreachable"));
        let starts = lock(&starts).clone();
        let gaps: Vec<Duration> = starts.windows(2).take(4).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [1, 2, 4, 8].map(Duration::from_secs));
        let s = wait_for(&workers, "flaky", |s| matches!(s.state, WorkerState::BackingOff { .. })).await;
        let WorkerState::BackingOff { error, .. } = s.state else { unreachable!() };
        assert_eq!(error, "store unreachable");
        workers.shutdown(Instant::now() + Duration::from_secs(1)).await;
        let s = &workers.snapshot()[0];
        assert_eq!(s.state, WorkerState::Failed { error: "store unreachable".into() });
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_after_a_long_healthy_run_restarts_from_the_shortest_delay() {
        let workers = Workers::new(CancellationToken::new());
        let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let log = starts.clone();
        workers
            .spawn("sometimes", move |_ctx| {
                let call = {
                    let mut starts = lock(&log);
                    starts.push(Instant::now());
                    starts.len()
                };
                async move {
                    // Calls 1 and 2 fail at once; call 3 is healthy for two minutes, then fails.
                    if call == 3 {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                    Err(format!("failure {call}").into())
                }
            })
            .expect("spawn");
        wait_for(&workers, "sometimes", |s| s.restarts >= 3).await;
        let starts = lock(&starts).clone();
        let gaps: Vec<Duration> = starts.windows(2).take(3).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [1, 2, 120 + 1].map(Duration::from_secs));
        workers.shutdown(Instant::now()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_chain_is_kept() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot sweep")]
        struct Outer(#[source] std::io::Error);
        let workers = Workers::new(CancellationToken::new());
        workers.spawn("chain", |_ctx| async { Err(Outer(std::io::Error::other("disk full")).into()) }).expect("spawn");
        let s = wait_for(&workers, "chain", |s| s.failures >= 1).await;
        assert_eq!(s.last_error.as_deref(), Some("cannot sweep: disk full"));
        workers.shutdown(Instant::now()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_all_within_one_deadline() {
        let workers = Workers::new(CancellationToken::new());
        for name in ["engine", "liveness", "retention"] {
            workers
                .spawn(name, |ctx| async move {
                    loop {
                        tokio::select! {
                            () = ctx.cancelled() => return Ok(()),
                            () = ctx.run(tokio::time::sleep(Duration::from_secs(5))) => {}
                        }
                    }
                })
                .expect("spawn");
        }
        tokio::time::sleep(Duration::from_secs(12)).await;
        let late = workers.shutdown(Instant::now() + Duration::from_secs(10)).await;
        assert!(late.is_empty(), "{late:?}");
        let states: Vec<_> = workers.snapshot().into_iter().map(|s| (s.name, s.state)).collect();
        assert_eq!(states, ["engine", "liveness", "retention"].map(|n| (n.to_string(), WorkerState::Stopped)).to_vec());
    }

    #[tokio::test(start_paused = true)]
    async fn workers_that_ignore_cancellation_are_named_and_share_one_deadline() {
        let workers = Workers::new(CancellationToken::new());
        for name in ["stubborn-a", "stubborn-b"] {
            workers
                .spawn(name, |_ctx| async {
                    loop {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                })
                .expect("spawn");
        }
        workers
            .spawn("polite", |ctx| async move {
                ctx.cancelled().await;
                Ok(())
            })
            .expect("spawn");
        tokio::task::yield_now().await;
        let began = Instant::now();
        let late = workers.shutdown(began + Duration::from_secs(2)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(2), "one deadline for all, not one each");
        assert_eq!(late, ["stubborn-a", "stubborn-b"]);
        let by_name: BTreeMap<String, WorkerState> =
            workers.snapshot().into_iter().map(|s| (s.name, s.state)).collect();
        assert_eq!(by_name["polite"], WorkerState::Stopped);
        assert!(matches!(&by_name["stubborn-a"], WorkerState::Failed { error } if error.contains("shutdown deadline")));
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_unique_and_transient_workers_leave_the_list() {
        let workers = Workers::new(CancellationToken::new());
        workers
            .spawn("engine", |ctx| async move {
                ctx.cancelled().await;
                Ok(())
            })
            .expect("spawn");
        let err = workers.spawn("engine", |_ctx| async { Ok(()) }).expect_err("duplicate");
        assert!(err.to_string().contains("`engine` is already running"), "{err}");
        let once = Arc::new(AtomicU32::new(0));
        let seen = once.clone();
        workers
            .spawn_transient("assessment-run r1", move |_ctx| {
                let call = seen.fetch_add(1, Ordering::SeqCst);
                async move { if call == 0 { Err("first try fails".into()) } else { Ok(()) } }
            })
            .expect("spawn");
        for _ in 0..1000 {
            if workers.snapshot().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(once.load(Ordering::SeqCst), 2, "restarted once after its failure");
        let names: Vec<String> = workers.snapshot().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["engine"]);
        workers.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }
}
