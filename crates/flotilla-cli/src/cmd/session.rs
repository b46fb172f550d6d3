//! `flotilla session start | port-forward | ls | show | terminate | replay`: an interactive
//! shell on a node's PTY and port forwarding through the node's agent, both recorded.
//!
//! Invariant: `start` puts the local terminal in raw mode and restores it on every way out —
//! the shell's end, the server or the node gone, SIGTERM/SIGHUP of this process, an error or
//! a panic (a guard restores it on drop). Only SIGKILL, which no program can catch, leaves it
//! raw (`stty sane` or `reset` recovers it).

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context, bail};
use flotilla_api::sessions::frame;
use flotilla_api::{Client, Session};
use flotilla_core::session::parse_forward;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::output::{Format, print, printable};

#[derive(clap::Subcommand)]
pub enum SessionCmd {
    /// An interactive shell on the node (a PTY; Ctrl-D or `exit` ends it). Recorded.
    ///
    /// Example: flotilla session start node-0123 --user deploy
    Start {
        node: String,
        /// The node-side user (default: the node's `session-run-as` tag, then the server's
        /// `session_run_as`); must exist in the node's /etc/passwd.
        #[arg(long)]
        user: Option<String>,
    },
    /// Forward local TCP connections to HOST:PORT as seen from the node, until Ctrl-C.
    ///
    /// Example: flotilla session port-forward node-0123 5432:db.internal:5432
    PortForward {
        node: String,
        /// LOCAL_PORT:HOST:PORT (0 as LOCAL_PORT picks a free port).
        spec: String,
        /// Local address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
    },
    /// Sessions, newest first.
    ///
    /// Example: flotilla session ls --node node-0123
    Ls {
        #[arg(long)]
        node: Option<String>,
    },
    /// One session: who, where, as whom, when, bytes each way, why it ended, its connections.
    ///
    /// Example: flotilla session show ses-0123abcd
    Show { id: String },
    /// End an open session (its shell's processes are killed on the node).
    ///
    /// Example: flotilla session terminate ses-0123abcd
    Terminate { id: String },
    /// Replay a shell session's transcript (asciicast v2) in this terminal.
    ///
    /// Example: flotilla session replay ses-0123abcd --speed 4
    Replay {
        id: String,
        /// Playback speed (2 is twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
}

const HEADERS: &[&str] = &["ID", "NODE", "KIND", "USER", "STARTED", "ENDED", "IN", "OUT", "REASON"];

fn rows(list: &[Session]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.node_id.clone(),
                s.kind.clone(),
                s.user.clone(),
                s.started_at.clone(),
                s.ended_at.clone().unwrap_or_else(|| "-".into()),
                s.bytes_in.to_string(),
                s.bytes_out.to_string(),
                s.reason.clone().unwrap_or_else(|| "open".into()),
            ]
        })
        .collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl SessionCmd {
    pub async fn run(self, client: &Client, format: Format) -> anyhow::Result<()> {
        match self {
            SessionCmd::Start { node, user } => start(client, &node, user.as_deref()).await,
            SessionCmd::PortForward { node, spec, bind } => port_forward(client, &node, &spec, &bind).await,
            SessionCmd::Ls { node } => {
                let list = client.list_sessions(node.as_deref()).await?;
                print(format, &list, HEADERS, rows(&list))
            }
            SessionCmd::Show { id } => {
                let s = client.get_session(&id).await?;
                print(format, &s, HEADERS, rows(std::slice::from_ref(&s)))?;
                if format == Format::Table && !s.connections.is_empty() {
                    let conns: Vec<Vec<String>> = s
                        .connections
                        .iter()
                        .map(|c| {
                            vec![
                                c.seq.to_string(),
                                c.target.clone(),
                                c.opened_at.clone(),
                                c.closed_at.clone(),
                                c.bytes_in.to_string(),
                                c.bytes_out.to_string(),
                                c.reason.clone(),
                            ]
                        })
                        .collect();
                    crate::output::outln!()?;
                    print(
                        format,
                        &s.connections,
                        &["CONN", "TARGET", "OPENED", "CLOSED", "IN", "OUT", "REASON"],
                        conns,
                    )?;
                }
                Ok(())
            }
            SessionCmd::Terminate { id } => {
                let s = client.terminate_session(&id).await?;
                print(format, &s, HEADERS, rows(std::slice::from_ref(&s)))
            }
            SessionCmd::Replay { id, speed } => replay(client, &id, speed).await,
        }
    }
}

/// The local terminal in raw mode while alive; restored on drop.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(RawMode { saved: None });
        }
        let saved = rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(RawMode { saved: Some(saved) })
    }

    fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &saved);
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

fn terminal_size() -> (u16, u16) {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(ws) if ws.ws_row > 0 && ws.ws_col > 0 => (ws.ws_row, ws.ws_col),
        _ => (24, 80),
    }
}

/// Standard input on its own thread (a blocking read cannot be cancelled; this thread does
/// not keep the process alive). End of input is passed on as Ctrl-D.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(vec![0x04]);
                    return;
                }
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&frame::header(kind, payload.len())).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Reads server frames into `tx`: `(kind, payload)`; ends at end of stream.
async fn read_frames<R: AsyncRead + Unpin>(mut r: R, tx: mpsc::Sender<(u8, Vec<u8>)>) {
    loop {
        let mut head = [0u8; frame::HEADER_LEN];
        if r.read_exact(&mut head).await.is_err() {
            return;
        }
        let Ok((kind, len)) = frame::parse_header(head) else { return };
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() || tx.send((kind, payload)).await.is_err() {
            return;
        }
    }
}

/// How a shell session ended, for the message and the exit status.
enum Ending {
    Closed(i32, String),
    ServerGone,
    Signal(&'static str),
}

async fn start(client: &Client, node: &str, user: Option<&str>) -> anyhow::Result<()> {
    let (rows, cols) = terminal_size();
    let term = std::env::var("TERM").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| "xterm-256color".into());
    let mut path = format!("/api/v1/sessions/shell?node={}&rows={rows}&cols={cols}&term={}", enc(node), enc(&term));
    if let Some(user) = user {
        path.push_str(&format!("&user={}", enc(user)));
    }
    let (id, io) = client.open_stream(&path).await?;
    let mut term_signals = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut winch = signal(SignalKind::window_change()).context("cannot listen for SIGWINCH")?;
    eprintln!("session {id} on {node} (exit the shell or Ctrl-D to end it)");
    let mut raw = RawMode::enter()?;
    let (rd, mut wr) = tokio::io::split(io);
    let (ftx, mut frames) = mpsc::channel(4);
    let reader = tokio::spawn(read_frames(rd, ftx));
    let mut input = read_stdin();
    let mut stdout = tokio::io::stdout();
    let ending = loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some((frame::DATA, data)) => {
                    if stdout.write_all(&data).await.is_err() || stdout.flush().await.is_err() {
                        break Ending::Signal("standard output closed");
                    }
                }
                Some((frame::CLOSED, payload)) => {
                    let (code, reason) = frame::parse_closed(&payload);
                    break Ending::Closed(code, reason);
                }
                Some(_) => {}
                None => break Ending::ServerGone,
            },
            data = input.recv() => match data {
                Some(data) => {
                    if write_frame(&mut wr, frame::DATA, &data).await.is_err() {
                        break Ending::ServerGone;
                    }
                }
                None => break Ending::Signal("standard input closed"),
            },
            _ = winch.recv() => {
                let (rows, cols) = terminal_size();
                if write_frame(&mut wr, frame::RESIZE, &frame::resize(rows, cols)).await.is_err() {
                    break Ending::ServerGone;
                }
            }
            _ = term_signals.recv() => break Ending::Signal("SIGTERM"),
            _ = hangup.recv() => break Ending::Signal("SIGHUP"),
            _ = interrupt.recv() => break Ending::Signal("SIGINT"),
        }
    };
    let _ = stdout.flush().await;
    reader.abort();
    let _ = wr.shutdown().await;
    raw.restore();
    match ending {
        Ending::Closed(code, reason) => {
            eprintln!("\nsession {id} ended: {}", printable(&reason));
            if reason.starts_with("shell exited") {
                if code != 0 {
                    std::process::exit(code.clamp(1, 255));
                }
                Ok(())
            } else {
                bail!("session {id} on {node} ended: {reason}")
            }
        }
        Ending::ServerGone => bail!("the connection to the server was lost: session {id} on {node} ended"),
        Ending::Signal(what) => bail!("session {id} ended: {what}"),
    }
}

async fn port_forward(client: &Client, node: &str, spec: &str, bind: &str) -> anyhow::Result<()> {
    let spec = parse_forward(spec).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind((bind, spec.local_port))
        .await
        .with_context(|| format!("cannot listen on {bind}:{}: choose another LOCAL_PORT or --bind", spec.local_port))?;
    let local = listener.local_addr().context("cannot read the local address")?;
    let path = format!("/api/v1/sessions/port-forward?node={}&host={}&port={}", enc(node), enc(&spec.host), spec.port);
    let (id, control) = client.open_stream(&path).await?;
    eprintln!("session {id}: forwarding {local} to {}:{} from node {node} (Ctrl-C to stop)", spec.host, spec.port);
    let mut term_signals = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let (rd, _wr) = tokio::io::split(control);
    let (ftx, mut frames) = mpsc::channel(4);
    let reader = tokio::spawn(read_frames(rd, ftx));
    let mut seq = 0u64;
    let result = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    seq += 1;
                    let (client, id) = (client.clone(), id.clone());
                    tokio::spawn(async move { forward_one(&client, &id, socket, peer, seq).await });
                }
                Err(e) => eprintln!("cannot accept a connection on {local}: {e}"),
            },
            f = frames.recv() => match f {
                Some((frame::CLOSED, payload)) => {
                    let (_, reason) = frame::parse_closed(&payload);
                    break Err(anyhow::anyhow!("session {id} ended: {reason}"));
                }
                Some(_) => {}
                None => break Err(anyhow::anyhow!("the connection to the server was lost: session {id} ended")),
            },
            _ = term_signals.recv() => break Ok(()),
            _ = interrupt.recv() => break Ok(()),
        }
    };
    reader.abort();
    if result.is_ok() {
        eprintln!("session {id} ended");
    }
    result
}

async fn forward_one(
    client: &Client,
    id: &str,
    mut socket: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    seq: u64,
) {
    let _ = socket.set_nodelay(true);
    match client.open_stream(&format!("/api/v1/sessions/{}/connect", enc(id))).await {
        Ok((_, mut io)) => {
            if let Err(e) = tokio::io::copy_bidirectional_with_sizes(&mut socket, &mut io, 64 * 1024, 64 * 1024).await {
                tracing::debug!("connection {seq} from {peer} ended: {e}");
            }
        }
        Err(e) => eprintln!("connection {seq} from {peer}: {}", printable(&e.to_string())),
    }
}

async fn replay(client: &Client, id: &str, speed: f64) -> anyhow::Result<()> {
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a number above 0 (1 is real time, 2 twice as fast)");
    }
    let bytes = client.session_transcript(id).await?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap_or_default())
        .with_context(|| format!("the transcript of {id} does not start with an asciicast header"))?;
    if header["version"] != 2 {
        bail!("the transcript of {id} is not asciicast version 2");
    }
    let mut stdout = tokio::io::stdout();
    let mut last = 0.0f64;
    for line in lines {
        let Ok(serde_json::Value::Array(event)) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(t), Some(code), Some(data)) = (
            event.first().and_then(|v| v.as_f64()),
            event.get(1).and_then(|v| v.as_str()),
            event.get(2).and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        if code != "o" {
            continue;
        }
        let wait = ((t - last) / speed).clamp(0.0, 3600.0);
        last = t;
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        stdout.write_all(data.as_bytes()).await?;
        stdout.flush().await?;
    }
    Ok(())
}
