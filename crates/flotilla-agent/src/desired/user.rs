//! `user:ensure`: a local account present (with uid, supplementary groups, shell, home when
//! given) or absent, through shadow-utils' `useradd`/`usermod`/`userdel --root`. The node's
//! `/etc/passwd` and `/etc/group` are read first, so an account already as described is left
//! alone and reported unchanged.

use super::{Node, Report, accounts, tool_ok};

/// What the step asks for.
pub struct Wanted {
    pub name: String,
    pub present: bool,
    pub uid: Option<u32>,
    pub groups: Option<Vec<String>>,
    pub shell: Option<String>,
    pub home: Option<String>,
}

/// The tool's arguments: `--root ROOT` first when the root is not the live system.
fn args<'a>(node_root: &'a str, live: bool, rest: Vec<&'a str>) -> Vec<&'a str> {
    let mut args = if live { Vec::new() } else { vec!["--root", node_root] };
    args.extend(rest);
    args
}

pub async fn ensure(node: &Node, wanted: &Wanted) -> Result<Report, String> {
    let subject = format!("user {}", wanted.name);
    let root = node.root_text();
    let (root_dir, name) = (node.root.clone(), wanted.name.clone());
    let (existing, member_of) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let user = accounts::passwd(&root_dir)?.into_iter().find(|e| e.name == name);
        let mut member_of: Vec<String> =
            accounts::groups(&root_dir)?.into_iter().filter(|g| g.members.contains(&name)).map(|g| g.name).collect();
        member_of.sort();
        Ok((user, member_of))
    })
    .await
    .map_err(|e| e.to_string())??;
    let name = wanted.name.as_str();
    match (wanted.present, existing) {
        (false, None) => Ok(Report::unchanged(&subject)),
        (false, Some(_)) => {
            tool_ok(node, "userdel", &args(&root, node.live, vec![name]), &[]).await?;
            Ok(Report::changed(&subject, "removed"))
        }
        (true, None) => {
            let uid = wanted.uid.map(|u| u.to_string());
            let groups = wanted.groups.as_ref().map(|g| g.join(","));
            let mut rest = Vec::new();
            if let Some(uid) = &uid {
                rest.extend(["-u", uid.as_str()]);
            }
            if let Some(groups) = groups.as_deref().filter(|g| !g.is_empty()) {
                rest.extend(["-G", groups]);
            }
            if let Some(shell) = &wanted.shell {
                rest.extend(["-s", shell.as_str()]);
            }
            if let Some(home) = &wanted.home {
                rest.extend(["-d", home.as_str()]);
            }
            rest.push(name);
            tool_ok(node, "useradd", &args(&root, node.live, rest), &[]).await?;
            Ok(Report::changed(&subject, "created"))
        }
        (true, Some(user)) => {
            let uid = wanted.uid.filter(|u| *u != user.uid).map(|u| u.to_string());
            let shell = wanted.shell.as_deref().filter(|s| *s != user.shell);
            let home = wanted.home.as_deref().filter(|h| *h != user.home);
            let groups = wanted.groups.as_ref().map(|g| {
                let mut g = g.clone();
                g.sort();
                g.dedup();
                g
            });
            let groups = groups.filter(|g| *g != member_of).map(|g| g.join(","));
            let mut changes = Vec::new();
            let mut rest = Vec::new();
            if let Some(uid) = &uid {
                changes.push(format!("uid {} → {uid}", user.uid));
                rest.extend(["-u", uid.as_str()]);
            }
            if let Some(groups) = &groups {
                changes.push(format!("groups [{}] → [{groups}]", member_of.join(",")));
                rest.extend(["-G", groups.as_str()]);
            }
            if let Some(shell) = shell {
                changes.push(format!("shell {} → {shell}", user.shell));
                rest.extend(["-s", shell]);
            }
            if let Some(home) = home {
                changes.push(format!("home {} → {home}", user.home));
                rest.extend(["-d", home]);
            }
            if rest.is_empty() {
                return Ok(Report::unchanged(&subject));
            }
            rest.push(name);
            tool_ok(node, "usermod", &args(&root, node.live, rest), &[]).await?;
            Ok(Report::changed(&subject, changes.join(", ")))
        }
    }
}
