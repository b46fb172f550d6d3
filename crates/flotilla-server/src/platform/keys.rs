//! The key service: envelope encryption of everything Flotilla keeps at rest (artifacts and
//! SecureString parameters) with AES-256-GCM from aws-lc-rs, the crypto stack rustls already
//! uses here.
//!
//! Every object or value gets a fresh random 256-bit data key. The data key is wrapped by a
//! master key, named by key id and version, through a [`KeyProvider`]; the local provider
//! keeps its keyring in a file (`master.key` in the data dir by default), and an external KMS
//! (Vault transit, a cloud KMS) can sit behind the same trait: it only wraps and unwraps data
//! keys, never sees the data.
//!
//! # Envelope format (version 1), all integers big-endian
//! ```text
//! "FLTE"                magic (4 bytes)
//! 0x01                  format version
//! K (u8), key id        master key id, K bytes of UTF-8
//! master key version    u32
//! W (u16), wrapped key  the data key as the provider wrapped it (W bytes; local provider:
//!                       12-byte nonce + 32-byte key + 16-byte tag)
//! data nonce            12 bytes, random
//! ciphertext + tag      AES-256-GCM of the plaintext, 16-byte tag last
//! ```
//! Authenticated data: the data ciphertext is authenticated together with the *context* (the
//! object or parameter it belongs to: `artifact\0NAME` or `parameter\0NAME\0VERSION`) and
//! every header byte before the data nonce; the data key is wrapped with the context and the
//! header up to the key version. So a flipped byte anywhere, or an envelope copied onto
//! another name or version, fails to open ([`KeyError::Tampered`]) and nothing is returned.
//!
//! # Segmented envelope (version 2), for objects written as a stream (command output)
//! ```text
//! "FLTE" 0x02 K key-id version W wrapped-key      as version 1, format byte 2
//! S (u32)               plaintext bytes per segment (1 B to 16 MiB)
//! nonce prefix          7 bytes, random
//! segment 0 ‖ 1 ‖ ...   AES-256-GCM of S plaintext bytes each + 16-byte tag; the last
//!                       segment holds 1 to S bytes (0 only for an empty object)
//! ```
//! Segment `i` is sealed under the object's data key with nonce `prefix ‖ i (u32) ‖ last`
//! (`last` is 1 for the final segment, else 0) and the same authenticated data as version 1
//! (context and every header byte before the first segment). So reordered segments fail (the
//! index), a truncation at a segment boundary fails (the new last segment was sealed with
//! `last = 0`), appended data fails (after a `last = 1` segment nothing may follow), and
//! segments spliced from another object fail (another data key). A reader passes a segment on
//! only after it authenticated; [`KeyService::open`] returns only after all of them did.
//!
//! Invariants: key material is never logged, listed or sent; a master key version, once
//! written, is never changed or removed (rotation appends), so old data stays readable; the
//! server refuses to start when the database records a master key version the keyring lacks
//! or holds differently (see [`verify_against_store`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use flotilla_store::{MasterKeyRecord, Store};

use super::secret::{random_bytes, sha256_hex};

const MAGIC: &[u8; 4] = b"FLTE";
const FORMAT_VERSION: u8 = 1;
const SEGMENTED_VERSION: u8 = 2;
/// Plaintext bytes per segment of the envelopes this service writes.
pub const SEGMENT_LEN: usize = 64 * 1024;
/// The largest segment a reader accepts (bounds what a damaged header can make it buffer).
const MAX_SEGMENT_LEN: usize = 16 * 1024 * 1024;
const PREFIX_LEN: usize = 7;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Fixed text whose HMAC under a master key is stored as that key's check value.
const CHECK_TEXT: &[u8] = b"flotilla master key check v1";

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what} is not a Flotilla envelope ({detail}); it was not written by this key service or is damaged")]
    Malformed { what: String, detail: &'static str },
    #[error("{what} failed its integrity check: it was modified, or copied from another object; it is not returned")]
    Tampered { what: String },
    #[error(
        "{what} is encrypted under master key {key_id} version {version}, which the keyring does not hold; \
         restore the master key file from backup"
    )]
    UnknownKey { what: String, key_id: String, version: u32 },
    #[error("the master key file {path} {detail}")]
    Keyring { path: String, detail: String },
    #[error("the key provider failed: {0}")]
    Provider(String),
}

/// Which master key version wrapped a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub key_id: String,
    pub version: u32,
}

/// A master key version as listed (never its material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionInfo {
    pub key_id: String,
    pub version: u32,
    pub created_at: i64,
    pub current: bool,
}

/// Wraps and unwraps data keys under master keys. The local keyring is one implementation;
/// an external KMS is another.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The master key version new writes use.
    fn current(&self) -> KeyRef;
    /// Wraps `data_key` under the current version, authenticating `aad`.
    async fn wrap(&self, data_key: &[u8; KEY_LEN], aad: &[u8]) -> Result<(KeyRef, Vec<u8>), KeyError>;
    /// Unwraps a data key wrapped under `key`; `None` when that version is unknown here.
    async fn unwrap(&self, key: &KeyRef, wrapped: &[u8], aad: &[u8]) -> Result<Option<[u8; KEY_LEN]>, KeyError>;
    /// Makes a new master version current; older ones stay readable.
    async fn rotate(&self, now: i64) -> Result<KeyVersionInfo, KeyError>;
    fn versions(&self) -> Vec<KeyVersionInfo>;
    /// A value that proves (without revealing) which key a version is, for the start-up check.
    fn check_value(&self, key: &KeyRef) -> Option<String>;
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, KeyError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| KeyError::Provider("AES-256-GCM key setup failed".into()))
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: Vec<u8>) -> Result<([u8; NONCE_LEN], Vec<u8>), KeyError> {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let mut buf = plaintext;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Provider("AES-256-GCM encryption failed".into()))?;
    Ok((nonce, buf))
}

/// Opens in place; `None` when authentication fails.
fn open_with(key: &LessSafeKey, nonce: [u8; NONCE_LEN], aad: &[u8], mut buf: Vec<u8>) -> Option<Vec<u8>> {
    let len = key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

struct Version {
    version: u32,
    key: [u8; KEY_LEN],
    created_at: i64,
}

/// The master keyring in a local file: one line per version, `VERSION HEX CREATED_MS`, newest
/// last. A file holding only 64 hex digits (what the first releases wrote) is version 1.
pub struct LocalKeyring {
    path: PathBuf,
    key_id: String,
    versions: RwLock<Vec<Version>>,
}

fn parse_hex_key(text: &str) -> Option<[u8; KEY_LEN]> {
    if text.len() != 2 * KEY_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl LocalKeyring {
    /// Opens the keyring at `path`, creating it with one fresh version when it does not exist.
    pub fn open_or_create(path: &Path, now: i64) -> Result<(LocalKeyring, bool), KeyError> {
        if path.exists() {
            return Self::open(path).map(|k| (k, false));
        }
        let key: [u8; KEY_LEN] = random_bytes();
        let ring = Self::from_versions(path, vec![Version { version: 1, key, created_at: now }]);
        ring.save()?;
        Ok((ring, true))
    }

    /// Opens an existing keyring; a malformed one is an error, never replaced.
    pub fn open(path: &Path) -> Result<LocalKeyring, KeyError> {
        let bad = |detail: String| KeyError::Keyring { path: path.display().to_string(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let mut versions = Vec::new();
        for (n, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed =
                match fields.as_slice() {
                    [key] if versions.is_empty() => {
                        parse_hex_key(key).map(|key| Version { version: 1, key, created_at: 0 })
                    }
                    [v, key] | [v, key, _] => v.parse::<u32>().ok().zip(parse_hex_key(key)).map(|(version, key)| {
                        Version { version, key, created_at: fields.get(2).and_then(|c| c.parse().ok()).unwrap_or(0) }
                    }),
                    _ => None,
                };
            let Some(version) = parsed else {
                return Err(bad(format!(
                    "is malformed at line {} (expected 64 hex digits, or `VERSION HEX CREATED_MS`): restore it from \
                     backup; the server will not start with a wrong key",
                    n + 1
                )));
            };
            if versions.last().is_some_and(|v: &Version| v.version >= version.version) || version.version == 0 {
                return Err(bad(format!(
                    "is malformed at line {}: versions must start at 1 and increase; restore it from backup",
                    n + 1
                )));
            }
            versions.push(version);
        }
        if versions.is_empty() {
            return Err(bad("holds no key: restore it from backup; the server will not start without its key".into()));
        }
        Ok(Self::from_versions(path, versions))
    }

    fn from_versions(path: &Path, versions: Vec<Version>) -> LocalKeyring {
        // The id names the keyring, not a version: derived from version 1, which never changes.
        let first = versions.first().map(|v| v.key).unwrap_or_default();
        let key_id = format!("local-{}", &sha256_hex(&[b"flotilla key id\0".as_slice(), &first].concat())[..12]);
        LocalKeyring { path: path.to_owned(), key_id, versions: RwLock::new(versions) }
    }

    fn save(&self) -> Result<(), KeyError> {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let mut text = String::from(
            "# Flotilla master keyring: one version per line (VERSION HEX CREATED_MS), newest last.\n\
             # Secret: keep it 0600 and backed up apart from the data. Never edit a line; rotation appends.\n",
        );
        for v in versions.iter() {
            text.push_str(&format!("{} {} {}\n", v.version, hex(&v.key), v.created_at));
        }
        drop(versions);
        let bad = |detail: String| KeyError::Keyring { path: self.path.display().to_string(), detail };
        // Write a sibling and rename, so a crash never leaves a half-written keyring.
        let tmp = self.path.with_extension("key.new");
        super::bootstrap::write_private(&tmp, text.as_bytes()).map_err(|e| bad(format!("cannot be written: {e:#}")))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| bad(format!("cannot be replaced: {e}")))
    }

    fn key(&self, version: u32) -> Option<[u8; KEY_LEN]> {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        versions.iter().find(|v| v.version == version).map(|v| v.key)
    }
}

#[async_trait]
impl KeyProvider for LocalKeyring {
    fn current(&self) -> KeyRef {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        KeyRef { key_id: self.key_id.clone(), version: versions.last().map(|v| v.version).unwrap_or(1) }
    }

    async fn wrap(&self, data_key: &[u8; KEY_LEN], aad: &[u8]) -> Result<(KeyRef, Vec<u8>), KeyError> {
        let current = self.current();
        let master = self.key(current.version).ok_or_else(|| KeyError::Provider("no current master key".into()))?;
        let (nonce, sealed) = seal_with(&aes_key(&master)?, aad, data_key.to_vec())?;
        Ok((current, [nonce.as_slice(), &sealed].concat()))
    }

    async fn unwrap(&self, key: &KeyRef, wrapped: &[u8], aad: &[u8]) -> Result<Option<[u8; KEY_LEN]>, KeyError> {
        if key.key_id != self.key_id {
            return Ok(None);
        }
        let Some(master) = self.key(key.version) else { return Ok(None) };
        let (Some(nonce), Some(sealed)) = (wrapped.get(..NONCE_LEN), wrapped.get(NONCE_LEN..)) else {
            return Err(KeyError::Provider("wrapped key too short".into()));
        };
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyError::Provider("bad nonce".into()))?;
        let opened = open_with(&aes_key(&master)?, nonce, aad, sealed.to_vec());
        Ok(opened.and_then(|k| <[u8; KEY_LEN]>::try_from(k.as_slice()).ok()))
    }

    async fn rotate(&self, now: i64) -> Result<KeyVersionInfo, KeyError> {
        let version = {
            let mut versions = self.versions.write().unwrap_or_else(|p| p.into_inner());
            let version = versions.last().map(|v| v.version + 1).unwrap_or(1);
            versions.push(Version { version, key: random_bytes(), created_at: now });
            version
        };
        if let Err(e) = self.save() {
            // Not on disk means not usable: a restart would lose it and its data.
            let mut versions = self.versions.write().unwrap_or_else(|p| p.into_inner());
            versions.retain(|v| v.version != version);
            return Err(e);
        }
        Ok(KeyVersionInfo { key_id: self.key_id.clone(), version, created_at: now, current: true })
    }

    fn versions(&self) -> Vec<KeyVersionInfo> {
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let last = versions.last().map(|v| v.version);
        versions
            .iter()
            .map(|v| KeyVersionInfo {
                key_id: self.key_id.clone(),
                version: v.version,
                created_at: v.created_at,
                current: Some(v.version) == last,
            })
            .collect()
    }

    fn check_value(&self, key: &KeyRef) -> Option<String> {
        if key.key_id != self.key_id {
            return None;
        }
        let master = self.key(key.version)?;
        Some(hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &master), CHECK_TEXT).as_ref()))
    }
}

/// What a ciphertext belongs to; bound into its authentication.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    Artifact(&'a str),
    Parameter {
        name: &'a str,
        version: i64,
    },
    /// A notification subscription's webhook secret.
    Subscription(&'a str),
}

impl Binding<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Binding::Artifact(name) => format!("artifact\0{name}").into_bytes(),
            Binding::Parameter { name, version } => format!("parameter\0{name}\0{version}").into_bytes(),
            Binding::Subscription(id) => format!("subscription\0{id}").into_bytes(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Binding::Artifact(name) => format!("artifact {name}"),
            Binding::Parameter { name, version } => format!("parameter {name} version {version}"),
            Binding::Subscription(id) => format!("subscription {id}'s secret"),
        }
    }
}

/// Envelope encryption over a [`KeyProvider`].
#[derive(Clone)]
pub struct KeyService {
    provider: Arc<dyn KeyProvider>,
}

struct Parsed<'a> {
    key: KeyRef,
    key_header: &'a [u8],
    wrapped: &'a [u8],
    header: &'a [u8],
    nonce: [u8; NONCE_LEN],
    sealed: &'a [u8],
}

fn parse<'a>(envelope: &'a [u8], what: &str) -> Result<Parsed<'a>, KeyError> {
    let malformed = |detail| KeyError::Malformed { what: what.to_owned(), detail };
    if envelope.get(..4) != Some(MAGIC.as_slice()) {
        return Err(malformed("no FLTE magic"));
    }
    if envelope.get(4) != Some(&FORMAT_VERSION) {
        return Err(malformed("unknown format version"));
    }
    let id_len = usize::from(*envelope.get(5).ok_or_else(|| malformed("truncated"))?);
    let mut at = 6;
    let key_id = envelope.get(at..at + id_len).ok_or_else(|| malformed("truncated key id"))?;
    at += id_len;
    let version = envelope.get(at..at + 4).ok_or_else(|| malformed("truncated key version"))?;
    let version = u32::from_be_bytes(version.try_into().map_err(|_| malformed("truncated key version"))?);
    at += 4;
    let key_header_end = at;
    let wrapped_len = envelope.get(at..at + 2).ok_or_else(|| malformed("truncated"))?;
    let wrapped_len = usize::from(u16::from_be_bytes([wrapped_len[0], wrapped_len[1]]));
    at += 2;
    let wrapped = envelope.get(at..at + wrapped_len).ok_or_else(|| malformed("truncated wrapped key"))?;
    at += wrapped_len;
    let header_end = at;
    let nonce = envelope.get(at..at + NONCE_LEN).ok_or_else(|| malformed("truncated nonce"))?;
    at += NONCE_LEN;
    let sealed = envelope.get(at..).filter(|s| s.len() >= TAG_LEN).ok_or_else(|| malformed("truncated ciphertext"))?;
    Ok(Parsed {
        key: KeyRef {
            key_id: String::from_utf8(key_id.to_vec()).map_err(|_| malformed("key id is not UTF-8"))?,
            version,
        },
        key_header: &envelope[..key_header_end],
        wrapped,
        header: &envelope[..header_end],
        nonce: nonce.try_into().map_err(|_| malformed("truncated nonce"))?,
        sealed,
    })
}

/// True when `bytes` starts like an envelope (to tell legacy plaintext from ciphertext).
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(MAGIC.as_slice())
}

impl KeyService {
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        KeyService { provider }
    }

    pub fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }

    /// A fresh data key and the envelope header of `version` that carries it: magic, version,
    /// master key id and version, and the data key wrapped under that master key with `context`
    /// and the header so far as authenticated data.
    async fn key_header(&self, context: &[u8], version: u8) -> Result<([u8; KEY_LEN], Vec<u8>), KeyError> {
        loop {
            let data_key: [u8; KEY_LEN] = random_bytes();
            let current = self.provider.current();
            let mut header = Vec::with_capacity(128);
            header.extend_from_slice(MAGIC);
            header.push(version);
            let id = current.key_id.as_bytes();
            header.push(u8::try_from(id.len()).map_err(|_| KeyError::Provider("key id longer than 255 bytes".into()))?);
            header.extend_from_slice(id);
            header.extend_from_slice(&current.version.to_be_bytes());
            let (used, wrapped) = self.provider.wrap(&data_key, &[context, &header].concat()).await?;
            if used != current {
                // Rotated in between: the header must name the version that actually wrapped.
                continue;
            }
            let wrapped_len = u16::try_from(wrapped.len())
                .map_err(|_| KeyError::Provider("wrapped key longer than 64 KiB".into()))?;
            header.extend_from_slice(&wrapped_len.to_be_bytes());
            header.extend_from_slice(&wrapped);
            return Ok((data_key, header));
        }
    }

    /// Encrypts `plaintext` for `binding` under a fresh data key. The AES pass over large data
    /// runs on the blocking pool, off the async threads.
    pub async fn seal(&self, binding: Binding<'_>, plaintext: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        let context = binding.bytes();
        let (data_key, header) = self.key_header(&context, FORMAT_VERSION).await?;
        let len = plaintext.len();
        let run = move || -> Result<Vec<u8>, KeyError> {
            let aad = [context.as_slice(), &header].concat();
            let (nonce, sealed) = seal_with(&aes_key(&data_key)?, &aad, plaintext)?;
            let mut out = header;
            out.reserve(NONCE_LEN + sealed.len());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&sealed);
            Ok(out)
        };
        offload(len, run).await
    }

    /// Decrypts and verifies an envelope written for `binding`.
    pub async fn open(&self, binding: Binding<'_>, envelope: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        if envelope.get(..4) == Some(MAGIC.as_slice()) && envelope.get(4) == Some(&SEGMENTED_VERSION) {
            let what = binding.describe();
            let Some((header_len, mut opener)) = self.opener(binding, &envelope).await? else {
                return Err(KeyError::Malformed { what, detail: "truncated header" });
            };
            let len = envelope.len();
            return offload(len, move || {
                let mut out = Vec::with_capacity(len);
                opener.update(envelope.get(header_len..).unwrap_or_default(), &mut out)?;
                opener.finish(&mut out)?;
                Ok(out)
            })
            .await;
        }
        let what = binding.describe();
        let context = binding.bytes();
        let parsed = parse(&envelope, &what)?;
        let wrap_aad = [context.as_slice(), parsed.key_header].concat();
        let data_key = match self.provider.unwrap(&parsed.key, parsed.wrapped, &wrap_aad).await {
            Ok(Some(key)) => key,
            Ok(None) if self.provider.check_value(&parsed.key).is_some() => {
                return Err(KeyError::Tampered { what });
            }
            Ok(None) => {
                return Err(KeyError::UnknownKey { what, key_id: parsed.key.key_id, version: parsed.key.version });
            }
            Err(e) => return Err(e),
        };
        let aad = [context.as_slice(), parsed.header].concat();
        let nonce = parsed.nonce;
        let start = envelope.len() - parsed.sealed.len();
        let len = envelope.len();
        let run = move || -> Result<Vec<u8>, KeyError> {
            let mut sealed = envelope;
            sealed.drain(..start);
            open_with(&aes_key(&data_key)?, nonce, &aad, sealed).ok_or(KeyError::Tampered { what })
        };
        offload(len, run).await
    }
}

impl KeyService {
    /// Starts a segmented envelope (version 2) for `binding`: its header, and the sealer of
    /// the segments that follow it.
    pub async fn sealer(&self, binding: Binding<'_>) -> Result<(Vec<u8>, SegmentSealer), KeyError> {
        let context = binding.bytes();
        let (data_key, mut header) = self.key_header(&context, SEGMENTED_VERSION).await?;
        let segment_len = u32::try_from(SEGMENT_LEN).map_err(|_| KeyError::Provider("segment too large".into()))?;
        header.extend_from_slice(&segment_len.to_be_bytes());
        let prefix: [u8; PREFIX_LEN] = random_bytes();
        header.extend_from_slice(&prefix);
        let segments = Segments {
            key: aes_key(&data_key)?,
            prefix,
            index: 0,
            aad: [context.as_slice(), &header].concat(),
            pending: Vec::new(),
            segment_len: SEGMENT_LEN,
            what: binding.describe(),
        };
        Ok((header, SegmentSealer(segments)))
    }

    /// Reads a segmented envelope's header at the start of `bytes` and unwraps its data key:
    /// the header's length and the opener of the segments after it, or `None` when `bytes`
    /// does not hold the whole header yet.
    pub async fn opener(&self, binding: Binding<'_>, bytes: &[u8]) -> Result<Option<(usize, SegmentOpener)>, KeyError> {
        let what = binding.describe();
        let malformed = |detail| KeyError::Malformed { what: what.clone(), detail };
        if bytes.len() < 6 {
            return Ok(None);
        }
        if bytes.get(..4) != Some(MAGIC.as_slice()) {
            return Err(malformed("no FLTE magic"));
        }
        if bytes.get(4) != Some(&SEGMENTED_VERSION) {
            return Err(malformed("not a segmented envelope"));
        }
        let id_len = usize::from(bytes[5]);
        let key_header_end = 6 + id_len + 4;
        let Some(wrapped_len) = bytes.get(key_header_end..key_header_end + 2) else { return Ok(None) };
        let wrapped_len = usize::from(u16::from_be_bytes([wrapped_len[0], wrapped_len[1]]));
        let wrapped_at = key_header_end + 2;
        let segment_at = wrapped_at + wrapped_len;
        let header_len = segment_at + 4 + PREFIX_LEN;
        let Some(header) = bytes.get(..header_len) else { return Ok(None) };
        let key_id = String::from_utf8(header[6..6 + id_len].to_vec()).map_err(|_| malformed("key id is not UTF-8"))?;
        let version = u32::from_be_bytes(
            header[6 + id_len..key_header_end].try_into().map_err(|_| malformed("truncated key version"))?,
        );
        let segment_len = u32::from_be_bytes(
            header[segment_at..segment_at + 4].try_into().map_err(|_| malformed("truncated segment size"))?,
        );
        let segment_len = usize::try_from(segment_len).unwrap_or(usize::MAX);
        if segment_len == 0 || segment_len > MAX_SEGMENT_LEN {
            return Err(malformed("segment size out of range"));
        }
        let prefix: [u8; PREFIX_LEN] =
            header[segment_at + 4..header_len].try_into().map_err(|_| malformed("truncated nonce prefix"))?;
        let key = KeyRef { key_id, version };
        let context = binding.bytes();
        let wrap_aad = [context.as_slice(), &header[..key_header_end]].concat();
        let data_key = match self.provider.unwrap(&key, &header[wrapped_at..segment_at], &wrap_aad).await? {
            Some(data_key) => data_key,
            None if self.provider.check_value(&key).is_some() => return Err(KeyError::Tampered { what }),
            None => return Err(KeyError::UnknownKey { what, key_id: key.key_id, version: key.version }),
        };
        let segments = Segments {
            key: aes_key(&data_key)?,
            prefix,
            index: 0,
            aad: [context.as_slice(), header].concat(),
            pending: Vec::new(),
            segment_len,
            what,
        };
        Ok(Some((header_len, SegmentOpener(segments))))
    }
}

/// State shared by the sealer and the opener of one segmented envelope.
struct Segments {
    key: LessSafeKey,
    prefix: [u8; PREFIX_LEN],
    index: u32,
    aad: Vec<u8>,
    /// Bytes not yet known to belong to a segment that is not the last.
    pending: Vec<u8>,
    segment_len: usize,
    what: String,
}

impl Segments {
    fn nonce(&self, last: bool) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&self.prefix);
        nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&self.index.to_be_bytes());
        nonce[NONCE_LEN - 1] = u8::from(last);
        Nonce::assume_unique_for_key(nonce)
    }

    fn next_index(&mut self) -> Result<(), KeyError> {
        self.index = self.index.checked_add(1).ok_or_else(|| KeyError::Provider("too many segments".into()))?;
        Ok(())
    }

    fn seal(&mut self, plain: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), KeyError> {
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(last), Aad::from(&self.aad), &mut out[start..])
            .map_err(|_| KeyError::Provider("AES-256-GCM encryption failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        self.next_index()
    }

    fn open(&mut self, sealed: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), KeyError> {
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(self.nonce(last), Aad::from(&self.aad), &mut buf)
            .map_err(|_| KeyError::Tampered { what: self.what.clone() })?;
        out.extend_from_slice(plain);
        self.next_index()
    }
}

/// Seals a stream into the segments of a version 2 envelope (after its header).
pub struct SegmentSealer(Segments);

impl SegmentSealer {
    /// Appends to `out` the sealed segments that `data` completes; the last segment waits
    /// for [`SegmentSealer::finish`].
    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), KeyError> {
        let s = &mut self.0;
        s.pending.extend_from_slice(data);
        let mut pending = std::mem::take(&mut s.pending);
        let mut at = 0;
        while pending.len() - at > s.segment_len {
            s.seal(&pending[at..at + s.segment_len], false, out)?;
            at += s.segment_len;
        }
        pending.drain(..at);
        s.pending = pending;
        Ok(())
    }

    /// Appends the final segment.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), KeyError> {
        let pending = std::mem::take(&mut self.0.pending);
        self.0.seal(&pending, true, out)
    }
}

/// Authenticates and decrypts the segments of a version 2 envelope as they arrive.
pub struct SegmentOpener(Segments);

impl SegmentOpener {
    /// Appends to `out` the plaintext of every segment `data` completes that is not the last
    /// (each authenticated first).
    pub fn update(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), KeyError> {
        let s = &mut self.0;
        let unit = s.segment_len + TAG_LEN;
        // Held-back bytes are joined with the new ones; without any, `data` is read in place.
        let joined;
        let body = if s.pending.is_empty() {
            data
        } else {
            let mut pending = std::mem::take(&mut s.pending);
            pending.extend_from_slice(data);
            joined = pending;
            joined.as_slice()
        };
        let mut at = 0;
        while body.len() - at > unit {
            s.open(&body[at..at + unit], false, out)?;
            at += unit;
        }
        s.pending = body[at..].to_vec();
        Ok(())
    }

    /// Opens the final segment; an object cut short or extended fails here.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), KeyError> {
        let pending = std::mem::take(&mut self.0.pending);
        if pending.len() < TAG_LEN {
            return Err(KeyError::Tampered { what: self.0.what.clone() });
        }
        self.0.open(&pending, true, out)
    }
}

/// Runs the AES pass: inline for small inputs (parameters), where a hop to the blocking pool
/// costs more than the work, and on the blocking pool for large ones (artifacts).
async fn offload<T: Send + 'static>(
    len: usize,
    run: impl FnOnce() -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    const INLINE_LIMIT: usize = 64 * 1024;
    if len <= INLINE_LIMIT {
        return run();
    }
    tokio::task::spawn_blocking(run).await.map_err(|e| KeyError::Provider(format!("crypto task failed: {e}")))?
}

/// The start-up check: every master key version the database has seen must be in the keyring
/// with the same check value; then every keyring version is recorded. Refuses (with what to
/// do) rather than letting a server run that could not read its own data.
pub async fn verify_against_store(
    provider: &dyn KeyProvider,
    store: &dyn Store,
    keyring_path: &Path,
    now: i64,
) -> anyhow::Result<()> {
    let recorded = store.list_master_keys().await?;
    for record in &recorded {
        let key = KeyRef { key_id: record.key_id.clone(), version: u32::try_from(record.version).unwrap_or(0) };
        match provider.check_value(&key) {
            Some(check) if check == record.check_value => {}
            None if provider.current().key_id != record.key_id => anyhow::bail!(
                "the master key file {} holds a different master key ({}) than the one this database's data was \
                 encrypted with ({}): restore the right master key file from backup (or set master_key_file); the \
                 server will not start with a wrong key",
                keyring_path.display(),
                provider.current().key_id,
                record.key_id
            ),
            Some(_) => anyhow::bail!(
                "the master key file {} holds a different key for {} version {} than the one this database's data \
                 was encrypted with: restore the right master key file from backup; the server will not start with \
                 a wrong key",
                keyring_path.display(),
                record.key_id,
                record.version
            ),
            None => anyhow::bail!(
                "this database holds data encrypted under master key {} version {}, which the master key file {} \
                 does not have: restore that file from backup (or set master_key_file); the server will not start \
                 without it",
                record.key_id,
                record.version,
                keyring_path.display()
            ),
        }
    }
    for info in provider.versions() {
        let key = KeyRef { key_id: info.key_id.clone(), version: info.version };
        if let Some(check_value) = provider.check_value(&key) {
            let created_at = if info.created_at > 0 { info.created_at } else { now };
            store
                .record_master_key(&MasterKeyRecord {
                    key_id: info.key_id,
                    version: i64::from(info.version),
                    check_value,
                    created_at,
                })
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &Path) -> (KeyService, Arc<LocalKeyring>) {
        let (ring, created) = LocalKeyring::open_or_create(&dir.join("master.key"), 1).expect("keyring");
        assert!(created);
        let ring = Arc::new(ring);
        (KeyService::new(ring.clone()), ring)
    }

    #[tokio::test]
    async fn round_trip_binding_tamper_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (keys, ring) = service(dir.path());
        let a = Binding::Artifact("commands/c-1/n-1/stdout");
        let sealed = keys.seal(a, b"secret output".to_vec()).await.expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "no plaintext in the envelope");
        assert_eq!(keys.open(a, sealed.clone()).await.expect("open"), b"secret output");

        let other = Binding::Artifact("commands/c-2/n-1/stdout");
        assert!(matches!(keys.open(other, sealed.clone()).await, Err(KeyError::Tampered { .. })), "moved");
        let p1 = Binding::Parameter { name: "/a", version: 1 };
        let p2 = Binding::Parameter { name: "/a", version: 2 };
        let sp = keys.seal(p1, b"v".to_vec()).await.expect("seal");
        assert!(matches!(keys.open(p2, sp.clone()).await, Err(KeyError::Tampered { .. })), "other version");
        for i in [0usize, 6, 20, sealed.len() - 1, sealed.len() / 2] {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = keys.open(a, bad).await.expect_err("tampered");
            assert!(
                matches!(err, KeyError::Tampered { .. } | KeyError::Malformed { .. } | KeyError::UnknownKey { .. }),
                "{i}: {err}"
            );
        }
        assert!(matches!(keys.open(a, b"plain".to_vec()).await, Err(KeyError::Malformed { .. })));

        let v2 = ring.rotate(5).await.expect("rotate");
        assert_eq!((v2.version, v2.current), (2, true));
        let newer = keys.seal(a, b"new".to_vec()).await.expect("seal");
        assert_eq!(parse(&newer, "x").expect("parse").key.version, 2);
        assert_eq!(keys.open(a, sealed.clone()).await.expect("old still readable"), b"secret output");

        // Reopened from disk: the same key id and both versions.
        let again = Arc::new(LocalKeyring::open(&dir.path().join("master.key")).expect("reopen"));
        assert_eq!(again.versions().len(), 2);
        let keys2 = KeyService::new(again);
        assert_eq!(keys2.open(a, newer).await.expect("open"), b"new");
        assert_eq!(keys2.open(a, sealed).await.expect("open"), b"secret output");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn seal_segmented(sealer: &mut SegmentSealer, data: &[u8], pieces: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in data.chunks(pieces.max(1)) {
            sealer.update(piece, &mut out).expect("update");
        }
        out
    }

    #[tokio::test]
    async fn segmented_envelopes_round_trip_and_detect_truncation_reordering_and_splicing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (keys, _) = service(dir.path());
        let a = Binding::Artifact("commands/c-1/n-1/stdout");
        let data: Vec<u8> = (0..3 * SEGMENT_LEN + 123).map(|i| (i * 7 % 251) as u8).collect();
        let seal = |data: Vec<u8>, pieces: usize| {
            let keys = keys.clone();
            async move {
                let (mut envelope, mut sealer) = keys.sealer(a).await.expect("sealer");
                envelope.extend(seal_segmented(&mut sealer, &data, pieces));
                sealer.finish(&mut envelope).expect("finish");
                envelope
            }
        };
        for (len, pieces) in [(0, 1), (1, 1), (SEGMENT_LEN, 1000), (2 * SEGMENT_LEN, SEGMENT_LEN), (data.len(), 4097)] {
            let envelope = seal(data[..len].to_vec(), pieces).await;
            assert_eq!(keys.open(a, envelope.clone()).await.expect("open"), &data[..len], "{len}");
            // The streaming reader, fed in odd pieces, gives the same bytes.
            let mut out = Vec::new();
            let (header_len, mut opener) = keys.opener(a, &envelope).await.expect("header").expect("complete");
            for piece in envelope[header_len..].chunks(9999) {
                opener.update(piece, &mut out).expect("update");
            }
            opener.finish(&mut out).expect("finish");
            assert_eq!(out, &data[..len]);
        }
        let envelope = seal(data.clone(), 5000).await;
        let (header_len, _) = keys.opener(a, &envelope).await.expect("header").expect("complete");
        let unit = SEGMENT_LEN + TAG_LEN;
        let tampered = |bytes: Vec<u8>| {
            let keys = keys.clone();
            async move { matches!(keys.open(a, bytes).await, Err(KeyError::Tampered { .. })) }
        };
        // Cut at a segment boundary, cut mid-segment, extended, a byte flipped.
        assert!(tampered(envelope[..header_len + 2 * unit].to_vec()).await, "truncated at a boundary");
        assert!(tampered(envelope[..envelope.len() - 5].to_vec()).await, "truncated mid-segment");
        assert!(tampered([envelope.as_slice(), b"more"].concat()).await, "extended");
        let mut flipped = envelope.clone();
        flipped[header_len + unit + 3] ^= 1;
        assert!(tampered(flipped).await, "flipped");
        // Two segments swapped.
        let mut swapped = envelope[..header_len].to_vec();
        swapped.extend_from_slice(&envelope[header_len + unit..header_len + 2 * unit]);
        swapped.extend_from_slice(&envelope[header_len..header_len + unit]);
        swapped.extend_from_slice(&envelope[header_len + 2 * unit..]);
        assert!(tampered(swapped).await, "reordered");
        // A segment from another object with the same layout.
        let other = seal(data.clone(), 5000).await;
        let mut spliced = envelope.clone();
        spliced[header_len..header_len + unit].copy_from_slice(&other[header_len..header_len + unit]);
        assert!(tampered(spliced).await, "spliced");
        // Moved to another name.
        let moved = keys.open(Binding::Artifact("commands/c-2/n-1/stdout"), envelope.clone()).await;
        assert!(matches!(moved, Err(KeyError::Tampered { .. })), "moved");
        // A header naming an absurd segment size is malformed, not an allocation.
        let mut huge = envelope.clone();
        huge[header_len - PREFIX_LEN - 4..header_len - PREFIX_LEN].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(keys.open(a, huge).await, Err(KeyError::Malformed { .. })));
        // Version 1 envelopes still open.
        let v1 = keys.seal(a, b"old".to_vec()).await.expect("seal");
        assert_eq!(keys.open(a, v1).await.expect("open"), b"old");
    }

    #[tokio::test]
    async fn a_different_keyring_cannot_open_and_says_why() {
        let one = tempfile::tempdir().expect("tempdir");
        let two = tempfile::tempdir().expect("tempdir");
        let (keys1, _) = service(one.path());
        let (keys2, _) = service(two.path());
        let a = Binding::Artifact("x");
        let sealed = keys1.seal(a, b"data".to_vec()).await.expect("seal");
        assert!(matches!(keys2.open(a, sealed).await, Err(KeyError::UnknownKey { .. })));
    }

    #[test]
    fn legacy_and_malformed_keyrings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).expect("write");
        let ring = LocalKeyring::open(&path).expect("legacy single key is version 1");
        assert_eq!(ring.current().version, 1);
        for bad in ["zz\n", "", "1 abcd\n", &format!("2 {}\n1 {}\n", "ab".repeat(32), "cd".repeat(32))] {
            std::fs::write(&path, bad).expect("write");
            let err = LocalKeyring::open(&path).err().expect("refused");
            assert!(err.to_string().contains("restore it from backup"), "{err}");
        }
    }
}
