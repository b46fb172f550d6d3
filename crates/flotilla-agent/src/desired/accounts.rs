//! The node's accounts, read from `/etc/passwd` and `/etc/group` under the root (never the
//! agent's own machine's: a name means what the node says it means).

use std::path::Path;

use crate::root;

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

fn read(root_dir: &Path, path: &str) -> Result<String, String> {
    let host = root::resolve(root_dir, Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    match std::fs::read_to_string(&host) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {path} on the node: {e}")),
    }
}

pub fn passwd(root_dir: &Path) -> Result<Vec<PasswdEntry>, String> {
    Ok(read(root_dir, "/etc/passwd")?
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: (*f.get(5)?).to_owned(),
                shell: f.get(6).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect())
}

pub fn groups(root_dir: &Path) -> Result<Vec<GroupEntry>, String> {
    Ok(read(root_dir, "/etc/group")?
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: (*f.first()?).to_owned(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .copied()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect())
}

/// The uid of `owner` (a name, or a number taken as it is) on the node.
pub fn uid(root_dir: &Path, owner: &str) -> Result<u32, String> {
    if let Ok(uid) = owner.parse() {
        return Ok(uid);
    }
    passwd(root_dir)?.into_iter().find(|e| e.name == owner).map(|e| e.uid).ok_or_else(|| {
        format!(
            "owner `{owner}` does not exist on the node (no such user in its /etc/passwd); create the user \
             first (user:ensure) or fix `owner`"
        )
    })
}

/// The gid of `group` (a name, or a number taken as it is) on the node.
pub fn gid(root_dir: &Path, group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    groups(root_dir)?.into_iter().find(|e| e.name == group).map(|e| e.gid).ok_or_else(|| {
        format!("group `{group}` does not exist on the node (no such group in its /etc/group); create it first or fix `group`")
    })
}
