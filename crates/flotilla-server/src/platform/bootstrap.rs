//! First start and every start: the data dir, its lock, the CA, the master key, the store
//! and the admin token.
//!
//! Invariants: one server process per data dir (an OS file lock, released by the kernel if
//! the process dies); secrets are written with mode 0600 and never logged; a malformed,
//! missing or wrong master key stops the server rather than letting it run with the wrong key
//! (the database records each master key version's check value; see `keys`).
//!
//! Private files are private: before anything is created the process umask becomes 0077, so
//! every file the server (or SQLite, or the artifact store) creates is at most 0600 and every
//! directory 0700, whatever umask the server was started with; files written through
//! [`write_private`] are 0600 even when they existed with a wider mode. What an older version
//! left wider (the data dir, the database and its -wal/-shm, keys, tokens, spool, artifacts)
//! is tightened at start, with a WARN naming it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use flotilla_store::{SqlStore, Store};

use super::config::ServerConfig;
use super::keys::{KeyService, LocalKeyring, verify_against_store};
use super::pki::Pki;
use super::secret::{random_token, sha256_hex};

/// Holds the data dir's lock for the life of the server.
pub struct DataDirLock {
    _file: File,
}

pub struct Prepared {
    pub store: Arc<dyn Store>,
    pub pki: Pki,
    pub lock: DataDirLock,
    pub keys: KeyService,
}

/// Writes a secret file readable by its owner only. The mode is set on the open file before
/// anything is written, so a file that already existed with a wider mode (a stale temporary
/// file, say) never holds the new contents readable by others.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))?;
    file.write_all(contents).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join("server.lock");
    let file = File::create(&path).with_context(|| {
        format!("the data dir {} is not writable: fix its permissions or choose another with --data-dir", dir.display())
    })?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another flotilla server is already using the data dir {}: stop it first, or give this one its own --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Opens the master keyring (creating it on a first start) and checks it against what the
/// database has seen. A missing keyring is created only when the database has never recorded
/// a master key: otherwise the data it protects would be unreadable, so start-up stops.
async fn open_keys(config: &ServerConfig, store: &dyn Store) -> anyhow::Result<KeyService> {
    let path = config.master_key_path();
    if !path.exists() {
        let recorded = store.list_master_keys().await?;
        if let Some(first) = recorded.first() {
            bail!(
                "the master key file {} is missing, but this database holds data encrypted under master key {} \
                 version {}: restore the file from backup (or point master_key_file at it); the server will not \
                 start without its key",
                path.display(),
                first.key_id,
                first.version
            );
        }
    }
    let (keyring, created) = LocalKeyring::open_or_create(&path, super::now_ms())?;
    if created {
        tracing::info!(path = %path.display(), "created a new master key");
    }
    verify_against_store(&keyring, store, &path, super::now_ms()).await?;
    Ok(KeyService::new(Arc::new(keyring)))
}

fn server_names(config: &ServerConfig) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    if !config.listen.ip().is_unspecified() {
        names.push(config.listen.ip().to_string());
    }
    names.extend(config.tls_names.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// The process umask while the server runs: nothing it creates is readable by group or others.
pub const PRIVATE_UMASK: u32 = 0o077;

/// Makes `root` (a file or a directory tree) private: group and other permission bits are
/// removed from every entry that has any. Symbolic links are neither followed nor changed (their
/// own mode means nothing; a link's target outside the tree is not ours to change). Returns the
/// paths that were tightened.
pub fn tighten_private(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut tightened = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Gone since it was listed (a spool chunk, an artifact's staging file): nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read the permissions of {}", path.display())),
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & PRIVATE_UMASK != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !PRIVATE_UMASK)).with_context(
                || format!("cannot make {} private (mode {:o}): fix its owner or permissions", path.display(), mode),
            )?;
            tightened.push(path.clone());
        }
        if meta.is_dir() {
            let entries =
                std::fs::read_dir(&path).with_context(|| format!("cannot list {} to check it", path.display()))?;
            for entry in entries {
                pending.push(entry.with_context(|| format!("cannot list {}", path.display()))?.path());
            }
        }
    }
    Ok(tightened)
}

/// Tightens what an older version (or another umask) left readable by others, saying so.
fn tighten_existing(config: &ServerConfig) -> anyhow::Result<()> {
    let mut roots = vec![config.data_dir.clone()];
    let key = config.master_key_path();
    if !key.starts_with(&config.data_dir) && key.exists() {
        roots.push(key);
    }
    for root in roots {
        let tightened = tighten_private(&root)?;
        if !tightened.is_empty() {
            // One line, however many files: an artifact store can hold millions.
            let shown: Vec<String> = tightened.iter().take(5).map(|p| p.display().to_string()).collect();
            tracing::warn!(
                count = tightened.len(),
                "{} was readable by group or others: removed those permissions from {} entries (e.g. {}); \
                 check who could read it before",
                root.display(),
                tightened.len(),
                shown.join(", ")
            );
        }
    }
    Ok(())
}

/// Creates or opens everything the server keeps in its data dir.
pub async fn prepare(config: &ServerConfig) -> anyhow::Result<Prepared> {
    // Before anything is created: SQLite, the artifact store and the spool create their files
    // with the process umask, whatever it was when the server was started.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(PRIVATE_UMASK));
    let dir: PathBuf = config.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| {
        format!("cannot create the data dir {}: fix its permissions or choose another with --data-dir", dir.display())
    })?;
    let lock = lock_data_dir(&dir)?;
    tighten_existing(config)?;
    let pki = Pki::load_or_create(&dir, &server_names(config))?;

    let store: Arc<dyn Store> = match &config.database_url {
        Some(url) => Arc::new(SqlStore::open_url(url).await?),
        None => Arc::new(SqlStore::open_sqlite(&dir.join("flotilla.db")).await?),
    };
    let keys = open_keys(config, store.as_ref()).await?;

    // admin.token is the source of truth for the admin's credential: created once, and
    // re-registered at every start so a rebuilt database still honours it.
    let token_path = dir.join("admin.token");
    let token = if token_path.exists() {
        let token =
            std::fs::read_to_string(&token_path).with_context(|| format!("cannot read {}", token_path.display()))?;
        token.trim().to_owned()
    } else {
        let token = random_token("flt_");
        write_private(&token_path, format!("{token}\n").as_bytes())?;
        token
    };
    if token.len() < 16 {
        bail!("{} holds a token too short to be safe: delete it to have a new one made", token_path.display());
    }
    store.put_api_token("admin", &sha256_hex(token.as_bytes()), super::now_ms()).await?;
    Ok(Prepared { store, pki, lock, keys })
}
