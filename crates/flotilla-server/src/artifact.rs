//! The artifact store: command outputs, inventory snapshots and histories as objects, on the
//! `object_store` crate so that a local directory (the default) and S3-compatible stores are
//! one interface.
//!
//! Invariant: object names are relative, `/`-separated paths built by Flotilla, never taken
//! raw from a client.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot open the artifact directory {path}: {source}")]
    Open { path: String, source: object_store::Error },
    #[error("cannot write artifact {name}: {source}")]
    Put { name: String, source: object_store::Error },
    #[error("cannot read artifact {name}: {source}")]
    Get { name: String, source: object_store::Error },
    #[error("cannot delete artifacts under {name}: {source}")]
    Delete { name: String, source: object_store::Error },
    #[error("`{0}` is not a valid artifact name")]
    BadName(String),
}

/// Objects by name.
#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
}

impl ArtifactStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<Self, ArtifactError> {
        let open = |source| ArtifactError::Open { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir)
            .map_err(|e| open(object_store::Error::Generic { store: "local", source: Box::new(e) }))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(open)?.with_automatic_cleanup(true);
        Ok(ArtifactStore { inner: Arc::new(fs) })
    }

    /// Any object store (S3-compatible and others).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        ArtifactStore { inner }
    }

    fn path(name: &str) -> Result<ObjectPath, ArtifactError> {
        if name.is_empty() || name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(ArtifactError::BadName(name.to_owned()));
        }
        ObjectPath::parse(name).map_err(|_| ArtifactError::BadName(name.to_owned()))
    }

    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        let path = Self::path(name)?;
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| ArtifactError::Put { name: name.to_owned(), source })?;
        Ok(())
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

    pub async fn get(&self, name: &str) -> Result<Vec<u8>, ArtifactError> {
        let path = Self::path(name)?;
        let get = |source| ArtifactError::Get { name: name.to_owned(), source };
        let result = self.inner.get(&path).await.map_err(get)?;
        Ok(result.bytes().await.map_err(get)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_on_a_local_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ArtifactStore::local(&dir.path().join("artifacts")).expect("open");
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
