//! `flotilla windows ...`: maintenance windows, their targets and tasks, next occurrences and
//! executions. WIN is a window's id (`mw-...`) or its name.

use std::collections::BTreeMap;

use flotilla_api::{
    AddWindowTarget, AddWindowTask, Client, CreateWindow, UpdateWindow, Window, WindowExecution, WindowTask,
};

use crate::output::{Format, out, outln, print};

#[derive(clap::Subcommand)]
pub enum Windows {
    /// Create a window: a schedule (with its time zone), a duration and a cutoff.
    ///
    /// Example: flotilla windows create --name nightly --schedule 'cron(0 3 * * *)' --timezone Europe/Berlin --duration 3 --cutoff 1
    Create {
        /// 3 to 128 letters, digits, _ . and -.
        #[arg(long)]
        name: String,
        /// 'cron(0 3 * * *)' (or bare '0 3 * * *'), 'rate(1 day)' or 'at(2026-12-24T18:00:00)'.
        #[arg(long)]
        schedule: String,
        /// IANA zone the cron or at reads in, e.g. Europe/Berlin (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// How long the window stays open, 1 to 24 hours.
        #[arg(long = "duration", value_name = "HOURS")]
        duration_hours: u32,
        /// Hours before the end from which no new task starts (0 to duration - 1).
        #[arg(long = "cutoff", value_name = "HOURS")]
        cutoff_hours: u32,
        /// ISO 8601 (e.g. 2026-04-01 or 2026-04-01T06:00:00+02:00; UTC without an offset): no
        /// occurrence before it runs.
        #[arg(long, value_name = "ISO")]
        start_date: Option<String>,
        /// ISO 8601, as --start-date: no occurrence at or after it runs.
        #[arg(long, value_name = "ISO")]
        end_date: Option<String>,
        /// Create it disabled: no occurrence runs until `windows update WIN --enabled`.
        #[arg(long)]
        disabled: bool,
    },
    /// List windows with their next occurrence.
    Ls,
    /// A window with its targets and tasks.
    ///
    /// Example: flotilla windows show nightly
    Show { window: String },
    /// Change a window: only the flags given change; an empty --start-date/--end-date removes it.
    ///
    /// Example: flotilla windows update nightly --duration 4 --cutoff 1 --disabled
    Update {
        window: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long = "duration", value_name = "HOURS")]
        duration_hours: Option<u32>,
        #[arg(long = "cutoff", value_name = "HOURS")]
        cutoff_hours: Option<u32>,
        #[arg(long, value_name = "ISO")]
        start_date: Option<String>,
        #[arg(long, value_name = "ISO")]
        end_date: Option<String>,
        /// Let occurrences run again.
        #[arg(long, conflicts_with = "disabled")]
        enabled: bool,
        /// No occurrence runs until --enabled (one in progress continues).
        #[arg(long)]
        disabled: bool,
    },
    /// Remove a window with its targets, tasks and execution history.
    Rm { window: String },
    /// The next occurrences inside the window's dates, in its time zone.
    ///
    /// Example: flotilla windows next nightly --count 3 -o json
    Next {
        window: String,
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
    /// The window's registered targets: where its tasks run.
    #[command(subcommand)]
    Targets(Targets),
    /// The window's tasks: documents run on its targets, by priority.
    #[command(subcommand)]
    Tasks(Tasks),
    /// Executions, newest first: status, times, and each task with its command id.
    ///
    /// Example: flotilla windows executions nightly -o json
    Executions { window: String },
}

#[derive(clap::Subcommand)]
pub enum Targets {
    /// Register targets (as `flotilla run --target`; several are a union).
    ///
    /// Example: flotilla windows targets add nightly --target 'tag:env=prod&!tag:canary' --name prod
    Add {
        window: String,
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a registered target by its id (see `windows show`).
    Rm { window: String, target: String },
}

#[derive(clap::Subcommand)]
pub enum Tasks {
    /// Register a task: a document run with its parameters on the window's targets.
    ///
    /// Example: flotilla windows tasks add nightly --document Flotilla-RunShellScript --param commands='apt-get -y upgrade' --priority 1 --max-concurrency 10%
    Add {
        window: String,
        #[arg(long)]
        document: String,
        /// A document version (default: the document's default version when the task starts).
        #[arg(long)]
        document_version: Option<i64>,
        /// NAME=VALUE; repeat a StringList parameter to add items.
        #[arg(long = "param", value_parser = super::key_value)]
        params: Vec<(String, String)>,
        /// Lower runs first; equal priorities run together (default 1).
        #[arg(long)]
        priority: Option<u32>,
        /// N or N% (default 50).
        #[arg(long)]
        max_concurrency: Option<String>,
        /// N or N% (default 0).
        #[arg(long)]
        max_errors: Option<String>,
        /// CONTINUE_TASK (default: left running at the window's end) or CANCEL_TASK (cancelled then).
        #[arg(long = "cutoff-behavior")]
        cutoff_behavior: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a task by its id (see `windows show`).
    Rm { window: String, task: String },
}

const WINDOW_HEADERS: &[&str] = &["ID", "NAME", "SCHEDULE", "TIMEZONE", "DURATION", "CUTOFF", "ENABLED", "NEXT"];

fn window_rows(list: &[Window]) -> Vec<Vec<String>> {
    list.iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.name.clone(),
                w.schedule.clone(),
                w.timezone.clone(),
                format!("{}h", w.duration_hours),
                format!("{}h", w.cutoff_hours),
                w.enabled.to_string(),
                w.next_execution_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

const TASK_HEADERS: &[&str] = &["TASK", "NAME", "PRIORITY", "DOCUMENT", "CONCURRENCY", "ERRORS", "CUTOFF BEHAVIOR"];

fn task_rows(list: &[WindowTask]) -> Vec<Vec<String>> {
    list.iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.priority.to_string(),
                t.document.clone(),
                t.max_concurrency.clone(),
                t.max_errors.clone(),
                t.cutoff_behavior.clone(),
            ]
        })
        .collect()
}

fn execution_rows(list: &[WindowExecution]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for e in list {
        rows.push(vec![
            e.id.clone(),
            e.status.clone(),
            e.occurrence_at.clone(),
            e.ended_at.clone().unwrap_or_else(|| "-".into()),
            String::new(),
            e.detail.clone(),
        ]);
        for t in &e.task_invocations {
            rows.push(vec![
                format!("  {} (p{})", t.task_name, t.priority),
                t.status.clone(),
                t.started_at.clone().unwrap_or_else(|| "-".into()),
                t.ended_at.clone().unwrap_or_else(|| "-".into()),
                t.command_id.clone().unwrap_or_else(|| "-".into()),
                t.reason.clone(),
            ]);
        }
    }
    rows
}

/// `--enabled` / `--disabled` as a change; neither leaves it as it is.
fn enabled_flag(enabled: bool, disabled: bool) -> Option<bool> {
    match (enabled, disabled) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

impl Windows {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            Windows::Create {
                name,
                schedule,
                timezone,
                duration_hours,
                cutoff_hours,
                start_date,
                end_date,
                disabled,
            } => {
                let req = CreateWindow {
                    name,
                    schedule,
                    timezone,
                    duration_hours,
                    cutoff_hours,
                    start_date,
                    end_date,
                    enabled: Some(!disabled),
                };
                let w = client.create_window(&req).await?;
                print(format, &w, WINDOW_HEADERS, window_rows(std::slice::from_ref(&w)))
            }
            Windows::Ls => {
                let list = client.list_windows().await?;
                print(format, &list, WINDOW_HEADERS, window_rows(&list))
            }
            Windows::Show { window } => {
                let w = client.get_window(&window).await?;
                show(format, &w)
            }
            Windows::Update {
                window,
                name,
                schedule,
                timezone,
                duration_hours,
                cutoff_hours,
                start_date,
                end_date,
                enabled,
                disabled,
            } => {
                let req = UpdateWindow {
                    name,
                    schedule,
                    timezone,
                    duration_hours,
                    cutoff_hours,
                    start_date,
                    end_date,
                    enabled: enabled_flag(enabled, disabled),
                };
                let w = client.update_window(&window, &req).await?;
                show(format, &w)
            }
            Windows::Rm { window } => {
                client.delete_window(&window).await?;
                eprintln!("removed maintenance window {window}");
                Ok(())
            }
            Windows::Next { window, count } => {
                let list = client.window_next(&window, count).await?;
                let rows = list.iter().map(|t| vec![t.clone()]).collect();
                print(format, &list, &["OCCURRENCE"], rows)
            }
            Windows::Targets(Targets::Add { window, targets, name }) => {
                let t = client.add_window_target(&window, &AddWindowTarget { targets, name }).await?;
                let rows = vec![vec![t.id.clone(), t.name.clone(), t.targets.join(" ")]];
                print(format, &t, &["TARGET", "NAME", "TARGETS"], rows)
            }
            Windows::Targets(Targets::Rm { window, target }) => {
                client.remove_window_target(&window, &target).await?;
                eprintln!("removed target {target} from window {window}");
                Ok(())
            }
            Windows::Tasks(Tasks::Add {
                window,
                document,
                document_version,
                params,
                priority,
                max_concurrency,
                max_errors,
                cutoff_behavior,
                name,
            }) => {
                let mut parameters: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (k, v) in params {
                    parameters.entry(k).or_default().push(v);
                }
                let req = AddWindowTask {
                    document,
                    document_version,
                    parameters,
                    priority,
                    max_concurrency,
                    max_errors,
                    cutoff_behavior,
                    name,
                };
                let t = client.add_window_task(&window, &req).await?;
                print(format, &t, TASK_HEADERS, task_rows(std::slice::from_ref(&t)))
            }
            Windows::Tasks(Tasks::Rm { window, task }) => {
                client.remove_window_task(&window, &task).await?;
                eprintln!("removed task {task} from window {window}");
                Ok(())
            }
            Windows::Executions { window } => {
                let list = client.window_executions(&window).await?;
                print(
                    format,
                    &list,
                    &["EXECUTION / TASK", "STATUS", "STARTED", "ENDED", "COMMAND", "DETAIL"],
                    execution_rows(&list),
                )
            }
        }
    }
}

/// A window in a table: its settings, then its targets and tasks.
fn show(format: Format, w: &Window) -> anyhow::Result<()> {
    if !matches!(format, Format::Table) {
        return print(format, w, &[], Vec::new());
    }
    out!("{}", crate::output::table(WINDOW_HEADERS, &window_rows(std::slice::from_ref(w))))?;
    let dates = format!(
        "start date {}, end date {}",
        w.start_date.as_deref().unwrap_or("-"),
        w.end_date.as_deref().unwrap_or("-")
    );
    outln!("{}", crate::output::printable(&dates))?;
    outln!()?;
    let targets: Vec<Vec<String>> =
        w.targets.iter().map(|t| vec![t.id.clone(), t.name.clone(), t.targets.join(" ")]).collect();
    out!("{}", crate::output::table(&["TARGET", "NAME", "TARGETS"], &targets))?;
    outln!()?;
    out!("{}", crate::output::table(TASK_HEADERS, &task_rows(&w.tasks)))?;
    Ok(())
}
