//! Where the CLI finds its server: flags or `FLOTILLA_URL`/`FLOTILLA_TOKEN`/`FLOTILLA_CA`, else
//! the profile that `flotilla login` wrote (`$FLOTILLA_CONFIG_DIR` or
//! `~/.config/flotilla/profile.json`, mode 0600, with the CA certificate inlined).
//!
//! Invariant: no request leaves for an `http://` URL, wherever the URL came from, unless the
//! operator passed `--insecure-http` for this command: the token would travel in clear.

use std::path::PathBuf;

use crate::output::outln;
use anyhow::{Context, bail};
use flotilla_api::Client;
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    url: String,
    /// An API token (the server writes the admin token to admin.token in its data dir).
    #[arg(long)]
    token: String,
    /// The server's CA certificate (ca.pem in its data dir).
    #[arg(long)]
    ca: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Profile {
    url: String,
    token: String,
    ca_pem: Option<String>,
}

fn profile_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLOTILLA_CONFIG_DIR") {
        return Ok(PathBuf::from(dir).join("profile.json"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set: set FLOTILLA_CONFIG_DIR")?;
    Ok(PathBuf::from(home).join(".config/flotilla/profile.json"))
}

fn load_profile() -> Option<Profile> {
    let text = std::fs::read_to_string(profile_path().ok()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Connection settings given on the command line or in the environment.
pub struct Connection {
    pub url: Option<String>,
    pub token: Option<String>,
    pub ca: Option<PathBuf>,
    /// `--insecure-http`: allow an `http://` server URL.
    pub insecure_http: bool,
}

/// Refuses a plain-HTTP `url` (named by `origin`, e.g. "--url or FLOTILLA_URL") unless
/// `insecure_http`.
fn check_scheme(url: &str, origin: &str, insecure_http: bool) -> anyhow::Result<()> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if insecure_http => Ok(()),
        Some("http") => bail!(
            "refusing the server URL {url} (from {origin}): plain http would send the API token in clear; \
             use the server's https:// URL, or pass --insecure-http if the network between you is trusted"
        ),
        _ => bail!("the server URL `{url}` (from {origin}) is not an https:// URL: write it as https://HOST:PORT"),
    }
}

impl Connection {
    pub fn client(&self) -> anyhow::Result<Client> {
        let profile = load_profile();
        let (url, origin) = match (&self.url, &profile) {
            (Some(url), _) => (url.clone(), "--url or FLOTILLA_URL".to_owned()),
            (None, Some(p)) => {
                (p.url.clone(), format!("the login profile {}", profile_path().unwrap_or_default().display()))
            }
            (None, None) => {
                bail!("no server configured: set FLOTILLA_URL and FLOTILLA_TOKEN, or run `flotilla login`")
            }
        };
        check_scheme(&url, &origin, self.insecure_http)?;
        let token = self.token.clone().or_else(|| profile.as_ref().map(|p| p.token.clone()));
        let ca_pem = match &self.ca {
            Some(path) => Some(
                std::fs::read(path).with_context(|| format!("cannot read the CA certificate {}", path.display()))?,
            ),
            None => profile.as_ref().and_then(|p| p.ca_pem.clone()).map(String::into_bytes),
        };
        Ok(Client::new(&url, token, ca_pem.as_deref())?)
    }
}

pub async fn login(args: LoginArgs, insecure_http: bool) -> anyhow::Result<()> {
    check_scheme(&args.url, "login --url", insecure_http)?;
    let ca_pem = match &args.ca {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?),
        None => None,
    };
    let client = Client::new(&args.url, Some(args.token.clone()), ca_pem.as_deref().map(str::as_bytes))?;
    let version = client.version().await.context("login failed")?;
    let path = profile_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let profile = Profile { url: args.url.clone(), token: args.token, ca_pem };
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(serde_json::to_string_pretty(&profile)?.as_bytes())?;
    }
    outln!(
        "logged in to {} (flotilla {}, {} store); profile saved in {}",
        args.url,
        version.version,
        version.store,
        path.display()
    )?;
    Ok(())
}
