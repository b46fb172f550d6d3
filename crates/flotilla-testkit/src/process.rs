//! Real processes: a `flotilla server` on a free port with its own data dir, agents with
//! their own `--root` sandbox and `--state-dir`, and the CLI pointed at the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Path of a workspace binary (`flotilla`, `flotilla-agent`), built next to the test binary.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/test-xxxx -> target/debug/
    let dir = exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    dir.join(name)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Writes a node sandbox: `etc/os-release` and `etc/hostname` under `root`.
pub fn write_root(root: &Path, os_release: &str, hostname: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(root.join("etc/os-release"), os_release)?;
    std::fs::write(root.join("etc/hostname"), format!("{hostname}\n"))?;
    Ok(())
}

/// A running `flotilla server`, killed on drop.
pub struct TestServer {
    pub data_dir: PathBuf,
    pub url: String,
    pub port: u16,
    pub token: String,
    pub ca: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts a server in `data_dir` on a free port; agents heartbeat every `heartbeat`.
    pub fn start(data_dir: &Path, heartbeat: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<TestServer> {
        let port = free_port()?;
        let mut server = TestServer {
            data_dir: data_dir.to_path_buf(),
            url: format!("https://127.0.0.1:{port}"),
            port,
            token: String::new(),
            ca: data_dir.join("ca.pem"),
            child: None,
            log: data_dir.with_extension("server.log"),
            extra_env: extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        server.extra_env.push(("FLOTILLA_HEARTBEAT_INTERVAL".into(), heartbeat.into()));
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(bin_path("flotilla"));
        cmd.args(["server", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().context("cannot start flotilla server (is the workspace built?)")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(token) = std::fs::read_to_string(self.data_dir.join("admin.token")) {
                self.token = token.trim().to_owned();
                if self.cli(&["nodes", "ls", "-o", "json"])?.status.success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                bail!("the server exited with {status} during start-up; its log:\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!("the server did not become ready in 30 s; its log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id while it runs (for its /proc figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (SIGKILL: the harshest stop an agent must survive).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Runs the `flotilla` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(bin_path("flotilla"))
            .args(args)
            .env("FLOTILLA_URL", &self.url)
            .env("FLOTILLA_TOKEN", &self.token)
            .env("FLOTILLA_CA", &self.ca)
            .env("FLOTILLA_CONFIG_DIR", self.data_dir.join("cli-profile"))
            .stdin(Stdio::null())
            .output()
            .context("cannot run the flotilla CLI")
    }

    /// Runs the CLI and parses its `-o json` output; fails with its stderr otherwise.
    pub fn cli_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-o", "json"]);
        let out = self.cli(&full)?;
        if !out.status.success() {
            bail!("flotilla {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("flotilla {} printed no JSON", args.join(" ")))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real `flotilla-agent run` process, killed on drop.
pub struct Agent {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Enrolls `n` agents (`node-0`, `node-1`, ...) on roots with `os_release` under `dir` with
/// one new activation, starts them and waits until all are Online; returns them with their
/// node ids, in order.
pub fn start_fleet(
    server: &TestServer,
    dir: &Path,
    n: usize,
    os_release: &str,
) -> anyhow::Result<(Vec<Agent>, Vec<String>)> {
    let act = server.cli_json(&["activations", "create", "--limit", &n.to_string()])?;
    let field = |k: &str| act[k].as_str().map(str::to_owned).with_context(|| format!("activation has no {k}"));
    let (id, code) = (field("id")?, field("code")?);
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let agent_dir = dir.join(format!("node-{i}"));
        write_root(&agent_dir.join("root"), os_release, &format!("node-{i}"))?;
        let (mut agent, out) = Agent::enroll(server, &agent_dir, &id, &code)?;
        anyhow::ensure!(out.status.success(), "register: {}", String::from_utf8_lossy(&out.stderr));
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        agent.start()?;
        agents.push(agent);
    }
    wait_until(Duration::from_secs(20), || {
        let nodes = server.cli_json(&["nodes", "ls"])?;
        Ok(nodes.as_array().map(|a| a.iter().filter(|n| n["status"] == "Online").count()) == Some(n))
    })
    .context("fleet online")?;
    Ok((agents, ids))
}

impl Agent {
    /// Registers an agent with the activation and starts it.
    pub fn enroll(server: &TestServer, dir: &Path, activation_id: &str, code: &str) -> anyhow::Result<(Agent, Output)> {
        let root = dir.join("root");
        let state_dir = dir.join("state");
        let out = Command::new(bin_path("flotilla-agent"))
            .arg("register")
            .args(["--server", &server.url, "--activation-id", activation_id, "--activation-code", code])
            .arg("--ca")
            .arg(&server.ca)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--root")
            .arg(&root)
            .output()
            .context("cannot run flotilla-agent register")?;
        let agent = Agent { root, state_dir, log: dir.join("agent.log"), child: None };
        Ok((agent, out))
    }

    /// An agent with `dir/root` as its root and `dir/state` as its state dir, not started
    /// (for a state dir written by hand, e.g. `FakeServer::write_agent_state`).
    pub fn in_dir(dir: &Path) -> Agent {
        Agent { root: dir.join("root"), state_dir: dir.join("state"), log: dir.join("agent.log"), child: None }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        self.spawn(Command::new(bin_path("flotilla-agent")))
    }

    /// Starts the agent with extra environment variables (its `FLOTILLA_AGENT_*` settings).
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin_path("flotilla-agent"));
        cmd.envs(env.iter().copied());
        self.spawn(cmd)
    }

    /// Starts the agent with this umask (e.g. 0o000, to check it does not rely on one).
    pub fn start_with_umask(&mut self, umask: u32) -> anyhow::Result<()> {
        // The shell sets the umask and execs the agent in place: no unsafe pre_exec hook.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(format!("umask {umask:03o} && exec \"$0\" \"$@\"")).arg(bin_path("flotilla-agent"));
        self.spawn(cmd)
    }

    /// The agent's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self, mut cmd: Command) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = cmd
            .arg("run")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--root")
            .arg(&self.root)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start flotilla-agent")?;
        self.child = Some(child);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (e.g. "STOP", "CONT") to the agent process.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.child.as_ref().context("the agent is not running")?.id();
        let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
        Ok(())
    }

    /// Resident memory of the agent process, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Waits for the agent process to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("condition not met within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
