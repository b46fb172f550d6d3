//! Node identities for simulated agents, enrolled the way the real agent enrolls (a key made
//! here, a CSR sent to `/agent/v1/register` with an activation id and code) and cached on disk
//! so that a rerun against the same server skips enrollment.
//!
//! The cache is one JSON-lines file per server, named by a hash of the server URL and its CA
//! certificate: another server (or the same URL with a new CA) never sees these identities.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use flotilla_api::{Client, CreateActivation, RegisterRequest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// One enrolled node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub node_id: String,
    pub hostname: String,
    pub key_pem: String,
    pub cert_pem: String,
}

/// Registrations in flight at once.
const ENROLL_CONCURRENCY: usize = 16;

/// The cache file for this server.
pub fn cache_file(cache_dir: &Path, server_url: &str, ca_pem: &[u8]) -> PathBuf {
    let mut input = server_url.trim_end_matches('/').as_bytes().to_vec();
    input.push(b'\n');
    input.extend_from_slice(ca_pem);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let name: String = digest.as_ref().iter().take(12).map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("{name}.jsonl"))
}

fn load(path: &Path) -> Vec<Credential> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// `count` identities for the server at `server_url`: cached ones first, the rest enrolled
/// now through one activation (created with the admin client) and appended to the cache.
/// Returns them and how many were enrolled now.
pub async fn enroll(
    admin: &Client,
    server_url: &str,
    ca_pem: &[u8],
    count: usize,
    cache_dir: Option<&Path>,
) -> anyhow::Result<(Vec<Credential>, usize)> {
    let path = cache_dir.map(|dir| cache_file(dir, server_url, ca_pem));
    let mut creds = path.as_deref().map(load).unwrap_or_default();
    creds.truncate(count);
    let missing = count - creds.len();
    if missing == 0 {
        return Ok((creds, 0));
    }
    let activation = admin
        .create_activation(&CreateActivation {
            description: Some("flotilla-loadgen".into()),
            registration_limit: Some(u32::try_from(missing).context("too many agents")?),
            expires_in_seconds: Some(24 * 3600),
            tags: [("loadgen".to_owned(), "true".to_owned())].into(),
        })
        .await
        .context("cannot create the activation")?;
    let code = activation.code.clone().context("the server returned no activation code")?;
    let anonymous = Client::new(server_url, None, Some(ca_pem))?;
    let first = creds.len();
    let mut file = match &path {
        Some(path) => {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
                .with_context(|| format!("cannot create {}", path.display()))?;
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )
        }
        None => None,
    };
    let mut results = futures::stream::iter(first..count)
        .map(|i| {
            let anonymous = anonymous.clone();
            let id = activation.id.clone();
            let code = code.clone();
            async move { register_one(&anonymous, &id, &code, format!("sim-{i:06}")).await }
        })
        .buffer_unordered(ENROLL_CONCURRENCY);
    while let Some(result) = results.next().await {
        let cred = result?;
        if let Some(file) = file.as_mut() {
            let mut line = serde_json::to_vec(&cred)?;
            line.push(b'\n');
            file.write_all(&line).context("cannot write the credential cache")?;
        }
        creds.push(cred);
    }
    Ok((creds, missing))
}

async fn register_one(
    client: &Client,
    activation_id: &str,
    code: &str,
    hostname: String,
) -> anyhow::Result<Credential> {
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?.pem()?;
    let reply = client
        .register(&RegisterRequest {
            activation_id: activation_id.to_owned(),
            activation_code: code.to_owned(),
            csr_pem: csr,
            hostname: hostname.clone(),
        })
        .await
        .with_context(|| format!("cannot enroll {hostname}"))?;
    Ok(Credential { node_id: reply.node_id, hostname, key_pem: key.serialize_pem(), cert_pem: reply.certificate_pem })
}
