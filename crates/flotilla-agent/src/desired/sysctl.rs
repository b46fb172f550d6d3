//! `sysctl:ensure`: `name = value` kept in the node's `/etc/sysctl.d/99-flotilla.conf` (so it
//! holds after a reboot), and the live value set with `sysctl -w` when the root is `/`.

use std::path::Path;

use super::{Node, Report, file, tool, tool_ok};
use crate::root;

/// The file the agent keeps its kernel parameters in, on the node.
pub const CONF: &str = "/etc/sysctl.d/99-flotilla.conf";

/// `text` with `name = value` in it: the line for `name` replaced (or added). None when it
/// already says that.
fn edited(text: &str, name: &str, value: &str) -> Option<String> {
    let wanted = format!("{name} = {value}");
    let key = |line: &str| -> Option<String> {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        let (k, _) = line.split_once('=')?;
        Some(k.trim().trim_start_matches('-').replace('/', "."))
    };
    let mut found = false;
    let mut same = false;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if key(line).as_deref() == Some(name) {
            if found {
                continue; // a later duplicate would override the one kept
            }
            found = true;
            same = line.split_once('=').is_some_and(|(_, v)| v.trim() == value);
            lines.push(wanted.clone());
        } else {
            lines.push(line.to_owned());
        }
    }
    if found && same && text.lines().filter(|l| key(l).as_deref() == Some(name)).count() == 1 {
        return None;
    }
    if !found {
        if lines.is_empty() {
            lines.push("# Kernel parameters kept by the Flotilla agent (sysctl:ensure).".to_owned());
        }
        lines.push(wanted);
    }
    Some(lines.join("\n") + "\n")
}

fn persist(root_dir: &Path, name: &str, value: &str) -> Result<bool, String> {
    let host = root::resolve(root_dir, Path::new(CONF)).map_err(|e| format!("{CONF}: {e}"))?;
    if let Some(dir) = host.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create /etc/sysctl.d on the node: {e}"))?;
    }
    let text = match std::fs::read_to_string(&host) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {CONF} on the node: {e}")),
    };
    let Some(new) = edited(&text, name, value) else { return Ok(false) };
    file::replace(&host, new.as_bytes(), 0o644, (None, None)).map_err(|e| format!("cannot write {CONF}: {e}"))?;
    Ok(true)
}

pub async fn ensure(node: &Node, name: &str, value: &str) -> Result<Report, String> {
    let subject = format!("sysctl {name}");
    let (root_dir, n, v) = (node.root.clone(), name.to_owned(), value.to_owned());
    let persisted =
        tokio::task::spawn_blocking(move || persist(&root_dir, &n, &v)).await.unwrap_or_else(|e| Err(e.to_string()))?;
    let mut changes = Vec::new();
    if persisted {
        changes.push(format!("{name} = {value} written to {CONF}"));
    }
    if node.live {
        let out = tool(node, "sysctl", &["-n", name], &[]).await?;
        if !out.success() {
            return Err(out.failure("sysctl"));
        }
        // sysctl prints multi-value parameters with tabs; a value written with spaces is the same.
        let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let live = out.stdout.trim().to_owned();
        if normal(&live) != normal(value) {
            tool_ok(node, "sysctl", &["-w", &format!("{name}={value}")], &[]).await?;
            changes.push(format!("live value {live} → {value}"));
        }
    }
    if changes.is_empty() {
        return Ok(Report::unchanged(&subject));
    }
    if !node.live {
        changes.push("live value not set (the agent's root is not /)".to_owned());
    }
    Ok(Report::changed(&subject, changes.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_replaced_or_added_once() {
        assert_eq!(edited("a.b = 1\n", "a.b", "1"), None);
        assert_eq!(edited("a.b=1\n", "a.b", "1"), None);
        assert_eq!(edited("# c\na.b = 0\nx = 2\n", "a.b", "1").as_deref(), Some("# c\na.b = 1\nx = 2\n"));
        assert_eq!(edited("a/b = 1\na.b = 1\n", "a.b", "1").as_deref(), Some("a.b = 1\n"), "one line per key");
        assert_eq!(
            edited("", "a.b", "1").as_deref(),
            Some("# Kernel parameters kept by the Flotilla agent (sysctl:ensure).\na.b = 1\n")
        );
        assert_eq!(edited("x = 2", "a.b", "1").as_deref(), Some("x = 2\na.b = 1\n"));
    }
}
