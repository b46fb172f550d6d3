//! `package:ensure`: a package present (at a version when given), absent, or at the newest
//! version the node's repositories have, through the node's own package manager found under
//! the root: dpkg/apt (`dpkg-query --admindir`, `apt-get -o Dir=ROOT`, `dpkg --root`),
//! rpm/dnf (`rpm --root`, `dnf --installroot`) or apk (`apk --root`). The installed version is
//! read before and after, so "changed" is what the database says happened, and a manager that
//! cannot do it (a package its repositories lack) fails the step with its own message.

use std::path::Path;

use flotilla_core::desired::PackageState;

use super::{Node, Report, tool, tool_ok};
use crate::patch::Manager;

/// The same detection as Patch Manager's: one rule for which manager a root has.
fn detect(root: &Path) -> Result<Manager, String> {
    Manager::detect(root).map_err(|e| e.to_string())
}

/// The installed version of `name`, if installed.
async fn installed(node: &Node, manager: Manager, name: &str) -> Result<Option<String>, String> {
    let root = node.root_text();
    match manager {
        Manager::Apt => {
            let admindir = format!("--admindir={}", node.root.join("var/lib/dpkg").display());
            let out = tool(node, "dpkg-query", &[&admindir, "-W", "-f=${Status}\t${Version}", name], &[]).await?;
            if !out.success() {
                return Ok(None); // "no packages found matching NAME"
            }
            let (status, version) = out.stdout.trim().split_once('\t').unwrap_or((out.stdout.trim(), ""));
            let installed = status.split_whitespace().nth(2).is_some_and(|s| s == "installed");
            Ok(installed.then(|| version.to_owned()))
        }
        Manager::Dnf => {
            let out = tool(node, "rpm", &["--root", &root, "-q", "--qf", "%{VERSION}-%{RELEASE}", name], &[]).await?;
            Ok(out.success().then(|| out.stdout.trim().to_owned()))
        }
        Manager::Apk => {
            let root_dir = node.root.clone();
            let name = name.to_owned();
            tokio::task::spawn_blocking(move || {
                let text = std::fs::read_to_string(root_dir.join("lib/apk/db/installed")).unwrap_or_default();
                text.split("\n\n").find_map(|block| {
                    let field = |k: &str| block.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned);
                    (field("P:").as_deref() == Some(name.as_str())).then(|| field("V:").unwrap_or_default())
                })
            })
            .await
            .map_err(|e| e.to_string())
        }
    }
}

/// Installs `name` (at `version`); `upgrade`: to the newest version, it being installed already.
async fn install(
    node: &Node,
    manager: Manager,
    name: &str,
    version: Option<&str>,
    upgrade: bool,
) -> Result<(), String> {
    let root = node.root_text();
    match manager {
        Manager::Apt => {
            let target = version.map_or_else(|| name.to_owned(), |v| format!("{name}={v}"));
            let mut args: Vec<String> = Vec::new();
            if !node.live {
                args.extend([
                    "-o".into(),
                    format!("Dir={root}"),
                    "-o".into(),
                    format!("Dir::State::status={}", node.root.join("var/lib/dpkg/status").display()),
                    "-o".into(),
                    format!("DPkg::Options::=--root={root}"),
                    "-o".into(),
                    format!("DPkg::Options::=--admindir={}", node.root.join("var/lib/dpkg").display()),
                ]);
            }
            args.extend(["install".into(), "-y".into(), "--no-install-recommends".into()]);
            if version.is_some() {
                args.push("--allow-downgrades".into());
            }
            args.push(target);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            tool_ok(node, "apt-get", &refs, &[("DEBIAN_FRONTEND", "noninteractive")]).await.map(drop)
        }
        Manager::Dnf => {
            let target = version.map_or_else(|| name.to_owned(), |v| format!("{name}-{v}"));
            let installroot = format!("--installroot={root}");
            let mut args = vec!["-y"];
            if !node.live {
                args.push(&installroot);
            }
            args.extend([if upgrade { "upgrade" } else { "install" }, target.as_str()]);
            tool_ok(node, "dnf", &args, &[]).await.map(drop)
        }
        Manager::Apk => {
            let target = version.map_or_else(|| name.to_owned(), |v| format!("{name}={v}"));
            let mut args = vec!["--root", root.as_str(), "add"];
            if upgrade {
                args.push("-u");
            }
            args.push(&target);
            tool_ok(node, "apk", &args, &[]).await.map(drop)
        }
    }
}

async fn remove(node: &Node, manager: Manager, name: &str) -> Result<(), String> {
    let root = node.root_text();
    match manager {
        Manager::Apt => {
            let root_arg = format!("--root={root}");
            let mut args = Vec::new();
            if !node.live {
                args.push(root_arg.as_str());
            }
            args.extend(["--remove", name]);
            tool_ok(node, "dpkg", &args, &[]).await.map(drop)
        }
        Manager::Dnf => tool_ok(node, "rpm", &["--root", &root, "-e", name], &[]).await.map(drop),
        Manager::Apk => tool_ok(node, "apk", &["--root", &root, "del", name], &[]).await.map(drop),
    }
}

pub async fn ensure(node: &Node, name: &str, state: &PackageState) -> Result<Report, String> {
    let subject = format!("package {name}");
    let manager = detect(&node.root)?;
    let before = installed(node, manager, name).await?;
    let fail = |e: String| format!("{subject}: {e}");
    match state {
        PackageState::Absent => {
            if before.is_none() {
                return Ok(Report::unchanged(&subject));
            }
            remove(node, manager, name).await.map_err(fail)?;
            if let Some(still) = installed(node, manager, name).await? {
                return Err(format!("{subject}: still installed ({still}) after removing it"));
            }
            Ok(Report::changed(&subject, format!("removed (was {})", before.unwrap_or_default())))
        }
        PackageState::Present { version } => {
            let satisfied = match (&before, version) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            };
            if satisfied {
                return Ok(Report::unchanged(&subject));
            }
            install(node, manager, name, version.as_deref(), false).await.map_err(fail)?;
            after(node, manager, name, &subject, before, version.as_deref()).await
        }
        PackageState::Latest => {
            install(node, manager, name, None, before.is_some()).await.map_err(fail)?;
            let now = installed(node, manager, name).await?;
            if now.is_some() && now == before {
                return Ok(Report::unchanged(&subject));
            }
            after(node, manager, name, &subject, before, None).await
        }
    }
}

/// Reads the result of an install back and words it.
async fn after(
    node: &Node,
    manager: Manager,
    name: &str,
    subject: &str,
    before: Option<String>,
    version: Option<&str>,
) -> Result<Report, String> {
    let Some(now) = installed(node, manager, name).await? else {
        return Err(format!("{subject}: the package manager succeeded but the package is not installed"));
    };
    if let Some(want) = version.filter(|v| *v != now) {
        return Err(format!("{subject}: version {now} is installed, not {want}"));
    }
    Ok(match before {
        None => Report::changed(subject, format!("installed {now}")),
        Some(was) => Report::changed(subject, format!("{was} → {now}")),
    })
}
