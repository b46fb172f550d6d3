//! The artifact store: command outputs, inventory snapshots and histories as objects, on the
//! `object_store` crate so that a local directory (the default) and S3-compatible stores are
//! one interface.
//!
//! Invariants: object names are relative, `/`-separated paths built by Flotilla, never taken
//! raw from a client. Every object is encrypted by the key service before it leaves the
//! process (`put`) and authenticated on the way back (`get`), bound to its name: no plaintext
//! artifact touches the disk or a bucket, and a modified, truncated or moved object is an
//! error ([`ArtifactError::Tampered`]), never data. Objects written before encryption at rest
//! (no envelope) are refused as [`ArtifactError::NotEncrypted`] rather than served unverified;
//! they were only command outputs, which retention deletes in time.
//!
//! Durability: `put` returns only once the object is on stable storage. object_store's
//! `LocalFileSystem` does not fsync, so on the local back end `put` syncs the file and every
//! directory from its parent up to the store's root (a new directory entry is only durable
//! once its parent is synced).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::keys::{Binding, KeyError, KeyService, is_envelope};

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot open the artifact directory {path}: {source}")]
    Open { path: String, source: object_store::Error },
    #[error("cannot write artifact {name}: {source}")]
    Put { name: String, source: object_store::Error },
    #[error("cannot make artifact {name} durable (fsync of {path}): {source}")]
    Sync { name: String, path: String, source: std::io::Error },
    #[error("cannot read artifact {name}: {source}")]
    Get { name: String, source: object_store::Error },
    #[error("cannot delete artifacts under {name}: {source}")]
    Delete { name: String, source: object_store::Error },
    #[error("`{0}` is not a valid artifact name")]
    BadName(String),
    #[error(
        "artifact {name} failed its integrity check ({source}); it was modified on disk or copied from another object and is not returned"
    )]
    Tampered { name: String, source: KeyError },
    #[error(
        "artifact {name} is not encrypted (written before encryption at rest); it is not served: delete it, or re-run what produced it"
    )]
    NotEncrypted { name: String },
    #[error("cannot encrypt or decrypt artifact {name}: {source}")]
    Crypto { name: String, source: KeyError },
}

/// Objects by name.
#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    keys: KeyService,
    /// The directory of the local back end, which `put` must fsync itself.
    local_root: Option<PathBuf>,
}

impl ArtifactStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path, keys: KeyService) -> Result<Self, ArtifactError> {
        let open = |source| ArtifactError::Open { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir)
            .map_err(|e| open(object_store::Error::Generic { store: "local", source: Box::new(e) }))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(open)?.with_automatic_cleanup(true);
        Ok(ArtifactStore { inner: Arc::new(fs), keys, local_root: Some(dir.to_path_buf()) })
    }

    /// Any object store (S3-compatible and others).
    #[allow(dead_code)] // the S3 back end is configured by a later issue
    pub fn new(inner: Arc<dyn ObjectStore>, keys: KeyService) -> Self {
        ArtifactStore { inner, keys, local_root: None }
    }

    fn path(name: &str) -> Result<ObjectPath, ArtifactError> {
        if name.is_empty() || name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(ArtifactError::BadName(name.to_owned()));
        }
        ObjectPath::parse(name).map_err(|_| ArtifactError::BadName(name.to_owned()))
    }

    /// Encrypts `bytes` (bound to `name`) and stores them.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        let path = Self::path(name)?;
        let bytes = self
            .keys
            .seal(Binding::Artifact(name), bytes)
            .await
            .map_err(|source| ArtifactError::Crypto { name: name.to_owned(), source })?;
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| ArtifactError::Put { name: name.to_owned(), source })?;
        self.sync_local(name).await
    }

    /// On the local back end: fsync the object's file and its directories up to the root.
    async fn sync_local(&self, name: &str) -> Result<(), ArtifactError> {
        let Some(root) = self.local_root.clone() else { return Ok(()) };
        let owned = name.to_owned();
        let run = move || -> Result<(), ArtifactError> {
            let sync = |path: &Path| {
                std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|source| ArtifactError::Sync {
                    name: owned.clone(),
                    path: path.display().to_string(),
                    source,
                })
            };
            let file = root.join(&owned);
            sync(&file)?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                sync(d)?;
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        };
        tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
            Err(ArtifactError::Sync { name: name.to_owned(), path: String::new(), source: std::io::Error::other(e) })
        })
    }

    /// Deletes every object under `prefix/` (a retention sweep); returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, ArtifactError> {
        let path = Self::path(prefix)?;
        let err = |source| ArtifactError::Delete { name: prefix.to_owned(), source };
        let objects: Vec<object_store::ObjectMeta> = self.inner.list(Some(&path)).try_collect().await.map_err(err)?;
        for object in &objects {
            self.inner.delete(&object.location).await.map_err(err)?;
        }
        Ok(objects.len())
    }

    /// Reads, authenticates and decrypts the object `name`.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, ArtifactError> {
        let path = Self::path(name)?;
        let get = |source| ArtifactError::Get { name: name.to_owned(), source };
        let result = self.inner.get(&path).await.map_err(get)?;
        let stored = result.bytes().await.map_err(get)?.to_vec();
        if !is_envelope(&stored) {
            return Err(ArtifactError::NotEncrypted { name: name.to_owned() });
        }
        self.keys.open(Binding::Artifact(name), stored).await.map_err(|source| match source {
            KeyError::Tampered { .. } | KeyError::Malformed { .. } => {
                tracing::error!(artifact = %name, "artifact failed its integrity check: {source}");
                ArtifactError::Tampered { name: name.to_owned(), source }
            }
            source => ArtifactError::Crypto { name: name.to_owned(), source },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_keys(dir: &Path) -> KeyService {
        let (ring, _) = crate::keys::LocalKeyring::open_or_create(&dir.join("master.key"), 1).expect("keyring");
        KeyService::new(Arc::new(ring))
    }

    #[tokio::test]
    async fn objects_are_encrypted_bound_to_their_name_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("artifacts");
        let store = ArtifactStore::local(&root, test_keys(dir.path())).expect("open");
        store.put("commands/c-1/n-1/stdout", b"MARKER-plaintext".to_vec()).await.expect("put");
        let on_disk = std::fs::read(root.join("commands/c-1/n-1/stdout")).expect("read");
        assert!(!on_disk.windows(6).any(|w| w == b"MARKER"), "no plaintext on disk");
        let mut flipped = on_disk.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x80;
        std::fs::write(root.join("commands/c-1/n-1/stdout"), &flipped).expect("write");
        assert!(matches!(store.get("commands/c-1/n-1/stdout").await, Err(ArtifactError::Tampered { .. })));
        // A valid object copied onto another name does not open there.
        std::fs::create_dir_all(root.join("commands/c-2/n-1")).expect("mkdir");
        std::fs::write(root.join("commands/c-2/n-1/stdout"), &on_disk).expect("copy");
        assert!(matches!(store.get("commands/c-2/n-1/stdout").await, Err(ArtifactError::Tampered { .. })));
        std::fs::write(root.join("commands/c-2/n-1/stdout"), b"legacy plaintext").expect("write");
        assert!(matches!(store.get("commands/c-2/n-1/stdout").await, Err(ArtifactError::NotEncrypted { .. })));
    }

    #[tokio::test]
    async fn round_trip_on_a_local_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::local(&dir.path().join("artifacts"), test_keys(dir.path())).expect("open");
        let bytes: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, 0x00]).collect();
        store.put("commands/c-1/n-1/stdout", bytes.clone()).await.expect("put");
        assert_eq!(store.get("commands/c-1/n-1/stdout").await.expect("get"), bytes, "binary-exact");
        assert!(dir.path().join("artifacts/commands/c-1/n-1/stdout").exists());
        assert!(matches!(store.put("../escape", vec![]).await, Err(ArtifactError::BadName(_))));
        assert!(matches!(store.get("a//b").await, Err(ArtifactError::BadName(_))));
        assert!(matches!(store.get("missing/object").await, Err(ArtifactError::Get { .. })));
        store.put("commands/c-1/n-2/stderr", b"e".to_vec()).await.expect("put");
        store.put("commands/c-10/n-1/stdout", b"keep".to_vec()).await.expect("put");
        assert_eq!(store.delete_prefix("commands/c-1").await.expect("delete"), 2);
        assert!(store.get("commands/c-1/n-1/stdout").await.is_err());
        assert_eq!(
            store.get("commands/c-10/n-1/stdout").await.expect("kept"),
            b"keep",
            "a prefix is a path, not a string prefix"
        );
    }
}
