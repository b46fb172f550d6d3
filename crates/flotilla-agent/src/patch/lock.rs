//! Waiting, bounded, for the package manager's locks another process holds.
//!
//! The tools take the locks themselves (dpkg/apt and rpm: fcntl write locks on a lock file;
//! dnf: a pid file), and not all of them wait: `apt-get update` and librpm's transaction lock
//! fail at once. So before a tool that locks, the same files are looked at without taking them
//! (`F_GETLK` tells the holder's pid without locking anything); while one is held the wait is
//! logged once per holder, and past the bound the operation fails naming the lock and holder.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{OperationLog, PatchError};

/// How a lock file is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An fcntl (POSIX record) lock on the file (dpkg, apt, rpm).
    Fcntl,
    /// The file holds the pid of the holder while it runs (dnf's `*.pid` locks).
    PidFile,
}

#[derive(Debug, Clone)]
pub(super) struct LockFile {
    pub path: PathBuf,
    pub kind: Kind,
}

impl LockFile {
    pub fn fcntl(path: PathBuf) -> LockFile {
        LockFile { path, kind: Kind::Fcntl }
    }

    pub fn pid_file(path: PathBuf) -> LockFile {
        LockFile { path, kind: Kind::PidFile }
    }
}

/// "pid 1234 (apt-get)".
pub(super) fn describe(pid: i32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("pid {pid} ({})", comm.trim()),
        Err(_) => format!("pid {pid}"),
    }
}

/// The pid holding `lock`, if another process holds it now.
fn holder(lock: &LockFile) -> Option<i32> {
    match lock.kind {
        Kind::Fcntl => fcntl_holder(&lock.path),
        Kind::PidFile => {
            let pid: i32 = std::fs::read_to_string(&lock.path).ok()?.trim().parse().ok()?;
            let own = i32::try_from(std::process::id()).ok();
            (Some(pid) != own && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
        }
    }
}

fn fcntl_holder(path: &Path) -> Option<i32> {
    use nix::fcntl::{FcntlArg, fcntl};
    let file = std::fs::File::open(path).ok()?;
    let mut query = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(file.as_fd(), FcntlArg::F_GETLK(&mut query)).ok()?;
    // An open-file-description lock reports pid -1: held, holder unknown.
    (query.l_type != nix::libc::F_UNLCK as i16).then_some(query.l_pid)
}

/// Waits until none of `locks` is held by another process, at most `bound`; logs who is
/// waited for. Returns how long is left of the bound (for a tool's own lock timeout).
pub(super) async fn wait_free(
    locks: &[LockFile],
    bound: Duration,
    log: &mut OperationLog,
) -> Result<Duration, PatchError> {
    let started = Instant::now();
    let mut announced: Option<(PathBuf, i32)> = None;
    loop {
        let held = {
            let locks = locks.to_vec();
            tokio::task::spawn_blocking(move || {
                locks.iter().find_map(|lock| holder(lock).map(|pid| (lock.path.clone(), pid)))
            })
            .await
            .unwrap_or(None)
        };
        let Some((path, pid)) = held else {
            if announced.is_some() {
                log.line(format!("lock free after waiting {:.1}s", started.elapsed().as_secs_f64()));
            }
            return Ok(bound.saturating_sub(started.elapsed()));
        };
        let holder_text = (pid > 0).then(|| describe(pid));
        if announced.as_ref() != Some(&(path.clone(), pid)) {
            log.line(format!(
                "waiting (at most {}s) for the package manager's lock {}, held by {}",
                bound.as_secs(),
                path.display(),
                holder_text.as_deref().unwrap_or("another process")
            ));
            announced = Some((path.clone(), pid));
        }
        if started.elapsed() >= bound {
            log.line(format!("gave up waiting for {}", path.display()));
            return Err(PatchError::LockHeld { lock: path, holder: holder_text, waited: started.elapsed() });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
