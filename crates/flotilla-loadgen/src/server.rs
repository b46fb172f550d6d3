//! The server under test: a `flotilla server` we start in a throwaway data dir on a free port
//! (or one given by URL), its resources from `/proc`, and its Prometheus metrics.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_api::Client;

/// Memory and CPU of a process, from `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
    /// utime + stime, seconds.
    pub cpu_seconds: f64,
}

impl ProcStats {
    pub fn read(pid: u32) -> Option<ProcStats> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at its closing paren.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after "state" here;
        // clock ticks of USER_HZ, which is 100 on Linux for every architecture's userspace ABI.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(ProcStats {
            rss_bytes: kib("VmRSS:"),
            hwm_bytes: kib("VmHWM:"),
            cpu_seconds: (ticks(11) + ticks(12)) as f64 / 100.0,
        })
    }

    /// This process.
    pub fn own() -> ProcStats {
        ProcStats::read(std::process::id()).unwrap_or_default()
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A `flotilla server` process we own; killed on drop.
pub struct ServerProcess {
    pub url: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub token: String,
    pub ca_pem: Vec<u8>,
    binary: PathBuf,
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
    _temp: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `binary server` in `data_dir` (a fresh temporary one when None) with `env`
    /// (e.g. `FLOTILLA_DATABASE_URL`) and waits until its API answers.
    pub async fn start(
        binary: &Path,
        data_dir: Option<PathBuf>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<ServerProcess> {
        let (temp, data_dir) = match data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::Builder::new().prefix("flotilla-loadgen-").tempdir()?;
                let dir = temp.path().join("server");
                (Some(temp), dir)
            }
        };
        // A kept data dir keeps its port, so that cached agent identities (keyed by URL) apply.
        let port_file = data_dir.with_extension("port");
        let port = match std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse::<u16>().ok()) {
            Some(port) if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() => port,
            _ => free_port()?,
        };
        if temp.is_none() {
            let _ = std::fs::write(&port_file, port.to_string());
        }
        let mut server = ServerProcess {
            url: format!("https://127.0.0.1:{port}"),
            port,
            data_dir,
            token: String::new(),
            ca_pem: Vec::new(),
            binary: binary.to_owned(),
            env,
            child: None,
            _temp: temp,
        };
        server.spawn().await?;
        Ok(server)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        // Not a node process: the server under test, which we own and kill by its handle.
        #[allow(clippy::disallowed_methods)]
        let mut command = tokio::process::Command::new(&self.binary);
        // The server's own log level unless asked otherwise: its logging is part of its cost.
        if let Ok(level) = std::env::var("FLOTILLA_LOADGEN_SERVER_LOG") {
            command.env("RUST_LOG", level);
        }
        let child = command
            .args(["server", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} server", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let (Ok(token), Ok(ca)) = (
                std::fs::read_to_string(self.data_dir.join("admin.token")),
                std::fs::read(self.data_dir.join("ca.pem")),
            ) {
                self.token = token.trim().to_owned();
                self.ca_pem = ca;
                if self.client()?.version().await.is_ok() {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the server exited with {status} during start-up; its log:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the server did not become ready in 60 s (log: {})", self.log_path().display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An admin API client.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, Some(self.token.clone()), Some(&self.ca_pem))?)
    }

    /// SIGKILL, the harshest stop agents must survive.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGKILL then start again on the same port and data dir.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await;
        self.spawn().await
    }
}

/// Reads the server's `/metrics`.
pub struct Metrics {
    http: reqwest::Client,
    url: String,
}

impl Metrics {
    pub fn new(server_url: &str, ca_pem: &[u8]) -> anyhow::Result<Metrics> {
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem)?;
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only(certs)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Metrics { http, url: format!("{}/metrics", server_url.trim_end_matches('/')) })
    }

    /// The sum of every series of metric `name` (a counter's `_total` suffix is tried too);
    /// None when the server does not answer.
    pub async fn value(&self, name: &str) -> Option<f64> {
        let text = self.http.get(&self.url).send().await.ok()?.text().await.ok()?;
        Some(sum_metric(&text, name))
    }
}

fn sum_metric(text: &str, name: &str) -> f64 {
    let total = format!("{name}_total");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name || metric == total).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series() {
        let text = "# HELP x\nflotilla_agent_connected 12\nflotilla_inventory_reports_total 3\nother 9\nflotilla_api_requests_total{method=\"GET\"} 2\nflotilla_api_requests_total{method=\"POST\"} 5\n";
        assert_eq!(sum_metric(text, "flotilla_agent_connected"), 12.0);
        assert_eq!(sum_metric(text, "flotilla_inventory_reports"), 3.0);
        assert_eq!(sum_metric(text, "flotilla_api_requests"), 7.0);
    }

    #[test]
    fn own_stats() {
        let s = ProcStats::own();
        assert!(s.rss_bytes > 0 && s.hwm_bytes >= s.rss_bytes);
    }
}
