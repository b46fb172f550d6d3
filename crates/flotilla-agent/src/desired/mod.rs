//! The desired-state actions (`file:write`, `file:absent`, `service:ensure`,
//! `package:ensure`, `user:ensure`, `sysctl:ensure`), performed on the node under `--root`.
//!
//! Each action first reads what is there, then changes only what differs, and reports whether
//! it changed anything and what (a [`Report`]); run twice with the same inputs, the second run
//! reports unchanged. Inputs are checked again here with `flotilla_core::desired` (the agent
//! never trusts the server), and tools run through `exec::output` with arguments, never a shell.
//!
//! Invariants: every node path goes through `root::resolve`, so nothing outside the root is
//! touched; files are replaced atomically (a temporary file in the same directory, fsync'd,
//! then renamed; the directory fsync'd); a step that fails for a reason known in advance (an
//! owner the node does not have, a unit that does not exist) fails before it changes anything.

mod accounts;
mod file;
mod package;
mod service;
mod sysctl;
mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_core::desired::Resource;

/// What a desired-state step found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub changed: bool,
    /// "/etc/motd: content differed, rewritten", "/etc/motd: unchanged".
    pub detail: String,
}

impl Report {
    fn unchanged(subject: &str) -> Report {
        Report { changed: false, detail: format!("{subject}: unchanged") }
    }

    fn changed(subject: &str, what: impl std::fmt::Display) -> Report {
        Report { changed: true, detail: format!("{subject}: {what}") }
    }
}

/// True for the actions this module performs.
pub fn is_desired_state(action: &str) -> bool {
    flotilla_core::desired::spec(action).is_some()
}

/// The node's root as the tools see it.
pub(crate) struct Node {
    pub root: PathBuf,
    /// The root is the live system (`/`): running state and live values can be read and set.
    pub live: bool,
    /// How long one tool may run.
    pub timeout: Duration,
}

impl Node {
    fn new(root: &Path, timeout: Duration) -> Node {
        let live = root.canonicalize().is_ok_and(|r| r == Path::new("/"));
        Node { root: root.to_path_buf(), live, timeout }
    }

    fn root_text(&self) -> String {
        self.root.to_string_lossy().into_owned()
    }
}

/// Performs `action` with `inputs` on the node under `root`. `Err` is why the step failed,
/// worded for the operator.
pub async fn apply(
    root: &Path,
    action: &str,
    inputs: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Report, String> {
    let resource = Resource::parse(action, inputs).map_err(|e| format!("{action}: {e}"))?;
    let node = Node::new(root, timeout);
    match resource {
        Resource::FileWrite { path, content, mode, owner, group } => {
            let root = node.root.clone();
            blocking(move || file::write(&root, &path, content.as_bytes(), mode, owner.as_deref(), group.as_deref()))
                .await
        }
        Resource::FileAbsent { path } => {
            let root = node.root.clone();
            blocking(move || file::absent(&root, &path)).await
        }
        Resource::Sysctl { name, value } => sysctl::ensure(&node, &name, &value).await,
        Resource::User { name, present, uid, groups, shell, home } => {
            user::ensure(&node, &user::Wanted { name, present, uid, groups, shell, home }).await
        }
        Resource::Service { unit, state, enabled } => service::ensure(&node, &unit, state, enabled).await,
        Resource::Package { name, state } => package::ensure(&node, &name, &state).await,
    }
}

async fn blocking(f: impl FnOnce() -> Result<Report, String> + Send + 'static) -> Result<Report, String> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(format!("the step stopped unexpectedly: {e}")))
}

/// Runs a tool; a missing program is an error naming it.
async fn tool(
    node: &Node,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<crate::exec::ToolOutput, String> {
    crate::exec::output(program, args, env, node.timeout)
        .await?
        .ok_or_else(|| format!("{program} is not installed on this machine; install it or run this step elsewhere"))
}

/// Runs a tool that must succeed.
async fn tool_ok(
    node: &Node,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<crate::exec::ToolOutput, String> {
    let out = tool(node, program, args, env).await?;
    if out.success() { Ok(out) } else { Err(out.failure(program)) }
}

#[cfg(test)]
mod tests;
