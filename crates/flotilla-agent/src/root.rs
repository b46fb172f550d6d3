//! Paths as the node sees them, resolved under the agent's `--root` without ever leaving it.
//!
//! Patterns and paths come from the server (watched files) and symbolic links from the node's
//! disk; neither may make the agent read outside its root. `resolve` walks a path one
//! component at a time and follows each link itself: an absolute link target starts again at
//! the root (as the kernel does inside a chroot), and a `..` that would climb above the root
//! is refused with `RootError::Outside`. `expand` matches a glob the same way, listing only
//! directories it resolved, so a symlinked directory pointing out of the root is never listed.
//!
//! Invariant: every host path these functions return is the root joined with plain names
//! (no `..`, no symbolic link at the time of the walk); the last component is opened with
//! `O_NOFOLLOW` by readers (`open_no_follow`), so a link swapped in afterwards is refused
//! rather than followed.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most links followed in one resolution (the kernel's limit).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    #[error("leads outside the agent's root; not read")]
    Outside,
    #[error("too many levels of symbolic links; not read")]
    Loop,
}

fn parts(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some("..".into()),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// The host path of `path` (as seen on the node: relative to the root, `/` optional) with
/// every symbolic link in it followed under the root.
pub fn resolve(root: &Path, path: &Path) -> Result<PathBuf, RootError> {
    let mut pending: VecDeque<OsString> = parts(path).collect();
    let mut inside: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if inside.pop().is_none() {
                return Err(RootError::Outside);
            }
            continue;
        }
        let candidate: PathBuf = root.join(inside.iter().collect::<PathBuf>()).join(&name);
        let target = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(&candidate).ok(),
            _ => None,
        };
        match target {
            Some(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(RootError::Loop);
                }
                if target.has_root() {
                    inside.clear();
                }
                for part in parts(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
            }
            // A missing name is kept as it is: the reader reports "does not exist".
            None => inside.push(name),
        }
    }
    Ok(root.join(inside.iter().collect::<PathBuf>()))
}

/// Opens a resolved host path for reading, refusing a symbolic link in its last component.
pub fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()).open(path)
}

/// Node paths (absolute, as seen on the node) matching the glob `pattern`, sorted, at most
/// `limit + 1` (so the caller can tell it was cut). Directories that resolve outside the root
/// are skipped and named in the warnings.
pub fn expand(root: &Path, pattern: &str, limit: usize) -> Result<(Vec<PathBuf>, Vec<String>), glob::PatternError> {
    let mut found = vec![PathBuf::from("/")];
    let mut warnings = Vec::new();
    let components: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    for component in components {
        if !component.contains(['*', '?', '[']) {
            for path in &mut found {
                path.push(component);
            }
            continue;
        }
        let matcher = glob::Pattern::new(component)?;
        let mut next = Vec::new();
        for dir in &found {
            let host = match resolve(root, dir) {
                Ok(host) => host,
                Err(e) => {
                    warnings.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let Ok(entries) = std::fs::read_dir(&host) else { continue };
            let mut names: Vec<OsString> = entries
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_str().is_some_and(|n| matcher.matches(n)))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
            if next.len() > limit {
                break;
            }
        }
        next.truncate(limit + 1);
        found = next;
    }
    Ok((found, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_dot_dots_stay_under_the_root() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "host secret").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/real")).expect("mkdir");
        std::fs::write(root.join("etc/real/a.conf"), "a").expect("write");
        symlink("/etc/real", root.join("etc/abs")).expect("absolute link to a directory");
        symlink("real/a.conf", root.join("etc/rel.conf")).expect("relative link");
        symlink(outside.path(), root.join("etc/out")).expect("link to a host directory");
        symlink("../../../..", root.join("etc/up")).expect("link above the root");
        symlink("loop", root.join("etc/loop")).expect("loop");
        let host = |p: &str| resolve(&root, Path::new(p));
        assert_eq!(host("/etc/abs/a.conf"), Ok(root.join("etc/real/a.conf")), "absolute targets start at the root");
        assert_eq!(host("/etc/rel.conf"), Ok(root.join("etc/real/a.conf")));
        assert_eq!(
            host(&format!("/etc/out/{}", "secret")),
            Ok(root.join(outside.path().strip_prefix("/").expect("absolute")).join("secret")),
            "a link to a host directory means that directory inside the root"
        );
        assert_eq!(host("/etc/../../x"), Err(RootError::Outside), "`..` in the path");
        assert_eq!(host("/etc/up/x"), Err(RootError::Outside), "`..` in a link");
        assert_eq!(host("/etc/loop"), Err(RootError::Loop));
        assert_eq!(host("/etc/missing/x"), Ok(root.join("etc/missing/x")));
        let (paths, warnings) = expand(&root, "/etc/*/*", 100).expect("glob");
        assert_eq!(paths, vec![PathBuf::from("/etc/abs/a.conf"), PathBuf::from("/etc/real/a.conf")], "{warnings:?}");
        assert!(warnings.contains(&"/etc/up: leads outside the agent's root; not read".to_owned()), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.starts_with("/etc/loop: too many levels")), "{warnings:?}");
        let (paths, _) = expand(&root, "/etc/out/*", 100).expect("glob");
        assert_eq!(paths, Vec::<PathBuf>::new(), "the host directory is never listed");
        symlink("real/a.conf", root.join("etc/swapped")).expect("link");
        assert!(open_no_follow(&root.join("etc/swapped")).is_err(), "a link as the last component is not opened");
    }
}
