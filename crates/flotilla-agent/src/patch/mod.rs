//! Patch Manager's package-manager layer: scan a node for available updates and install exact
//! versions through the node's REAL package manager, found under the agent's `--root`.
//!
//! - apt/dpkg (`apt.rs`): `apt-get`/`apt-cache` with `APT_CONFIG` pointing at a generated
//!   apt.conf whose `Dir` is the root, so every apt directory (etc/apt and its parts, lists,
//!   cache, archives, the status file) lies below the root and none of the host's apt
//!   configuration is read; dpkg runs with `--root`/`--admindir`.
//! - dnf/rpm (`dnf.rs`): `dnf --installroot` with `--releasever` from the root's os-release,
//!   repositories only from the root's `etc/yum.repos.d`, cache under the root, and the rpm
//!   database path of the root given to rpm and to dnf's librpm.
//! - apk (`apk.rs`): Alpine's `apk` is not packaged for Debian, so a scan reads the real
//!   APKINDEX files of the root's repositories against `lib/apk/db/installed` and compares with
//!   flotilla-vuln's apk ordering; an install runs `apk --root` when it is installed and says
//!   so plainly when it is not.
//!
//! The tools take their own locks; this layer never holds one itself. Before each tool that
//! locks, `lock::wait_free` looks at the same lock files (fcntl locks for dpkg/apt/rpm, pid
//! files for dnf) and waits, bounded, writing to the log who holds them; past the bound the
//! operation fails with [`PatchError::LockHeld`].

mod apk;
mod apt;
mod dnf;
mod lock;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The package manager of a node, told by the database found under its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// dpkg database (`var/lib/dpkg/status`), driven through apt.
    Apt,
    /// rpm database (`var/lib/rpm` or `usr/lib/sysimage/rpm`), driven through dnf.
    Dnf,
    /// apk database (`lib/apk/db/installed`).
    Apk,
}

impl Manager {
    /// The manager whose database is under `root`.
    pub fn detect(root: &Path) -> Result<Manager, PatchError> {
        if root.join("var/lib/dpkg/status").is_file() {
            Ok(Manager::Apt)
        } else if dnf::rpm_db_dir(root).is_some() {
            Ok(Manager::Dnf)
        } else if root.join("lib/apk/db/installed").is_file() {
            Ok(Manager::Apk)
        } else {
            Err(PatchError::NoPackageManager { root: root.to_path_buf() })
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Apk => "apk",
        }
    }

    /// The version ordering of this manager's packages.
    pub fn ecosystem(self) -> flotilla_vuln::Ecosystem {
        match self {
            Manager::Apt => flotilla_vuln::Ecosystem::Deb,
            Manager::Dnf => flotilla_vuln::Ecosystem::Rpm,
            Manager::Apk => flotilla_vuln::Ecosystem::Apk,
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub arch: String,
    /// The full version as the manager spells it (dpkg `[epoch:]upstream[-revision]`, rpm
    /// `[epoch:]version-release`, apk `version-rN`).
    pub version: String,
}

/// A newer version of a package, available from the node's configured repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub name: String,
    pub arch: String,
    /// None: not installed (only when the caller asks for it, e.g. an install override).
    pub installed_version: Option<String>,
    /// The newest candidate from the configured repositories.
    pub available_version: String,
    /// apt: origin/suite (`Debian/bookworm-security`); dnf: repo id; apk: repository URL.
    pub repository: String,
    /// apt, from the candidate's record.
    pub section: Option<String>,
    pub priority: Option<String>,
    /// dnf updateinfo type (security|bugfix|enhancement|newpackage); apt: `security` when the
    /// suite ends in `-security`, else None.
    pub classification: Option<String>,
    /// dnf updateinfo severity (Critical|Important|Moderate|Low).
    pub severity: Option<String>,
    /// dnf: the advisory's updated (else issued) date, else the package's build time; apt: None.
    pub published_unix: Option<i64>,
    /// dnf updateinfo references.
    pub advisory_ids: Vec<String>,
    pub cves: Vec<String>,
}

impl Update {
    fn new(name: &str, arch: &str, installed: Option<&str>, available: &str, repository: &str) -> Update {
        Update {
            name: name.to_owned(),
            arch: arch.to_owned(),
            installed_version: installed.map(str::to_owned),
            available_version: available.to_owned(),
            repository: repository.to_owned(),
            section: None,
            priority: None,
            classification: None,
            severity: None,
            published_unix: None,
            advisory_ids: Vec::new(),
            cves: Vec::new(),
        }
    }
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub installed: Vec<Installed>,
    /// Installed packages with a newer candidate, sorted by name then arch.
    pub updates: Vec<Update>,
}

/// A package to install at exactly this version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub version: String,
}

/// One wanted package after an install: the version now installed, or why it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    pub name: String,
    pub result: Result<String, String>,
}

/// Human-readable lines of what an operation ran: command lines, exit codes, excerpts of the
/// tools' output, waits for locks. Printed as the step's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationLog {
    lines: Vec<String>,
}

impl OperationLog {
    pub fn new() -> OperationLog {
        OperationLog::default()
    }

    pub fn line(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The whole log, one line each.
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }
}

/// Why a scan or an install could not be done, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(
        "no package database under the agent's root {} (looked for var/lib/dpkg/status, var/lib/rpm, \
         usr/lib/sysimage/rpm, lib/apk/db/installed): point --root at the node's filesystem",
        root.display()
    )]
    NoPackageManager { root: PathBuf },
    #[error("{tool} is not installed on this machine: {hint}")]
    ToolMissing { tool: String, hint: String },
    #[error(
        "repository {repository} could not be refreshed: {detail}; fix the repository or its entry in the node's configuration"
    )]
    RepositoryRefresh { repository: String, detail: String },
    #[error(
        "the package manager's lock {} is {} after waiting {}s; retry when it is free, or stop that process",
        lock.display(),
        holder.as_ref().map_or_else(|| "held by another process".to_owned(), |h| format!("held by {h}")),
        waited.as_secs()
    )]
    LockHeld { lock: PathBuf, holder: Option<String>, waited: Duration },
    #[error("{program} failed: {detail}")]
    Tool { program: String, detail: String },
    #[error("{what}: {detail}")]
    Node { what: String, detail: String },
    #[error(
        "the reboot command `{command}` failed: {detail}; check the agent's reboot command (FLOTILLA_AGENT_REBOOT_COMMAND)"
    )]
    Reboot { command: String, detail: String },
}

/// How long a tool waits for another process's lock by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(120);
/// How long one tool may run by default (a large upgrade downloads and unpacks a lot).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A node's package manager, driven under its root.
#[derive(Debug, Clone)]
pub struct PackageManager {
    root: PathBuf,
    manager: Manager,
    /// The root is the live system (`/`): the tools run with their own defaults.
    live: bool,
    lock_wait: Duration,
    tool_timeout: Duration,
}

impl PackageManager {
    /// The package manager of the node under `root`.
    pub fn detect(root: &Path) -> Result<PackageManager, PatchError> {
        let manager = Manager::detect(root)?;
        let live = root.canonicalize().is_ok_and(|r| r == Path::new("/"));
        Ok(PackageManager {
            root: root.to_path_buf(),
            manager,
            live,
            lock_wait: DEFAULT_LOCK_WAIT,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
        })
    }

    /// How long to wait for a lock another process holds before failing.
    pub fn with_lock_wait(mut self, wait: Duration) -> PackageManager {
        self.lock_wait = wait;
        self
    }

    /// How long one tool may run.
    pub fn with_tool_timeout(mut self, timeout: Duration) -> PackageManager {
        self.tool_timeout = timeout;
        self
    }

    pub fn manager(&self) -> Manager {
        self.manager
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Refreshes the node's configured repositories and lists installed packages and the
    /// available updates.
    pub async fn scan(&self, log: &mut OperationLog) -> Result<Scan, PatchError> {
        let mut scan = match self.manager {
            Manager::Apt => apt::scan(self, log).await?,
            Manager::Dnf => dnf::scan(self, log).await?,
            Manager::Apk => apk::scan(self, log).await?,
        };
        scan.installed.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        scan.updates.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        log.line(format!(
            "{} packages installed, {} with a newer version available",
            scan.installed.len(),
            scan.updates.len()
        ));
        Ok(scan)
    }

    /// Upgrades/installs exactly `wanted` (name + exact version) and what they depend on,
    /// never installing any name in `blocked`, even as a dependency. Returns one outcome per
    /// wanted package, in order: the version now installed, or why it failed.
    pub async fn install(
        &self,
        wanted: &[Wanted],
        blocked: &[String],
        log: &mut OperationLog,
    ) -> Result<Vec<InstallOutcome>, PatchError> {
        if wanted.is_empty() {
            log.line("nothing to install");
            return Ok(Vec::new());
        }
        match self.manager {
            Manager::Apt => apt::install(self, wanted, blocked, log).await,
            Manager::Dnf => dnf::install(self, wanted, blocked, log).await,
            Manager::Apk => apk::install(self, wanted, blocked, log).await,
        }
    }

    /// Whether the node needs a reboot: apt: `var/run/reboot-required` or `run/reboot-required`
    /// under the root; rpm: the newest installed kernel (`kernel-core`, else `kernel`) is newer
    /// than the running kernel release.
    /// Async: rpm's database is read with the real `rpm`.
    pub async fn reboot_pending(&self) -> Result<bool, PatchError> {
        match self.manager {
            Manager::Apt => {
                Ok(["var/run/reboot-required", "run/reboot-required"].iter().any(|f| self.root.join(f).exists()))
            }
            Manager::Dnf => dnf::reboot_pending(self).await,
            // Alpine has no reboot-required marker; its kernel package is linux-lts/linux-virt.
            Manager::Apk => apk::reboot_pending(self),
        }
    }

    /// Runs `program` with `args`, logging the command line, its exit and an excerpt of what it
    /// said. A missing program is [`PatchError::ToolMissing`].
    async fn run(
        &self,
        log: &mut OperationLog,
        program: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<crate::exec::ToolOutput, PatchError> {
        log.line(format!("$ {program} {}", args.join(" ")));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let out = crate::exec::output(program, &refs, env, self.tool_timeout)
            .await
            .map_err(|detail| PatchError::Tool { program: program.to_owned(), detail })?
            .ok_or_else(|| PatchError::ToolMissing { tool: program.to_owned(), hint: install_hint(program) })?;
        let code = out.code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"));
        log.line(format!("  {code} after {:.1}s", started.elapsed().as_secs_f64()));
        if !out.success() {
            for line in excerpt(&out, 12) {
                log.line(format!("  | {line}"));
            }
        }
        Ok(out)
    }
}

/// What to install to get `program` on a Debian/Ubuntu machine.
fn install_hint(program: &str) -> String {
    let package = match program {
        "apt-get" | "apt-cache" => "apt",
        "dpkg" | "dpkg-query" => "dpkg",
        "dnf" => "dnf",
        "rpm" => "rpm",
        "apk" => {
            return "Alpine's apk-tools is not packaged for Debian/Ubuntu; installing on an Alpine node needs `apk` \
                    on the agent's machine (run the agent on the Alpine node itself)"
                .to_owned();
        }
        other => other,
    };
    format!("install it (Debian/Ubuntu: apt-get install {package}) and run the operation again")
}

/// The last `n` lines a tool printed (stderr, then stdout), for logs and error details.
fn excerpt(out: &crate::exec::ToolOutput, n: usize) -> Vec<String> {
    let mut lines: Vec<String> =
        out.stdout.lines().chain(out.stderr.lines()).filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    let start = lines.len().saturating_sub(n);
    lines.drain(..start);
    lines
}

/// The outcome of a wanted package that is itself blocked (BLOCK wins over approval).
fn blocked_outcome(want: &Wanted, blocked: &[String]) -> Option<InstallOutcome> {
    blocked.contains(&want.name).then(|| InstallOutcome {
        name: want.name.clone(),
        result: Err(format!("{} is blocked by the baseline (rejected patch, action BLOCK); not installed", want.name)),
    })
}

/// Why `want` was not installed: it needs the blocked `needs`.
fn needs_blocked(want: &Wanted, needs: &[String]) -> String {
    format!(
        "{} {} needs {}, blocked by the baseline (rejected patch, action BLOCK); not installed",
        want.name,
        want.version,
        needs.join(", ")
    )
}

/// Logs one package's outcome and keeps it.
fn record(log: &mut OperationLog, outcomes: &mut Vec<InstallOutcome>, want: &Wanted, result: Result<String, String>) {
    match &result {
        Ok(version) => log.line(format!("{}: {version} installed", want.name)),
        Err(e) => log.line(format!("{}: FAILED: {e}", want.name)),
    }
    outcomes.push(InstallOutcome { name: want.name.clone(), result });
}

/// Environment variable naming the reboot command (a program and its arguments, separated by
/// spaces; no shell).
pub const REBOOT_COMMAND_ENV: &str = "FLOTILLA_AGENT_REBOOT_COMMAND";
/// The reboot command when neither the caller nor the environment names one.
pub const DEFAULT_REBOOT_COMMAND: &str = "systemctl reboot";

/// The reboot command: `configured` (given by the caller; the agent passes none today), else the environment's
/// [`REBOOT_COMMAND_ENV`], else [`DEFAULT_REBOOT_COMMAND`].
pub fn reboot_command(configured: Option<&str>) -> String {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var(REBOOT_COMMAND_ENV).ok())
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REBOOT_COMMAND.to_owned())
}

/// Runs the reboot command: a program and its arguments separated by spaces, run without a
/// shell. Returns once the command has exited successfully (a real reboot may never return).
pub async fn reboot(command: &str) -> Result<(), PatchError> {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return Err(PatchError::Reboot { command: command.to_owned(), detail: "the command is empty".to_owned() });
    };
    let args: Vec<&str> = words.collect();
    let fail = |detail: String| PatchError::Reboot { command: command.to_owned(), detail };
    match crate::exec::output(program, &args, &[], Duration::from_secs(120)).await.map_err(fail)? {
        None => Err(fail(format!("{program} is not installed"))),
        Some(out) if out.success() => Ok(()),
        Some(out) => Err(fail(out.failure(program))),
    }
}

#[cfg(test)]
mod tests;
