//! The one way the agent starts a process on the node.
//!
//! Every child runs in its own process group with a controlled environment and a timeout; its
//! stdout and stderr are streamed as byte chunks (binary-safe, never re-encoded). When the
//! timeout passes or a cancel arrives, the WHOLE group is killed, and after the main process
//! exits the group is killed again so that a child which outlived its parent (a daemonised
//! `sleep 1000 &`) can neither keep running nor hold the output pipes open.
//!
//! A script can leave its process group (`setsid`, `setpgid`), so the group is not the whole
//! story: every process of an invocation carries `FLOTILLA_INVOCATION_ID=ID` in its
//! environment (children inherit it), and after the group kill every process that carries the
//! marker is killed too, wherever it moved, until a scan of /proc finds none. A process that
//! both leaves the session and clears its environment escapes this (a cgroup would not be
//! escaped; the agent does not assume it may create one).

// This module is the wrapper the ban points to.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest chunk sent at once; keeps channel messages small.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// How long pipes may stay open after the process group was killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Shell script, run by `/bin/sh -c`.
    pub script: String,
    pub working_directory: Option<PathBuf>,
    /// Added to a minimal, fixed environment (PATH, HOME, LANG); nothing is inherited from the
    /// agent, so the agent's own secrets never leak into scripts.
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    /// The invocation this process belongs to: set as `MARKER_VAR` in its environment, and
    /// every process carrying it is killed when the run ends.
    pub invocation_id: Option<String>,
}

/// Environment variable that marks every process of an invocation with its id.
pub const MARKER_VAR: &str = "FLOTILLA_INVOCATION_ID";

/// `NAME=VALUE` as found in /proc/PID/environ for the processes of `invocation_id`.
pub fn marker(invocation_id: &str) -> String {
    format!("{MARKER_VAR}={invocation_id}")
}

/// A piece of output, in order per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Killed by a signal it did not ask for (not our timeout or cancel).
    Signalled(i32),
    TimedOut,
    Cancelled,
}

/// Why a process could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start /bin/sh: {0}")]
    Spawn(std::io::Error),
    #[error("working directory {0} does not exist or is not a directory")]
    WorkingDirectory(PathBuf),
    #[error("cannot wait for the process: {0}")]
    Wait(std::io::Error),
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // ESRCH (group already gone) is the normal case after a clean exit.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills every process whose environment holds `marker` (`NAME=VALUE`), in any process group
/// or session, scanning again until none is left (a process may fork while it is killed; its
/// child inherits the marker and is found by the next scan). Returns how many were killed.
/// The marker names one invocation id, so an unrelated program is never hit.
pub fn kill_marked(marker: &str) -> usize {
    // A killed process may still show in the next scan while it dies: count it once.
    let mut killed = std::collections::HashSet::new();
    // Bounded: a fork bomb outrunning the scans must not hold the agent forever.
    for _ in 0..20 {
        let marked = marked_processes(marker);
        if marked.is_empty() {
            break;
        }
        for pid in &marked {
            if nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok() {
                killed.insert(*pid);
            }
        }
    }
    killed.len()
}

/// Live processes whose environment holds `marker` (zombies have no environment left).
fn marked_processes(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let own = std::process::id();
    let mut marked = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if u32::try_from(pid).ok() == Some(own) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()) {
            marked.push(pid);
        }
    }
    marked
}

async fn pump<R: AsyncRead + Unpin>(mut reader: R, sink: mpsc::Sender<Chunk>, wrap: fn(Vec<u8>) -> Chunk) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sink.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `spec`, streaming output into `sink` (bounded: a slow consumer slows the reader, the
/// process blocks on a full pipe, memory stays flat).
pub async fn run(spec: &Spec, sink: mpsc::Sender<Chunk>, cancel: CancellationToken) -> Result<Outcome, ExecError> {
    if let Some(dir) = &spec.working_directory
        && !dir.is_dir()
    {
        return Err(ExecError::WorkingDirectory(dir.clone()));
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&spec.script)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .envs(&spec.env)
        .envs(spec.invocation_id.iter().map(|id| (MARKER_VAR, id.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_directory {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(ExecError::Spawn)?;
    let pid = child.id();
    let readers = [
        child.stdout.take().map(|out| tokio::spawn(pump(out, sink.clone(), Chunk::Stdout))),
        child.stderr.take().map(|err| tokio::spawn(pump(err, sink, Chunk::Stderr))),
    ];
    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status.map_err(ExecError::Wait)?;
            match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(code), _) => Outcome::Exited(code),
                (None, Some(signal)) => Outcome::Signalled(signal),
                (None, None) => Outcome::Signalled(0),
            }
        }
        () = tokio::time::sleep(spec.timeout) => Outcome::TimedOut,
        () = cancel.cancelled() => Outcome::Cancelled,
    };
    // Whatever happened, nothing of the invocation may survive it: the group, then whatever
    // left the group but still carries the marker.
    kill_group(pid);
    if let Some(id) = &spec.invocation_id {
        // A scan of /proc reads every process's environment: not on the async thread.
        let marker = marker(id);
        let _ = tokio::task::spawn_blocking(move || kill_marked(&marker)).await;
    }
    if matches!(outcome, Outcome::TimedOut | Outcome::Cancelled) {
        let _ = child.wait().await;
    }
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
    Ok(outcome)
}

/// What a tool run by [`output`] left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The exit status; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "PROGRAM failed (exit N): its stderr (or stdout)", for a step's failure detail.
    pub fn failure(&self, program: &str) -> String {
        let said = if self.stderr.trim().is_empty() { self.stdout.trim() } else { self.stderr.trim() };
        // The tool's last lines say what went wrong; progress chatter comes before them.
        let lines: Vec<&str> = said.lines().collect();
        let tail = lines.get(lines.len().saturating_sub(6)..).unwrap_or_default().join("\n");
        match self.code {
            Some(code) => format!("{program} failed (exit {code}): {tail}"),
            None => format!("{program} was killed by a signal: {tail}"),
        }
    }
}

/// Runs a tool the agent itself needs (`rpm`, `systemctl`, `useradd`) with `args` (never
/// through a shell), the same fixed environment plus `env`, in its own process group, killed
/// at the timeout. `Ok(None)` when the program is not installed; a non-zero exit is `Ok`.
pub async fn output(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Option<ToolOutput>, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot run {program}: {e}")),
    };
    let pid = child.id();
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|e| format!("{program}: {e}"))?,
        Err(_) => {
            kill_group(pid);
            return Err(format!("{program} did not finish within {}s", timeout.as_secs()));
        }
    };
    kill_group(pid);
    Ok(Some(ToolOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }))
}

/// Runs a tool the agent itself needs and returns its stdout (see [`output`]); a non-zero exit
/// is an error with its stderr. `Ok(None)` when the program is not installed.
pub async fn capture(program: &str, args: &[&str], timeout: Duration) -> Result<Option<String>, String> {
    match output(program, args, &[], timeout).await? {
        None => Ok(None),
        Some(out) if out.success() => Ok(Some(out.stdout)),
        Some(out) => {
            let status = out.code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit status: {c}"));
            Err(format!("{program} failed ({status}): {}", out.stderr.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(spec: Spec) -> (Outcome, Vec<u8>, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel(8);
        let handle = tokio::spawn(async move { run(&spec, tx, CancellationToken::new()).await });
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Stdout(b) => out.extend(b),
                Chunk::Stderr(b) => err.extend(b),
            }
        }
        (handle.await.expect("join").expect("run"), out, err)
    }

    fn spec(script: &str, timeout_ms: u64) -> Spec {
        Spec {
            script: script.into(),
            working_directory: None,
            env: BTreeMap::new(),
            timeout: Duration::from_millis(timeout_ms),
            invocation_id: None,
        }
    }

    #[tokio::test]
    async fn exit_codes_and_streams() {
        let (outcome, out, err) = collect(spec("echo out; echo err >&2; exit 7", 10_000)).await;
        assert_eq!((outcome, out, err), (Outcome::Exited(7), b"out\n".to_vec(), b"err\n".to_vec()));
    }

    #[tokio::test]
    async fn binary_output_is_byte_exact() {
        let (outcome, out, _) = collect(spec("printf '\\000\\377\\376abc\\200'", 10_000)).await;
        assert_eq!(outcome, Outcome::Exited(0));
        assert_eq!(out, b"\x00\xff\xfeabc\x80");
    }

    #[tokio::test]
    async fn environment_is_controlled() {
        let mut s = spec("echo \"$FLOTILLA_PARAM_x|${CARGO:-unset}\"", 10_000);
        s.env.insert("FLOTILLA_PARAM_x".into(), "a; rm -rf / $(id)".into());
        let (_, out, _) = collect(s).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a; rm -rf / $(id)|unset\n",
            "values stay data; agent env not inherited"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let (outcome, _, _) = collect(spec(&script, 300)).await;
        assert_eq!(outcome, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10), "did not wait for the children");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the timed-out script kept running");
    }

    #[tokio::test]
    async fn a_child_outliving_its_parent_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("orphan");
        let script = format!("(sleep 2; touch {}) & echo started", marker.display());
        let (outcome, out, _) = collect(spec(&script, 10_000)).await;
        assert_eq!((outcome, out), (Outcome::Exited(0), b"started\n".to_vec()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the orphan kept running");
    }

    #[tokio::test]
    async fn cancel_and_bad_working_directory() {
        let (tx, _rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        assert_eq!(run(&spec("sleep 30", 60_000), tx, cancel).await.expect("run"), Outcome::Cancelled);
        let mut s = spec("true", 1000);
        s.working_directory = Some("/nonexistent/dir".into());
        let (tx, _rx) = mpsc::channel(8);
        assert!(matches!(run(&s, tx, CancellationToken::new()).await, Err(ExecError::WorkingDirectory(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orphans_of_a_dead_agent_are_found_by_marker_and_killed() {
        let (tx, _rx) = mpsc::channel(8);
        let mut s = spec("sleep 30 & setsid sleep 30 & sleep 30", 60_000);
        s.invocation_id = Some("test-orphan".into());
        let handle = tokio::spawn(async move { run(&s, tx, CancellationToken::new()).await });
        // Wait until the shell and the three sleeps run with the marker (slow on a loaded
        // machine: a child seen before its exec still carries the test's own environment).
        for _ in 0..200 {
            if marked_processes(&marker("test-orphan")).len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(kill_marked(&marker("someone-else")), 0, "wrong marker: untouched");
        assert_eq!(kill_marked(&marker("test-orphan")), 4, "sh and the three sleeps, setsid or not");
        assert!(matches!(handle.await.expect("join").expect("run"), Outcome::Signalled(9)));
    }

    #[tokio::test]
    async fn a_script_that_leaves_its_session_is_killed_on_timeout_and_on_exit() {
        for (script, expected) in [
            ("setsid sleep 1000 & sleep 1000", Outcome::TimedOut),
            ("setsid sleep 1000 & echo started", Outcome::Exited(0)),
        ] {
            let id = format!("test-setsid-{}", matches!(expected, Outcome::TimedOut));
            let mut s = spec(script, 500);
            s.invocation_id = Some(id.clone());
            let (outcome, _, _) = collect(s).await;
            assert_eq!(outcome, expected, "{script}");
            assert_eq!(marked_processes(&marker(&id)), Vec::<i32>::new(), "{script}: a process outlived the run");
        }
    }

    #[tokio::test]
    async fn large_output_streams_without_loss() {
        let (outcome, out, _) = collect(spec("head -c 10485760 /dev/zero | tr '\\0' 'x'", 60_000)).await;
        assert_eq!(outcome, Outcome::Exited(0));
        assert_eq!(out.len(), 10 * 1024 * 1024);
    }
}

/// A login shell on a terminal (a session's PTY slave), for [`spawn_shell`].
#[derive(Debug)]
pub struct ShellSpec {
    pub shell: PathBuf,
    /// Run as this uid/gid; `None` keeps the agent's own.
    pub ids: Option<(u32, u32)>,
    pub user: String,
    pub home: PathBuf,
    pub term: String,
    /// The terminal: stdin, stdout and stderr, and (through `setsid -c`) the controlling
    /// terminal of the shell's new session.
    pub terminal: std::os::fd::OwnedFd,
    /// Set as `MARKER_VAR`: every process of the session is killed by it when it closes.
    pub marker_id: String,
}

/// Starts a login shell in a new session (so in its own process group, the session leader)
/// whose controlling terminal is `spec.terminal`. `setsid -c` (util-linux, busybox) does the
/// `setsid` + `TIOCSCTTY` a child must do for itself, so no code runs between fork and exec
/// here. The environment is fixed (PATH, HOME, USER, LOGNAME, SHELL, TERM, LANG and the
/// marker); nothing of the agent's is inherited. The caller kills the session with
/// [`kill_session`].
pub fn spawn_shell(spec: ShellSpec) -> std::io::Result<tokio::process::Child> {
    let dup = |fd: &std::os::fd::OwnedFd| fd.try_clone().map(Stdio::from);
    let mut cmd = Command::new("setsid");
    cmd.arg("-c")
        .arg(&spec.shell)
        .arg("-l")
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &spec.home)
        .env("USER", &spec.user)
        .env("LOGNAME", &spec.user)
        .env("SHELL", &spec.shell)
        .env("TERM", &spec.term)
        .env("LANG", "C.UTF-8")
        .env(MARKER_VAR, &spec.marker_id)
        .stdin(dup(&spec.terminal)?)
        .stdout(dup(&spec.terminal)?)
        .stderr(Stdio::from(spec.terminal))
        .current_dir(if spec.home.is_dir() { spec.home.as_path() } else { std::path::Path::new("/") });
    if let Some((uid, gid)) = spec.ids {
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn()
}

/// Kills a session's shell: its process group, then every process carrying the session's
/// marker (background jobs in other groups of its session, anything that left it).
pub async fn kill_session(pid: Option<u32>, marker_id: &str) {
    kill_group(pid);
    let marker = marker(marker_id);
    let _ = tokio::task::spawn_blocking(move || kill_marked(&marker)).await;
}
