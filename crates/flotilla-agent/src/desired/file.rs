//! `file:write` and `file:absent`, and the atomic replace other actions share.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Report, accounts};
use crate::root;

/// Mode of a file `file:write` creates without a `mode`.
const DEFAULT_MODE: u32 = 0o644;

fn host_path(root_dir: &Path, path: &str) -> Result<PathBuf, String> {
    root::resolve(root_dir, Path::new(path)).map_err(|e| format!("{path}: {e}"))
}

/// The host path of `path`'s parent (links followed) joined with its own name (not followed):
/// what `file:absent` removes is the name itself, even when it is a link.
fn host_entry(root_dir: &Path, path: &str) -> Result<PathBuf, String> {
    let node = Path::new(path);
    let (Some(parent), Some(name)) = (node.parent(), node.file_name()) else {
        return Err(format!("{path} names no file"));
    };
    Ok(host_path(root_dir, &parent.to_string_lossy())?.join(name))
}

/// Writes `content` to `host` atomically: a temporary file beside it, owned and moded as
/// asked, fsync'd, renamed over it, then the directory fsync'd. Nothing is left behind on error.
pub(crate) fn replace(
    host: &Path,
    content: &[u8],
    mode: u32,
    owner: (Option<u32>, Option<u32>),
) -> std::io::Result<()> {
    let dir = host.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    let name = host.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let temp = dir.join(format!(".{name}.flotilla-{}-{nanos}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&temp)?;
        file.write_all(content)?;
        // chown before chmod: changing the owner clears set-id bits.
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::fchown(&file, owner.0, owner.1)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temp, host)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// `file:write`.
pub fn write(
    root_dir: &Path,
    path: &str,
    content: &[u8],
    mode: Option<u32>,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<Report, String> {
    // Names first: an owner the node does not have fails the step before anything is written.
    let uid = owner.map(|o| accounts::uid(root_dir, o)).transpose()?;
    let gid = group.map(|g| accounts::gid(root_dir, g)).transpose()?;
    let host = host_path(root_dir, path)?;
    let parent_ok = host.parent().is_some_and(Path::is_dir);
    if !parent_ok {
        let parent = Path::new(path).parent().map(|p| p.display().to_string()).unwrap_or_default();
        return Err(format!("{path}: the directory {parent} does not exist on the node; create it first"));
    }
    let existing = match std::fs::symlink_metadata(&host) {
        Ok(meta) if meta.is_dir() => return Err(format!("{path} is a directory on the node; file:write writes files")),
        Ok(meta) if !meta.is_file() => return Err(format!("{path} is not a regular file on the node; not replaced")),
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let fail = |e: std::io::Error| format!("{path}: cannot write: {e}");
    let Some(meta) = existing else {
        replace(&host, content, mode.unwrap_or(DEFAULT_MODE), (uid, gid)).map_err(fail)?;
        return Ok(Report::changed(path, "created"));
    };
    let current = {
        use std::io::Read;
        let mut bytes = Vec::new();
        root::open_no_follow(&host).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| format!("{path}: {e}"))?;
        bytes
    };
    let current_mode = meta.mode() & 0o7777;
    if current != content {
        let owner = (Some(uid.unwrap_or(meta.uid())), Some(gid.unwrap_or(meta.gid())));
        replace(&host, content, mode.unwrap_or(current_mode), owner).map_err(fail)?;
        return Ok(Report::changed(path, "content differed, rewritten"));
    }
    let mut changes = Vec::new();
    if let Some(u) = uid.filter(|u| *u != meta.uid()) {
        changes.push(format!("owner {} → {u}", meta.uid()));
    }
    if let Some(g) = gid.filter(|g| *g != meta.gid()) {
        changes.push(format!("group {} → {g}", meta.gid()));
    }
    if !changes.is_empty() {
        std::os::unix::fs::lchown(&host, uid, gid).map_err(fail)?;
    }
    // Set after chown (which clears set-id bits), and again when chown changed it.
    let after_chown = std::fs::symlink_metadata(&host).map(|m| m.mode() & 0o7777).unwrap_or(current_mode);
    let wanted = mode.unwrap_or(current_mode);
    if wanted != after_chown {
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(wanted)).map_err(fail)?;
    }
    if mode.is_some_and(|m| m != current_mode) {
        changes.push(format!("mode {current_mode:04o} → {wanted:04o}"));
    }
    if changes.is_empty() {
        return Ok(Report::unchanged(path));
    }
    Ok(Report::changed(path, format!("{} (content unchanged)", changes.join(", "))))
}

/// `file:absent`.
pub fn absent(root_dir: &Path, path: &str) -> Result<Report, String> {
    let host = host_entry(root_dir, path)?;
    match std::fs::symlink_metadata(&host) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Report::unchanged(path)),
        Err(e) => Err(format!("{path}: {e}")),
        Ok(meta) if meta.is_dir() => {
            Err(format!("{path} is a directory on the node; file:absent removes files only, not directories"))
        }
        Ok(_) => {
            std::fs::remove_file(&host).map_err(|e| format!("{path}: cannot remove: {e}"))?;
            if let Some(dir) = host.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(Report::changed(path, "removed"))
        }
    }
}
