//! The artifact store: command outputs, inventory snapshots, assessment reports and histories
//! as objects, on the `object_store` crate. Only the local directory back end is configured
//! today; an S3-compatible one would plug in through [`ArtifactStore::new`] but no setting
//! selects it yet (ARCHITECTURE.md, known gaps).
//!
//! Invariants: object names are relative, `/`-separated paths built by Flotilla, never taken
//! raw from a client. Every object is encrypted by the key service before it leaves the
//! process (`put`) and authenticated on the way back (`get`), bound to its name: no plaintext
//! artifact touches the disk or a bucket, and a modified, truncated or moved object is an
//! error ([`ArtifactError::Tampered`]), never data. Objects written before encryption at rest
//! (no envelope) are refused as [`ArtifactError::NotEncrypted`] rather than served unverified;
//! they were only command outputs, which retention deletes in time.
//!
//! Large objects (command output) are written as a stream ([`ArtifactStore::writer`]): the
//! segmented envelope of `keys.rs`, uploaded in parts, so no object is ever whole in memory;
//! [`ArtifactStore::read_with`] reads one back segment by segment.
//!
//! Durability: `put` (and a writer's `finish`) returns only once the object is on stable storage. On the local back end
//! that is object_store's `with_fsync(true)`: the staged file is synced before its atomic
//! rename, then its directory, and every directory the write created.

use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::keys::{Binding, KeyError, KeyService, SegmentOpener, SegmentSealer, is_envelope};

/// Bytes buffered per part of a streamed upload (S3 needs parts of at least 5 MiB).
const PART_LEN: usize = 8 * 1024 * 1024;
/// Parts of one streamed upload in flight at once: with [`PART_LEN`], what one upload holds.
const PARTS_IN_FLIGHT: usize = 2;

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
}

impl ArtifactStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path, keys: KeyService) -> Result<Self, ArtifactError> {
        let open = |source| ArtifactError::Open { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir)
            .map_err(|e| open(object_store::Error::Generic { store: "local", source: Box::new(e) }))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(open)?.with_automatic_cleanup(true).with_fsync(true);
        Ok(ArtifactStore { inner: Arc::new(fs), keys })
    }

    /// Any object store (S3-compatible and others).
    #[allow(dead_code)] // the S3 back end is configured by a later issue
    pub fn new(inner: Arc<dyn ObjectStore>, keys: KeyService) -> Self {
        ArtifactStore { inner, keys }
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
        Ok(())
    }

    /// Starts a streamed, encrypted object `name` (it appears only at [`ArtifactWriter::finish`]).
    pub async fn writer(&self, name: &str) -> Result<ArtifactWriter, ArtifactError> {
        let path = Self::path(name)?;
        let crypto = |source| ArtifactError::Crypto { name: name.to_owned(), source };
        let (header, sealer) = self.keys.sealer(Binding::Artifact(name)).await.map_err(crypto)?;
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|source| ArtifactError::Put { name: name.to_owned(), source })?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_LEN);
        upload.write(&header);
        Ok(ArtifactWriter { name: name.to_owned(), sealer, upload, sealed: Vec::new() })
    }

    /// Streams the object `name` to `sink`, one authenticated segment at a time; an object cut
    /// short or damaged ends in an error (after the segments before the damage were passed on).
    /// Objects in the single-envelope format are read whole and authenticated first.
    pub async fn read_with(&self, name: &str, mut sink: impl FnMut(&[u8])) -> Result<u64, ArtifactError> {
        let path = Self::path(name)?;
        let get = |source| ArtifactError::Get { name: name.to_owned(), source };
        let tampered = |source: KeyError| match source {
            KeyError::Tampered { .. } | KeyError::Malformed { .. } => {
                tracing::error!(artifact = %name, "artifact failed its integrity check: {source}");
                ArtifactError::Tampered { name: name.to_owned(), source }
            }
            source => ArtifactError::Crypto { name: name.to_owned(), source },
        };
        let mut stream = self.inner.get(&path).await.map_err(get)?.into_stream();
        let mut head = Vec::new();
        let mut opener: Option<SegmentOpener> = None;
        let mut out = Vec::new();
        let mut total = 0u64;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(get)?;
            out.clear();
            match opener.as_mut() {
                Some(opener) => opener.update(&bytes, &mut out).map_err(tampered)?,
                None => {
                    head.extend_from_slice(&bytes);
                    if head.len() >= 5 && (!is_envelope(&head) || head.get(4) != Some(&2)) {
                        // Not segmented: the single-envelope path authenticates it whole.
                        drop(stream);
                        let all = self.get(name).await?;
                        sink(&all);
                        return Ok(all.len() as u64);
                    }
                    if let Some((header_len, mut o)) =
                        self.keys.opener(Binding::Artifact(name), &head).await.map_err(tampered)?
                    {
                        o.update(head.get(header_len..).unwrap_or_default(), &mut out).map_err(tampered)?;
                        opener = Some(o);
                        head = Vec::new();
                    }
                }
            }
            total += out.len() as u64;
            sink(&out);
        }
        let opener = opener.ok_or_else(|| {
            tampered(KeyError::Malformed { what: format!("artifact {name}"), detail: "truncated header" })
        })?;
        out.clear();
        opener.finish(&mut out).map_err(tampered)?;
        total += out.len() as u64;
        sink(&out);
        Ok(total)
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

    /// Deletes every object under `prefix/` written before `cutoff_ms` (Unix milliseconds);
    /// returns how many.
    pub async fn delete_older_than(&self, prefix: &str, cutoff_ms: i64) -> Result<usize, ArtifactError> {
        let path = Self::path(prefix)?;
        let err = |source| ArtifactError::Delete { name: prefix.to_owned(), source };
        let objects: Vec<object_store::ObjectMeta> = self.inner.list(Some(&path)).try_collect().await.map_err(err)?;
        let mut deleted = 0;
        for object in objects.iter().filter(|o| o.last_modified.timestamp_millis() < cutoff_ms) {
            self.inner.delete(&object.location).await.map_err(err)?;
            deleted += 1;
        }
        Ok(deleted)
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

/// A streamed object being written: plaintext in, sealed segments out in parts.
pub struct ArtifactWriter {
    name: String,
    sealer: SegmentSealer,
    upload: WriteMultipart,
    sealed: Vec<u8>,
}

impl ArtifactWriter {
    /// Encrypts and queues `data`; waits while [`PARTS_IN_FLIGHT`] parts are uploading.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ArtifactError> {
        self.sealed.clear();
        self.sealer
            .update(data, &mut self.sealed)
            .map_err(|source| ArtifactError::Crypto { name: self.name.clone(), source })?;
        self.upload
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|source| ArtifactError::Put { name: self.name.clone(), source })?;
        self.upload.write(&self.sealed);
        Ok(())
    }

    /// Seals the last segment and completes the upload (durably, on the local back end).
    pub async fn finish(mut self) -> Result<(), ArtifactError> {
        self.sealed.clear();
        let name = self.name;
        if let Err(source) = self.sealer.finish(&mut self.sealed) {
            let _ = self.upload.abort().await;
            return Err(ArtifactError::Crypto { name, source });
        }
        self.upload.write(&self.sealed);
        self.upload.finish().await.map_err(|source| ArtifactError::Put { name, source })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_keys(dir: &Path) -> KeyService {
        let (ring, _) =
            crate::platform::keys::LocalKeyring::open_or_create(&dir.join("master.key"), 1).expect("keyring");
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
    async fn streamed_objects_round_trip_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("artifacts");
        let store = ArtifactStore::local(&root, test_keys(dir.path())).expect("open");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut writer = store.writer("commands/c-1/n-1/stdout").await.expect("writer");
        for piece in data.chunks(65_000) {
            writer.write(piece).await.expect("write");
        }
        writer.finish().await.expect("finish");
        assert_eq!(store.get("commands/c-1/n-1/stdout").await.expect("get"), data);
        let mut read = Vec::new();
        let n = store.read_with("commands/c-1/n-1/stdout", |b| read.extend_from_slice(b)).await.expect("read");
        assert_eq!((n, read == data), (data.len() as u64, true));
        // Single-envelope objects read the same way.
        store.put("commands/c-1/n-1/stderr", b"small".to_vec()).await.expect("put");
        let mut small = Vec::new();
        store.read_with("commands/c-1/n-1/stderr", |b| small.extend_from_slice(b)).await.expect("read");
        assert_eq!(small, b"small");
        // Cut short on disk: an integrity error, not a shorter object.
        let file = root.join("commands/c-1/n-1/stdout");
        let bytes = std::fs::read(&file).expect("read");
        std::fs::write(&file, &bytes[..bytes.len() - 100]).expect("write");
        assert!(matches!(store.get("commands/c-1/n-1/stdout").await, Err(ArtifactError::Tampered { .. })));
        assert!(matches!(
            store.read_with("commands/c-1/n-1/stdout", |_| {}).await,
            Err(ArtifactError::Tampered { .. })
        ));
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
