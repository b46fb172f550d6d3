//! Issue 17, sessions, as an operator meets them through real `flotilla server` and
//! `flotilla-agent` processes: an interactive shell driven through a real terminal (tmux), port
//! forwarding of concurrent TCP connections to a server on the node's side, transcripts and
//! their replay, both timeouts, and the bad input of the issue (offline and deregistered
//! nodes, unknown run-as users, closed ports and unresolvable hosts, the CLI or the agent
//! killed mid-session, a bulk transfer beside an interactive connection, the agent's cap).

// The test drives local tools (tmux, kill, pgrep), not node processes.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_testkit::{Agent, TestServer, bin_path, wait_until, write_root};
use serde_json::Value;

const DEBIAN: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
const LONG: Duration = Duration::from_secs(60);

/// A node sandbox whose passwd has `root` (uid 0, so a shell can really run as it) with a home
/// of its own under the sandbox: the login shell reads no profile of this machine's root.
fn give_passwd(root: &Path) {
    let home = root.join("home-root");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(root.join("etc/passwd"), format!("root:x:0:0:root:{}:/bin/bash\n", home.display())).expect("passwd");
}

/// A server and one agent whose node has a passwd; the agent is started with `agent_env`.
fn setup(dir: &Path, server_env: &[(&str, &str)], agent_env: &[(&str, &str)]) -> (TestServer, Agent, String) {
    let server = TestServer::start(&dir.join("data"), "1s", server_env).expect("server");
    let act = server.cli_json(&["activations", "create", "--limit", "1"]).expect("activation");
    let agent_dir = dir.join("node");
    write_root(&agent_dir.join("root"), DEBIAN, "node").expect("root");
    give_passwd(&agent_dir.join("root"));
    let (mut agent, out) =
        Agent::enroll(&server, &agent_dir, act["id"].as_str().expect("id"), act["code"].as_str().expect("code"))
            .expect("enroll");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    agent.start_with_env(agent_env).expect("agent");
    let node = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    wait_until(Duration::from_secs(20), || Ok(server.cli_json(&["nodes", "show", &node])?["status"] == "Online"))
        .expect("online");
    (server, agent, node)
}

/// A tmux server of its own (its own socket), one window, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str, cols: u16, rows: u16, command: &str) -> Tmux {
        let socket = format!("flotilla-test-{name}-{}", std::process::id());
        let status = Command::new("/usr/bin/tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", &cols.to_string()])
            .args(["-y", &rows.to_string(), command])
            .status()
            .expect("tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("/usr/bin/tmux").args(["-L", &self.socket]).args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and Enter.
    fn line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "s", "-l", text]);
        self.tmux(&["send-keys", "-t", "s", "Enter"]);
    }

    fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "s", key]);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-t", "s", "-S", "-500"])
    }

    fn wait_for(&self, text: &str) -> String {
        let mut screen = String::new();
        let found = wait_until(LONG, || {
            screen = self.screen();
            Ok(screen.contains(text))
        });
        assert!(found.is_ok(), "`{text}` never appeared on the terminal:\n{screen}");
        screen
    }

    /// A blank screen and no scrollback, so what is awaited next is new.
    fn fresh(&self) {
        self.line("clear");
        std::thread::sleep(Duration::from_millis(300));
        self.tmux(&["clear-history", "-t", "s"]);
    }

    fn resize(&self, cols: u16, rows: u16) {
        self.tmux(&["resize-window", "-t", "s", "-x", &cols.to_string(), "-y", &rows.to_string()]);
    }

    fn pane_pid(&self) -> u32 {
        self.tmux(&["display-message", "-p", "-t", "s", "#{pane_pid}"]).trim().parse().expect("pane pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// The shell line that runs the CLI against `server` (in a pane's local shell).
fn cli_line(server: &TestServer, args: &str) -> String {
    format!(
        "FLOTILLA_URL={} FLOTILLA_TOKEN={} FLOTILLA_CA={} {} {args}",
        server.url,
        server.token,
        server.ca.display(),
        bin_path("flotilla").display()
    )
}

/// A local shell in tmux with a plain prompt.
fn local_shell(name: &str) -> Tmux {
    Tmux::new(name, 100, 30, "env PS1='local$ ' TERM=xterm-256color bash --norc --noprofile")
}

/// The local terminal is back in cooked mode with echo (what the CLI found at start).
fn assert_restored(t: &Tmux) {
    t.line("stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo -e -icanon -e -echo | sort | tr '\\n' ' '; echo :mo''des");
    let screen = t.wait_for(":modes");
    assert!(screen.contains("echo icanon :modes"), "the terminal was not restored:\n{screen}");
}

fn sessions(server: &TestServer, node: &str) -> Vec<Value> {
    server.cli_json(&["session", "ls", "--node", node]).expect("ls").as_array().cloned().unwrap_or_default()
}

fn wait_ended(server: &TestServer, id: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(LONG, || {
        last = server.cli_json(&["session", "show", id])?;
        Ok(!last["ended_at"].is_null())
    });
    assert!(ok.is_ok(), "session {id} never ended: {last}\n{}", server.log_text());
    last
}

fn only_session(server: &TestServer, node: &str) -> String {
    let list = sessions(server, node);
    list.first().and_then(|s| s["id"].as_str()).expect("a session").to_owned()
}

#[test]
fn a_shell_through_a_real_terminal_types_interrupts_resizes_and_exits_recorded() {
    let dir = tempfile::tempdir().expect("tmp");
    let (server, _agent, node) = setup(dir.path(), &[], &[]);
    let t = local_shell("shell");
    t.wait_for("local$");
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for(&format!("on {node} (exit the shell"));
    // A command typed, its output read (the arithmetic shows the remote shell computed it).
    t.line("echo hello-$((6*7))");
    t.wait_for("hello-42");
    // Ctrl-C reaches the remote foreground process: `sleep` ends at once, not in 1000 s.
    t.line("sleep 1000; echo not-interrupted");
    std::thread::sleep(Duration::from_millis(500));
    t.key("C-c");
    t.line("echo after-interrupt");
    let screen = t.wait_for("\nafter-interrupt");
    assert!(!screen.contains("\nnot-interrupted"), "{screen}");
    // The initial size, then a resize seen by `stty size`.
    t.line("echo size=$(stty size)");
    t.wait_for("size=30 100");
    t.resize(120, 40);
    std::thread::sleep(Duration::from_millis(300));
    t.line("echo size=$(stty size)");
    t.wait_for("size=40 120");
    // UTF-8 both ways.
    t.line("printf 'caf\\303\\251-%s\\n' ✓");
    t.wait_for("café-✓");
    t.line("exit 3");
    t.wait_for("ended: shell exited (status 3)");
    t.line("echo rc=$?");
    t.wait_for("rc=3");
    assert_restored(&t);

    let id = only_session(&server, &node);
    let s = wait_ended(&server, &id);
    assert_eq!(s["kind"], "shell");
    assert_eq!(s["user"], "root");
    assert_eq!(s["reason"], "shell exited (status 3)");
    assert_eq!(s["opened_by"], "admin");
    assert!(s["bytes_in"].as_i64() > Some(20) && s["bytes_out"].as_i64() > Some(20), "{s}");

    // The transcript: asciicast v2, output and input, replayed.
    let out = server.cli(&["session", "replay", &id, "--speed", "1000"]).expect("replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replay = String::from_utf8_lossy(&out.stdout);
    assert!(replay.contains("hello-42") && replay.contains("café-✓"), "{replay}");
    let parts = dir.path().join("data/artifacts/sessions").join(&id).join("transcript");
    let first = std::fs::read(parts.join("000000.cast")).expect("first part");
    assert!(!first.windows(8).any(|w| w == b"hello-42"), "transcripts are stored encrypted");

    // Events.
    let events =
        server.cli_json(&["events", "ls", "--type", "Session.Started", "--type", "Session.Ended"]).expect("events");
    let kinds: Vec<&str> = events.as_array().expect("list").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["Session.Started", "Session.Ended"], "{events}");

    // A finished session cannot be terminated; an unknown one is not found.
    let out = server.cli(&["session", "terminate", &id]).expect("terminate");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already ended"));
    let out = server.cli(&["session", "show", "ses-nope"]).expect("show");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session `ses-nope`"));
    let out = server.cli(&["session", "replay", &id, "--speed", "0"]).expect("replay");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--speed must be a number above 0"));
}

/// A TCP server on the "node side": echoes every byte back.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `flotilla session port-forward` running in the background, its stderr in a file.
struct Forward {
    child: Child,
    err: PathBuf,
    local: u16,
}

impl Forward {
    fn start(server: &TestServer, dir: &Path, node: &str, target: &str) -> Forward {
        let local = free_port();
        let err = dir.join(format!("forward-{local}.err"));
        let child = Command::new(bin_path("flotilla"))
            .args(["session", "port-forward", node, &format!("{local}:{target}")])
            .env("FLOTILLA_URL", &server.url)
            .env("FLOTILLA_TOKEN", &server.token)
            .env("FLOTILLA_CA", &server.ca)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).expect("err file"))
            .spawn()
            .expect("port-forward");
        let f = Forward { child, err, local };
        wait_until(Duration::from_secs(30), || Ok(f.stderr().contains("forwarding"))).unwrap_or_else(|_| {
            panic!("port-forward did not start: {}", f.stderr());
        });
        f
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.local)).expect("connect to the forward");
        s.set_read_timeout(Some(LONG)).expect("timeout");
        s
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `data` and reads the same number of bytes back, concurrently.
fn echo_round(stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = stream.try_clone().expect("clone");
    let payload = data.to_vec();
    let sender = std::thread::spawn(move || writer.write_all(&payload).expect("send"));
    let mut back = vec![0u8; data.len()];
    let mut reader = stream;
    reader.read_exact(&mut back).expect("echo back");
    sender.join().expect("sender");
    back
}

#[test]
fn port_forward_carries_eight_concurrent_connections_and_bulk_beside_interactive() {
    let dir = tempfile::tempdir().expect("tmp");
    let (server, agent, node) = setup(dir.path(), &[], &[]);
    let port = echo_server();
    let mut forward = Forward::start(&server, dir.path(), &node, &format!("127.0.0.1:{port}"));

    // Eight concurrent connections, each its own stream: every one gets its own bytes back.
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let s = forward.connect();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..512 * 1024).map(|j| (j as u8).wrapping_mul(i + 1)).collect();
                assert_eq!(echo_round(&s, &data), data, "connection {i}");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("connection");
    }

    // 100 MB through one connection while a second stays interactive.
    let rss_before = agent.rss_kib().expect("rss");
    let bulk = forward.connect();
    let total = 100 * 1024 * 1024usize;
    let started = Instant::now();
    let bulk_thread = std::thread::spawn(move || {
        let mut writer = bulk.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            let chunk = vec![7u8; 1024 * 1024];
            for _ in 0..100 {
                writer.write_all(&chunk).expect("bulk send");
            }
        });
        let mut reader = bulk;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            let n = reader.read(&mut buf).expect("bulk read");
            assert!(n > 0, "bulk connection closed early at {got}");
            got += n;
        }
        sender.join().expect("sender");
        got
    });
    let interactive = forward.connect();
    let mut rounds = 0;
    let mut max_rss = rss_before;
    while !bulk_thread.is_finished() || rounds < 10 {
        assert_eq!(echo_round(&interactive, b"ping\n"), b"ping\n");
        rounds += 1;
        max_rss = max_rss.max(agent.rss_kib().unwrap_or(0));
    }
    let got = bulk_thread.join().expect("bulk");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(got, total);
    eprintln!(
        "forward: 100 MiB each way in {secs:.2}s = {:.1} MiB/s; {rounds} interactive round trips meanwhile; agent RSS {rss_before} KiB -> max {max_rss} KiB",
        100.0 / secs
    );
    // Bounded: the agent holds a few buffers per stream, never the transfer.
    assert!(max_rss < rss_before + 48 * 1024, "agent memory grew from {rss_before} KiB to {max_rss} KiB");

    let id = only_session(&server, &node);
    forward.stop();
    let s = wait_ended(&server, &id);
    assert_eq!(s["kind"], "port-forward");
    assert_eq!(s["reason"], "the client disconnected");
    assert!(s["bytes_in"].as_i64().unwrap_or(0) >= total as i64, "{s}");
    let connections = s["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 10, "{s}");
    assert!(connections.iter().all(|c| c["target"] == format!("127.0.0.1:{port}")), "{s}");
    assert!(connections.iter().any(|c| c["bytes_out"].as_i64() >= Some(total as i64)), "{s}");
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let (server, mut agent, node) = setup(dir.path(), &[], &[("FLOTILLA_AGENT_MAX_SESSIONS", "1")]);
    let refused = |args: &[&str], says: &str| {
        let out = server.cli(args).expect("cli");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: expected `{says}` in: {err}");
    };
    refused(&["session", "start", &node, "--user", "nosuchuser"], "user nosuchuser does not exist on this node");
    refused(&["session", "start", &node, "--user", "Bad User"], "is not a user name");
    refused(&["session", "start", "n-00000000000000000"], "no node `n-00000000000000000`");
    refused(&["session", "port-forward", &node, "8080:host"], "is not LOCAL_PORT:HOST:PORT");

    // A closed port and an unresolvable host: the local connection is closed and the reason
    // printed and recorded.
    let closed = free_port();
    let forward = Forward::start(&server, dir.path(), &node, &format!("127.0.0.1:{closed}"));
    let mut s = forward.connect();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    wait_until(LONG, || Ok(forward.stderr().contains("connection refused by 127.0.0.1")))
        .unwrap_or_else(|_| panic!("{}", forward.stderr()));
    drop(forward);
    let forward = Forward::start(&server, dir.path(), &node, "no-such-host.invalid:80");
    let mut s = forward.connect();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    wait_until(LONG, || Ok(forward.stderr().contains("cannot resolve no-such-host.invalid")))
        .unwrap_or_else(|_| panic!("{}", forward.stderr()));
    let id = only_session(&server, &node);
    let show = server.cli_json(&["session", "show", &id]).expect("show");
    let reason = show["connections"][0]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("cannot resolve no-such-host.invalid"), "{show}");
    drop(forward);

    // More sessions than the agent allows (1): a second shell is refused while one is open.
    let t = local_shell("cap");
    t.wait_for("local$");
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for(&format!("on {node} (exit the shell"));
    refused(&["session", "start", &node], "sessions open, the most its agent allows");
    t.line("exit");
    t.wait_for("ended: shell exited (status 0)");

    // Node offline, then deregistered.
    agent.stop();
    wait_until(LONG, || Ok(server.cli_json(&["nodes", "show", &node])?["status"] != "Online")).expect("offline");
    refused(&["session", "start", &node], "is not connected");
    refused(&["session", "port-forward", &node, "0:127.0.0.1:22"], "is not connected");
    let out = server.cli(&["nodes", "deregister", &node]).expect("deregister");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    refused(&["session", "start", &node], "is deregistered");
}

#[test]
fn idle_and_maximum_durations_end_sessions() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = [("FLOTILLA_SESSION_IDLE_TIMEOUT", "3s"), ("FLOTILLA_SESSION_MAX_DURATION", "8s")];
    let (server, _agent, node) = setup(dir.path(), &env, &[]);
    let t = local_shell("idle");
    t.wait_for("local$");
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for(&format!("on {node} (exit the shell"));
    t.wait_for("ended: idle timeout");
    assert_restored(&t);
    let id = only_session(&server, &node);
    assert_eq!(wait_ended(&server, &id)["reason"], "idle timeout");
    t.fresh();

    // Busy all along, it still ends at the maximum duration.
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for("(exit the shell");
    t.line("while true; do echo tick; sleep 0.5; done");
    t.wait_for("ended: maximum duration reached");
    assert_restored(&t);
    let list = sessions(&server, &node);
    assert_eq!(list[0]["reason"], "maximum duration reached", "{list:?}");
}

fn children(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-P", &pid.to_string()]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[test]
fn killing_the_cli_or_the_agent_mid_session_ends_it_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let (server, mut agent, node) = setup(dir.path(), &[], &[]);

    // The CLI killed (SIGKILL): the remote shell is ended and the transcript closed.
    let t = local_shell("kill-cli");
    t.wait_for("local$");
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for("(exit the shell");
    t.line("echo remote-''pid=$$");
    let screen = t.wait_for("remote-pid=");
    let remote: u32 = screen
        .lines()
        .filter_map(|l| l.strip_prefix("remote-pid="))
        .find_map(|p| p.trim().parse().ok())
        .expect("remote pid");
    let cli = children(t.pane_pid());
    assert_eq!(cli.len(), 1, "the CLI is the pane shell's only child");
    let _ = Command::new("kill").args(["-KILL", &cli[0].to_string()]).status();
    let id = only_session(&server, &node);
    let s = wait_ended(&server, &id);
    assert_eq!(s["reason"], "the client disconnected");
    wait_until(LONG, || Ok(!Path::new(&format!("/proc/{remote}")).exists())).expect("remote shell ended");
    let replay = server.cli(&["session", "replay", &id, "--speed", "1000"]).expect("replay");
    assert!(String::from_utf8_lossy(&replay.stdout).contains("remote-pid="), "transcript readable after the kill");
    t.line("stty sane");
    t.fresh();

    // SIGTERM of the CLI: it restores the terminal and says so.
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for("(exit the shell");
    let cli = children(t.pane_pid());
    let _ = Command::new("kill").args(["-TERM", &cli[0].to_string()]).status();
    t.wait_for("ended: SIGTERM");
    assert_restored(&t);
    t.fresh();

    // The agent killed: the CLI says so and restores the terminal.
    t.line(&cli_line(&server, &format!("session start {node}")));
    t.wait_for("(exit the shell");
    agent.stop();
    t.wait_for("the node's agent disconnected");
    assert_restored(&t);
}
