//! Sessions on the node: a shell on a PTY, or one TCP connection to HOST:PORT, each carried by
//! its own `Session` rpc stream that the agent opens on its existing connection when the
//! server asks (`SessionOpen`) — no port is opened on the node.
//!
//! Invariants: at most `max_sessions` sessions at once (a port forward's connections count as
//! their one session), beyond it the stream is opened only to refuse with the reason; at most
//! `buffer_bytes` of a stream's output waits to be sent (reads stop while it is full, so a
//! slow operator holds back only their own stream and memory stays bounded); a shell runs as
//! a user found in the node's passwd under `--root`, in its own session and process group, and
//! when the stream ends for any reason the whole session is killed (group and marker).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::v1::agent_channel_client::AgentChannelClient;
use flotilla_proto::v1::{
    SessionClosed, SessionFrame, SessionHello, SessionOpen, SessionOpened, ShellOpen, TcpOpen, session_frame,
    session_open,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// Largest read sent in one frame.
const CHUNK: usize = 32 * 1024;
/// How long a connection to HOST:PORT may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most streams (shells and forwarded connections) of one session.
const MAX_STREAMS_PER_SESSION: usize = 64;

/// Default [`Settings::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 16;
/// Default [`Settings::buffer_bytes`].
pub const DEFAULT_BUFFER_BYTES: usize = 256 * 1024;

/// How many sessions, and how much buffered output per stream.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_sessions: usize,
    pub buffer_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_sessions: DEFAULT_MAX_SESSIONS, buffer_bytes: DEFAULT_BUFFER_BYTES }
    }
}

/// The sessions of this agent.
pub struct Sessions {
    root: PathBuf,
    settings: Settings,
    /// Open streams per session id.
    open: Mutex<HashMap<String, usize>>,
}

/// A claimed slot; released on drop.
struct Slot {
    sessions: Arc<Sessions>,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.sessions.lock();
        if let Some(n) = open.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.id);
            }
        }
    }
}

fn frame(body: session_frame::Body) -> SessionFrame {
    SessionFrame { body: Some(body) }
}

fn closed(reason: &str, exit_code: i32, failed: bool) -> SessionFrame {
    frame(session_frame::Body::Closed(SessionClosed { reason: reason.to_owned(), exit_code, failed }))
}

impl Sessions {
    pub fn new(root: &Path, settings: Settings) -> Arc<Sessions> {
        Arc::new(Sessions { root: root.to_path_buf(), settings, open: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(self: &Arc<Self>, id: &str) -> Result<Slot, String> {
        let mut open = self.lock();
        match open.get(id).copied() {
            Some(n) if n >= MAX_STREAMS_PER_SESSION => {
                return Err(format!(
                    "session {id} already has {n} connections open on this node (the most one session may)"
                ));
            }
            Some(_) => {}
            None if open.len() >= self.settings.max_sessions => {
                return Err(format!(
                    "the node already has {} sessions open, the most its agent allows (FLOTILLA_AGENT_MAX_SESSIONS)",
                    open.len()
                ));
            }
            None => {}
        }
        *open.entry(id.to_owned()).or_insert(0) += 1;
        Ok(Slot { sessions: self.clone(), id: id.to_owned() })
    }

    /// Serves one `SessionOpen` in the background, on `channel` (the agent's connection).
    pub fn open(self: &Arc<Self>, channel: Channel, request: SessionOpen) {
        let sessions = self.clone();
        tokio::spawn(async move { sessions.serve(channel, request).await });
    }

    async fn serve(self: Arc<Self>, channel: Channel, request: SessionOpen) {
        let depth = (self.settings.buffer_bytes / CHUNK).max(1);
        let (tx, rx) = mpsc::channel::<SessionFrame>(depth);
        let hello = frame(session_frame::Body::Hello(SessionHello { stream_id: request.stream_id.clone() }));
        if tx.send(hello).await.is_err() {
            return;
        }
        let mut client = AgentChannelClient::new(channel);
        let mut inbound = match client.session(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(session = %request.session_id, "the server refused the session stream: {}", status.message());
                return;
            }
        };
        let id = request.session_id.clone();
        let outcome = match self.claim(&id) {
            Err(reason) => Err(reason),
            Ok(slot) => {
                let result = match request.target {
                    Some(session_open::Target::Shell(shell)) => self.shell(&id, shell, &tx, &mut inbound).await,
                    Some(session_open::Target::Tcp(tcp)) => tcp_connection(tcp, &tx, &mut inbound).await,
                    None => {
                        Err("the server asked for a session of a kind this agent does not know: upgrade the agent"
                            .into())
                    }
                };
                drop(slot);
                result
            }
        };
        match outcome {
            Ok(end) => {
                tracing::info!(session = %id, "session stream ended: {}", end.reason);
                let _ = tx.send(closed(&end.reason, end.exit_code, false)).await;
            }
            Err(reason) => {
                tracing::info!(session = %id, "session refused or failed: {reason}");
                let _ = tx.send(closed(&reason, -1, true)).await;
            }
        }
        // Half-close and let the server finish reading, so the last frame is not cut off.
        drop(tx);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while let Ok(Some(_)) = inbound.message().await {} })
                .await;
    }

    async fn shell(
        &self,
        id: &str,
        open: ShellOpen,
        tx: &mpsc::Sender<SessionFrame>,
        inbound: &mut Streaming<SessionFrame>,
    ) -> Result<End, String> {
        let user = find_user(&self.root, &open.user)?;
        let me = rustix::process::getuid().as_raw();
        let ids = if me == user.uid {
            None
        } else if me == 0 {
            Some((user.uid, user.gid))
        } else {
            return Err(format!(
                "the agent runs as uid {me} and cannot start a shell as {} (uid {})",
                open.user, user.uid
            ));
        };
        let rows = u16::try_from(open.rows).unwrap_or(u16::MAX).max(1);
        let cols = u16::try_from(open.cols).unwrap_or(u16::MAX).max(1);
        let (master, slave) = open_pty(rows, cols).map_err(|e| format!("cannot open a terminal on the node: {e}"))?;
        let shell = if user.shell.is_file() { user.shell.clone() } else { PathBuf::from("/bin/sh") };
        let term = if open.term.is_empty() { "xterm-256color".to_owned() } else { open.term.clone() };
        let marker_id = format!("session-{id}");
        let spec = crate::exec::ShellSpec {
            shell,
            ids,
            user: open.user.clone(),
            home: user.home.clone(),
            term,
            terminal: slave,
            marker_id: marker_id.clone(),
        };
        let mut child = crate::exec::spawn_shell(spec).map_err(|e| format!("cannot start the shell (setsid): {e}"))?;
        let pid = child.id();
        // Deprecated because a borrowed fd could be closed while registered; this AsyncFd owns
        // its OwnedFd for its whole life, so that cannot happen here.
        #[allow(deprecated)]
        let master = AsyncFd::new(master).map_err(|e| format!("cannot watch the terminal: {e}"))?;
        if tx.send(frame(session_frame::Body::Opened(SessionOpened {}))).await.is_err() {
            crate::exec::kill_session(pid, &marker_id).await;
            return Err("the server went away".into());
        }
        tracing::info!(session = %id, user = %open.user, pid = ?pid, "shell started");
        // Terminal output and operator input each run on their own, so a paste into a program
        // that echoes it (`cat`) never waits on output nobody reads.
        let stop = {
            let down = async {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match read_fd(&master, &mut buf).await {
                        // EIO: every process holding the terminal has closed it.
                        Ok(0) | Err(_) => return None,
                        Ok(n) => {
                            if tx.send(frame(session_frame::Body::Data(buf[..n].to_vec()))).await.is_err() {
                                return Some(End { reason: "the server went away".into(), exit_code: -1 });
                            }
                        }
                    }
                }
            };
            let up = async {
                loop {
                    match inbound.message().await {
                        Ok(Some(SessionFrame { body: Some(session_frame::Body::Data(bytes)) })) => {
                            if write_fd(&master, &bytes).await.is_err() {
                                return None;
                            }
                        }
                        Ok(Some(SessionFrame { body: Some(session_frame::Body::Resize(size)) })) => {
                            let ws = winsize(
                                u16::try_from(size.rows).unwrap_or(u16::MAX).max(1),
                                u16::try_from(size.cols).unwrap_or(u16::MAX).max(1),
                            );
                            // The kernel sends SIGWINCH to the terminal's foreground group.
                            let _ = rustix::termios::tcsetwinsize(master.get_ref(), ws);
                        }
                        Ok(Some(SessionFrame { body: Some(session_frame::Body::Closed(c)) })) => {
                            return Some(End { reason: format!("closed by the server ({})", c.reason), exit_code: -1 });
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => {
                            return Some(End { reason: "the server went away".into(), exit_code: -1 });
                        }
                    }
                }
            };
            tokio::select! {
                end = down => Err(end),
                end = up => Err(end),
                status = child.wait() => Ok(status.ok().map(exit_code).unwrap_or(-1)),
            }
        };
        let end = match stop {
            Err(end) => end,
            Ok(code) => {
                // The shell ended; pass on what it wrote last, briefly.
                let mut buf = vec![0u8; CHUNK];
                let drain = async {
                    while let Ok(n) = read_fd(&master, &mut buf).await {
                        if n == 0 || tx.send(frame(session_frame::Body::Data(buf[..n].to_vec()))).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(300), drain).await;
                Some(End { reason: format!("shell exited (status {code})"), exit_code: code })
            }
        };
        crate::exec::kill_session(pid, &marker_id).await;
        let end = match end {
            Some(end) => end,
            None => {
                let code = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                    Ok(Ok(status)) => exit_code(status),
                    _ => -1,
                };
                End { reason: format!("shell exited (status {code})"), exit_code: code }
            }
        };
        let _ = child.wait().await;
        Ok(end)
    }
}

/// How a session stream ended (not refused).
struct End {
    reason: String,
    exit_code: i32,
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: PathBuf,
}

/// The user's entry in the node's `/etc/passwd` (under `--root`).
fn find_user(root: &Path, name: &str) -> Result<PasswdEntry, String> {
    flotilla_core::session::check_user(name)?;
    let path =
        crate::root::resolve(root, Path::new("/etc/passwd")).map_err(|e| format!("cannot find /etc/passwd: {e}"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read the node's /etc/passwd: {e}"))?;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 7 && fields[0] == name {
            let uid = fields[2].parse().map_err(|_| format!("/etc/passwd has a bad uid for {name}"))?;
            let gid = fields[3].parse().map_err(|_| format!("/etc/passwd has a bad gid for {name}"))?;
            return Ok(PasswdEntry { uid, gid, home: PathBuf::from(fields[5]), shell: PathBuf::from(fields[6]) });
        }
    }
    Err(format!("user {name} does not exist on this node (not in /etc/passwd): choose another with --user"))
}

fn winsize(rows: u16, cols: u16) -> rustix::termios::Winsize {
    rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// A new PTY: the master (non-blocking, for the agent) and the slave (for the shell), sized,
/// with IUTF8 so the line discipline erases whole UTF-8 characters.
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::termios::tcsetwinsize(&master, winsize(rows, cols))?;
    let mut termios = rustix::termios::tcgetattr(&slave)?;
    termios.input_modes |= rustix::termios::InputModes::IUTF8;
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios)?;
    let flags = rustix::fs::fcntl_getfl(&master)?;
    rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    Ok((master, slave))
}

async fn read_fd(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|inner| rustix::io::read(inner.get_ref(), &mut *buf).map_err(io::Error::from)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_fd(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|inner| rustix::io::write(inner.get_ref(), data).map_err(io::Error::from)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// One forwarded connection: connect to HOST:PORT from the node, then bytes both ways. An
/// empty Closed from the server is the operator's end of stream (passed on as a half-close);
/// the node side's close ends the connection.
async fn tcp_connection(
    open: TcpOpen,
    tx: &mpsc::Sender<SessionFrame>,
    inbound: &mut Streaming<SessionFrame>,
) -> Result<End, String> {
    let port = u16::try_from(open.port).map_err(|_| format!("port {} is out of range", open.port))?;
    let host = open.host;
    flotilla_core::session::check_host(&host)?;
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(format!("cannot resolve {host} on the node: {e}")),
            Err(_) => return Err(format!("resolving {host} on the node timed out")),
        };
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut last = format!("cannot resolve {host} on the node: no address");
    let mut stream = None;
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = format!("connection refused by {target} (nothing listens there, seen from the node)");
            }
            Ok(Err(e)) => last = format!("cannot connect to {target} from the node: {e}"),
            Err(_) => last = format!("connecting to {target} from the node timed out"),
        }
    }
    let stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    if tx.send(frame(session_frame::Body::Opened(SessionOpened {}))).await.is_err() {
        return Err("the server went away".into());
    }
    let (mut rd, mut wr) = stream.into_split();
    // The two directions run side by side: a write blocked on one never stops the other
    // being read (an echoing peer would otherwise deadlock the pump).
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return End { reason: format!("closed by {target}"), exit_code: 0 },
                Ok(n) => {
                    if tx.send(frame(session_frame::Body::Data(buf[..n].to_vec()))).await.is_err() {
                        return End { reason: "the server went away".into(), exit_code: -1 };
                    }
                }
                Err(e) => return End { reason: format!("connection to {target} failed: {e}"), exit_code: -1 },
            }
        }
    };
    let up = async {
        loop {
            match inbound.message().await {
                Ok(Some(SessionFrame { body: Some(session_frame::Body::Data(bytes)) })) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        return End { reason: format!("connection to {target} failed: {e}"), exit_code: -1 };
                    }
                }
                Ok(Some(SessionFrame { body: Some(session_frame::Body::Closed(c)) })) if c.reason.is_empty() => {
                    // The operator's end of stream: half-close, and let the node side finish.
                    let _ = wr.shutdown().await;
                    return std::future::pending().await;
                }
                Ok(Some(SessionFrame { body: Some(session_frame::Body::Closed(c)) })) => {
                    return End { reason: format!("closed by the server ({})", c.reason), exit_code: -1 };
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return End { reason: "the server went away".into(), exit_code: -1 },
            }
        }
    };
    let end = tokio::select! {
        end = down => end,
        end = up => end,
    };
    Ok(end)
}
