//! Assessment checks the agent runs on its node (rules packages `security-best-practices` and
//! `network-reachability`), reading everything under `--root`. Each check has a documented id,
//! rationale and severity ([`CHECKS`]); a check that does not apply (no sshd, no apt) reports
//! nothing. The result is one JSON array of findings, printed as the step's output, which the
//! server turns into the run's findings.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;

/// One check of `security-best-practices`: (id, severity, title, rationale).
pub const CHECKS: &[(&str, &str, &str, &str)] = &[
    (
        "FLT-BP-001",
        "Medium",
        "SSH allows root to log in with a password",
        "PermitRootLogin yes lets anyone who guesses or steals root's password in directly; use a normal account \
         and sudo, or keys only (prohibit-password).",
    ),
    (
        "FLT-BP-002",
        "Medium",
        "SSH allows password authentication",
        "Passwords can be guessed and phished; key-based authentication is not exposed to online guessing.",
    ),
    (
        "FLT-BP-003",
        "High",
        "World-writable file in a system path",
        "Any local user can change a file under /etc or a binary directory, and so what root runs or reads.",
    ),
    (
        "FLT-BP-004",
        "High",
        "Account with an empty password",
        "An account whose password field is empty can be logged into without any password.",
    ),
    (
        "FLT-BP-005",
        "Low",
        "Automatic security updates are off",
        "Without unattended upgrades (apt) or dnf-automatic, fixes wait for someone to install them by hand.",
    ),
];

/// A finding as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFinding {
    pub rule: &'static str,
    pub id: String,
    pub severity: &'static str,
    pub title: String,
    pub detail: String,
}

fn finding(id: &'static str, detail: String) -> CheckFinding {
    let (_, severity, title, _) = CHECKS.iter().find(|c| c.0 == id).copied().unwrap_or((id, "Medium", id, ""));
    CheckFinding { rule: "security-best-practices", id: id.to_owned(), severity, title: title.to_owned(), detail }
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// sshd's effective value of `key`: the first occurrence wins, in sshd_config and the files
/// it includes from sshd_config.d (read in name order, as `Include` expands them).
fn sshd_option(config: &str, included: &[String], key: &str) -> Option<String> {
    let mut texts = Vec::new();
    for line in config.lines() {
        if line.trim_start().to_ascii_lowercase().starts_with("include") {
            texts.extend(included.iter().map(String::as_str));
        } else {
            texts.push(line);
        }
    }
    texts
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .take_while(|l| !l.to_ascii_lowercase().starts_with("match "))
        .find_map(|l| {
            let mut parts = l.splitn(2, |c: char| c.is_whitespace() || c == '=');
            let k = parts.next()?;
            k.eq_ignore_ascii_case(key).then(|| parts.next().unwrap_or("").trim().to_ascii_lowercase())
        })
}

fn ssh(root: &Path, out: &mut Vec<CheckFinding>) {
    let Some(config) = read(root, "etc/ssh/sshd_config") else { return };
    let mut names: Vec<_> = std::fs::read_dir(root.join("etc/ssh/sshd_config.d"))
        .map(|d| {
            d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")).collect()
        })
        .unwrap_or_default();
    names.sort();
    let included: Vec<String> = names.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect();
    if sshd_option(&config, &included, "PermitRootLogin").as_deref() == Some("yes") {
        out.push(finding("FLT-BP-001", "/etc/ssh/sshd_config: PermitRootLogin yes".into()));
    }
    // sshd's default is yes.
    if sshd_option(&config, &included, "PasswordAuthentication").is_none_or(|v| v == "yes") {
        out.push(finding("FLT-BP-002", "/etc/ssh/sshd_config: PasswordAuthentication is not set to no".into()));
    }
}

/// System paths searched for world-writable files, and how deep.
const SYSTEM_PATHS: &[(&str, usize)] = &[
    ("etc", 6),
    ("bin", 1),
    ("sbin", 1),
    ("usr/bin", 1),
    ("usr/sbin", 1),
    ("usr/local/bin", 1),
    ("usr/local/sbin", 1),
];
const MAX_REPORTED_FILES: usize = 100;

fn world_writable(root: &Path, out: &mut Vec<CheckFinding>) {
    let mut found = Vec::new();
    for (rel, depth) in SYSTEM_PATHS {
        walk(&root.join(rel), *depth, &mut found);
    }
    found.sort();
    for path in found.iter().take(MAX_REPORTED_FILES) {
        let shown = Path::new("/").join(path.strip_prefix(root).unwrap_or(path));
        out.push(finding("FLT-BP-003", format!("{} is writable by every user", shown.display())));
    }
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            continue;
        }
        // Sticky directories (like /tmp) are meant to be shared.
        let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
        if mode & 0o002 != 0 && !sticky_dir {
            found.push(entry.path());
        }
        if meta.is_dir() && depth > 1 {
            walk(&entry.path(), depth - 1, found);
        }
    }
}

fn empty_passwords(root: &Path, out: &mut Vec<CheckFinding>) {
    let Some(shadow) = read(root, "etc/shadow") else { return };
    for line in shadow.lines() {
        let mut fields = line.split(':');
        if let (Some(user), Some("")) = (fields.next(), fields.next()) {
            out.push(finding("FLT-BP-004", format!("/etc/shadow: {user} has an empty password")));
        }
    }
}

fn automatic_updates(root: &Path, out: &mut Vec<CheckFinding>) {
    if root.join("var/lib/dpkg/status").is_file() {
        let enabled = std::fs::read_dir(root.join("etc/apt/apt.conf.d"))
            .map(|d| {
                d.filter_map(Result::ok).filter_map(|e| std::fs::read_to_string(e.path()).ok()).any(|text| {
                    text.lines().any(|l| {
                        let l = l.trim();
                        l.starts_with("APT::Periodic::Unattended-Upgrade") && l.contains("\"1\"")
                    })
                })
            })
            .unwrap_or(false);
        if !enabled {
            out.push(finding("FLT-BP-005", "apt: APT::Periodic::Unattended-Upgrade is not \"1\"".into()));
        }
    } else if root.join("var/lib/rpm").is_dir() {
        let wants = root.join("etc/systemd/system/timers.target.wants");
        let enabled = std::fs::read_dir(wants)
            .map(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with("dnf-automatic")))
            .unwrap_or(false);
        if !enabled {
            out.push(finding("FLT-BP-005", "dnf-automatic timer is not enabled".into()));
        }
    }
}

pub fn best_practices(root: &Path) -> Vec<CheckFinding> {
    let mut out = Vec::new();
    ssh(root, &mut out);
    world_writable(root, &mut out);
    empty_passwords(root, &mut out);
    automatic_updates(root, &mut out);
    out
}

/// A listening socket from /proc/net: (protocol, address, port, inode).
fn listening(table: &str, proto: &str, v6: bool) -> Vec<(String, String, u16, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?.parse().ok()?);
            // TCP LISTEN is 0A; an unconnected UDP socket is 07.
            if (proto == "tcp" && *state != "0A") || (proto == "udp" && *state != "07") {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let any = addr.chars().all(|c| c == '0');
            let shown = match (any, v6) {
                (true, false) => "0.0.0.0".to_owned(),
                (true, true) => "::".to_owned(),
                _ => addr.to_owned(),
            };
            Some((proto.to_owned(), shown, port, inode))
        })
        .collect()
}

/// Socket inode → process name, from /proc/PID/fd (needs root to see other users' processes).
fn socket_owners() -> HashMap<u64, String> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return owners };
    for proc_dir in procs.filter_map(Result::ok) {
        let pid = proc_dir.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(proc_dir.path().join("comm")).unwrap_or_default().trim().to_owned();
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else { continue };
        for fd in fds.filter_map(Result::ok) {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target.to_string_lossy().strip_prefix("socket:[").and_then(|s| s.strip_suffix(']'))
                && let Ok(inode) = inode.parse()
            {
                owners.insert(inode, format!("{comm} (pid {})", pid.to_string_lossy()));
            }
        }
    }
    owners
}

pub fn network_reachability(root: &Path) -> Vec<CheckFinding> {
    let mut sockets = Vec::new();
    for (file, proto, v6) in
        [("tcp", "tcp", false), ("tcp6", "tcp", true), ("udp", "udp", false), ("udp6", "udp", true)]
    {
        let table = crate::node::read_kernel_file(root, &format!("proc/net/{file}")).unwrap_or_default();
        sockets.extend(listening(&table, proto, v6));
    }
    let owners = socket_owners();
    let mut out: Vec<CheckFinding> = sockets
        .into_iter()
        .filter(|(_, addr, _, _)| addr == "0.0.0.0" || addr == "::")
        .map(|(proto, addr, port, inode)| {
            let process = owners.get(&inode).cloned().unwrap_or_else(|| "unknown process".into());
            let (id, severity) = if proto == "tcp" { ("FLT-NR-001", "Medium") } else { ("FLT-NR-002", "Low") };
            CheckFinding {
                rule: "network-reachability",
                id: format!("{id}:{proto}/{port}"),
                severity,
                title: format!("{} port {port} listens on all addresses", proto.to_uppercase()),
                detail: format!("{proto} {addr}:{port} is bound to every interface by {process}; bind it to the addresses that need it or filter it"),
            }
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn sshd_first_value_wins_including_drop_ins() {
        let config = "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nMatch User x\nPasswordAuthentication no\n";
        assert_eq!(sshd_option(config, &["PermitRootLogin no".into()], "PermitRootLogin").as_deref(), Some("no"));
        assert_eq!(sshd_option(config, &[], "permitrootlogin").as_deref(), Some("yes"));
        assert_eq!(sshd_option(config, &[], "PasswordAuthentication"), None, "a Match block is not global");
    }

    #[test]
    fn best_practices_on_a_sandbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "etc/ssh/sshd_config", "PermitRootLogin yes\nPasswordAuthentication no\n");
        write(root, "etc/shadow", "root:$6$abc:19000::::::\nguest::19000::::::\nnobody:*:19000::::::\n");
        write(root, "etc/app.conf", "x");
        std::fs::set_permissions(root.join("etc/app.conf"), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        std::fs::create_dir_all(root.join("etc/shared")).expect("mkdir");
        std::fs::set_permissions(root.join("etc/shared"), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        write(root, "var/lib/dpkg/status", "");
        let found = best_practices(root);
        let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["FLT-BP-001", "FLT-BP-003", "FLT-BP-004", "FLT-BP-005"], "{found:?}");
        assert!(found[1].detail.contains("/etc/app.conf"));
        assert!(found[2].detail.contains("guest"));
        // Enabling unattended upgrades clears FLT-BP-005.
        write(root, "etc/apt/apt.conf.d/20auto-upgrades", "APT::Periodic::Unattended-Upgrade \"1\";\n");
        assert!(!best_practices(root).iter().any(|f| f.id == "FLT-BP-005"));
        // A node without sshd, shadow or a package manager has nothing to report.
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(best_practices(empty.path()), vec![]);
    }

    #[test]
    fn listening_sockets_from_proc() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1\n\
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1235 1\n\
   2: 0100007F:9C40 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 1236 1\n";
        let found = listening(tcp, "tcp", false);
        assert_eq!(
            found,
            vec![("tcp".into(), "0.0.0.0".into(), 22, 1234), ("tcp".into(), "0100007F".into(), 5432, 1235)]
        );
    }
}
